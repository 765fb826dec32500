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

:class:`Kernel` is built once per stage: its point table is a list of :class:`Point` objects, C
structs when compiled, so that a sample costs no tuple unpacking or float unboxing of its point's
scaling.  The loop keeps the sample's own objects (the sample itself when it passes as read; its
index and time in a new sample: compiled code would otherwise box the checked index into a new int),
and notes the earliest and latest source time on the way for the clock check
(:class:`~pipelines.validate.ClockCheck`), which then need not scan the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from gateway.core.point import Quality

__all__ = ["COMPILED", "Kernel", "Point"]

_EXACT: Final = 1 << 53  # below, an int converts to a double exactly: a C division rounds as Python's
# an int within is within what a wire format carries (beyond: the general path); the largest int a
# compiled module holds unboxed, so the comparison is a C one
_SHORT: Final = (1 << 62) - 1


def _compiled() -> bool:
    """True when this module runs as a mypyc-compiled extension."""
    return not __file__.endswith((".py", ".pyc"))


COMPILED: Final = _compiled()

Dec = tuple[int, int, float, float]  # offset in units, divisor, min, max (floats: -inf / inf when none)


class Point:
    """What the loop needs of one point index, as C fields when compiled (no tuple to unpack, no
    float to unbox per sample): the decimal scaling of a scaled register (``scaled``: ``units``,
    ``div``, ``lo``, ``hi``), or ``plain`` (no scaling, range or fault limits: passes as read)."""

    def __init__(self, d: Dec | None, plain: bool) -> None:
        self.scaled = d is not None
        self.plain = plain
        self.units = 0
        self.div = 1
        self.lo = -math.inf
        self.hi = math.inf
        if d is not None:
            self.units, self.div, self.lo, self.hi = d


class Kernel:
    """The loop of one :class:`~pipelines.normalise.Normalise` stage with its point table, built once.

    ``dec`` and ``table`` are the stage's (one entry per point index).  It holds no reference to the
    stage (``general`` is an argument of :meth:`run`): no reference cycle, which ``gc.freeze`` at
    start-up would otherwise keep alive after a config reload."""

    def __init__(self, dec: list[Dec | None], table: list[Any]) -> None:
        shared: dict[tuple[Dec | None, bool], Point] = {}
        points: list[Point] = []
        for d, row in zip(dec, table, strict=True):
            key = (d, row is None)
            p = shared.get(key)
            if p is None:
                p = shared[key] = Point(d, row is None)
            points.append(p)
        self.points = points
        self.bad: object = Quality.BAD

    def run(self, batch: list[Any], general: Callable[[Any], Any]) -> tuple[list[Any], object, object]:
        """The normalised batch (one sample out per sample in, in order; ``general`` does one sample the
        pure-Python way), and the earliest and latest source time of its samples; None, None when not
        known (an empty batch, a time that is not an int, a sample done by ``general``, which may stamp
        it anew).  The times are compared only where the time object changes from one sample to the
        next: once a block (a driver stamps a block's samples with one int object), not once a sample."""
        out: list[Any] = []
        bad = self.bad
        points = self.points
        n = len(points)
        known = True  # the times' range so far is known (no sample to ``general``, no other time than ints)
        empty = True  # no time yet
        tlo = 0
        thi = 0
        tprev: object = self  # the previous sample's time object (none yet: an object no time is)
        for item in batch:
            sample: object = item  # the sample itself (``item`` is narrowed to a tuple of 5 below)
            if type(item) is tuple and len(item) == 5:
                s: tuple[object, object, object, object, object] = item
                key, ts, value, quality, reason = s
                idx_o: object = key  # narrowed to an int below; ``key`` stays the sample's own object
                if ts is not tprev:
                    tprev = ts
                    if type(ts) is int:
                        t: int = ts
                        if empty:
                            tlo = thi = t
                            empty = False
                        elif t < tlo:
                            tlo = t
                        elif t > thi:
                            thi = t
                    else:
                        known = False
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
                    if 0 <= idx < n:
                        p = points[idx]
                        if type(value) is int:
                            if p.scaled:
                                num: int = value + p.units
                                if -_EXACT < num < _EXACT:
                                    v = num / p.div
                                    if p.lo <= v <= p.hi:
                                        out.append((key, ts, v, quality, reason))
                                    else:
                                        out.append((key, ts, None, bad, "out_of_range"))
                                    continue
                            elif p.plain and -_SHORT <= value <= _SHORT:
                                out.append(sample)
                                continue
                        elif type(value) is float:
                            f: float = value
                            if p.plain and math.isfinite(f):
                                out.append(sample)
                                continue
            known = False  # the pure path may stamp it anew (an unusable time)
            out.append(general(sample))
        if known and not empty:
            return out, tlo, thi
        return out, None, None
