"""Request planning: the fewest reads that cover a device's points (pure, no I/O).

Points are grouped per function code, sorted by address, and merged greedily into blocks of at
most 125 registers (2000 bits for coils / discrete inputs), bridging gaps of up to ``max_gap``
unused addresses.  Never one request per point.  Greedy left-to-right merging is optimal here:
for sorted intervals with a length cap, extending the current block whenever the next point fits
cannot need more blocks than any other cover (exchange argument), which the property tests check.

When a device answers "illegal data address" for a block, the driver finds out which addresses it
refuses (see ``ModbusDriver``) and re-plans with them in ``unbridgeable``: a block never bridges such an
address, and a point covering one is read on its own (together only with views of exactly its
registers), so one wrong address in a tag list spoils only the points that read it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.modbus.config import Table

__all__ = ["MAX_BITS", "MAX_REGISTERS", "Block", "Span", "gap_addresses", "plan"]

MAX_REGISTERS = 125  # Modbus limit for FC 3 / FC 4
MAX_BITS = 2000  # Modbus limit for FC 1 / FC 2


class Span(Protocol):
    """The registers a point reads: a config model (``ModbusPoint``) or the driver's compact layout."""

    @property
    def table(self) -> Table: ...
    @property
    def address(self) -> int: ...
    @property
    def registers(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Block:
    table: Table
    address: int
    count: int
    members: tuple[int, ...]  # positions in the device's point list


def plan(
    points: Sequence[Span],
    max_gap: int,
    max_bit_gap: int = 64,
    unbridgeable: Collection[tuple[Table, int]] = (),
) -> list[Block]:
    bad = set(unbridgeable)
    blocks: list[Block] = []
    for table in Table:
        limit, gap = (MAX_BITS, max_bit_gap) if table.is_bit else (MAX_REGISTERS, max_gap)
        items = sorted((p.address, p.address + p.registers, i) for i, p in enumerate(points) if p.table is table)
        start = end = -1
        alone = False  # the current block is a point known to cover an unreadable address (and its aliases)
        members: list[int] = []
        for lo, hi, i in items:
            poisoned = bool(bad) and any((table, a) in bad for a in range(lo, hi))
            if members and (alone or poisoned):
                fits = alone and poisoned and (lo, hi) == (start, end)  # the same registers: read once
            else:
                fits = (
                    bool(members)
                    and lo - end <= gap
                    and max(end, hi) - start <= limit
                    and not any((table, a) in bad for a in range(end, lo))
                )
            if fits:
                end = max(end, hi)
                members.append(i)
                continue
            if members:
                blocks.append(Block(table, start, end - start, tuple(members)))
            start, end, members, alone = lo, hi, [i], poisoned
        if members:
            blocks.append(Block(table, start, end - start, tuple(members)))
    return blocks


def gap_addresses(block: Block, points: Sequence[Span]) -> set[tuple[Table, int]]:
    """Addresses inside ``block`` that no point covers: the ones a device may refuse."""
    covered: set[int] = set()
    for m in block.members:
        p = points[m]
        covered.update(range(p.address, p.address + p.registers))
    return {(block.table, a) for a in range(block.address, block.address + block.count) if a not in covered}
