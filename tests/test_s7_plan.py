"""The read planner: every point covered, every request within the PDU and item limits, no value torn
across two answers, and no more requests than the packing needs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.s7.config import S7Point
from drivers.s7.plan import Plan, item_payload, items_per_request, lower_bound, plan
from drivers.s7.wire import read_request_size, read_response_size


def pts(*specs: Any) -> list[S7Point]:
    out = []
    for i, spec in enumerate(specs):
        address, *rest = spec if isinstance(spec, tuple) else (spec,)
        data: dict[str, Any] = {"name": f"p{i}", "address": address}
        if rest:
            data["data_type"] = rest[0]
        if len(rest) > 1:
            data["length"] = rest[1]
        out.append(S7Point.model_validate(data))
    return out


def check(p: Plan, points: list[S7Point], pdu: int, max_items: int) -> None:
    """The invariants of any plan."""
    covered: dict[int, int] = {}
    for r in p.ranges:
        for m in r.members:
            covered[m] = covered.get(m, 0) + 1
            lo, hi = points[m].span
            assert r.start <= lo and hi <= r.start + r.count
            assert (r.area_code, r.db) == (points[m].parsed.area.code, points[m].parsed.db)
    assert covered == {i: 1 for i in range(len(points))}
    chunks: dict[int, list[tuple[int, int]]] = {}
    for req in p.requests:
        assert 1 <= len(req) <= min(max_items, items_per_request(pdu, max_items))
        assert read_request_size(len(req)) <= pdu
        assert read_response_size([c.count for c in req]) <= pdu  # in the order the request asks
        for c in req:
            chunks.setdefault(c.range, []).append((c.offset, c.count))
    for k, rng in enumerate(p.ranges):
        parts = sorted(chunks[k])
        assert parts[0][0] == 0 and sum(n for _, n in parts) == rng.count
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(parts))
        if len(parts) > 1:  # split only where a point is wider than one answer carries ...
            cap = item_payload(pdu)
            assert any(points[m].span[1] - points[m].span[0] > cap for m in rng.members)
            for m in rng.members:  # ... and every narrower point still comes from one answer
                lo, hi = (x - rng.start for x in points[m].span)
                if hi - lo <= cap:
                    assert any(a <= lo and hi <= a + n for a, n in parts), (m, lo, hi, parts)


def test_neighbours_merge_into_one_item() -> None:
    points = pts(("DB10.DBD4", "real"), "DB10.DBX2.3", ("DB10.DBW0", "int"), ("DB10.DBB8", "lreal"), "MW10", "M0.1")
    p = plan(points, 480, 20, 32)
    check(p, points, 480, 20)
    assert len(p.requests) == 1
    assert sorted((r.area_code, r.db, r.start, r.count) for r in p.ranges) == [(0x83, 0, 0, 12), (0x84, 10, 0, 16)]


def test_gap_limit_and_areas_apart() -> None:
    points = pts("DB10.DBW0", "DB10.DBW40", "DB11.DBW2", "IW64", "QW64")
    p = plan(points, 480, 20, 16)
    check(p, points, 480, 20)
    assert len(p.ranges) == 5  # 38 unused bytes > max_gap; other DB and areas never merge
    assert len(plan(points, 480, 20, 38).ranges) == 4


def test_item_limit_sets_request_count() -> None:
    points = pts(*(f"DB{n}.DBW0" for n in range(1, 46)))  # 45 DBs: no merging possible
    p = plan(points, 960, 20, 32)
    check(p, points, 960, 20)
    assert len(p.requests) == 3 == lower_bound([2] * 45, 960, 20)
    p = plan(points, 240, 20, 32)  # at PDU 240 a request holds at most 19 items
    check(p, points, 240, 20)
    assert items_per_request(240, 20) == 19 and len(p.requests) == 3


def test_payload_limit_at_small_pdu() -> None:
    # 300 REALs in one DB: 1200 bytes; at PDU 240 an item carries at most 222 bytes
    points = pts(*((f"DB1.DBD{4 * i}", "real") for i in range(300)))
    p = plan(points, 240, 20, 32)
    check(p, points, 240, 20)
    assert all(r.count <= item_payload(240) for r in p.ranges)
    counts = [c.count for req in p.requests for c in req]
    assert len(p.requests) <= lower_bound(counts, 240, 20) + 1
    assert len(plan(points, 960, 20, 32).requests) == 2  # 1200 bytes + headers need two 960-byte answers


def test_long_string_is_chunked_only_when_wider_than_an_answer() -> None:
    points = pts(("DB5.DBB0", "wstring", 254), ("DB5.DBB600", "string", 100))  # 512 bytes and 102 bytes
    p = plan(points, 240, 20, 32)
    check(p, points, 240, 20)
    wide = next(r for r in p.ranges if r.count == 512)
    assert sum(1 for req in p.requests for c in req if c.range == p.ranges.index(wide)) == 3  # 222 + 222 + 68


def test_alone_points_are_not_merged() -> None:
    points = pts("DB1.DBW0", "DB1.DBW2", "DB1.DBW4")
    assert len(plan(points, 480, 20, 32).ranges) == 1
    p = plan(points, 480, 20, 32, alone={1})
    check(p, points, 480, 20)
    assert sorted(r.members for r in p.ranges) == [(0,), (1,), (2,)]
    assert len(p.requests) == 1


def test_odd_items_fill_the_pdu_exactly() -> None:
    # two items of 221 bytes: 14 + (4 + 221 + 1 fill byte) + (4 + 221, the last sends no fill byte) = 465
    points = pts(("DB1.DBB0", "string", 219), ("DB2.DBB0", "string", 219))
    p = plan(points, 465, 20, 0)
    check(p, points, 465, 20)
    assert len(p.requests) == 1
    assert len(plan(points, 464, 20, 0).requests) == 2


@st.composite
def point_lists(draw: st.DrawFn) -> list[S7Point]:
    n = draw(st.integers(1, 60))
    specs: list[Any] = []
    for _ in range(n):
        area = draw(st.sampled_from(["DB1.DB", "DB2.DB", "M", "I", "Q"]))
        byte = draw(st.integers(0, 2000))
        kind = draw(st.sampled_from(["bool", "byte", "int", "real", "lreal", "string", "wstring", "date_and_time"]))
        size = {"bool": "X", "int": "W", "real": "D"}.get(kind, "B")
        address = f"{area}{size}{byte}" + (f".{draw(st.integers(0, 7))}" if size == "X" else "")
        specs.append((address, kind, draw(st.integers(1, 254))) if "string" in kind else (address, kind))
    return pts(*specs)


def fewest(counts: list[int], pdu: int, max_items: int) -> int:
    """The true minimum number of requests, by trying every partition (small inputs only)."""
    best = len(counts)

    def go(i: int, bins: list[list[int]]) -> None:
        nonlocal best
        if len(bins) >= best:
            return
        if i == len(counts):
            best = len(bins)
            return
        for b in bins:
            ordered = sorted([*b, counts[i]], key=lambda n: n % 2)
            if len(b) < items_per_request(pdu, max_items) and read_response_size(ordered) <= pdu:
                b.append(counts[i])
                go(i + 1, bins)
                b.pop()
        bins.append([counts[i]])
        go(i + 1, bins)
        bins.pop()

    go(0, [])
    return best


@settings(max_examples=300, deadline=None)
@given(point_lists(), st.sampled_from([240, 480, 960]), st.integers(1, 40), st.integers(0, 64))
def test_plan_invariants(points: list[S7Point], pdu: int, max_items: int, gap: int) -> None:
    p = plan(points, pdu, max_items, gap)
    check(p, points, pdu, max_items)
    counts = [c.count for req in p.requests for c in req]
    assert len(p.requests) >= lower_bound(counts, pdu, max_items)
    if len(counts) <= 9:  # the packing of these items is optimal: no partition needs fewer requests
        assert len(p.requests) == fewest(counts, pdu, max_items)


@pytest.mark.parametrize("pdu", [240, 480, 960])
def test_hoist_plan_is_minimal(pdu: int) -> None:
    from firmware_stubs.s7_hoist import point_config

    points = [S7Point.model_validate(p) for p in point_config()]
    p = plan(points, pdu, 20, 32)
    check(p, points, pdu, 20)
    assert len(p.requests) == 1  # 22 points in 5 items: one request at any PDU size
