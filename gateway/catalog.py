"""The point table: every static fact about a point, resolved once at config load.

A sample carries only ``(index, time, value, quality, reason)``; its identifier code, device code,
unit, tags and grade are a lookup in this table.  Building it is also where cross-point checks
happen (a code minted or given twice is a config error with the location of both points).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import FrozenInstanceError, dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from gateway.core.errors import ConfigError, ConfigIssue, IdentifierError
from gateway.core.identifiers import mint, parse_handle
from gateway.core.point import Point, Quality, Sample, Value, index_int
from gateway.core.units import conversion
from pipelines.spec import AlarmSpec, PointSpec, ns

_T = TypeVar("_T")

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.core.schema import PointBase

__all__ = ["Catalog", "PointInfo", "build_catalog", "compile_spec", "decimal_divisor", "relayout", "without_rows"]


# unit, scale, offset, min, max, data grade, tags, stage spec, class, data domain
_Profile = tuple[str, float, float, float | None, float | None, str, tuple[tuple[str, str], ...], PointSpec, str, str]
_DEFAULT_SPEC = PointSpec()


class PointInfo:
    """One point's static facts.  Frozen, compared and hashed by value, like a dataclass.

    What identifies the point (index, key, code, device, names) is its own; the facts that many
    points share (unit, scaling, limits, grade, tags, stage spec, class, domain) are one ``profile``
    tuple, stored once per distinct profile by :func:`build_catalog`: 96 bytes a point instead of
    168 (#17, memory per configured point)."""

    __slots__ = ("_code", "_profile", "description", "device", "device_code", "display_name", "index", "key")

    index: int
    key: str  # "<device>.<point>", unique per gateway
    _code: str  # the code, or the _Stem that makes it with the key (minted codes: not stored per point)
    device: str
    device_code: str
    display_name: str  # not in batches: in the retained catalog message (codec.catalog_message)
    description: str
    _profile: _Profile

    def __init__(
        self, index: int, key: str, code: str, device: str, device_code: str, unit: str, scale: float,
        offset: float, min: float | None, max: float | None, data_grade: str,
        tags: tuple[tuple[str, str], ...], spec: PointSpec = _DEFAULT_SPEC, point_class: str = "",
        data_domain: str = "production", display_name: str = "", description: str = "",
    ) -> None:
        self._set(index, key, code, device, device_code, display_name, description,
                  (unit, scale, offset, min, max, data_grade, tags, spec, point_class, data_domain))

    def _set(self, index: int, key: str, code: str, device: str, device_code: str, display_name: str,
             description: str, profile: _Profile) -> None:
        put = object.__setattr__
        put(self, "index", index)
        put(self, "key", key)
        put(self, "_code", code)
        put(self, "device", device)
        put(self, "device_code", device_code)
        put(self, "display_name", display_name)
        put(self, "description", description)
        put(self, "_profile", profile)

    @classmethod
    def _of(cls, index: int, key: str, code: str, device: str, device_code: str, display_name: str,
            description: str, profile: _Profile) -> PointInfo:
        """With a profile tuple the caller shares between equal points."""
        info = cls.__new__(cls)
        info._set(index, key, code, device, device_code, display_name, description, profile)
        return info

    def with_index(self, index: int) -> PointInfo:
        """The same point at another index (a reload's re-layout), sharing its profile."""
        return PointInfo._of(index_int(index), self.key, self._code, self.device, self.device_code, self.display_name,
                             self.description, self._profile)

    @property
    def code(self) -> str:
        """The point's identifier code.  A minted one is ``<prefix>/DEV.<site>.<key>``: made from the
        catalog's shared stem on use (status page, catalog message, registry), not kept per point."""
        c = self._code
        return c + self.key if c.__class__ is _Stem else c

    @property
    def unit(self) -> str:
        return self._profile[0]

    @property
    def scale(self) -> float:
        return self._profile[1]

    @property
    def offset(self) -> float:
        return self._profile[2]

    @property
    def min(self) -> float | None:
        return self._profile[3]

    @property
    def max(self) -> float | None:
        return self._profile[4]

    @property
    def data_grade(self) -> str:
        return self._profile[5]

    @property
    def tags(self) -> tuple[tuple[str, str], ...]:
        return self._profile[6]

    @property
    def spec(self) -> PointSpec:
        return self._profile[7]

    @property
    def point_class(self) -> str:
        return self._profile[8]

    @property
    def data_domain(self) -> str:
        return self._profile[9]

    def _astuple(self) -> tuple[object, ...]:
        return (self.index, self.key, self.code, self.device, self.device_code, *self._profile, self.display_name,
                self.description)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, PointInfo)
        return self._astuple() == other._astuple()

    def __hash__(self) -> int:
        return hash(self._astuple())

    def __repr__(self) -> str:
        return (f"PointInfo(index={self.index!r}, key={self.key!r}, code={self.code!r}, device={self.device!r}, "
                f"unit={self.unit!r}, data_grade={self.data_grade!r}, tags={self.tags!r})")

    def __reduce__(self) -> tuple[object, ...]:
        # the stored code (a minted one's shared stem), not the code made on use
        return (PointInfo._of, (self.index, self.key, self._code, self.device, self.device_code, self.display_name,
                                self.description, self._profile))


