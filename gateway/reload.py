"""What a config reload changes: which devices restart, start and stop, and what waits for a restart.

Pure: two validated configs in, a :class:`ReloadPlan` out (the running gateway applies it, see
:meth:`gateway.app.Gateway.reload`).  Devices are matched by name; a device whose config is equal is
left alone (its task keeps polling, its point indices stay).  The sections the running process was
built from (identity, buffer, uplink, status endpoint, registry, watch, data policy) are not applied
live: the plan names the keys that differ and keeps the old values.  Keys are named, values never
(a diff summary must not carry a password or a token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config
from gateway.core.errors import ConfigError

__all__ = ["RESTART_ONLY", "ReloadPlan", "ReloadStatus", "config_error_lines", "plan_reload"]

# the sections a running gateway was built from: changing them needs a restart
RESTART_ONLY = ("gateway", "buffer", "uplink", "http", "registry", "watch", "data_policy")


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    effective: Config  # the new config with the restart-only sections of the running one
    unchanged: tuple[str, ...]  # enabled devices whose config is equal: not touched
    changed: tuple[str, ...]  # restarted with their new config
    added: tuple[str, ...]  # started (new, or enabled now)
    removed: tuple[str, ...]  # stopped (gone, or disabled now)
    same_layout: frozenset[str]  # devices (enabled or not) whose point indices are kept
    not_applied: tuple[str, ...]  # "[uplink] host": keys that differ and wait for a restart

    def summary(self) -> str:
        def part(names: tuple[str, ...], what: str) -> str:
            return f"{len(names)} {what}" + (f" ({', '.join(names)})" if names else "")

        return (f"{part(self.changed, 'changed')}, {part(self.added, 'added')}, {part(self.removed, 'removed')}, "
                f"{len(self.unchanged)} unchanged")


@dataclass(slots=True)
class ReloadStatus:
    """What the status endpoint and /metrics say about reloads."""

    applied: int = 0
    refused: int = 0
    last_result: str = ""  # "applied" | "refused" | "" (none yet)
    last_time_ns: int = 0
    last_summary: str = ""  # the INFO summary, or why it was refused
    not_applied: list[str] = field(default_factory=list)  # keys waiting for a restart

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "refused": self.refused, "last_result": self.last_result,
                "last_time_ns": self.last_time_ns, "last_summary": self.last_summary,
                "not_applied_until_restart": list(self.not_applied)}


def _differing_keys(old: Any, new: Any) -> list[str]:
    if old is None or new is None:
        return [] if old is new else ["(section added)" if old is None else "(section removed)"]
    a, b = old.model_dump(), new.model_dump()
    return [k for k in a if a[k] != b.get(k)]


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    not_applied: list[str] = []
    keep_sections: dict[str, Any] = {}
    for section in RESTART_ONLY:
        before, after = getattr(old, section), getattr(new, section)
        if before != after:
            keys = _differing_keys(before, after)
            not_applied += [f"[{section}] {k}" for k in keys] or [f"[{section}]"]
            keep_sections[section] = before
    effective = new.model_copy(update=keep_sections) if keep_sections else new
    before_devs = {d.name: d for d in old.devices}
    after_devs = {d.name: d for d in effective.devices}
    same = frozenset(n for n, d in after_devs.items() if before_devs.get(n) == d)
    was_on = [d.name for d in old.devices if d.enabled]
    now_on = [d.name for d in effective.devices if d.enabled]
    return ReloadPlan(
        effective=effective,
        unchanged=tuple(n for n in now_on if n in same),
        changed=tuple(n for n in now_on if n not in same and n in was_on),
        added=tuple(n for n in now_on if n not in was_on),
        removed=tuple(n for n in was_on if n not in now_on),
        same_layout=same,
        not_applied=tuple(not_applied),
    )


def config_error_lines(err: ConfigError, limit: int | None = None) -> list[str]:
    """``edgegw check``'s lines for an invalid config: a headline, then each problem at its
    ``file:line:column`` where the file says it."""
    from gateway.core.config_source import position_of

    where = f"{err.source}: " if err.source else ""
    lines = [f"{where}invalid configuration ({len(err.issues)} problem(s))"]
    located = [(position_of(i.location, err.positions) if err.positions else None, i) for i in err.issues]
    # in the order of the file (unplaced ones last), whichever check found them
    located.sort(key=lambda x: x[0] or (1 << 30, 0))
    issues = located if limit is None else located[:limit]
    for at, issue in issues:
        lines.append(f"  {err.source}:{at[0]}:{at[1]}: {issue}" if at else f"  {issue}")
    if len(issues) < len(err.issues):
        lines.append(f"  ... and {len(err.issues) - len(issues)} more (edgegw check -c {err.source} lists them all)")
    return lines
