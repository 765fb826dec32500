"""The normalise stage's three ways to the same samples: the pure-Python loop (no native build, or
EDGEGW_PURE_PYTHON=1), pipelines/normalise_kernel.py compiled by mypyc (the native build), and the same
kernel interpreted (its logic, on any machine).  Every batch, common or odd, gives equal samples
all three ways (the same value types, -0.0 and NaN included), and the kernel hands what it does not
do itself to the pure path one sample at a time."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import pipelines.normalise as normalise_mod
from gateway.bench import SyntheticSource, synthetic_catalog
from gateway.catalog import decimal_divisor
from gateway.core.point import Quality, Sample, SampleBatch
from pipelines.normalise import Normalise
from pipelines.spec import PointSpec
from tests.native_kernels import interpreted, need_compiled

__all__: list[str] = []

Kernel = Callable[..., SampleBatch]
SOURCE = Path(normalise_mod.__file__).with_name("normalise_kernel.py")


def _interpreted() -> Kernel:
    return interpreted(SOURCE, "normalise_kernel_interpreted").normalise  # type: ignore[no-any-return]


INTERPRETED = _interpreted()


def _compiled() -> Kernel | None:
    from pipelines import normalise_kernel

    return normalise_kernel.normalise if normalise_kernel.COMPILED else None


def _need_compiled() -> Kernel:
    return need_compiled(_compiled())


# (scale, offset, min, max, fault low, fault high, conversion factor)
SPECS = [(1.0, 0.0, None, None, None, None, 1.0), (0.1, 0.0, None, None, None, None, 1.0),
         (0.01, -40.0, None, None, None, None, 1.0), (2.5, 1.0, None, None, None, None, 1.0),
         (1.0, 0.0, 0.0, 100.0, None, None, 1.0), (0.1, 0.0, 0.0, 6553.5, None, None, 1.0),
         (1.0, 5.0, None, None, None, None, 1.0), (0.1, 0.05, None, None, None, None, 1.0),
         (0.01, 0.0, -5, 5, None, None, 1.0), (0.1, 0.0, None, None, 4000, 20000, 1.0),
         (0.1, 0.0, None, None, None, None, 1.8), (1.0, 0.0, None, 2**60, None, None, 1.0)]


def _specs() -> list[PointSpec]:
    return [PointSpec(scale=sc, divisor=decimal_divisor(sc), offset=off, min=lo, max=hi, raw_fault_low=flo,
                      raw_fault_high=fhi, conv_factor=cf)
            for sc, off, lo, hi, flo, fhi, cf in SPECS]


STAGE = Normalise(_specs())
N = len(SPECS)


def _three_ways(stage: Normalise, batch: list[Any]) -> SampleBatch:
    pure = stage._pure(list(batch))
    general_calls: list[Sample] = []

    def general(s: Sample) -> Sample:
        general_calls.append(s)
        return stage._one_pure(s)

    outs = {"interpreted": INTERPRETED(list(batch), stage._dec, stage._table, general)}
    compiled = _compiled()
    if compiled is not None:
        outs["compiled"] = compiled(list(batch), stage._dec, stage._table, stage._one_pure)
    for name, out in outs.items():
        assert list(map(repr, out)) == list(map(repr, pure)), name
        assert [list(map(type, s)) for s in out] == [list(map(type, s)) for s in pure], name
    return pure


values = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.integers(-(2**40), 2**40),
                   st.integers(-(2**70), 2**70), st.sampled_from([2**53 - 1, 2**53, -(2**53), 2**62, -(2**62), 2**64]),
                   st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0]))
samples = st.tuples(st.integers(0, N - 1), st.integers(0, 2**62), values,
                    st.sampled_from([Quality.GOOD, Quality.UNCERTAIN, Quality.BAD]),
                    st.one_of(st.none(), st.just("spike")))


@settings(max_examples=400, deadline=None)
@given(st.lists(samples, max_size=30))
def test_every_batch_normalises_the_same_three_ways(batch: SampleBatch) -> None:
    _three_ways(STAGE, batch)


def test_the_common_samples_stay_in_the_kernel() -> None:
    """Scaled registers, as-read ints and floats, gaps, bools and ASCII strings: no sample to the pure path."""
    batch: SampleBatch = [(1, 5, 2093, Quality.GOOD, None), (2, 5, 4123, Quality.UNCERTAIN, "x"),
                          (0, 5, 7, Quality.GOOD, None), (0, 5, 1.25, Quality.GOOD, None),
                          (5, 5, 70000, Quality.GOOD, None), (4, 5, None, Quality.BAD, "timeout"),
                          (3, 5, True, Quality.GOOD, None), (6, 5, "RUNNING", Quality.GOOD, None),
                          (7, 5, "", Quality.BAD, "comm")]
    calls: list[Sample] = []

    def general(s: Sample) -> Sample:
        calls.append(s)
        return STAGE._one_pure(s)

    out = INTERPRETED(batch, STAGE._dec, STAGE._table, general)
    assert calls == []
    assert out == [(1, 5, 209.3, Quality.GOOD, None), (2, 5, 1.23, Quality.UNCERTAIN, "x"), batch[2], batch[3],
                   (5, 5, None, Quality.BAD, "out_of_range"), batch[5], batch[6], batch[7], batch[8]]
    assert out[2] is batch[2] and out[3] is batch[3]  # as read: the sample itself, no copy
    assert repr(_three_ways(STAGE, batch)) == repr(out)


def test_odd_samples_go_to_the_pure_path() -> None:
    odd: list[Any] = [(0, 5, float("nan"), Quality.GOOD, None), (1, 5, 2**60, Quality.GOOD, None),
                      (3, 5, 10, Quality.GOOD, None), (0, 5, "Ā\ud800", Quality.GOOD, None),
                      (1, 5, 12, Quality.BAD, "x"), (N + 3, 5, None, Quality.GOOD, None)]
    calls: list[Sample] = []

    def general(s: Sample) -> Sample:
        calls.append(s)
        return STAGE._one_pure(s)

    out = INTERPRETED(odd[:-1], STAGE._dec, STAGE._table, general)
    assert calls == odd[:-1] and len(out) == 5
    _three_ways(STAGE, odd[:-1])


def test_the_stage_uses_the_compiled_kernel_when_built() -> None:
    kernel = _need_compiled()
    assert normalise_mod._KERNEL is kernel or os.environ.get("EDGEGW_PURE_PYTHON", "") not in ("", "0")
    cat = synthetic_catalog(1000)
    stage = Normalise(cat.specs)
    src = SyntheticSource(1000)
    for _ in range(3):
        poll = src.poll()
        assert repr(stage(poll)) == repr(stage._pure(poll))
