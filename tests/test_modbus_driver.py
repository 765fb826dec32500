"""The Modbus TCP driver against a real pymodbus server: every layout, coils, and gap splitting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from drivers.modbus.config import ModbusTcpDevice, Table
from drivers.modbus.driver import ModbusTcpDriver
from gateway.core.point import Quality
from hil.services import free_port
from tests.test_modbus_decode import CASES

STRING_AT = 200  # "MINE-1" in AB layout, 4 registers
BITS_AT = 210  # a status word with bits 0 and 15 set


def _register_image() -> tuple[list[int], list[dict[str, Any]]]:
    """Every case of the decode table at its own address (two spare registers apart), plus its point."""
    image = [0] * 220
    points: list[dict[str, Any]] = []
    address = 0
    for n, (data_type, order, registers, _expected) in enumerate(CASES):
        image[address : address + len(registers)] = registers
        points.append({"name": f"c{n}", "address": address, "data_type": data_type.value, "byte_order": order.value})
        address += len(registers) + 2
    assert address < STRING_AT
    image[STRING_AT : STRING_AT + 4] = [0x4D49, 0x4E45, 0x2D31, 0]
    image[BITS_AT] = 0x8001
    points += [
        {"name": "label", "address": "40201", "data_type": "string", "length": 4},  # 1-based notation
        {"name": "b0", "address": BITS_AT, "data_type": "bool", "bit": 0},
        {"name": "b1", "address": BITS_AT, "data_type": "bool", "bit": 1},
        {"name": "b15", "address": BITS_AT, "data_type": "bool", "bit": 15},
        {"name": "coil2", "table": "coil", "address": 2, "data_type": "bool"},
        {"name": "di0", "address": "100001", "data_type": "bool"},
        {"name": "mode", "table": "input_register", "address": 0, "enum": {"0": "stopped", "7": "running"}},
        {"name": "hole", "table": "input_register", "address": 10},
    ]
    return image, points


@pytest_asyncio.fixture(loop_scope="function")  # the server must run on the test's loop
async def server() -> AsyncIterator[int]:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    image, _ = _register_image()
    port = free_port()
    device = SimDevice(
        1,
        simdata=(
            [SimData(0, values=[False, False, True, False], datatype=SimType.BITS)],
            [SimData(0, values=[True], datatype=SimType.BITS)],
            [SimData(0, values=image, datatype=SimType.REGISTERS)],
            # input registers 1..9 do not exist: a bridged read of 0..10 is refused
            [SimData(0, values=[7], datatype=SimType.REGISTERS), SimData(10, values=[42], datatype=SimType.REGISTERS)],
        ),
    )
    srv = ModbusTcpServer([device], address=("127.0.0.1", port))
    task = asyncio.create_task(srv.serve_forever())
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        break
    yield port
    await srv.shutdown()  # type: ignore[no-untyped-call]  # pymodbus is untyped
    task.cancel()


async def test_every_layout_and_table_from_a_real_server(server: int) -> None:
    _, points = _register_image()
    cfg = ModbusTcpDevice.model_validate(
        {"type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": server, "points": points, "max_gap": 16}
    )
    names = [p.name for p in cfg.points]
    async with ModbusTcpDriver(cfg, first_index=100) as drv:
        first = {names[i - 100]: (v, q, why) for i, _ts, v, q, why in await drv.read()}
        # input registers 1..9 do not exist: the bridged read 0..10 is refused once, narrowed down in
        # the same poll (both points read alone), and split from then on
        check_image_values(first)
        assert drv.unbridgeable == {(Table.INPUT_REGISTER, a) for a in range(1, 10)}
        second = {names[i - 100]: (v, q, why) for i, _ts, v, q, why in await drv.read()}
        assert drv.requests_per_poll == 7  # 3 holding (125 cap, gap to 200) + coil + input bit + 2 input (split)
    check_image_values(second)


def check_image_values(got: dict[str, Any]) -> None:
    """What the points of :func:`_register_image` must read: (value, quality, reason) per name."""
    for n, (_dt, _order, _regs, expected) in enumerate(CASES):
        assert got[f"c{n}"] == (expected, Quality.GOOD, None), f"case {n}: {CASES[n]}"
    assert got["label"] == ("MINE-1", Quality.GOOD, None)
    assert [got[b][0] for b in ("b0", "b1", "b15", "coil2", "di0")] == [True, False, True, True, True]
    assert got["mode"] == ("running", Quality.GOOD, None)
    assert got["hole"] == (42, Quality.GOOD, None)
