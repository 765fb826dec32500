"""The batch normaliser agrees with the plain per-sample rules (the policy the README states)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from gateway.catalog import decimal_divisor
from gateway.core.point import Quality, Sample, Value
from pipelines.normalise import Normalise
from pipelines.spec import PointSpec

SPECS = [(1.0, 0.0, None, None), (0.1, 0.0, None, None), (0.01, -40.0, None, None), (2.5, 1.0, None, None),
         (1.0, 0.0, 0.0, 100.0), (0.1, 0.0, 0.0, 6553.5), (1.0, 5.0, None, None)]


def _specs() -> list[PointSpec]:
    """The stage's table as build_catalog compiles it from (scale, offset, min, max)."""
    return [PointSpec(scale=sc, divisor=decimal_divisor(sc), offset=off, min=lo, max=hi) for sc, off, lo, hi in SPECS]


def reference(sample: Sample) -> Sample:
    idx, ts, value, quality, reason = sample
    if quality is Quality.BAD and isinstance(value, float) and not math.isfinite(value):
        # a value no wire format carries is dropped, also from a bad sample (which keeps its reason)
        return (idx, ts, None, quality, reason or ("nan" if math.isnan(value) else "inf"))
    if quality is Quality.BAD or value is None or isinstance(value, bool | str):
        return sample
    scale, offset, lo, hi = SPECS[idx]
    if scale == 1.0 and offset == 0.0:
        v: Value = value
    elif scale < 1 and abs(1 / scale - round(1 / scale)) < 1e-9 / scale:
        div = round(1 / scale)
        units = round(offset * div)
        # an int with an offset of whole 1 / div units: the correctly rounded decimal, one rounding
        v = (value + units) / div if isinstance(value, int) and units / div == offset else value / div + offset
    else:
        v = value * scale + offset
    if isinstance(v, float) and not math.isfinite(v):
        return (idx, ts, None, Quality.BAD, "nan" if math.isnan(v) else "inf")
    assert isinstance(v, int | float)  # bool and str returned above
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        return (idx, ts, None, Quality.BAD, "out_of_range")
    return (idx, ts, v, quality, reason)


values = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.integers(-(2**40), 2**40),
                   st.floats(allow_nan=True, allow_infinity=True))
samples = st.lists(st.tuples(st.integers(0, len(SPECS) - 1), st.integers(0, 2**62), values,
                             st.sampled_from(list(Quality)), st.one_of(st.none(), st.just("r"))), max_size=40)


@given(samples)
def test_batch_normaliser_matches_the_per_sample_rules(batch: list[Sample]) -> None:
    got = Normalise(_specs())(batch)
    want = [reference(s) for s in batch]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:2] == w[:2] and g[3:] == w[3:]
        assert type(g[2]) is type(w[2])
        assert g[2] == w[2] or (isinstance(g[2], float) and math.isnan(g[2]) and math.isnan(w[2]))  # type: ignore[arg-type]


def test_decimal_offsets_give_the_correctly_rounded_decimal() -> None:
    """A register scaled by 0.01 with an offset of -40 reads as the decimal it stands for (1.23, not
    1.2299999999999969): one rounding of the exact value, so the codec sends it as 123 e2."""
    from fractions import Fraction

    norm = Normalise([PointSpec(scale=0.01, divisor=100, offset=-40.0), PointSpec(scale=0.1, divisor=10, offset=0.5),
                      PointSpec(scale=0.1, divisor=10, offset=0.05)])
    raws = list(range(0, 65536, 7))
    for i, offset, div in ((0, Fraction(-40), 100), (1, Fraction(1, 2), 10)):
        got = norm([(i, 0, r, Quality.GOOD, None) for r in raws])
        assert [s[2] for s in got] == [float(Fraction(r, div) + offset) for r in raws]
    assert norm.one((0, 0, 4123, Quality.GOOD, None))[2] == 1.23 != 4123 / 100 - 40
    # an offset that is no whole number of the divisor's units, and a float raw value: as before
    assert norm.one((2, 0, 4123, Quality.GOOD, None))[2] == 4123 / 10 + 0.05
    assert norm.one((0, 0, 4123.0, Quality.GOOD, None))[2] == 4123.0 / 100 - 40
    # the short path for scaled registers keeps the general path's edges: range, huge ints, bad quality
    ranged = Normalise([PointSpec(scale=0.1, divisor=10, offset=0.0, min=0.0, max=6553.5)])
    assert ranged.one((0, 0, 65535, Quality.GOOD, None))[2] == 6553.5
    assert ranged.one((0, 0, 65536, Quality.GOOD, None))[3:] == (Quality.BAD, "out_of_range")
    assert ranged.one((0, 0, -1, Quality.GOOD, None))[3:] == (Quality.BAD, "out_of_range")
    assert ranged.one((0, 0, 10**400, Quality.GOOD, None))[3:] == (Quality.BAD, "encoding_error")
    assert ranged.one((0, 0, 5, Quality.BAD, "timeout")) == (0, 0, 5, Quality.BAD, "timeout")
    assert ranged.one((0, 0, 5, Quality.UNCERTAIN, "x")) == (0, 0, 0.5, Quality.UNCERTAIN, "x")
