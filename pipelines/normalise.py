"""Scaling and validation of raw samples.

Policy for garbage from the field (documented in the README): a NaN or infinite reading, or one
outside the point's ``min``/``max``, becomes quality bad with a reason (``nan``, ``inf``,
``out_of_range``) and no value.  It is never written as a number.
"""

from __future__ import annotations

import math

from gateway.catalog import Catalog
from gateway.point import Quality, Sample, SampleBatch

__all__ = ["Normalise"]


class Normalise:
    """``value * scale + offset``, then NaN / Inf / range checks.  Pure; works on whole batches.

    A decimal scale such as 0.01 is applied as a division by 100, which gives the correctly
    rounded decimal (2090 -> 20.9, where 2090 * 0.01 is 20.900000000000002).
    """

    def __init__(self, catalog: Catalog) -> None:
        # per point index, resolved once: None when the value passes as read (scale 1, offset 0,
        # no range), else (identity, divisor or 0, scale, offset, min, max)
        self._table: list[tuple[bool, int, float, float, float | None, float | None] | None] = []
        for p in catalog.points:
            identity = p.scale == 1.0 and p.offset == 0.0
            if identity and p.min is None and p.max is None:
                self._table.append(None)
            else:
                self._table.append((identity, _divisor(p.scale), p.scale, p.offset, p.min, p.max))

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        # the hot path of every sample: one loop, no calls but isfinite on floats
        table = self._table
        out: SampleBatch = []
        append = out.append
        bad = Quality.BAD
        isfinite = math.isfinite
        for sample in batch:
            idx, ts, value, quality, reason = sample
            tv = type(value)
            if quality is bad or (tv is not int and tv is not float):  # None, bool, str: as read
                append(sample)
                continue
            num: float = value  # type: ignore[assignment]  # int or float, checked above (no call)
            spec = table[idx]
            if spec is None:
                if tv is float and not isfinite(num):
                    append((idx, ts, None, bad, "nan" if value != value else "inf"))
                else:
                    append(sample)
                continue
            identity, divisor, scale, offset, lo, hi = spec
            if identity:
                v = num
            elif divisor:
                v = num / divisor + offset
            else:
                v = num * scale + offset
            if type(v) is float and not isfinite(v):
                append((idx, ts, None, bad, "nan" if v != v else "inf"))
            elif (lo is not None and v < lo) or (hi is not None and v > hi):
                append((idx, ts, None, bad, "out_of_range"))
            else:
                append((idx, ts, v, quality, reason))
        return out

    def one(self, sample: Sample) -> Sample:
        return self([sample])[0]


def _divisor(scale: float) -> int:
    """100 for a scale of 0.01; 0 when the scale is not the inverse of an integer."""
    if scale == 0 or abs(scale) >= 1:
        return 0
    inv = 1 / scale
    nearest = round(inv)
    return int(nearest) if abs(inv - nearest) < 1e-9 * abs(inv) else 0
