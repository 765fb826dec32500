"""The point table: every static fact about a point, resolved once at config load.

A sample carries only ``(index, time, value, quality, reason)``; its identifier code, device code,
unit, tags and grade are a lookup in this table.  Building it is also where cross-point checks
happen (a code minted or given twice is a config error with the location of both points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.errors import ConfigError, ConfigIssue, IdentifierError
from gateway.point import Point, Quality, Sample, Value
from pipelines.identifiers import mint, parse_handle

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["Catalog", "PointInfo", "build_catalog"]


@dataclass(frozen=True, slots=True)
class PointInfo:
    index: int
    key: str  # "<device>.<point>", unique per gateway
    code: str
    device: str
    device_code: str
    unit: str
    scale: float
    offset: float
    min: float | None
    max: float | None
    data_grade: str
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Catalog:
    gateway_id: str
    site: str
    points: tuple[PointInfo, ...]
    by_device: dict[str, range] = field(default_factory=dict)

    def point(self, sample: Sample) -> Point:
        """The self-describing form of a sample (tests, demo, diagnostics; not the hot path)."""
        idx, ts, value, quality, reason = sample
        info = self.points[idx]
        return Point(
            key=info.key,
            code=info.code,
            ts_ns=ts,
            value=value,
            quality=Quality(quality),
            reason=reason,
            unit=info.unit,
            device=info.device,
            device_code=info.device_code,
            tags=info.tags,
        )

    def bad_samples(self, device: str, ts_ns: int, reason: str) -> list[Sample]:
        """Every point of ``device`` as quality bad: what a dead device reports."""
        none: Value | None = None
        return [(i, ts_ns, none, Quality.BAD, reason) for i in self.by_device[device]]


def build_catalog(cfg: Config) -> Catalog:
    """Resolve codes (given or minted) and tags for every point; raise located errors."""
    issues: list[ConfigIssue] = []
    points: list[PointInfo] = []
    by_device: dict[str, range] = {}
    seen: dict[str, str] = {}  # equality key of a code -> location of its first use
    gw = cfg.gateway
    prefix = gw.enterprise_prefix if gw else None
    base_tags = dict(gw.tags) if gw else {}
    if gw:
        base_tags["site"] = gw.site

    def claim(code: str, loc: str) -> None:
        key = parse_handle(code).key
        if key in seen:
            issues.append(ConfigIssue(loc, f"identifier {code!r} is already used by {seen[key]}"))
        else:
            seen[key] = loc

    if gw and gw.code:
        claim(gw.code, "gateway.code")
    for d, dev in enumerate(cfg.devices):
        dloc = f"devices[{d}]"
        dev_code = dev.code
        if dev_code is None and prefix:
            dev_code = _mint(prefix, issues, f"{dloc}.name", "DEV", gw.site if gw else "", dev.name)
        if dev.code:
            claim(dev.code, f"{dloc}.code")
        start = len(points)
        for p, pt in enumerate(dev.points):
            ploc = f"{dloc}.points[{p}]"
            code = pt.code
            if code is None:
                if not prefix:
                    issues.append(
                        ConfigIssue(f"{ploc}.code", "missing: give a code or set gateway.enterprise_prefix")
                    )
                    continue
                code = _mint(prefix, issues, f"{ploc}.name", "DEV", gw.site if gw else "", dev.name, pt.name)
                if code is None:
                    continue
            claim(code, f"{ploc}.code")
            tags = {**base_tags, **dev.tags, **pt.tags}
            if dev.asset:
                tags["asset"] = dev.asset
            if dev.line:
                tags["line"] = dev.line
            points.append(
                PointInfo(
                    index=len(points),
                    key=f"{dev.name}.{pt.name}",
                    code=code,
                    device=dev.name,
                    device_code=dev_code or "",
                    unit=pt.unit,
                    scale=pt.scale,
                    offset=pt.offset,
                    min=pt.min,
                    max=pt.max,
                    data_grade=pt.data_grade.value,
                    tags=tuple(sorted(tags.items())),
                )
            )
        by_device[dev.name] = range(start, len(points))
    if issues:
        raise ConfigError(issues)
    return Catalog(gw.id if gw else "", gw.site if gw else "", tuple(points), by_device)


def _mint(prefix: str, issues: list[ConfigIssue], loc: str, *keys: str) -> str | None:
    try:
        return mint(prefix, *[k for k in keys if k])
    except IdentifierError as err:
        issues.append(ConfigIssue(loc, f"cannot mint an identifier: {err}"))
        return None
