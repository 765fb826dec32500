"""Threshold alarms with hysteresis: a side output of the pipeline, never a write to a device.

Each point with thresholds is in one of the levels ``normal``, ``low``, ``high``, ``power_off``.
A sample moves it (``>=`` reaches ``high``/``power_off``, ``<`` goes under ``low``); it leaves a
level only ``hysteresis`` back across the threshold, and ``power_off`` only below ``restore``.  Every
change of level is one :class:`AlarmEvent`.  Bad samples do not move the level (a dead sensor is
reported by its quality, not by an alarm clearing).  Switch points (``state``) raise ``state``
while the value equals the configured state.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.core.point import Quality, SampleBatch
from pipelines.spec import AlarmSpec, PointSpec

__all__ = ["AlarmEvent", "AlarmStage", "Level", "next_level"]


class Level(enum.IntEnum):
    NORMAL = 0
    LOW = 1
    STATE = 2
    HIGH = 3
    POWER_OFF = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    index: int  # point index in the catalog
    ts_ns: int  # source time of the sample that changed the level
    level: Level
    previous: Level
    value: float | bool
    threshold: float | bool | None  # the threshold of the new level (of the old one when cleared)

    @property
    def active(self) -> bool:
        return self.level is not Level.NORMAL


def next_level(a: AlarmSpec, cur: Level, v: float | bool) -> Level:
    """The level after seeing ``v`` in level ``cur``."""
    if a.state is not None:
        return Level.STATE if bool(v) == a.state else Level.NORMAL
    h = a.hysteresis
    if a.power_off is not None:
        if v >= a.power_off:
            return Level.POWER_OFF
        if cur is Level.POWER_OFF and v >= (a.restore if a.restore is not None else a.power_off):
            return Level.POWER_OFF
    if a.high is not None:
        if v >= a.high:
            return Level.HIGH
        if cur >= Level.HIGH and v >= a.high - h:
            return Level.HIGH
    if a.low is not None:
        if v < a.low:
            return Level.LOW
        if cur is Level.LOW and v < a.low + h:
            return Level.LOW
    return Level.NORMAL


def _threshold(a: AlarmSpec, level: Level) -> float | bool | None:
    return {
        Level.HIGH: a.high,
        Level.POWER_OFF: a.power_off,
        Level.LOW: a.low,
        Level.STATE: a.state,
        Level.NORMAL: None,
    }[level]


class AlarmStage:
    """Watches a batch and returns the alarm events it caused; the batch itself is not changed."""

    def __init__(self, specs: Sequence[PointSpec]) -> None:
        self._alarm: list[AlarmSpec | None] = [s.alarm for s in specs]
        self.active = any(a is not None for a in self._alarm)
        if not self.active:
            self._alarm = []  # no per-point state where no point has an alarm (#17)
        self._level: list[Level] = [Level.NORMAL] * len(self._alarm)
        # the band in which a point at level normal stays normal: [low, first upper threshold)
        inf = float("inf")
        self._quiet: list[tuple[float, float] | None] = [
            None if a is None or a.state is not None else (
                a.low if a.low is not None else -inf,
                min((x for x in (a.high, a.power_off) if x is not None), default=inf),
            )
            for a in self._alarm
        ]

    def carry(self, old: AlarmStage, indices: Iterable[int]) -> None:
        """A config reload: the points at ``indices`` (unchanged, same index) keep their alarm level, so an
        alarm in force is neither raised again nor cleared by the reload."""
        if not (self.active and old.active):
            return
        for i in indices:
            self._level[i] = old._level[i]

    def level(self, index: int) -> Level:
        return self._level[index] if self.active else Level.NORMAL

    def __call__(self, batch: SampleBatch) -> list[AlarmEvent]:
        events: list[AlarmEvent] = []
        if not self.active:
            return events
        alarms = self._alarm
        levels = self._level
        quiet = self._quiet
        normal = Level.NORMAL
        for idx, ts, value, quality, _reason in batch:
            a = alarms[idx]
            if a is None or quality is Quality.BAD or value is None or isinstance(value, str):
                continue
            cur = levels[idx]
            q = quiet[idx]
            if cur is normal and q is not None and q[0] <= value < q[1]:
                continue  # the common case: nothing near a threshold
            new = next_level(a, cur, value)
            if new is not cur:
                levels[idx] = new
                th = _threshold(a, new if new is not Level.NORMAL else cur)
                events.append(AlarmEvent(idx, ts, new, cur, value, th))
        return events
