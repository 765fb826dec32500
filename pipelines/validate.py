"""Plausibility checks that need memory of earlier samples, and the clock checks.

They never invent or drop data: a suspicious sample keeps its value and becomes quality
*uncertain* with a reason (``spike``, ``stuck``, ``clock_unsynced``, ``clock_jump``,
``future_timestamp``), so the dashboards can hide it and the engineer can find it.  Bad samples
pass untouched.  Stateful but pure: no I/O, the clock readings are arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.core.point import Quality, Sample, SampleBatch
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
        # source time since which the value has not changed; none where no point is checked (48
        # bytes a point a gateway without spike or stuck checks does not hold, #17)
        n = len(specs) if self.active else 0
        if not self.active:
            self._cfg = []
        self._ref: list[float | None] = [None] * n
        self._prev: list[float | None] = [None] * n
        self._spiked: list[bool] = [False] * n
        self._since: list[int] = [0] * n
        self._restart: list[bool] = [False] * n

    def carry(self, old: Plausibility, indices: Iterable[int]) -> None:
        """A config reload: the points at ``indices`` (unchanged, same index) keep their spike and stuck state."""
        if not (self.active and old.active):
            return
        for i in indices:
            self._ref[i], self._prev[i], self._spiked[i] = old._ref[i], old._prev[i], old._spiked[i]
            self._since[i], self._restart[i] = old._since[i], old._restart[i]

    def clock_stepped(self) -> None:
        """The wall clock stepped: source times before and after the step cannot be subtracted, so
        every stuck timer starts again at the point's next sample (a 2 h forward step must not make
        a steady value "stuck", a 1 h backward step must not hide one for an hour)."""
        self._restart = [True] * len(self._restart)

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        if not self.active:
            return batch
        cfg = self._cfg
        refs, prevs, spiked, since, restart = self._ref, self._prev, self._spiked, self._since, self._restart
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
                if prev != value or restart[idx]:
                    since[idx] = ts
                    restart[idx] = False
                elif flag is None and ts - since[idx] >= stuck_ns:
                    flag = "stuck"
            prevs[idx] = value
            if flag is not None and quality is Quality.GOOD:
                append((idx, ts, value, Quality.UNCERTAIN, flag))
            else:
                append(sample)
        return out


class ClockCheck:
    """The clock checks, all relative to the gateway's own clock.

    - ``clock_unsynced``: a sample stamped before ``min_valid_ns`` (the gateway's or the server's
      clock has not been set: an RTC that booted at 1970), and every sample while the gateway's
      own wall clock reads before it (no timestamp can be checked against a clock that is not
      set).  From the first batch at which the clock is plausible, samples are good again.
    - ``clock_jump``: every sample of a batch during which the wall clock stepped (an NTP
      correction or a manual change) relative to the monotonic clock: their timestamps cannot be
      trusted to order them against their neighbours.
    - ``future_timestamp``: stamped more than ``future_tolerance_ns`` ahead of the wall clock.

    A sample that fails one keeps its value and becomes uncertain with the first reason in that
    order; bad samples pass untouched.  ``jumps``, ``last_step_ns`` and ``clock_valid`` tell the
    caller what to log (this stage does no I/O).
    """

    def __init__(self, future_tolerance_ns: int, jump_tolerance_ns: int, min_valid_ns: int = 0) -> None:
        self.future_tol = future_tolerance_ns
        self.jump_tol = jump_tolerance_ns
        self.min_valid = min_valid_ns
        self._offset: int | None = None  # wall - monotonic at the last batch
        self.jumps = 0
        self.last_step_ns = 0  # signed size of the last step (positive: the wall clock went forward)
        self.clock_valid: bool | None = None  # whether the wall clock read >= min_valid at the last batch
        self.unsynced = 0  # samples flagged clock_unsynced

    def __call__(self, batch: SampleBatch, wall_ns: int, mono_ns: int,
                 earliest: int | None = None, latest: int | None = None) -> SampleBatch:
        """``earliest``, ``latest``: the range of the samples' source times when the caller knows it (the
        normalise stage notes it on the way), so that the batch is not scanned for it; None: scanned."""
        offset = wall_ns - mono_ns
        prev = self._offset
        jumped = False
        if prev is not None and abs(offset - prev) > self.jump_tol:
            jumped = True
            self.jumps += 1
            self.last_step_ns = offset - prev
        self._offset = offset
        floor = self.min_valid
        valid = wall_ns >= floor
        self.clock_valid = valid
        if not valid:
            unset: SampleBatch = [
                (i, t, v, Quality.UNCERTAIN, "clock_unsynced") if q is Quality.GOOD else (i, t, v, q, r)
                for i, t, v, q, r in batch
            ]
            self.unsynced += sum(1 for s in batch if s[3] is Quality.GOOD)
            return unset
        limit = wall_ns + self.future_tol
        if not jumped and batch:
            if earliest is None or latest is None:  # not given (the common case is): scanned
                # the time column's range at C speed, no per-sample test; a poll stamps its samples
                # with one time (one int object: list.count compares by identity first)
                times = [s[1] for s in batch]
                first = times[0]
                one = times.count(first) == len(times)
                earliest, latest = (first, first) if one else (min(times), max(times))
            if floor <= earliest and latest <= limit:
                return batch  # nothing to change, no copy
        out: list[Sample] = []
        append = out.append
        for sample in batch:
            i, t, v, q, _r = sample
            if q is not Quality.GOOD:
                append(sample)
            elif t < floor:
                self.unsynced += 1
                append((i, t, v, Quality.UNCERTAIN, "clock_unsynced"))
            elif jumped:
                append((i, t, v, Quality.UNCERTAIN, "clock_jump"))
            elif t > limit:
                append((i, t, v, Quality.UNCERTAIN, "future_timestamp"))
            else:
                append(sample)
        return out
