"""Static per-point facts the stages need, resolved once at config load.

The stages never look at the config: :func:`gateway.catalog.build_catalog` compiles each point's
settings (scaling, unit conversion, range, plausibility checks, deadband, alarm thresholds,
forwarding) into one :class:`PointSpec`, and a stage indexes a tuple of them by point index.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AlarmSpec", "PointSpec", "ns"]


def ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e9)


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    """Thresholds in engineering units (after scaling and unit conversion).

    ``high``/``power_off`` raise when the value reaches them (``>=``); ``low`` raises below it
    (``<``).  An alarm clears ``hysteresis`` away from its threshold; a power-off clears below
    ``restore``.  ``state`` is for switch points: the alarm is raised while the value equals it.
    """

    high: float | None = None
    power_off: float | None = None
    restore: float | None = None
    low: float | None = None
    hysteresis: float = 0.0
    state: bool | None = None


@dataclass(frozen=True, slots=True)
class PointSpec:
    # linear map raw -> engineering: value / divisor + offset when divisor, else value * scale + offset
    scale: float = 1.0
    divisor: int = 0
    offset: float = 0.0
    # raw signal outside these limits is a sensor / wiring fault (e.g. < 3.6 mA on a 4-20 mA loop)
    raw_fault_low: float | None = None
    raw_fault_high: float | None = None
    # unit conversion after scaling: v * conv_factor + conv_offset
    conv_factor: float = 1.0
    conv_offset: float = 0.0
    # valid range in engineering units: outside -> quality bad, reason out_of_range
    min: float | None = None
    max: float | None = None
    spike_delta: float | None = None
    stuck_after_ns: int | None = None
    deadband: float | None = None  # absolute, in engineering units (a percent deadband is resolved to this)
    max_silence_ns: int | None = None
    alarm: AlarmSpec | None = None
    forward: bool = True  # False: the grade's policy keeps this point on site

    @property
    def identity_scale(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0 and not self.divisor

    @property
    def identity_conversion(self) -> bool:
        return self.conv_factor == 1.0 and self.conv_offset == 0.0
