"""Information objects -> samples (pure): routing by (CA, IOA), type checks, quality, time tags.

Quality descriptors (IEC 60870-5-101 §7.2.6.3/4) map to our three classes, the strongest first:

=========================  ===========  ======================
bit                        quality      reason
=========================  ===========  ======================
IV  invalid                bad          ``invalid``
BL  blocked                uncertain    ``blocked``
SB  substituted            uncertain    ``substituted``
NT  not topical            uncertain    ``not_topical``
OV  overflow               uncertain    ``overflow``
CY  carry (totals)         uncertain    ``counter_carry``
CA  adjusted (totals)      uncertain    ``counter_adjusted``
DPI 0 (double point)       uncertain    ``intermediate``
DPI 3 (double point)       bad          ``indeterminate``
time tag IV / impossible   uncertain    ``time_invalid`` (stamped with the receive time)
=========================  ===========  ======================

A value of another type than the point expects is bad ``type_mismatch``: a wrongly mapped IOA is
found at commissioning rather than read as a number of the wrong kind.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections import Counter
from typing import NamedTuple

from drivers.iec104.codec import (
    FLAG_BL,
    FLAG_CA,
    FLAG_CY,
    FLAG_IV,
    FLAG_NT,
    FLAG_OV,
    FLAG_SB,
    Asdu,
    Cp56,
)
from drivers.iec104.config import FAMILIES, Iec104Device, PointType, family_of
from gateway.core.point import Quality, Sample, SampleBatch

__all__ = ["MONITOR_TYPES", "Iec104Points", "Router", "points_form", "quality_of"]

MONITOR_TYPES = frozenset().union(*FAMILIES.values())
_DOUBLE = FAMILIES["double"]
_FLOATS = FAMILIES["float"]
_ORDER = ((FLAG_BL, "blocked"), (FLAG_SB, "substituted"), (FLAG_NT, "not_topical"), (FLAG_OV, "overflow"),
          (FLAG_CY, "counter_carry"), (FLAG_CA, "counter_adjusted"))


def quality_of(type_id: int, value: object, flags: int) -> tuple[Quality, str | None]:
    if flags & FLAG_IV:
        return Quality.BAD, "invalid"
    if type_id in _DOUBLE:
        if value == 3:
            return Quality.BAD, "indeterminate"
        if value == 0:
            return Quality.UNCERTAIN, "intermediate"
    for bit, reason in _ORDER:
        if flags & bit:
            return Quality.UNCERTAIN, reason
    return Quality.GOOD, None


class Iec104Points(NamedTuple):
    """What the driver keeps of a station's points: each point's (CA, IOA), with the station's common
    address applied, and its type.  Picklable, so that ``edgegw run``'s config-reading child hands over
    this instead of the point models (:func:`drivers.iec104.driver.lean_device`)."""

    addresses: list[tuple[int, int]]
    types: list[PointType]


def points_form(dev: Iec104Device) -> Iec104Points:
    return Iec104Points([dev.address(p) for p in dev.points], [p.type_id for p in dev.points])


class Router:
    """One device's points by (CA, IOA); :meth:`samples` turns a monitor-direction ASDU into samples.

    Counters say what was skipped: objects at addresses no point has (``unconfigured``), values of
    another type (``type_mismatch``)."""

    def __init__(self, dev: Iec104Device, first_index: int, form: Iec104Points | None = None) -> None:
        """``form``: the points (:func:`points_form`) when ``dev`` is the station without them."""
        self.tz: dt.tzinfo = dt.UTC if dev.time_zone == "UTC" else zoneinfo.ZoneInfo(dev.time_zone)
        form = form or points_form(dev)
        self.routes: dict[tuple[int, int], tuple[int, frozenset[int]]] = {
            address: (first_index + i, FAMILIES[family_of(t)])
            for i, (address, t) in enumerate(zip(form.addresses, form.types, strict=True))
        }
        self.counters: Counter[str] = Counter()
        # the objects of one ASDU (and bursts of ASDUs) mostly share one time tag: convert it once
        self._tag: Cp56 | None = None
        self._tag_ns = 0

    def samples(self, asdu: Asdu, now_ns: int) -> SampleBatch:
        out: SampleBatch = []
        ca, tid = asdu.ca, asdu.type_id
        routes = self.routes
        for ioa, value, flags, tag in asdu.objects:
            route = routes.get((ca, ioa))
            if route is None:
                self.counters["unconfigured"] += 1
                continue
            index, accepted = route
            if tid not in accepted:
                self.counters["type_mismatch"] += 1
                out.append((index, now_ns, None, Quality.BAD, "type_mismatch"))
                continue
            out.append(self._sample(index, tid, value, flags, tag, now_ns))
        return out

    def _sample(self, index: int, tid: int, value: object, flags: int, tag: Cp56 | None, now_ns: int) -> Sample:
        q, reason = (Quality.GOOD, None) if not flags and tid not in _DOUBLE else quality_of(tid, value, flags)
        ts = now_ns
        if tag is not None:
            try:
                if tag == self._tag:
                    ts = self._tag_ns
                else:
                    if tag.invalid:
                        raise ValueError("IV")
                    ts = tag.to_ns(self.tz)
                    self._tag, self._tag_ns = tag, ts
            except ValueError:
                self.counters["time_invalid"] += 1
                if q is Quality.GOOD:
                    q, reason = Quality.UNCERTAIN, "time_invalid"
        if q is Quality.BAD:
            return index, ts, None, q, reason
        assert isinstance(value, float | int | bool)
        if tid in _FLOATS and not math.isfinite(value):  # NaN / inf from a short float
            return index, ts, None, Quality.BAD, "not_finite"
        return index, ts, value, q, reason
