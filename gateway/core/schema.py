"""Shared pieces of the typed config: the strict base model and the fields every point has.

Driver configs (``drivers/<protocol>/config.py``) build on these; the root model in
:mod:`gateway.config` unions them.  Validation here never does I/O.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Self

from gateway.core.errors import IdentifierError
from gateway.core.identifiers import parse_handle
from gateway.core.lineproto import config_tag_issue, tag_value_issue
from gateway.core.mine import CH4_LOCATIONS, PointClass, apply_preset
from gateway.core.models import BaseModel, ConfigDict, Field, field_validator, model_validator
from gateway.core.units import UnitError, conversion

__all__ = [
    "KEY_PATTERN",
    "AlarmConfig",
    "DataCategory",
    "DataDomain",
    "DataGrade",
    "DeadbandConfig",
    "DeviceBase",
    "Key",
    "PointBase",
    "Scaling",
    "Signal",
    "StrictModel",
    "check_code",
    "check_name_text",
    "error_message",
    "key_message",
]

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Key = Annotated[
    str,
    Field(pattern=KEY_PATTERN, description="letters, digits, '_', '.', '-'; used in topics and minted codes"),
]
_KEY_RE = re.compile(KEY_PATTERN)


def check_tags(v: dict[str, str]) -> dict[str, str]:
    """Configured tags: names the ingest can store and that do not replace a built-in tag or field."""
    for k, value in v.items():
        if not _KEY_RE.match(k):
            raise ValueError(f"tag name {k!r} must be letters, digits, '_', '.', '-'")
        issue = config_tag_issue(k, value)
        if issue:
            raise ValueError(issue)
    return v


def key_message(value: object) -> str:
    """Why a value is not a key, and, for a name in another script, where that name belongs."""
    msg = f"{value!r} is not a valid key: use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
    if isinstance(value, str) and not value.isascii():
        msg += (" (keys go into MQTT topics, InfluxDB tags and identifier codes, which stay ASCII;"
                " put the name people use in display_name, e.g. display_name = " + repr(value) + ")")
    return msg


def error_message(e: Any, root: type[BaseModel], what: str = "key") -> str:
    """One pydantic error as a sentence for a person: an unknown key with the key it probably meant
    (``what`` names it: ``key``, ``column``), a key that is not ASCII with where the name goes."""
    if e["type"] == "extra_forbidden":
        from gateway.core.config_source import did_you_mean

        return f"unknown {what}" + did_you_mean(root, tuple(e["loc"]))
    if e["type"] == "string_pattern_mismatch" and e.get("ctx", {}).get("pattern") == KEY_PATTERN:
        return key_message(e["input"])
    return str(e["msg"]).removeprefix("Value error, ")


def check_name_text(v: str) -> str:
    """A display name or description: any language, but it becomes an InfluxDB tag at the ingest,
    so it must be a value every store can hold."""
    issue = tag_value_issue(v)
    if issue:
        raise ValueError(issue.replace("a tag value", "a name or description") + " (it is stored as a tag)")
    return v


def check_poll_groups(poll_groups: dict[str, int], groups: list[str | None]) -> None:
    """A device's ``poll_groups`` (name -> interval ms) against its points' ``group`` keys, in order;
    raises ValueError naming the first problem (Modbus and S7 devices share this rule)."""
    for name, ms in poll_groups.items():
        if not 10 <= ms <= 86_400_000:
            raise ValueError(f"poll_groups.{name} = {ms}: a poll interval must be 10..86400000 ms")
    for i, group in enumerate(groups):
        if group is not None and group not in poll_groups:
            known = ", ".join(sorted(poll_groups)) or "none defined"
            raise ValueError(f"points[{i}].group = {group!r} is not in poll_groups ({known})")


def group_intervals_ms(poll_groups: dict[str, int], groups: list[str | None], poll_interval_ms: int
                       ) -> dict[str, int]:
    """Every group that has points -> its interval; "" is the device's own poll_interval_ms."""
    used = {g or "" for g in groups}
    return {g: (poll_groups[g] if g else poll_interval_ms) for g in sorted(used)}