class _Stem(str):
    """What minted codes share: ``<prefix>/DEV.<site>.``; a point's code is the stem and its key."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Catalog:
    gateway_id: str
    site: str
    points: tuple[PointInfo, ...]
    by_device: dict[str, range] = field(default_factory=dict)
    # names in any language (config display_name / description): status page, CLI and the
    # retained catalog message, from which the ingest adds them as InfluxDB tags
    site_display_name: str = ""
    site_description: str = ""
    gateway_display_name: str = ""
    device_names: dict[str, tuple[str, str]] = field(default_factory=dict)  # device -> (display name, description)

    @property
    def specs(self) -> tuple[PointSpec, ...]:
        return tuple(p.spec for p in self.points)

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled by columns (a list per field), rebuilt point by point (:mod:`gateway.prebuild` hands
        a table from the process that parsed the config to the gateway's).  Pickled point by point,
        each point's arguments stay alive in the unpickler's memo until the end, between the points
        that stay: about 100 bytes a point of holes the allocator keeps (#17)."""
        pts = self.points
        columns = (
            [p.index for p in pts], [p.key for p in pts], [p._code for p in pts], [p.device for p in pts],
            [p.device_code for p in pts], [p.display_name for p in pts], [p.description for p in pts],
            [p._profile for p in pts],
        )
        return (_catalog_of, (self.gateway_id, self.site, columns, self.by_device, self.site_display_name,
                              self.site_description, self.gateway_display_name, self.device_names))


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

    @property
    def live_points(self) -> list[PointInfo]:
        """Every device's points in config order, without the unused slots a reload may leave
        (:func:`relayout`)."""
        return [self.points[i] for r in self.by_device.values() for i in r]

    def bad_samples(self, device: str, ts_ns: int, reason: str) -> list[Sample]:
        """Every point of ``device`` as quality bad: what a dead device reports."""
        none: Value | None = None
        return [(i, ts_ns, none, Quality.BAD, reason) for i in self.by_device[device]]


def _catalog_of(gateway_id: str, site: str, columns: tuple[list[Any], ...], by_device: dict[str, range],
                site_display_name: str, site_description: str, gateway_display_name: str,
                device_names: dict[str, tuple[str, str]]) -> Catalog:
    indices, *rest = columns
    points = tuple(map(PointInfo._of, map(index_int, indices), *rest))
    return Catalog(gateway_id, site, points, by_device, site_display_name, site_description, gateway_display_name,
                   device_names)


def build_catalog(cfg: Config) -> Catalog:
    """Resolve codes (given or minted) and tags for every point; raise located errors.

    Builds a new table at every call: take ``cfg.catalog()`` for the one a config keeps (built once,
    when the config was parsed)."""
    return _build_catalog(cfg)


