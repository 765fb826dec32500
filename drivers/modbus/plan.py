"""Request planning: the fewest reads that cover a device's points (pure, no I/O).

Points are grouped per function code, sorted by address, and merged into blocks of at most 125
registers, bridging gaps of up to ``max_gap`` unused registers.  Never one request per point.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.modbus.config import ModbusPoint, Table

__all__ = ["MAX_REGISTERS", "Block", "plan"]

MAX_REGISTERS = 125  # Modbus limit for FC 3 / FC 4


@dataclass(frozen=True, slots=True)
class Block:
    table: Table
    address: int
    count: int
    members: tuple[int, ...]  # positions in the device's point list


def plan(points: list[ModbusPoint], max_gap: int) -> list[Block]:
    blocks: list[Block] = []
    for table in Table:
        items = sorted(
            (p.address, p.address + p.data_type.registers, i) for i, p in enumerate(points) if p.table is table
        )
        start = end = -1
        members: list[int] = []
        for lo, hi, i in items:
            if members and lo - end <= max_gap and max(end, hi) - start <= MAX_REGISTERS:
                end = max(end, hi)
                members.append(i)
                continue
            if members:
                blocks.append(Block(table, start, end - start, tuple(members)))
            start, end, members = lo, hi, [i]
        if members:
            blocks.append(Block(table, start, end - start, tuple(members)))
    return blocks