class StrictModel(BaseModel):
    """Unknown keys are errors; models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False, defer_build=True)


class DataGrade(enum.StrEnum):
    """GB/T 43697-2024 data grades."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"


class DataDomain(enum.StrEnum):
    """Data domains of the MIIT industrial data classification (研发/生产/运维/管理/外部数据域)."""

    RESEARCH = "research"
    PRODUCTION = "production"
    OPERATIONS = "operations"
    MANAGEMENT = "management"
    EXTERNAL = "external"


class DataCategory(enum.StrEnum):
    """Categories of the production data domain (MIIT guide: 控制信息 / 工况状态 / 工艺参数 / 系统日志)."""

    CONTROL = "control"  # setpoints, commands
    CONDITION = "condition"  # measured operating state: the default for sensor telemetry
    PROCESS = "process"  # recipe and process parameters
    SYSTEM_LOG = "system_log"  # gateway and device events


class Signal(enum.StrEnum):
    """Analogue signal conventions with their raw range and fault limits."""

    MA_4_20 = "4-20mA"
    MA_0_20 = "0-20mA"
    V_0_10 = "0-10V"


# raw low, raw high, fault below, fault above (NAMUR NE 43 for 4-20 mA: < 3.6 mA or > 21 mA is a fault)
_SIGNALS: dict[Signal, tuple[float, float, float | None, float | None]] = {
    Signal.MA_4_20: (4.0, 20.0, 3.6, 21.0),
    Signal.MA_0_20: (0.0, 20.0, None, 21.0),
    Signal.V_0_10: (0.0, 10.0, None, None),
}