def relayout(old: Catalog, new: Catalog, keep: Collection[str]) -> Catalog:
    """The point table after a config reload: the devices in ``keep`` (config unchanged) keep their
    index ranges, so their running drivers, the samples already on their way and the pipeline's state
    stay valid; every other device of ``new`` takes the first free range that fits (the ranges of
    removed and changed devices are reused), else goes to the end.  A slot no device uses is a
    placeholder no sample refers to.  A restart builds the compact table again."""
    slots: list[PointInfo | None] = [None] * len(old.points)
    ranges: dict[str, range] = {}
    for name in keep:
        ranges[name] = r = old.by_device[name]
        slots[r.start:r.stop] = old.points[r.start:r.stop]
    for name, r in new.by_device.items():
        if name in keep:
            continue
        start = _first_fit(slots, len(r))
        if start + len(r) > len(slots):
            slots.extend([None] * (start + len(r) - len(slots)))
        for k, i in enumerate(r):
            slots[start + k] = new.points[i].with_index(start + k)
        ranges[name] = range(start, start + len(r))
    while slots and slots[-1] is None:
        slots.pop()
    points = tuple(p if p is not None else _unused(i) for i, p in enumerate(slots))
    return replace(new, points=points, by_device={name: ranges[name] for name in new.by_device})


def without_rows(cat: Catalog, devices: Collection[str]) -> Catalog:
    """The table without the rows of ``devices`` (their ranges empty, their order kept): what a config
    reload hands over from the process that read the new config when those devices keep the rows they
    run with (:func:`relayout` takes them from the running table).  Only :func:`relayout` reads it."""
    points: list[PointInfo] = []
    by_device: dict[str, range] = {}
    for name, r in cat.by_device.items():
        if name in devices:
            by_device[name] = range(0)
            continue
        by_device[name] = range(len(points), len(points) + len(r))
        points.extend(cat.points[i] for i in r)
    return replace(cat, points=tuple(points), by_device=by_device)


def _first_fit(slots: list[PointInfo | None], n: int) -> int:
    """The start of the first run of ``n`` free slots (possibly running past the end)."""
    run = 0
    for i, p in enumerate(slots):
        run = run + 1 if p is None else 0
        if run == n:
            return i - n + 1
    return len(slots) - run


def _unused(index: int) -> PointInfo:
    return PointInfo(index, "", "", "", "", "", 1.0, 0.0, None, None, "general", (), PointSpec(forward=False))


def _build_catalog(cfg: Config) -> Catalog:
    issues: list[ConfigIssue] = []
    points: list[PointInfo] = []
    by_device: dict[str, range] = {}
    device_names: dict[str, tuple[str, str]] = {}
    seen: dict[str, str] = {}  # equality key of a code -> location of its first use
    gw = cfg.gateway
    prefix = gw.enterprise_prefix if gw else None
    base_tags = dict(gw.tags) if gw else {}
    if gw:
        base_tags["site"] = gw.site

    def forward(grade: str) -> bool:
        return cfg.data_policy.for_grade(grade).value != "keep_on_site"

    upper_prefix = parse_handle(prefix + "/x").key[:-2] if prefix else ""  # the key's form of the prefix
    stem = _Stem(f"{prefix}/{'.'.join(k for k in ('DEV', gw.site if gw else '') if k)}.")

    def claim(code: str, loc: str, minted: bool = False) -> None:
        # a code minted from the prefix was validated by mint(): its equality key needs no parse
        key = upper_prefix + code[len(prefix):] if minted and prefix else parse_handle(code).key
        if key in seen:
            issues.append(ConfigIssue(loc, f"identifier {code!r} is already used by {seen[key]}"))
        else:
            seen[key] = loc

    # equal tag sets and stage specs are stored once: a plant repeats them across thousands of
    # points, and the table stays in memory for the gateway's lifetime
    shared: dict[object, Any] = {}

    def share(x: _T) -> _T:
        return cast(_T, shared.setdefault(x, x))

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
            key = f"{dev.name}.{pt.name}"
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
                claim(code, f"{ploc}.code", minted=True)
                if code == stem + key:
                    code = stem  # the same text, made on use (84 bytes a point less)
            else:
                claim(code, f"{ploc}.code")
            tags = {**base_tags, **dev.tags, **pt.tags}
            if dev.asset:
                tags["asset"] = dev.asset
            if dev.line:
                tags["line"] = dev.line
            tags["data_domain"] = pt.data_domain.value
            tags["data_category"] = pt.data_category.value
            if pt.personal_info:
                tags["personal_info"] = "true"
            if pt.point_class is not None:
                tags["class"] = pt.point_class.value
            profile: _Profile = (
                pt.unit, pt.scale, pt.offset, pt.min, pt.max, pt.data_grade.value, share(tuple(sorted(tags.items()))),
                share(compile_spec(pt, forward=forward(pt.data_grade.value))),
                pt.point_class.value if pt.point_class else "", pt.data_domain.value,
            )
            points.append(
                PointInfo._of(
                    len(points),
                    key,
                    code,
                    dev.name,
                    dev_code or "",
                    pt.display_name or pt.tags.get("display_name") or pt.tags.get("name_zh", ""),
                    pt.description,
                    share(profile),
                )
            )
        by_device[dev.name] = range(start, len(points))
        dev_name = dev.display_name or dev.tags.get("display_name") or dev.tags.get("name_zh", "")
        if dev_name or dev.description:
            device_names[dev.name] = (dev_name, dev.description)
    if issues:
        raise ConfigError(issues)
    return Catalog(
        gw.id if gw else "", gw.site if gw else "", tuple(points), by_device,
        site_display_name=gw.site_display_name if gw else "", site_description=gw.site_description if gw else "",
        gateway_display_name=gw.display_name if gw else "", device_names=device_names,
    )


