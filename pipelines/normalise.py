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
        # (scale, divisor or 0, offset, min, max, is identity) per point index, resolved once
        self._table = [
            (p.scale, _divisor(p.scale), p.offset, p.min, p.max, p.scale == 1.0 and p.offset == 0.0)
            for p in catalog.points
        ]

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        table = self._table
        out: SampleBatch = []
        append = out.append
        for sample in batch:
            idx, ts, value, quality, reason = sample
            if quality is Quality.BAD or value is None or isinstance(value, bool | str):
                append(sample)
                continue
            scale, divisor, offset, lo, hi, identity = table[idx]
            if identity:
                v = value
            elif divisor:
                v = value / divisor + offset
            else:
                v = value * scale + offset
            if isinstance(v, float) and not math.isfinite(v):
                append((idx, ts, None, Quality.BAD, "nan" if math.isnan(v) else "inf"))
            elif (lo is not None and v < lo) or (hi is not None and v > hi):
                append((idx, ts, None, Quality.BAD, "out_of_range"))
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