def _finite_or_none(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class Scaling(StrictModel):
    """Linear scaling of a raw signal (4-20 mA, or raw ADC counts) to engineering units."""

    signal: Signal | None = Field(default=None, description="4-20mA, 0-20mA or 0-10V: sets raw_low/raw_high")
    raw_low: float | None = None
    raw_high: float | None = None
    eng_low: float
    eng_high: float
    fault_below: float | None = Field(default=None, description="raw value below this is a sensor/wiring fault")
    fault_above: float | None = Field(default=None, description="raw value above this is a sensor/wiring fault")

    _finite = field_validator("raw_low", "raw_high", "eng_low", "eng_high", "fault_below", "fault_above")(
        _finite_or_none
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.signal is not None and (self.raw_low is not None or self.raw_high is not None):
            raise ValueError("give either signal or raw_low/raw_high, not both")
        if self.signal is None and (self.raw_low is None or self.raw_high is None):
            raise ValueError("needs signal (e.g. '4-20mA') or both raw_low and raw_high")
        lo, hi, _, _ = self.limits()
        if lo == hi:
            raise ValueError(f"raw_low and raw_high are both {lo}")
        if self.eng_low == self.eng_high:
            raise ValueError(f"eng_low and eng_high are both {self.eng_low}")
        return self

    def limits(self) -> tuple[float, float, float | None, float | None]:
        """(raw low, raw high, fault below, fault above), signal defaults filled in."""
        if self.signal is not None:
            lo, hi, fb, fa = _SIGNALS[self.signal]
        else:
            assert self.raw_low is not None and self.raw_high is not None
            lo, hi, fb, fa = self.raw_low, self.raw_high, None, None
        return (lo, hi, self.fault_below if self.fault_below is not None else fb,
                self.fault_above if self.fault_above is not None else fa)

    def linear(self) -> tuple[float, float]:
        """(scale, offset) with eng = raw * scale + offset."""
        lo, hi, _, _ = self.limits()
        scale = (self.eng_high - self.eng_low) / (hi - lo)
        return scale, self.eng_low - lo * scale


class AlarmConfig(StrictModel):
    """Alarm thresholds in engineering units; a class preset fills them in (see docs/normalisation.md)."""

    high: float | None = Field(default=None, description="alarm when value >= high")
    power_off: float | None = Field(default=None, description="power-off level when value >= power_off")
    restore: float | None = Field(default=None, description="power-off clears when value < restore")
    low: float | None = Field(default=None, description="alarm when value < low (e.g. O2, wind speed)")
    hysteresis: float = Field(default=0.0, ge=0, description="an alarm clears this far back across its threshold")
    state: bool | None = Field(default=None, description="switch points: alarm while the value equals this")
    location: str | None = Field(default=None, description=f"CH4 sensor location: {', '.join(CH4_LOCATIONS)}")

    _finite = field_validator("high", "power_off", "restore", "low", "hysteresis")(_finite_or_none)

    @field_validator("location")
    @classmethod
    def _location(cls, v: str | None) -> str | None:
        if v is not None and v not in CH4_LOCATIONS:
            raise ValueError(f"unknown CH4 sensor location {v!r}; known: {', '.join(CH4_LOCATIONS)}")
        return v

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.state is not None and any(x is not None for x in (self.high, self.power_off, self.low)):
            raise ValueError("a switch alarm (state) has no numeric thresholds")
        if self.high is not None and self.power_off is not None and self.power_off < self.high:
            raise ValueError(f"power_off ({self.power_off}) is below high ({self.high})")
        if self.restore is not None:
            if self.power_off is None:
                raise ValueError("restore needs power_off")
            if self.restore > self.power_off:
                raise ValueError(f"restore ({self.restore}) is above power_off ({self.power_off})")
        if self.low is not None:
            top = self.high if self.high is not None else self.power_off
            if top is not None and self.low + self.hysteresis >= top:
                raise ValueError(f"low ({self.low}) plus hysteresis ({self.hysteresis}) reaches high ({top})")
        return self

    def thresholds(self) -> list[tuple[str, float]]:
        return [(n, v) for n, v in (("high", self.high), ("power_off", self.power_off), ("restore", self.restore),
                                    ("low", self.low)) if v is not None]


class DeadbandConfig(StrictModel):
    """Report by exception: a value is sent when it moved more than the deadband, or after max_silence_s."""

    absolute: float | None = Field(default=None, ge=0, description="in engineering units")
    percent: float | None = Field(default=None, gt=0, le=100, description="of the range span (max - min)")
    max_silence_s: float = Field(default=300.0, gt=0, le=86_400, description="heartbeat: send at least this often")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.absolute is None) == (self.percent is None):
            raise ValueError("give exactly one of absolute or percent")
        return self


def check_code(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_handle(value)
    except IdentifierError as err:
        raise ValueError(str(err)) from None
    return value


class PointBase(StrictModel):
    """What every point has, whatever its protocol."""

    name: Key
    display_name: str = Field(
        default="", max_length=200,
        description="what people call it (e.g. 回风巷甲烷), any language: status page, `edgegw read` / `status`, "
        "the InfluxDB tag `display_name`",
    )
    description: str = Field(
        default="", max_length=1000,
        description="free text in any language; status page, `edgegw read` and the InfluxDB tag `description`",
    )
    code: str | None = Field(
        default=None,
        description="industrial-internet identifier code (88.<node>.<enterprise>/<suffix>); "
        "minted from gateway.enterprise_prefix + device + point name when omitted",
    )
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    min: float | None = Field(default=None, description="below this the sample is quality bad (out_of_range)")
    max: float | None = Field(default=None, description="above this the sample is quality bad (out_of_range)")
    data_grade: DataGrade = DataGrade.GENERAL
    data_domain: DataDomain = DataDomain.PRODUCTION
    data_category: DataCategory = DataCategory.CONDITION
    personal_info: bool = Field(
        default=False, description="personal information (personnel positioning, operator ids): tagged as such"
    )
    tags: dict[str, str] = Field(default_factory=dict)
    point_class: PointClass | None = Field(
        default=None, alias="class", description="coal-mine preset: default unit, range and alarm thresholds"
    )
    scaling: Scaling | None = Field(default=None, description="4-20 mA / raw-count linear scaling")
    source_unit: str | None = Field(default=None, description="unit the device reports; converted to `unit`")
    spike_delta: float | None = Field(
        default=None, gt=0, description="a jump larger than this from the last value is flagged uncertain (spike)"
    )
    stuck_after_s: float | None = Field(
        default=None, gt=0, description="a value unchanged this long is flagged uncertain (stuck)"
    )
    deadband: DeadbandConfig | None = None
    alarm: AlarmConfig | None = None

    _check_code = field_validator("code")(check_code)
    _check_names = field_validator("display_name", "description")(check_name_text)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return apply_preset(data) if isinstance(data, dict) else data

    @field_validator("scale", "offset", "min", "max")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        """NaN compares false with everything: ``min = nan`` would switch the range check off unseen."""
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    _check_tags = field_validator("tags")(check_tags)

    @model_validator(mode="after")
    def _range(self) -> Self:
        """Every contradiction of the point at once (one message, joined by '; ')."""
        problems: list[str] = []
        if self.min is not None and self.max is not None and self.min > self.max:
            problems.append(f"min ({self.min}) is greater than max ({self.max})")
        if self.scale == 0:
            problems.append("scale must not be 0")
        if self.scaling is not None and (self.scale != 1.0 or self.offset != 0.0):
            problems.append("give either scaling or scale/offset, not both")
        if self.source_unit is not None:
            try:
                conversion(self.source_unit, self.unit)
            except UnitError as err:
                problems.append(f"source_unit: {err}")
        span = None if self.min is None or self.max is None else self.max - self.min
        if self.deadband is not None:
            if self.deadband.percent is not None and not span:
                problems.append("deadband.percent needs min and max (it is a percentage of their span)")
            if self.deadband.absolute is not None and span is not None and self.deadband.absolute >= span:
                problems.append(f"deadband.absolute ({self.deadband.absolute}) is not smaller than the range span "
                                f"({span})")
        if self.alarm is not None:
            a = self.alarm
            if a.location is not None and self.point_class is not PointClass.CH4:
                problems.append("alarm.location is only for class = 'ch4'")
            for name, v in a.thresholds():
                if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                    problems.append(f"alarm.{name} ({v}) is outside the range {self.min}..{self.max}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class DeviceBase(StrictModel):
    """What every device config model has; a driver's model adds ``type: Literal["..."]`` (its device
    type in ``[[devices]]``), ``points: list[<its point model>]`` and its own settings."""

    if TYPE_CHECKING:  # declared by every driver's model (a Literal and a list of its own point model)
        type: str
        points: Sequence[PointBase]

    name: Key
    display_name: str = Field(
        default="", max_length=200,
        description="any language: status page, `edgegw read` / `status`, the InfluxDB tag `device_display_name`",
    )
    description: str = Field(
        default="", max_length=1000, description="any language: status page, the InfluxDB tag `device_description`"
    )
    code: str | None = Field(default=None, description="identifier code of the device itself")
    asset: str = ""
    line: str = ""
    poll_interval_ms: int = Field(default=1000, ge=10, le=86_400_000)
    timeout_ms: int = Field(default=1000, ge=10, le=600_000)
    backoff_max_ms: int = Field(default=30_000, ge=100, le=3_600_000)
    enabled: bool = True
    tags: dict[str, str] = Field(default_factory=dict)

    _check_code = field_validator("code")(check_code)
    _check_tags = field_validator("tags")(check_tags)
    _check_names = field_validator("display_name", "description")(check_name_text)

    @field_validator("asset", "line")
    @classmethod
    def _tag_value(cls, v: str) -> str:
        issue = tag_value_issue(v)
        if issue:
            raise ValueError(issue)
        return v