def _mint(prefix: str, issues: list[ConfigIssue], loc: str, *keys: str) -> str | None:
    try:
        return mint(prefix, *[k for k in keys if k])
    except IdentifierError as err:
        issues.append(ConfigIssue(loc, f"cannot mint an identifier: {err}"))
        return None


def compile_spec(pt: PointBase, *, forward: bool = True) -> PointSpec:
    """Everything the stages need about one point, as plain numbers (validated by the config model)."""
    scale, offset, divisor = pt.scale, pt.offset, decimal_divisor(pt.scale)
    fault_low = fault_high = None
    if pt.scaling is not None:
        scale, offset = pt.scaling.linear()
        divisor = 0
        _, _, fault_low, fault_high = pt.scaling.limits()
    conv = conversion(pt.source_unit, pt.unit) if pt.source_unit is not None else None
    deadband = None
    max_silence = None
    if pt.deadband is not None:
        deadband = pt.deadband.absolute
        if pt.deadband.percent is not None:
            assert pt.min is not None and pt.max is not None
            deadband = (pt.max - pt.min) * pt.deadband.percent / 100
        max_silence = ns(pt.deadband.max_silence_s)
    alarm = None
    if pt.alarm is not None:
        a = pt.alarm
        restore = a.restore
        if restore is None and a.power_off is not None:
            restore = a.high if a.high is not None else a.power_off
        alarm = AlarmSpec(
            high=a.high, power_off=a.power_off, restore=restore, low=a.low, hysteresis=a.hysteresis, state=a.state
        )
        if alarm == AlarmSpec(hysteresis=a.hysteresis):
            alarm = None  # nothing to watch
    return PointSpec(
        scale=scale,
        divisor=divisor,
        offset=offset,
        raw_fault_low=fault_low,
        raw_fault_high=fault_high,
        conv_factor=conv.factor if conv else 1.0,
        conv_offset=conv.offset if conv else 0.0,
        min=pt.min,
        max=pt.max,
        spike_delta=pt.spike_delta,
        stuck_after_ns=ns(pt.stuck_after_s),
        deadband=deadband,
        max_silence_ns=max_silence,
        alarm=alarm,
        forward=forward,
    )


def decimal_divisor(scale: float) -> int:
    """100 for a scale of 0.01; 0 when the scale is not the inverse of an integer.

    Dividing by 100 gives the correctly rounded decimal (2090 -> 20.9, where 2090 * 0.01 is
    20.900000000000002).
    """
    if scale == 0 or abs(scale) >= 1:
        return 0
    inv = 1 / scale
    nearest = round(inv)
    return int(nearest) if abs(inv - nearest) < 1e-9 * abs(inv) else 0
