"""Report by exception: absolute / percent deadband with a maximum-silence heartbeat.

A sample of a point with a deadband is forwarded when its value moved more than the deadband
from the last *forwarded* value (so a slow drift is never hidden), when its quality or reason
changed, when a non-numeric value changed, or when the point has been silent for
``max_silence_s`` of source time (so a dashboard can tell "steady" from "dead").  The first sample
of every point is always forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway.core.point import SampleBatch, Value
from pipelines.spec import PointSpec

__all__ = ["Deadband"]


class Deadband:
    def __init__(self, specs: Sequence[PointSpec]) -> None:
        never = 1 << 62  # no heartbeat configured
        self._cfg: list[tuple[float, int] | None] = [
            (s.deadband, s.max_silence_ns or never) if s.deadband is not None else None for s in specs
        ]
        self.active = any(c is not None for c in self._cfg)
        if not self.active:
            self._cfg = []  # no per-point state where no point has a deadband (#17)
        # per point: (value, quality, reason, source time) of the last forwarded sample
        self._last: list[tuple[Value | None, int, str | None, int] | None] = [None] * len(self._cfg)
        self.suppressed = 0

    def carry(self, old: Deadband, indices: Iterable[int]) -> None:
        """A config reload: the points at ``indices`` (unchanged, same index) keep their last forwarded sample."""
        self.suppressed = old.suppressed
        if not (self.active and old.active):
            return
        for i in indices:
            self._last[i] = old._last[i]

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        if not self.active:
            return batch
        cfg = self._cfg
        last = self._last
        out: SampleBatch = []
        append = out.append
        suppressed = 0
        for sample in batch:
            idx, ts, value, quality, reason = sample
            c = cfg[idx]
            if c is None:
                append(sample)
                continue
            prev = last[idx]
            if prev is not None:
                pv, pq, pr, pts = prev
                if pq == quality and pr == reason and ts - pts < c[1]:
                    tv = type(value)
                    if tv is float or tv is int:
                        tp = type(pv)
                        if (tp is float or tp is int) and abs(value - pv) <= c[0]:  # type: ignore[operator]
                            suppressed += 1
                            continue
                    elif value == pv and tv is type(pv):  # None, bool, str: only a change goes
                        suppressed += 1
                        continue
            last[idx] = (value, quality, reason, ts)
            append(sample)
        self.suppressed += suppressed
        return out
