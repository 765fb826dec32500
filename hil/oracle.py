"""The oracle of a HIL campaign: the rows the store holds against what the firmware stubs produced.

Pure functions (no I/O), so that they are tested on their own and a report can be recomputed.

Rules (docs/hil.md):

- every row of an input-register poll (one timestamp per device) must carry the value
  ``expected_values(stub.reading(seq))`` of its device's stub, ``seq`` being the row of that
  timestamp; a holding-register row must equal the stub's (status, alarm threshold). A row that
  disagrees is a **duplicate**: a second, different write of that (series, time) or a re-stamped
  replay (InfluxDB keeps one row per series and time, so an identical replay is invisible and harmless).
- ``expected = accepted - dropped after acceptance (oldest, expired, quarantined, corrupt) - still pending``;
  ``lost = expected - stored`` when positive; rows beyond ``expected`` are duplicates too, but for
  as many as were dropped after acceptance (``dropped_but_delivered``: a batch whose PUBACK was lost,
  then dropped by a full buffer, arrived all the same).
- rows of quality bad carry no value from the stub (a device down, a refused read): counted as
  delivered, never compared with the stub.  Those whose reason is a Modbus exception must be exactly
  the PLCs' exception answers times the points of the refused block (``exception_rows`` against
  ``exception_rows_expected``).  Rows of quality uncertain (``clock_jump``, ...) keep their value:
  they are compared with the stub like good ones.
- time order (after clock steps): in the order of their timestamps, a device's reads step back in
  ``seq`` at most once per backward step of its gateway's wall clock (``clock_descents``).
- ``produced`` = the points of every read the PLCs answered; ``produced - (accepted - bad) - dropped_newest``
  is ``unaccounted``: reads answered while the gateway died before committing them (kill -9).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from firmware_stubs.gas_substation import GasSubstation, expected_values, point_config

__all__ = [
    "HR_POINTS", "IR_POINTS", "Judgement", "Row", "exception_points", "histogram_quantile", "judge", "points_per_read",
    "recovery_times",
]

IR_POINTS = tuple(str(p["name"]) for p in point_config() if p["table"] == "input_register")
HR_POINTS = tuple(str(p["name"]) for p in point_config() if p["table"] == "holding_register")
AFTER_ACCEPT_DROPS = ("dropped_oldest_points", "expired_points", "quarantined_points", "lost_corrupt_points")


def points_per_read(counts: Mapping[str, int]) -> int:
    """Points produced by the reads a PLC answered (function code -> count; ``ua``: an OPC UA Read of
    every point)."""
    return (counts.get("4", 0) * len(IR_POINTS) + counts.get("3", 0) * len(HR_POINTS)
            + counts.get("ua", 0) * (len(IR_POINTS) + len(HR_POINTS)))


def exception_points(counts: Mapping[str, int]) -> int:
    """Points the PLC refused with an exception answer (``x<fc>`` -> count): one bad row each."""
    return counts.get("x4", 0) * len(IR_POINTS) + counts.get("x3", 0) * len(HR_POINTS)


@dataclass(frozen=True, slots=True)
class Row:
    device: str
    point: str  # the point's name within its device (seq, ch4, ...)
    ts: int
    value: float | None
    quality: int = 0  # 0 good, 1 uncertain (value kept), 2 bad (no value from the stub)
    reason: str | None = None  # the quality's reason (InfluxDB stores it; VictoriaMetrics does not)


@dataclass
class Judgement:
    produced: int = 0
    accepted: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    dropped_counted: int = 0
    pending: int = 0
    unaccounted: int = 0
    mismatched: int = 0
    extra: int = 0
    dropped_but_delivered: int = 0
    incomplete_polls: int = 0
    quality_bad: int = 0
    uncertain: int = 0
    exception_rows: int = 0  # bad rows whose reason is a Modbus exception
    exception_rows_expected: int = 0  # the PLCs' exception answers x the points of the refused block
    clock_descents: dict[str, int] = field(default_factory=dict)  # device -> seq descents in timestamp order
    per_device: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def _same(got: float, want: float, rel: float = 0.0) -> bool:
    return got == want or abs(got - want) <= rel * abs(want) or (math.isnan(got) and math.isnan(want))


def judge(
    rows: Iterable[Row],
    stubs: Mapping[str, GasSubstation],
    plc_counts: Mapping[str, Mapping[str, int]],
    buffer_counters: Iterable[Mapping[str, Any]],
    *,
    rel: float = 0.0,
) -> Judgement:
    """``stubs``: device name -> its stub; ``plc_counts``: device name -> reads answered per function
    code; ``buffer_counters``: each gateway's ``edgegw buffer stats`` (``counters`` and ``points``);
    ``rel``: 0 (bit-exact) for InfluxDB, 1e-11 for VictoriaMetrics (about 12 significant digits stored)."""
    j = Judgement()
    by_poll: dict[tuple[str, int], dict[str, Row]] = defaultdict(dict)
    stored: dict[str, int] = defaultdict(int)
    for r in rows:
        stored[r.device] += 1
        if r.quality >= 2 or r.value is None:  # a device down, a refused read: no value from the stub
            j.quality_bad += 1
            if r.reason is not None and r.reason.startswith("modbus_exception"):
                j.exception_rows += 1
            continue
        if r.quality == 1:
            j.uncertain += 1
        if r.point in IR_POINTS:
            by_poll[(r.device, r.ts)][r.point] = r
        elif r.point in HR_POINTS and r.device in stubs:
            hr_want = expected_values(stubs[r.device].reading(0))[r.point]  # status and threshold: constant here
            if not _same(float(r.value), float(hr_want), rel):
                j.mismatched += 1
                _note(j, f"{r.device}.{r.point} at {r.ts}: {r.value} != {hr_want}")
        else:
            j.mismatched += 1
            _note(j, f"unexpected row {r.device}.{r.point} at {r.ts}")
    for (device, ts), group in by_poll.items():
        if set(group) != set(IR_POINTS):
            j.incomplete_polls += 1
        if "seq" not in group or device not in stubs:
            j.mismatched += len(group)
            _note(j, f"{device} at {ts}: no seq row or unknown device")
            continue
        want = expected_values(stubs[device].reading(int(group["seq"].value or 0)))
        for name, r in group.items():
            if r.value is None or not _same(r.value, float(want[name]), rel):
                j.mismatched += 1
                _note(j, f"{device}.{name} at {ts} (seq {group['seq'].value}): {r.value} != {want[name]}")
    seqs: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for (device, ts), group in by_poll.items():
        if "seq" in group and group["seq"].value is not None:
            seqs[device].append((ts, group["seq"].value))
    for device, polls in seqs.items():
        polls.sort()
        j.clock_descents[device] = sum(1 for a, b in itertools.pairwise(polls) if b[1] < a[1])
    j.delivered = sum(stored.values())
    for device, counts in plc_counts.items():
        j.exception_rows_expected += exception_points(counts)
        j.per_device[device] = {"produced": points_per_read(counts), "delivered": stored.get(device, 0)}
    j.produced = sum(d["produced"] for d in j.per_device.values())
    expected = 0
    dropped_newest = 0
    after_total = 0
    for stats in buffer_counters:
        c = stats["counters"]
        after = sum(int(c.get(k, 0)) for k in AFTER_ACCEPT_DROPS)
        after_total += after
        j.accepted += int(c["accepted_points"])
        j.pending += int(stats.get("points", 0))
        dropped_newest += int(c.get("dropped_newest_points", 0))
        j.dropped_counted += after + int(c.get("dropped_newest_points", 0))
        expected += int(c["accepted_points"]) - after - int(stats.get("points", 0))
    j.lost = max(0, expected - j.delivered)
    surplus = max(0, j.delivered - expected)
    # a batch delivered whose PUBACK was lost, then dropped by a full buffer before it was sent again:
    # stored *and* counted as dropped; rows that agree with the stub, up to the drops after acceptance
    j.dropped_but_delivered = min(surplus, after_total)
    j.extra = surplus - j.dropped_but_delivered
    j.duplicates = j.mismatched + j.extra
    j.unaccounted = max(0, j.produced - (j.accepted - j.quality_bad) - dropped_newest)
    return j


def _note(j: Judgement, text: str) -> None:
    if len(j.examples) < 10:
        j.examples.append(text)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of a cumulative histogram (le -> count)."""
    if not buckets:
        return None
    items = sorted(buckets.items())
    total = items[-1][1]
    if total <= 0:
        return None
    for le, count in items:
        if count >= q * total:
            return le if math.isfinite(le) else (items[-2][0] if len(items) > 1 else None)
    return None


def recovery_times(
    samples: list[tuple[float, float | None, float | None]],
    windows: list[tuple[float, float]],
    *,
    nominal_rate: float,
    until: float,
    share: float = 0.8,
) -> list[float | None]:
    """Per fault window: seconds from its end until the stored rate is back to ``share`` of the
    produced rate. ``samples``: (t, produced rate, stored rate) per second; None if never (before ``until``)."""
    out: list[float | None] = []
    for _start, end in windows:
        found = None
        for t, _produced, stored in samples:
            if t < end or t > until:
                continue
            if stored is not None and stored >= share * nominal_rate:
                found = max(0.0, round(t - end, 1))
                break
        out.append(found)
    return out
