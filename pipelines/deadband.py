"""Report by exception: absolute / percent deadband with a maximum-silence heartbeat.

A sample of a point with a deadband is forwarded when its value moved more than the deadband
from the last *forwarded* value (so a slow drift is never hidden), when its quality or reason
changed, when a non-numeric value changed, or when the point has been silent for
``max_silence_s`` of source time (so a dashboard can tell "steady" from "dead").  The first sample
of every point is always forwarded.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.point import SampleBatch, Value
from pipelines.spec import PointSpec

__all__ = ["Deadband"]


class Deadband:
    def __init__(self, specs: Sequence[PointSpec]) -> None:
        self._cfg: list[tuple[float, int] | None] = [
            (s.deadband, s.max_silence_ns or 0) if s.deadband is not None else None for s in specs
        ]
        self.active = any(c is not None for c in self._cfg)
        # per point: (value, quality, reason, source time) of the last forwarded sample
        self._last: dict[int, tuple[Value | None, int, str | None, int]] = {}
        self.suppressed = 0

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        if not self.active:
            return batch
        cfg = self._cfg
        last = self._last
        out: SampleBatch = []
        append = out.append
        for sample in batch:
            idx, ts, value, quality, reason = sample
            c = cfg[idx]
            if c is None:
                append(sample)
                continue
            band, silence = c
            prev = last.get(idx)
            if prev is not None:
                pv, pq, pr, pts = prev
                same_state = pq == quality and pr == reason
                if same_state and (silence <= 0 or ts - pts < silence):
                    if value is None or pv is None:
                        unchanged = value is pv
                    elif isinstance(value, bool | str) or isinstance(pv, bool | str):
                        unchanged = value == pv
                    else:
                        unchanged = abs(value - pv) <= band
                    if unchanged:
                        self.suppressed += 1
                        continue
            last[idx] = (value, quality, reason, ts)
            append(sample)
        return out
