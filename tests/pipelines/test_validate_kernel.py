"""The clock check with and without its compiled scan (pipelines/validate_kernel.py): the same samples
and counters from the pure-Python check, the kernel interpreted and the kernel compiled (the native
build), for times in range, before the valid floor, in the future, of other types, and clock steps."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipelines.validate as validate
from gateway.core.point import Quality, SampleBatch
from pipelines.validate import ClockCheck
from tests.conftest import IN_CI

__all__: list[str] = []

Scan = Callable[[SampleBatch, int, int], bool]


def _interpreted() -> Scan:
    spec = importlib.util.spec_from_file_location("validate_kernel_interpreted",
                                                  Path(validate.__file__).with_name("validate_kernel.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.COMPILED is False
    return mod.times_within  # type: ignore[no-any-return]


INTERPRETED = _interpreted()


def _compiled() -> Scan | None:
    from pipelines import validate_kernel

    return validate_kernel.times_within if validate_kernel.COMPILED else None


FLOOR = 1_500_000_000_000_000_000
WALL = 1_700_000_000_000_000_000


def _run(scan: Scan | None, batches: list[tuple[list[Any], int, int]]) -> list[str]:
    saved = validate._TIMES_WITHIN
    validate._TIMES_WITHIN = scan
    try:
        check = ClockCheck(2_000_000_000, 2_000_000_000, FLOOR)
        out = [repr(check(list(b), wall, mono)) for b, wall, mono in batches]
        return [*out, repr((check.jumps, check.unsynced, check.clock_valid, check.last_step_ns))]
    finally:
        validate._TIMES_WITHIN = saved


one_time = st.integers(FLOOR - 10, WALL + 3_000_000_000)
times = st.one_of(one_time, st.sampled_from([WALL, WALL + 1, 0, -1, 2**62, 2**63]), st.floats(1.6e18, 1.8e18),
                  st.booleans())
sample = st.tuples(st.integers(0, 5), times, st.floats(allow_nan=False), st.sampled_from(list(Quality)),
                   st.none())


@st.composite
def polls(draw: st.DrawFn) -> list[Any]:
    if draw(st.booleans()):  # a poll stamped with one time object, as drivers do
        t = draw(one_time)
        return [(i, t, 1.0, Quality.GOOD, None) for i in range(draw(st.integers(1, 6)))]
    return draw(st.lists(sample, max_size=8))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(polls(), st.sampled_from([WALL, WALL + 5_000_000_000, FLOOR - 1]),
                          st.sampled_from([1000, 1000, 9_000_000_000])), min_size=1, max_size=4))
def test_the_clock_check_is_the_same_with_the_scan(batches: list[tuple[list[Any], int, int]]) -> None:
    pure = _run(None, batches)
    assert _run(INTERPRETED, batches) == pure
    compiled = _compiled()
    if compiled is not None:
        assert _run(compiled, batches) == pure


def test_the_scan() -> None:
    t = WALL - 5
    poll: SampleBatch = [(i, t, 1.0, Quality.GOOD, None) for i in range(3)]
    assert INTERPRETED(poll, FLOOR, WALL) is True
    assert INTERPRETED(poll, FLOOR, WALL - 6) is False  # in the future
    assert INTERPRETED([*poll, (3, FLOOR - 1, 1.0, Quality.GOOD, None)], FLOOR, WALL) is False  # unsynced
    odd: list[Any] = [(0, float(t), 1.0, Quality.GOOD, None)]
    assert INTERPRETED(odd, FLOOR, WALL) is False  # not an int: the pure-Python check decides
    assert INTERPRETED([], FLOOR, WALL) is True


def test_the_check_uses_the_compiled_scan_when_built() -> None:
    compiled = _compiled()
    if compiled is None:
        if IN_CI and os.environ.get("EDGEGW_PURE_PYTHON", "") in ("", "0"):
            pytest.fail("the native build is missing: `pip install -e .` compiles it (mypyc and gcc)")
        pytest.skip("no native build here (pure-Python install)")
    assert validate._TIMES_WITHIN is compiled or os.environ.get("EDGEGW_PURE_PYTHON", "") not in ("", "0")
