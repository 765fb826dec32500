"""What a config reload changes: which devices restart, start and stop, and what waits for a restart.

Pure: two validated configs in, a :class:`ReloadPlan` out (the running gateway applies it, see
:meth:`gateway.app.Gateway.reload`).  Devices are matched by name; a device whose config is equal is
left alone (its task keeps polling, its point indices stay).  Equal means an equal
:func:`device_digest`: a running gateway keeps the digest of each device, not its parsed models
(:func:`running_config`), which would cost about a kilobyte per configured point for its lifetime
(issue #17).  The sections the running process was
built from (identity, buffer, uplink, status endpoint, registry, watch, data policy) are not applied
live: the plan names the keys that differ and keeps the old values.  Keys are named, values never
(a diff summary must not carry a password or a token).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config, DeviceConfig
from gateway.core.errors import ConfigError

__all__ = [
    "RESTART_ONLY", "ReloadPlan", "ReloadStatus", "config_error_lines", "device_digest", "device_digests",
    "plan_reload", "running_config",
]

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
    digests: Mapping[str, bytes] = field(default_factory=dict)  # device -> device_digest, of ``effective``

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


def device_digest(dev: DeviceConfig) -> bytes:
    """A digest of one device's whole config (type, settings, every point): equal for equal configs,
    so a reload compares digests instead of keeping the parsed models.  The JSON form depends on the
    values only (not on which objects are shared) and costs about 3 us a point.  Values the models
    compare equal but hold as different types (an int and a float in a union field) read as
    different: the device restarts, which is safe.  A secret would read masked: no device model has
    a secret field (credentials are ``*_env`` / ``*_file`` names), which tests/test_memory_release.py
    checks."""
    text = dev.__pydantic_serializer__.to_json(dev)
    return hashlib.blake2b(type(dev).__name__.encode() + b"\x00" + text, digest_size=16).digest()


def device_digests(cfg: Config) -> dict[str, bytes]:
    """Every device's :func:`device_digest`, by name (in a worker thread for a large config)."""
    return {d.name: device_digest(d) for d in cfg.devices}


def running_config(
    cfg: Config, digests: Mapping[str, bytes] | None = None, settings: Mapping[str, object] | None = None,
) -> tuple[Config, dict[str, bytes]]:
    """What a running gateway keeps of the config it was started (or last reloaded) with: its sections,
    and its devices without their points (names, types, settings: the status page shows them), plus
    each device's :func:`device_digest` for the next reload.  The points themselves are in the point
    table; the parsed point models can go (about 1.2 KB per point).  The copy has no cached
    point table of its own.  ``digests``: those of ``cfg``'s devices where known (a reload plan's);
    ``settings``: device name -> a copy without points already made (a driver's), taken instead of
    another one where it is that device's (a settings model is ~2.6 KB: a lot for a meter of 10 points)."""
    known = digests or {}
    digests = {d.name: known.get(d.name) or device_digest(d) for d in cfg.devices}
    made = settings or {}
    devices = [_slim(d, made.get(d.name)) for d in cfg.devices]
    slim = cfg.model_copy(update={"devices": devices})
    slim._catalog = None
    return slim, digests


def _slim(dev: DeviceConfig, made: object) -> DeviceConfig:
    if type(made) is type(dev):
        assert isinstance(made, type(dev))
        if not made.points and made == dev.model_copy(update={"points": made.points}):
            return made
    return dev.model_copy(update={"points": []})


def plan_reload(old: Config, new: Config, old_digests: Mapping[str, bytes] | None = None,
                new_digests: Mapping[str, bytes] | None = None) -> ReloadPlan:
    """``old_digests``: the :func:`device_digest` of each device of ``old`` (a :func:`running_config`,
    whose devices have no points any more); ``new_digests``: those of ``new``'s devices (the
    gateway computes them off the event loop); each computed here when not given."""
    if old_digests is None:
        old_digests = device_digests(old)
    not_applied: list[str] = []
    keep_sections: dict[str, Any] = {}
    for section in RESTART_ONLY:
        before, after = getattr(old, section), getattr(new, section)
        if before != after:
            keys = _differing_keys(before, after)
            not_applied += [f"[{section}] {k}" for k in keys] or [f"[{section}]"]
            keep_sections[section] = before
    effective = new.model_copy(update=keep_sections) if keep_sections else new
    # the restart-only sections kept from ``old`` are not in a device's digest: ``new``'s digests hold
    digests = dict(new_digests) if new_digests is not None else device_digests(effective)
    same = frozenset(n for n, h in digests.items() if old_digests.get(n) == h)
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
        digests=digests,
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
