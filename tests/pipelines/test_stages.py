"""The normalisation stages: table-driven cases and hypothesis properties (pure, no servers)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.point import Quality, Sample, SampleBatch
from gateway.core.units import UnitError, conversion
from pipelines.alarms import AlarmStage, Level, next_level
from pipelines.deadband import Deadband
from pipelines.normalise import Normalise
from pipelines.pipeline import Pipeline
from pipelines.spec import AlarmSpec, PointSpec
from pipelines.validate import ClockCheck, Plausibility

S = 1_000_000_000  # one second in ns


def good(idx: int, ts: int, v: float | int | bool | str) -> Sample:
    return (idx, ts, v, Quality.GOOD, None)


def spec_4_20(eng_low: float = 0.0, eng_high: float = 4.0, **kw: object) -> PointSpec:
    scale = (eng_high - eng_low) / 16
    return PointSpec(scale=scale, offset=eng_low - 4 * scale, raw_fault_low=3.6, raw_fault_high=21.0, **kw)  # type: ignore[arg-type]


# --- normalise -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (4.0, (0.0, Quality.GOOD, None)),
        (20.0, (4.0, Quality.GOOD, None)),
        (12.0, (2.0, Quality.GOOD, None)),
        (3.7, (pytest.approx(-0.075), Quality.GOOD, None)),  # under-range but not a fault
        (3.5, (None, Quality.BAD, "signal_fault")),  # broken loop (NAMUR NE 43)
        (21.5, (None, Quality.BAD, "signal_fault")),
        (float("nan"), (None, Quality.BAD, "nan")),
        (float("inf"), (None, Quality.BAD, "signal_fault")),  # beyond the fault limit first
    ],
)
def test_4_20_ma_scaling_and_fault_limits(raw: float, expected: tuple[object, Quality, str | None]) -> None:
    _, _, v, q, r = Normalise([spec_4_20()]).one(good(0, 1, raw))
    assert (v, q, r) == expected


def test_raw_counts_unit_conversion_and_range() -> None:
    specs = [
        PointSpec(scale=100 / 27648),  # Siemens analogue input: 0..27648 counts -> 0..100 %
        PointSpec(conv_factor=conversion("ppm", "%").factor, max=1.0),  # ppm -> % by volume
        PointSpec(conv_factor=conversion("degF", "degC").factor, conv_offset=conversion("degF", "degC").offset),
        PointSpec(min=0.0, max=100.0),
        PointSpec(),
    ]
    n = Normalise(specs)
    out = n([good(0, 1, 13824), good(1, 1, 5000), good(1, 2, 20000), good(2, 1, 212.0), good(3, 1, -0.1),
             good(4, 1, float("-inf")), good(4, 2, True), (4, 3, None, Quality.BAD, "timeout")])
    assert out[0][2] == pytest.approx(50.0)
    assert out[1][2] == pytest.approx(0.5)
    assert out[2][2:4] == (None, Quality.BAD)  # 2 % is above max = 1.0
    assert out[3][2] == pytest.approx(100.0)
    assert out[4][2:] == (None, Quality.BAD, "out_of_range")
    assert out[5][2:] == (None, Quality.BAD, "inf")
    assert out[6] == good(4, 2, True)  # booleans are never scaled
    assert out[7] == (4, 3, None, Quality.BAD, "timeout")


def test_unit_table_refuses_unknown_and_mismatched_units() -> None:
    with pytest.raises(UnitError, match="unknown unit 'furlong'"):
        conversion("furlong", "m")
    with pytest.raises(UnitError, match="cannot convert 'ppm'"):
        conversion("ppm", "degC")
    assert conversion("kPa", "Pa").factor == 1000
    assert conversion("K", "degC")(273.15) == pytest.approx(0.0)


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)


@given(
    raw=st.lists(finite_or_not, min_size=1, max_size=50),
    lo=st.floats(-1e6, 1e6),
    span=st.floats(1e-3, 1e6),
    scale=st.floats(-1e3, 1e3).filter(lambda x: abs(x) > 1e-6),
)
def test_normalise_never_emits_a_non_finite_or_out_of_range_number(
    raw: list[float], lo: float, span: float, scale: float
) -> None:
    spec = PointSpec(scale=scale, offset=1.5, min=lo, max=lo + span)
    out = Normalise([spec])([good(0, i, v) for i, v in enumerate(raw)])
    assert len(out) == len(raw)
    for (_, ts, v, q, r), (_, ts_in, _, _, _) in zip(out, [good(0, i, v) for i, v in enumerate(raw)], strict=True):
        assert ts == ts_in  # the source time is never changed
        if q is Quality.BAD:
            assert v is None and r in ("nan", "inf", "out_of_range")
        else:
            assert isinstance(v, float) and math.isfinite(v) and lo <= v <= lo + span


@given(raw=st.floats(4.0, 20.0), lo=st.floats(-100, 100), span=st.floats(0.1, 1000))
def test_4_20_scaling_maps_the_signal_range_onto_the_engineering_range(raw: float, lo: float, span: float) -> None:
    _, _, v, q, _ = Normalise([spec_4_20(lo, lo + span)]).one(good(0, 1, raw))
    assert q is Quality.GOOD and isinstance(v, float)
    assert lo - 1e-9 * span <= v <= lo + span + 1e-9 * span
    assert v == pytest.approx(lo + (raw - 4) / 16 * span, rel=1e-9, abs=1e-9)


# --- plausibility and clock ------------------------------------------------------------------


def test_spike_is_flagged_and_a_confirmed_level_shift_is_accepted() -> None:
    p = Plausibility([PointSpec(spike_delta=0.5)])
    values = [1.0, 1.1, 5.0, 1.2, 3.0, 3.1, 3.2]
    out = p([good(0, i * S, v) for i, v in enumerate(values)])
    assert [(q, r) for _, _, _, q, r in out] == [
        (Quality.GOOD, None),
        (Quality.GOOD, None),
        (Quality.UNCERTAIN, "spike"),  # one-sample spike
        (Quality.GOOD, None),
        (Quality.UNCERTAIN, "spike"),  # first sample of a step
        (Quality.GOOD, None),  # confirmed: the new level is real
        (Quality.GOOD, None),
    ]
    assert [v for _, _, v, _, _ in out] == values  # values are kept, only quality changes


def test_stuck_value_is_flagged_after_the_configured_source_time() -> None:
    p = Plausibility([PointSpec(stuck_after_ns=10 * S)])
    out = p([good(0, t * S, 0.42) for t in range(0, 15, 2)] + [good(0, 16 * S, 0.43)])
    assert [r for *_, r in out] == [None, None, None, None, None, "stuck", "stuck", "stuck", None]


def test_clock_check_flags_future_samples_and_clock_jumps() -> None:
    c = ClockCheck(future_tolerance_ns=2 * S, jump_tolerance_ns=1 * S)
    wall, mono = 1_000 * S, 5 * S
    batch = [good(0, wall, 1.0), good(0, wall + 3 * S, 1.0), (0, wall + 9 * S, None, Quality.BAD, "timeout")]
    out = c(batch, wall, mono)
    assert [(q, r) for *_, q, r in out] == [
        (Quality.GOOD, None), (Quality.UNCERTAIN, "future_timestamp"), (Quality.BAD, "timeout")]
    # one second of monotonic time later, the wall clock moved 60 s: NTP stepped it
    out = c([good(0, wall + 61 * S, 1.0)], wall + 61 * S, mono + S)
    assert out[0][3:] == (Quality.UNCERTAIN, "clock_jump") and c.jumps == 1
    out = c([good(0, wall + 62 * S, 1.0)], wall + 62 * S, mono + 2 * S)
    assert out[0][3:] == (Quality.GOOD, None)


# --- deadband --------------------------------------------------------------------------------


samples_strategy = st.lists(
    st.tuples(
        st.integers(0, 5 * S),  # gap to the previous sample
        st.one_of(st.floats(-100, 100), st.none()),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=200)
@given(seq=samples_strategy, band=st.floats(0, 10), silence_s=st.integers(1, 20))
def test_deadband_properties(seq: list[tuple[int, float | None]], band: float, silence_s: int) -> None:
    batch: SampleBatch = []
    ts = 0
    for gap, v in seq:
        ts += gap
        batch.append(good(0, ts, v) if v is not None else (0, ts, None, Quality.BAD, "timeout"))
    d = Deadband([PointSpec(deadband=band, max_silence_ns=silence_s * S)])
    # fed in arbitrary slices: batch-wise processing must not depend on batch boundaries
    out = d(batch[: len(batch) // 2]) + d(batch[len(batch) // 2 :])
    assert out[0] == batch[0]  # the first sample always goes
    assert all(s in batch for s in out)  # nothing invented or altered
    assert d.suppressed == len(batch) - len(out)
    sent = iter(out)
    last = next(sent)
    nxt = next(sent, None)
    for s in batch[1:]:
        if s == nxt:
            last, nxt = s, next(sent, None)
            continue
        # suppressed: same quality, within the band of the last forwarded value, within the heartbeat
        assert s[3] == last[3] and s[4] == last[4]
        assert s[1] - last[1] < silence_s * S
        if s[2] is not None and last[2] is not None:
            assert isinstance(s[2], float) and isinstance(last[2], float)
            assert abs(s[2] - last[2]) <= band
    assert nxt is None


def test_deadband_percent_of_span_and_heartbeat() -> None:
    d = Deadband([PointSpec(deadband=0.01 * 100, max_silence_ns=60 * S)])  # 1 % of a 0..100 span
    out = d([good(0, 0, 50.0), good(0, S, 50.5), good(0, 2 * S, 51.2), good(0, 3 * S, 50.6), good(0, 63 * S, 50.6)])
    assert [s[1] for s in out] == [0, 2 * S, 63 * S]


# --- alarms ----------------------------------------------------------------------------------

T1 = AlarmSpec(high=1.0, power_off=1.5, restore=1.0, hysteresis=0.05)


def test_ch4_alarm_power_off_and_restore_sequence() -> None:
    stage = AlarmStage([PointSpec(alarm=T1)])
    values = [0.5, 0.99, 1.0, 0.97, 1.49, 1.5, 1.2, 1.0, 0.99, 0.96, 0.94, 1.6]
    events = stage([good(0, i, v) for i, v in enumerate(values)])
    assert [(e.ts_ns, e.previous, e.level) for e in events] == [
        (2, Level.NORMAL, Level.HIGH),  # reaching 1.0 % is an alarm (>=)
        (5, Level.HIGH, Level.POWER_OFF),
        (8, Level.POWER_OFF, Level.HIGH),  # below restore (1.0), still within the alarm hysteresis
        (10, Level.HIGH, Level.NORMAL),  # below 1.0 - 0.05
        (11, Level.NORMAL, Level.POWER_OFF),
    ]
    assert [e.threshold for e in events] == [1.0, 1.5, 1.0, 1.0, 1.5]


def test_low_and_switch_alarms_and_bad_samples_do_not_move_the_level() -> None:
    stage = AlarmStage([PointSpec(alarm=AlarmSpec(low=20.0, hysteresis=0.2)), PointSpec(alarm=AlarmSpec(state=False))])
    events = stage([
        good(0, 1, 20.5), good(0, 2, 19.9), (0, 3, None, Quality.BAD, "timeout"), good(0, 4, 20.1), good(0, 5, 20.2),
        good(1, 1, True), good(1, 2, False), good(1, 3, True),
    ])
    assert [(e.index, e.ts_ns, e.level) for e in events] == [
        (0, 2, Level.LOW), (0, 5, Level.NORMAL), (1, 2, Level.STATE), (1, 3, Level.NORMAL)]


@settings(max_examples=300)
@given(values=st.lists(st.floats(0, 3), min_size=1, max_size=60), h=st.floats(0, 0.3))
def test_alarm_levels_are_consistent(values: list[float], h: float) -> None:
    a = AlarmSpec(high=1.0, power_off=1.5, restore=1.0, hysteresis=h)
    stage = AlarmStage([PointSpec(alarm=a)])
    events = stage([good(0, i, v) for i, v in enumerate(values)])
    level = Level.NORMAL
    for e in events:  # a chain: each event starts where the previous one ended
        assert e.previous is level and e.level is not level
        level = e.level
    assert stage.level(0) is level
    for i, v in enumerate(values):  # thresholds are always honoured, whatever came before
        lvl = max((e for e in events if e.ts_ns <= i), key=lambda e: e.ts_ns, default=None)
        now = lvl.level if lvl else Level.NORMAL
        if v >= 1.5:
            assert now is Level.POWER_OFF
        elif v >= 1.0:
            assert now >= Level.HIGH
        elif v < 1.0 - h:
            assert now is Level.NORMAL


@given(v=st.floats(0, 3), h=st.floats(0, 0.3))
def test_a_value_held_steady_never_raises_more_than_one_event(v: float, h: float) -> None:
    a = AlarmSpec(high=1.0, power_off=1.5, restore=1.0, hysteresis=h)
    assert next_level(a, next_level(a, Level.NORMAL, v), v) is next_level(a, Level.NORMAL, v)


# --- the pipeline ----------------------------------------------------------------------------


def test_pipeline_order_alarms_see_what_the_deadband_drops_and_kept_points_never_leave() -> None:
    specs = [
        PointSpec(deadband=5.0, max_silence_ns=3600 * S, alarm=AlarmSpec(high=1.0)),
        PointSpec(forward=False, alarm=AlarmSpec(high=1.0)),
    ]
    p = Pipeline(specs, min_valid_ns=0)  # timestamps near 0: no clock floor
    batch, events = p([good(0, 1, 0.1), good(0, 2, 1.1), good(1, 1, 2.0), good(0, 3, float("nan"))], 10, 0)
    assert [(e.index, e.level) for e in events] == [(0, Level.HIGH), (1, Level.HIGH)]
    assert batch == [good(0, 1, 0.1), (0, 3, None, Quality.BAD, "nan")]  # 1.1 is inside the deadband
    assert p.counters.kept_on_site == 1 and p.counters.samples_in == 4 and p.counters.samples_out == 2


@given(
    values=st.lists(st.one_of(st.floats(-10, 10), st.none()), min_size=1, max_size=60),
    delta=st.one_of(st.none(), st.floats(0.01, 5)),
    stuck_s=st.one_of(st.none(), st.integers(1, 10)),
)
def test_plausibility_only_ever_downgrades_good_to_uncertain(
    values: list[float | None], delta: float | None, stuck_s: int | None
) -> None:
    p = Plausibility([PointSpec(spike_delta=delta, stuck_after_ns=stuck_s * S if stuck_s else None)])
    batch: SampleBatch = [good(0, i * S, v) if v is not None else (0, i * S, None, Quality.BAD, "timeout")
                          for i, v in enumerate(values)]
    out = p(batch)
    assert len(out) == len(batch)
    for before, after in zip(batch, out, strict=True):
        assert after[:3] == before[:3]  # index, time and value are never touched
        if after != before:
            assert before[3] is Quality.GOOD and after[3] is Quality.UNCERTAIN and after[4] in ("spike", "stuck")
    if delta is None and stuck_s is None:
        assert out == batch


alarm_specs = st.one_of(
    st.none(),
    st.builds(AlarmSpec, high=st.just(1.0), power_off=st.just(1.5), restore=st.just(1.0), hysteresis=st.floats(0, .3)),
    st.builds(AlarmSpec, low=st.just(0.2), hysteresis=st.floats(0, 0.1)),
)
point_specs = st.builds(
    PointSpec,
    scale=st.floats(-100, 100).filter(lambda x: abs(x) > 1e-3),
    offset=st.floats(-10, 10),
    min=st.one_of(st.none(), st.just(-5.0)),
    max=st.one_of(st.none(), st.just(5.0)),
    spike_delta=st.one_of(st.none(), st.floats(0.1, 10)),
    stuck_after_ns=st.one_of(st.none(), st.integers(1, 10 * S)),
    deadband=st.one_of(st.none(), st.floats(0, 1)),
    max_silence_ns=st.one_of(st.none(), st.integers(1, 10 * S)),
    alarm=alarm_specs,
    forward=st.booleans(),
)
raw_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-70000, 70000), st.booleans(),
                       st.none())


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(point_specs, min_size=1, max_size=4), data=st.data())
def test_the_whole_pipeline_never_emits_a_bad_number(specs: list[PointSpec], data: st.DataObject) -> None:
    p = Pipeline(specs)
    n = len(specs)
    for b in range(3):
        rows = data.draw(st.lists(st.tuples(st.integers(0, n - 1), raw_values), max_size=30))
        batch: SampleBatch = [
            (i, b * S + k, v, Quality.GOOD, None) if v is not None else (i, b * S + k, None, Quality.BAD, "timeout")
            for k, (i, v) in enumerate(rows)
        ]
        out, events = p(batch, b * S, b * S)
        assert len(out) <= len(batch)
        for idx, _ts, v, q, r in out:
            assert specs[idx].forward  # kept-on-site points never come out
            if q is Quality.BAD:
                assert v is None and r
            elif isinstance(v, float):
                assert math.isfinite(v)
                lo, hi = specs[idx].min, specs[idx].max
                assert (lo is None or v >= lo) and (hi is None or v <= hi)
        for e in events:
            assert specs[e.index].alarm is not None and e.level is not e.previous
