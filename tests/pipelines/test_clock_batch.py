"""ClockCheck decides the common batch (no step, every time inside [floor, now + tolerance]) from the
minimum and maximum of its time column; every other batch sample by sample.  Both agree with the
per-sample rules, at the edges of the window too."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.point import Quality, Sample, SampleBatch
from pipelines.validate import ClockCheck

__all__: list[str] = []

S = 1_000_000_000
FLOOR = 1_700_000_000 * S
TOL = 2 * S
JUMP = 2 * S


def reference(batch: SampleBatch, jumped: bool, wall: int) -> SampleBatch:
    out: SampleBatch = []
    for i, t, v, q, r in batch:
        if q is not Quality.GOOD:
            out.append((i, t, v, q, r))
        elif wall < FLOOR or t < FLOOR:
            out.append((i, t, v, Quality.UNCERTAIN, "clock_unsynced"))
        elif jumped:
            out.append((i, t, v, Quality.UNCERTAIN, "clock_jump"))
        elif t > wall + TOL:
            out.append((i, t, v, Quality.UNCERTAIN, "future_timestamp"))
        else:
            out.append((i, t, v, q, r))
    return out


# times at and around the edges: the floor, the wall clock, the future limit
EDGES = st.sampled_from([-1, 0, 1])


@st.composite
def batches(draw: st.DrawFn, wall: int) -> SampleBatch:
    n = draw(st.integers(0, 30))
    batch: SampleBatch = []
    for k in range(n):
        where = draw(st.sampled_from(["inside", "floor", "limit", "far_past", "far_future", "wall"]))
        t = {"inside": wall - draw(st.integers(0, 10 * S)), "floor": FLOOR + draw(EDGES),
             "limit": wall + TOL + draw(EDGES), "far_past": draw(st.integers(0, FLOOR)),
             "far_future": wall + TOL + draw(st.integers(1, 10**6 * S)), "wall": wall}[where]
        q = draw(st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.BAD]))
        batch.append((k, t, float(k), q, None if q is Quality.GOOD else "r"))
    return batch


@given(st.data(), st.lists(st.tuples(st.integers(-10 * S, 10**5 * S), st.integers(-3 * S, 3 * S)), min_size=1,
                           max_size=6))
def test_clock_check_matches_the_per_sample_rules(data: st.DataObject, steps: list[tuple[int, int]]) -> None:
    """A sequence of batches: the wall clock advancing and stepping (relative to the monotonic clock)
    by various amounts, before and after the floor; each batch's times near the edges."""
    check = ClockCheck(TOL, JUMP, FLOOR)
    wall, mono = FLOOR + 100 * S, 5 * S
    offset: int | None = None
    for advance, step in steps:
        mono += abs(advance)
        wall += abs(advance) + step
        batch = data.draw(batches(wall))
        new_offset = wall - mono
        jumped = offset is not None and abs(new_offset - offset) > JUMP
        offset = new_offset
        jumps, unsynced = check.jumps, check.unsynced
        # the range of the times given (as the normalise stage notes it) or scanned: the same result
        twin = ClockCheck(TOL, JUMP, FLOOR)
        twin._offset, twin.jumps = check._offset, check.jumps
        times = [s[1] for s in batch]
        ranged = twin(batch, wall, mono, min(times, default=None), max(times, default=None))
        got = check(batch, wall, mono)
        assert got == reference(batch, jumped, wall)
        assert ranged == got and (ranged is batch) is (got is batch)
        assert check.jumps == jumps + jumped and twin.jumps == check.jumps
        assert check.clock_valid is (wall >= FLOOR) and twin.clock_valid is check.clock_valid
        assert twin.unsynced == check.unsynced - unsynced


def test_the_common_batch_passes_as_it_is() -> None:
    check = ClockCheck(TOL, JUMP, FLOOR)
    wall = FLOOR + 100 * S
    batch: list[Sample] = [(0, FLOOR, 1.0, Quality.GOOD, None), (1, wall + TOL, 2.0, Quality.GOOD, None)]
    assert check(batch, wall, 0) is batch  # both edges inside: no copy
    late = [*batch, (2, wall + TOL + 1, 3.0, Quality.GOOD, None)]
    assert check(late, wall, 0)[2][4] == "future_timestamp"
    early = [(0, FLOOR - 1, 1.0, Quality.GOOD, None), *batch]
    assert check(early, wall, 0)[0][4] == "clock_unsynced"
    assert check([], wall, 0) == []


def test_a_poll_stamped_with_one_time_is_checked_by_that_time() -> None:
    check = ClockCheck(TOL, JUMP, FLOOR)
    wall = FLOOR + 100 * S
    for t, reason in ((wall, None), (wall + TOL, None), (wall + TOL + 1, "future_timestamp"),
                      (FLOOR, None), (FLOOR - 1, "clock_unsynced")):
        poll: SampleBatch = [(i, t, float(i), Quality.GOOD, None) for i in range(50)]
        got = check(poll, wall, 0)
        assert [s[4] for s in got] == [reason] * 50
        assert (got is poll) is (reason is None)


def test_a_poll_whose_time_range_is_given_is_not_scanned() -> None:
    """The times' range given (the normalise stage's) decides the common batch; the flags stay the
    per-sample rules' when it is outside the window, after a step, or while the clock is unset."""
    check = ClockCheck(TOL, JUMP, FLOOR)
    wall = FLOOR + 100 * S
    for lo, hi, reasons in ((wall, wall, [None, None]), (FLOOR, wall + TOL, [None, None]),
                            (FLOOR - 1, wall, ["clock_unsynced", None]),
                            (wall, wall + TOL + 1, [None, "future_timestamp"])):
        poll: SampleBatch = [(0, lo, 1.0, Quality.GOOD, None), (1, hi, 2.0, Quality.GOOD, None)]
        got = check(poll, wall, 0, lo, hi)
        assert [s[4] for s in got] == reasons
        assert (got is poll) is (reasons == [None, None])
    stepped: SampleBatch = [(0, wall + 10 * S, 1.0, Quality.GOOD, None)]
    assert check(stepped, wall + 10 * S, 0, wall + 10 * S, wall + 10 * S)[0][4] == "clock_jump"
    unset = ClockCheck(TOL, JUMP, FLOOR)
    assert unset([(0, 5, 1.0, Quality.GOOD, None)], 5, 0, 5, 5)[0][4] == "clock_unsynced"
    assert unset.unsynced == 1 and unset.clock_valid is False
