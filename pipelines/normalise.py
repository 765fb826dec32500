"""Scaling, unit conversion and validation of raw samples.

Policy for garbage from the field (docs/normalisation.md): a raw signal outside its fault limits
(``signal_fault``, e.g. a broken 4-20 mA loop), a NaN or infinite reading (``nan``, ``inf``), or a
value outside the point's ``min``/``max`` (``out_of_range``) becomes quality bad with that reason
and no value.  It is never written as a number.

This is also the first stage, so it admits values (:func:`gateway.core.values.admit`): a value no wire
format carries (a string with lone surrogates, an integer beyond 64 bits, bytes, a structure)
becomes that one point's bad quality with reason ``encoding_error``, and the stages after it see
only plain values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from gateway.core.native import load_kernel
from gateway.core.point import Quality, Sample, SampleBatch
from gateway.core.values import INT_MAX, INT_MIN, admit
from pipelines.spec import PointSpec

__all__ = ["Normalise"]

_Row = tuple[bool, float, int, float, float | None, float | None, bool, float, float, float | None, float | None,
             int | None]


class Normalise:
    """raw -> (fault limits) -> linear scaling -> unit conversion -> NaN / Inf / range.  Pure; batch-wise.

    A decimal scale such as 0.01 is applied as a division by 100, which gives the correctly
    rounded decimal (2090 -> 20.9, where 2090 * 0.01 is 20.900000000000002).  With a decimal
    offset, an integer raw value has the offset added in those units first (-40 at 0.01 is -4000
    hundredths): 4123 -> (4123 - 4000) / 100 = 1.23, where 4123 / 100 - 40 is 1.2299999999999969.
    """

    def __init__(self, specs: Sequence[PointSpec]) -> None:
        # one flat row per point index, resolved once; None when the value passes as read
        # (no scaling, conversion, fault limits or range: only the NaN / Inf check applies)
        self._table: list[_Row | None] = []
        # the common scaled register, for integer values: (offset in units, divisor, min, max) of the
        # points with a decimal divisor and offset, nothing else (no fault limits, no conversion)
        self._dec: list[tuple[int, int, float, float] | None] = []
        rows: dict[PointSpec, _Row] = {}  # equal specs (shared by the point table) share their row
        decs: dict[PointSpec, tuple[int, int, float, float] | None] = {}
        for s in specs:
            if s not in decs:
                units = _offset_units(s.offset, s.divisor)
                simple = s.identity_conversion and s.raw_fault_low is None and s.raw_fault_high is None
                lo = -math.inf if s.min is None else float(s.min)
                hi = math.inf if s.max is None else float(s.max)
                # floats (as the compiled kernel reads them); a bound no float equals: the general path
                exact = (s.min is None or lo == s.min) and (s.max is None or hi == s.max)
                decs[s] = (units, s.divisor, lo, hi) if units is not None and simple and exact else None
            self._dec.append(decs[s])
            if (row := rows.get(s)) is not None:
                self._table.append(row)
                continue
            if (
                s.identity_scale
                and s.identity_conversion
                and s.raw_fault_low is None
                and s.raw_fault_high is None
                and s.min is None
                and s.max is None
            ):
                self._table.append(None)
                continue
            row = rows[s] = (
                s.identity_scale,
                s.scale,
                s.divisor,
                s.offset,
                s.raw_fault_low,
                s.raw_fault_high,
                s.identity_conversion,
                s.conv_factor,
                s.conv_offset,
                s.min,
                s.max,
                _offset_units(s.offset, s.divisor),
            )
            self._table.append(row)
        # the native build's loop with this table (the common samples in C, the others by _one_pure)
        self._kernel: Any = None if _KERNEL is None else _KERNEL(self._dec, self._table)

    def __call__(self, batch: SampleBatch) -> SampleBatch:
        return self.run(batch)[0]

    def run(self, batch: SampleBatch) -> tuple[SampleBatch, int | None, int | None]:
        """The normalised batch, and the earliest and latest source time of its samples when the native
        build noted them on the way (None, None: not known; the pure path does not note them)."""
        kernel = self._kernel
        if kernel is not None:
            return kernel.run(batch, self._one_pure)  # type: ignore[no-any-return]
        return self._pure(batch), None, None

    def _one_pure(self, sample: Sample) -> Sample:
        return self._pure([sample])[0]

    def _pure(self, batch: SampleBatch) -> SampleBatch:
        # the hot path of every sample: one loop, no calls but isfinite on floats
        table = self._table
        dec = self._dec
        out: SampleBatch = []
        append = out.append
        bad = Quality.BAD
        isfinite = math.isfinite
        imin, imax = INT_MIN, INT_MAX
        for sample in batch:
            idx, ts, value, quality, reason = sample
            tv = type(value)
            if tv is int and quality is not bad and (d := dec[idx]) is not None:
                # a scaled register (the general path below, in short): one rounding, never inf or NaN
                d_units, d_div, d_lo, d_hi = d
                try:
                    v = (value + d_units) / d_div  # type: ignore[operator]
                except OverflowError:  # an int beyond a float's range (~1e308)
                    append(admit(sample))
                    continue
                if d_lo <= v <= d_hi:
                    append((idx, ts, v, quality, reason))
                else:
                    append((idx, ts, None, bad, "out_of_range"))
                continue
            if quality is bad or (tv is not int and tv is not float):
                # a gap, a bool, ASCII text: as read; anything else is admitted
                if value is None or tv is bool or (tv is str and value.isascii()):  # type: ignore[union-attr]
                    append(sample)
                else:
                    append(admit(sample))
                continue
            num: float = value  # type: ignore[assignment]  # int or float, checked above (no call)
            row = table[idx]
            if row is None:
                if tv is float:
                    if not isfinite(num):
                        append((idx, ts, None, bad, "nan" if num != num else "inf"))
                        continue
                elif num > imax or num < imin:  # an int no wire format carries
                    append(admit(sample))
                    continue
                append(sample)
                continue
            identity, scale, divisor, offset, flo, fhi, noconv, cf, co, lo, hi, units = row
            if (flo is not None and num < flo) or (fhi is not None and num > fhi):
                append((idx, ts, None, bad, "signal_fault"))
                continue
            try:
                if identity:
                    v = num
                elif divisor:
                    # an int with a decimal offset: one rounding, the correctly rounded decimal
                    v = (num + units) / divisor if tv is int and units is not None else num / divisor + offset
                else:
                    v = num * scale + offset
                if not noconv:
                    v = v * cf + co
            except OverflowError:  # an int beyond a float's range (~1e308)
                append(admit(sample))
                continue
            tv = type(v)
            if tv is float and not isfinite(v):
                append((idx, ts, None, bad, "nan" if v != v else "inf"))
            elif tv is int and (v > imax or v < imin):
                append(admit(sample))
            elif (lo is not None and v < lo) or (hi is not None and v > hi):
                append((idx, ts, None, bad, "out_of_range"))
            else:
                append((idx, ts, v, quality, reason))
        return out

    def one(self, sample: Sample) -> Sample:
        return self([sample])[0]


# the compiled loop of the common samples when the native build made it (gateway/core/native.py);
# None: Normalise._pure does every sample
_KERNEL: Callable[[list[Any], list[Any]], Any] | None = load_kernel(
    "pipelines.normalise_kernel", "Kernel")


def _offset_units(offset: float, divisor: int) -> int | None:
    """The offset in units of 1 / ``divisor`` when it is a whole number of them (-40.0 at a divisor of
    100: -4000; 0.05 at 10: None), so that an integer raw value is scaled with one rounding."""
    if not divisor:
        return None
    units = round(offset * divisor)
    return units if units / divisor == offset else None
