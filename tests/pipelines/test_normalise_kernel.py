"""The normalise stage's three ways to the same samples: the pure-Python loop (no native build, or
EDGEGW_PURE_PYTHON=1), pipelines/normalise_kernel.py compiled by mypyc (the native build), and the same
kernel interpreted (its logic, on any machine).  Every batch, common or odd, gives equal samples
all three ways (the same value types, -0.0 and NaN included), and the kernel hands what it does not
do itself to the pure path one sample at a time."""

from __future__ import annotations

import gc
import math
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
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

Kernel = Callable[..., Any]  # the module's Kernel class: Kernel(dec, table).run(batch, general)
SOURCE = Path(normalise_mod.__file__).with_name("normalise_kernel.py")


def _interpreted() -> Kernel:
    return interpreted(SOURCE, "normalise_kernel_interpreted").Kernel  # type: ignore[no-any-return]


INTERPRETED_KERNEL = _interpreted()


def interpreted_normalise(batch: list[Any], dec: list[Any], table: list[Any],
                          general: Callable[[Any], Any]) -> SampleBatch:
    return INTERPRETED_KERNEL(dec, table).run(batch, general)[0]  # type: ignore[no-any-return]


def _compiled() -> Kernel | None:
    from pipelines import normalise_kernel

    return normalise_kernel.Kernel if normalise_kernel.COMPILED else None


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
    """The pure path's samples; the kernel's (both ways) equal them, and the time range the kernel notes
    is the samples' (or None, None when some sample went to the pure path or carries no int time)."""
    pure = stage._pure(list(batch))
    general_calls: list[Sample] = []

    def general(s: Sample) -> Sample:
        general_calls.append(s)
        return stage._one_pure(s)

    runs = {"interpreted": INTERPRETED_KERNEL(stage._dec, stage._table).run(list(batch), general)}
    compiled = _compiled()
    if compiled is not None:
        runs["compiled"] = compiled(stage._dec, stage._table).run(list(batch), stage._one_pure)
    times = [s[1] for s in batch]
    span = (min(times), max(times)) if times and not general_calls and all(type(t) is int for t in times) else None
    for name, (out, lo, hi) in runs.items():
        assert list(map(repr, out)) == list(map(repr, pure)), name
        assert [list(map(type, s)) for s in out] == [list(map(type, s)) for s in pure], name
        assert ((lo, hi) if lo is not None else None) == span, name
        assert (lo is None) is (hi is None), name
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

    out = interpreted_normalise(batch, STAGE._dec, STAGE._table, general)
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

    out = interpreted_normalise(odd[:-1], STAGE._dec, STAGE._table, general)
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
        _, lo, hi = stage.run(poll)
        if normalise_mod._KERNEL is not None:
            assert lo == hi == poll[0][1]  # a poll's one time, noted on the way


def test_as_read_samples_are_the_samples_themselves_compiled_too() -> None:
    """A gap, a bool, ASCII text, an as-read int or float: the kernel appends the sample itself, no copy,
    and a scaled register's sample keeps the index and time objects (no int made anew)."""
    big = 1000  # an index int beyond the small-int cache
    table_n = big + 1
    dec: list[Any] = [None] * table_n
    dec[big] = (0, 10, -math.inf, math.inf)
    table: list[Any] = [None] * table_n
    table[big] = (False, 0.1, 10, 0.0, None, None, True, 1.0, 0.0, None, None, 0)
    ts = 1_700_000_000_123_456_789
    batch: list[Any] = [(0, ts, None, Quality.BAD, "timeout"), (0, ts, True, Quality.GOOD, None),
                        (0, ts, "RUN", Quality.GOOD, None), (0, ts, 7, Quality.GOOD, None),
                        (0, ts, 1.5, Quality.GOOD, None), (big, ts, 2093, Quality.GOOD, None)]
    kernels = [INTERPRETED_KERNEL]
    if (compiled := _compiled()) is not None:
        kernels.append(compiled)
    for k in kernels:
        out, lo, hi = k(dec, table).run(list(batch), lambda s: pytest.fail(f"{s} went to the pure path"))
        assert all(o is s for o, s in zip(out[:5], batch[:5], strict=True)), k
        assert out[5] == (big, ts, 209.3, Quality.GOOD, None)
        assert out[5][0] is batch[5][0] and out[5][1] is batch[5][1], k
        assert lo == hi == ts


def test_the_time_range_of_blocks_and_odd_times() -> None:
    """Blocks stamped with their own times (a Modbus poll of several requests): the earliest and latest;
    a time that is not an int, a sample for the pure path, an empty batch: not known."""
    t1, t2, t3 = 1_700_000_000 * 10**9 + 5, 1_700_000_000 * 10**9 + 3, 1_700_000_000 * 10**9 + 9
    blocks = ([(1, t1, 2093 + i, Quality.GOOD, None) for i in range(3)] + [(0, t2, 7, Quality.GOOD, None)] * 2
              + [(1, t3, 5, Quality.GOOD, None), (0, t1, 8, Quality.GOOD, None)])
    kernels = [INTERPRETED_KERNEL]
    if (compiled := _compiled()) is not None:
        kernels.append(compiled)
    for k in kernels:
        kernel = k(STAGE._dec, STAGE._table)

        def run(batch: list[Any], kernel: Any = kernel) -> tuple[Any, ...]:
            return kernel.run(batch, STAGE._one_pure)[1:]  # type: ignore[no-any-return]

        assert run(blocks) == (t2, t3)
        assert run([]) == (None, None)
        assert run([(4, None, None, Quality.BAD, "x"), (4, t1, None, Quality.BAD, "x")]) == (None, None)
        assert run([(4, t1, None, Quality.BAD, "x"), (4, float(t1), None, Quality.BAD, "x")]) == (None, None)
        assert run([*blocks, (0, t1, float("nan"), Quality.GOOD, None)]) == (None, None)  # the pure path
    _three_ways(STAGE, blocks)


def test_a_stage_is_freed_without_the_cycle_collector() -> None:
    """No reference cycle between the stage and its kernel: gc.freeze() at start-up would keep such a
    cycle, and the old point table with it, after every config reload."""
    stage = Normalise(synthetic_catalog(100).specs)
    stage(SyntheticSource(100).poll())
    ref = weakref.ref(stage)
    gc.disable()
    try:
        del stage
        assert ref() is None
    finally:
        gc.enable()
