"""The common samples of :class:`pipelines.normalise.Normalise` as one typed loop, for mypyc.

Compiled to a C extension by the optional native build (``setup.py``, mypyc) and then used by
:class:`~pipelines.normalise.Normalise` (interpreted it would be slower than the pure-Python loop, so
it is used only when compiled: :data:`COMPILED`; the tests run it both ways).

It does what the pure-Python loop does for the common samples, with the same result objects:

- a good or uncertain integer of a point with a decimal scaling (a scaled register; ``dec``): one
  division, the range check (``out_of_range``);
- a finite float or an integer within 64 bits of a point without scaling, range or fault limits
  (``table[i] is None``): the sample itself;
- a gap (``None``), a boolean or an ASCII string (a coil, an alarm, an operating state), whatever
  its quality: the sample itself.

Every other sample (a non-ASCII string, a NaN, a bad integer, a general scaling, an integer beyond 2**53 where
a C division would round differently, anything malformed) goes to ``general``, the pure-Python path
for one sample.  Keep the two in step: tests/pipelines/test_normalise_kernel.py compares them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from gateway.core.point import Quality

__all__ = ["COMPILED", "normalise"]

_EXACT: Final = 1 << 53  # below, an int converts to a double exactly: a C division rounds as Python's
# an int within is within what a wire format carries (beyond: the general path); the largest int a
# compiled module holds unboxed, so the comparison is a C one
_SHORT: Final = (1 << 62) - 1


def _compiled() -> bool:
    """True when this module runs as a mypyc-compiled extension."""
    return not __file__.endswith((".py", ".pyc"))


COMPILED: Final = _compiled()

Dec = tuple[int, int, float, float]  # offset in units, divisor, min, max (floats: -inf / inf when none)


def normalise(batch: list[Any], dec: list[Dec | None], table: list[Any],
              general: Callable[[Any], Any]) -> list[Any]:
    """The normalised batch: one sample out per sample in, in order."""
    out: list[Any] = []
    bad = Quality.BAD
    nd = len(dec)
    for sample in batch:
        if type(sample) is tuple and len(sample) == 5:
            s: tuple[object, object, object, object, object] = sample
            idx_o, ts, value, quality, reason = s
            if value is None or type(value) is bool:  # a gap or a bool: as read
                out.append(sample)
                continue
            if type(value) is str:
                text: str = value
                if text.isascii():  # ASCII text: as read (other text is admitted by the pure path)
                    out.append(sample)
                    continue
            if type(idx_o) is int and quality is not bad:
                idx: int = idx_o
                if 0 <= idx < nd:
                    if type(value) is int:
                        d = dec[idx]
                        if d is not None:
                            units, div, lo, hi = d
                            num: int = value + units
                            if -_EXACT < num < _EXACT:
                                v = num / div
                                if lo <= v <= hi:
                                    out.append((idx_o, ts, v, quality, reason))
                                else:
                                    out.append((idx_o, ts, None, bad, "out_of_range"))
                                continue
                        elif table[idx] is None and -_SHORT <= value <= _SHORT:
                            out.append(sample)
                            continue
                    elif type(value) is float:
                        f: float = value
                        if table[idx] is None and math.isfinite(f):
                            out.append(sample)
                            continue
        out.append(general(sample))
    return out
