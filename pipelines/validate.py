"""Plausibility checks that need memory of earlier samples, and the clock checks.

They never invent or drop data: a suspicious sample keeps its value and becomes quality
*uncertain* with a reason (``spike``, ``stuck``, ``future_timestamp``, ``clock_jump``), so the
dashboards can hide it and the engineer can find it.  Bad samples pass untouched.  Stateful but
pure: no I/O, the clock readings are arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.point import Quality, SampleBatch
from pipelines.spec import PointSpec

__all__ = ["ClockCheck", "Plausibility"]


class Plausibility:
    """Spike and stuck-value detection, per point, on engineering values.

    Spike: a value more than ``spike_delta`` away from the last accepted value is flagged; if the
    next value stays within ``spike_delta`` of the flagged one, the level shift is real and is
    accepted from then on.  Stuck: a numeric value unchanged for ``stuck_after_s`` of source time
    is flagged until it moves.
    """

    def __init__(self, specs: Sequence[PointSpec]) -> None:
        self._cfg: list[tuple[float | None, int | None] | None] = [
            (s.spike_delta, s.stuck_after_ns) if (s.spike_delta or s.stuck_after_ns) else None for s in specs
        ]
        self.active = any(c is not None for c in self._cfg)
        # per point: last accepted value, last value seen, whether the last one was a spike,
        # source time since which the value has not changed
        n = len(specs)
        self._ref: list[float | None] = [None] * n
        self._prev: list[float | None] = [None] * n
        self._spiked: list[bool] = [False] * n
        self._since: list[int] = [0] * n

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        if not self.active:
            return batch
        cfg = self._cfg
        refs, prevs, spiked, since = self._ref, self._prev, self._spiked, self._since
        out: SampleBatch = []
        append = out.append
        for sample in batch:
            idx, ts, value, quality, _reason = sample
            c = cfg[idx]
            if c is None or quality is Quality.BAD or value is None or isinstance(value, bool | str):
                append(sample)
                continue
            delta, stuck_ns = c
            flag = None
            prev = prevs[idx]
            if delta is not None:
                ref = refs[idx]
                if ref is None or abs(value - ref) <= delta:
                    refs[idx] = value
                    spiked[idx] = False
                elif spiked[idx] and prev is not None and abs(value - prev) <= delta:
                    refs[idx] = value  # confirmed level shift
                    spiked[idx] = False
                else:
                    spiked[idx] = True
                    flag = "spike"
            if stuck_ns is not None:
                if prev != value:
                    since[idx] = ts
                elif flag is None and ts - since[idx] >= stuck_ns:
                    flag = "stuck"
            prevs[idx] = value
            if flag is not None and quality is Quality.GOOD:
                append((idx, ts, value, Quality.UNCERTAIN, flag))
            else:
                append(sample)
        return out


class ClockCheck:
    """Flags samples stamped in the future, and every sample of a batch during which the
    gateway's wall clock stepped (an NTP correction or a manual change) relative to the monotonic
    clock.  Their timestamps cannot be trusted to order them against their neighbours."""

    def __init__(self, future_tolerance_ns: int, jump_tolerance_ns: int) -> None:
        self.future_tol = future_tolerance_ns
        self.jump_tol = jump_tolerance_ns
        self._offset: int | None = None  # wall - monotonic at the last batch
        self.jumps = 0

    def __call__(self, batch: SampleBatch, wall_ns: int, mono_ns: int) -> SampleBatch:
        offset = wall_ns - mono_ns
        jumped = self._offset is not None and abs(offset - self._offset) > self.jump_tol
        self._offset = offset
        if jumped:
            self.jumps += 1
            return [
                (i, t, v, Quality.UNCERTAIN, "clock_jump") if q is Quality.GOOD else (i, t, v, q, r)
                for i, t, v, q, r in batch
            ]
        limit = wall_ns + self.future_tol
        for s in batch:
            if s[1] > limit:
                break
        else:
            return batch  # the common case: nothing to change, no copy
        return [
            (i, t, v, Quality.UNCERTAIN, "future_timestamp") if t > limit and q is Quality.GOOD else (i, t, v, q, r)
            for i, t, v, q, r in batch
        ]
