"""The request planner: coverage, protocol limits and minimality (property-based), gap splitting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.config import DataType, ModbusPoint, Table
from drivers.modbus.plan import MAX_BITS, MAX_REGISTERS, gap_addresses, plan

WIDTHS = {DataType.UINT16: 1, DataType.FLOAT32: 2, DataType.FLOAT64: 4}


def point(i: int, table: Table, address: int, data_type: DataType = DataType.UINT16) -> ModbusPoint:
    if table.is_bit:
        data_type = DataType.BOOL
    return ModbusPoint(name=f"p{i}", table=table, address=address, data_type=data_type)


points_strategy = st.lists(
    st.tuples(st.sampled_from(list(Table)), st.integers(0, 3000), st.sampled_from(list(WIDTHS))),
    min_size=1,
    max_size=60,
).map(lambda items: [point(i, t, a, d) for i, (t, a, d) in enumerate(items)])


def optimum(points: list[ModbusPoint], table: Table, gap: int) -> int:
    """Fewest blocks for one table, by dynamic programming over runs of start-sorted points (oracle)."""
    limit = MAX_BITS if table.is_bit else MAX_REGISTERS
    spans = sorted((p.address, p.address + p.registers) for p in points if p.table is table)
    n = len(spans)
    best = [0] + [n + 1] * n
    for i in range(n):
        end = spans[i][1]
        for j in range(i, n):
            lo, hi = spans[j]
            if j > i:
                if lo - end > gap:
                    break
                end = max(end, hi)
            if end - spans[i][0] > limit:
                break
            best[j + 1] = min(best[j + 1], best[i] + 1)
    return best[n]


@settings(max_examples=300, deadline=None)
@given(points_strategy, st.integers(0, 40), st.integers(0, 200))
def test_plan_covers_each_point_once_within_limits_and_is_minimal(
    points: list[ModbusPoint], gap: int, bit_gap: int
) -> None:
    blocks = plan(points, gap, bit_gap)
    members = sorted(m for b in blocks for m in b.members)
    assert members == list(range(len(points)))
    for b in blocks:
        assert b.count <= (MAX_BITS if b.table.is_bit else MAX_REGISTERS)
        for m in b.members:
            p = points[m]
            assert p.table is b.table
            assert b.address <= p.address and p.address + p.registers <= b.address + b.count
    for table in Table:
        g = bit_gap if table.is_bit else gap
        assert sum(b.table is table for b in blocks) == optimum(points, table, g)


def test_one_read_for_a_dense_table_and_a_split_at_125() -> None:
    pts = [point(i, Table.HOLDING_REGISTER, i) for i in range(250)]
    blocks = plan(pts, 0)
    assert [(b.address, b.count) for b in blocks] == [(0, 125), (125, 125)]


def test_bits_merge_up_to_2000() -> None:
    pts = [point(0, Table.COIL, 0), point(1, Table.COIL, 1999), point(2, Table.COIL, 2000)]
    assert [(b.address, b.count) for b in plan(pts, 0, 2000)] == [(0, 2000), (2000, 1)]


def test_an_unreadable_gap_splits_the_block_and_stays_split() -> None:
    pts = [point(0, Table.HOLDING_REGISTER, 0), point(1, Table.HOLDING_REGISTER, 10, DataType.FLOAT32)]
    (block,) = plan(pts, 16)
    gaps = gap_addresses(block, pts)
    assert gaps == {(Table.HOLDING_REGISTER, a) for a in range(1, 10)}
    assert [(b.address, b.count) for b in plan(pts, 16, unbridgeable=gaps)] == [(0, 1), (10, 2)]


def test_a_point_on_an_unreadable_address_is_read_alone_with_its_exact_aliases() -> None:
    hr = Table.HOLDING_REGISTER
    pts = [point(0, hr, 0), point(1, hr, 1, DataType.FLOAT32), point(2, hr, 1, DataType.FLOAT32), point(3, hr, 2),
           point(4, hr, 4)]
    assert [(b.address, b.count, b.members) for b in plan(pts, 16)] == [(0, 5, (0, 1, 2, 3, 4))]
    blocks = plan(pts, 16, unbridgeable={(hr, 2)})  # the float32s and point 3 cover register 2
    assert [(b.address, b.count, b.members) for b in blocks] == [(0, 1, (0,)), (1, 2, (1, 2)), (2, 1, (3,)),
                                                                   (4, 1, (4,))]
