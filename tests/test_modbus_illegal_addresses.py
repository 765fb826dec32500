"""A wrong address in a tag list spoils only itself: "illegal data address" is narrowed down to exactly
the refused addresses (configured points or bridged gaps), inside a block and at the end of the map,
against a pymodbus server with holes and against libmodbus over TCP and RTU; several views of one
register (a status word and its bits, signed and unsigned) are read with one request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from drivers.modbus.config import ModbusRtuDevice, ModbusTcpDevice, Table
from drivers.modbus.driver import ModbusDriver
from gateway.core.point import Quality
from hil.libmodbus_peer import LibmodbusServer
from hil.services import PtyPair, free_port

ILLEGAL = "modbus_exception_2_illegal_data_address"
HR = Table.HOLDING_REGISTER


@pytest_asyncio.fixture(loop_scope="function")
async def holey() -> AsyncIterator[int]:
    """Holding registers 0..299 (value = address; register 7 holds 0xFFFE), except 100 and 111, which the
    server refuses."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    port = free_port()
    regs = [
        SimData(0, values=[0xFFFE if a == 7 else a for a in range(100)], datatype=SimType.REGISTERS),
        SimData(101, values=list(range(101, 111)), datatype=SimType.REGISTERS),
        SimData(112, values=list(range(112, 300)), datatype=SimType.REGISTERS),
    ]
    device = SimDevice(1, simdata=([SimData(0, values=[False], datatype=SimType.BITS)],
                                   [SimData(0, values=[False], datatype=SimType.BITS)], regs,
                                   [SimData(0, values=[0], datatype=SimType.REGISTERS)]))
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
    await srv.shutdown()  # type: ignore[no-untyped-call]  # pymodbus is untyped here
    task.cancel()


async def _poll(
    drv: ModbusDriver, cfg: ModbusTcpDevice | ModbusRtuDevice
) -> dict[str, tuple[Any, Quality, str | None]]:
    names = [p.name for p in cfg.points]  # the driver keeps the points' layouts, not their models
    return {names[i]: (v, q, why) for i, _ts, v, q, why in await drv.read()}


def _expect(got: dict[str, tuple[Any, Quality, str | None]], illegal: set[str]) -> None:
    for name, (value, quality, reason) in got.items():
        if name in illegal:
            assert (value, quality, reason) == (None, Quality.BAD, ILLEGAL), name
        else:
            assert (quality, reason) == (Quality.GOOD, None), (name, quality, reason)
            assert value == int(name[1:]), name


async def test_configured_illegal_points_inside_and_at_the_end_spoil_only_themselves(holey: int) -> None:
    # r95..r105 (r100 does not exist), r110 and r112 (the gap 111 between them does not exist),
    # r295..r300 (r300 is past the end of the map)
    addresses = [*range(95, 106), 110, 112, *range(295, 301)]
    cfg = ModbusTcpDevice.model_validate({
        "type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": holey, "max_gap": 16,
        "points": [{"name": f"r{a}", "address": a} for a in addresses],
    })
    async with ModbusDriver(cfg, first_index=0) as drv:
        assert drv.requests_per_poll == 2  # 95..112 and 295..300, before anything is known
        first = await _poll(drv, cfg)
        _expect(first, {"r100", "r300"})  # every readable point is good in the very first poll
        assert drv.unbridgeable == {(HR, 100), (HR, 111), (HR, 300)}  # exactly the refused addresses
        learned = drv.requests
        for _ in range(3):
            before = drv.requests
            _expect(await _poll(drv, cfg), {"r100", "r300"})
            # 95..99, 100 alone, 101..110, 112, 295..299, 300 alone: split and staying split
            assert drv.requests - before == drv.requests_per_poll == 6
        assert learned <= 2 + 2 * 12, learned  # narrowing cost a bounded number of requests, once


async def test_a_refused_wide_point_is_isolated_with_its_aliases_and_its_readable_views_stay_good(
    holey: int,
) -> None:
    cfg = ModbusTcpDevice.model_validate({
        "type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": holey,
        "points": [
            {"name": "r98", "address": 98},
            {"name": "wide", "address": 99, "data_type": "uint32"},  # 99..100: 100 is refused
            {"name": "wide_again", "address": 99, "data_type": "int32"},
            {"name": "r99", "address": 99},  # reads fine on its own
            {"name": "r101", "address": 101},
        ],
    })
    async with ModbusDriver(cfg, first_index=0) as drv:
        for _ in range(3):
            before = drv.requests
            got = await _poll(drv, cfg)
            assert got.pop("wide") == got.pop("wide_again") == (None, Quality.BAD, ILLEGAL)
            _expect(got, set())
        assert drv.requests_per_poll == 3  # 98..99 (r98, r99), the two 32-bit views at once, 101
        assert drv.requests - before == 3  # the known refusal costs no narrowing again


async def test_views_of_one_register_are_read_once(holey: int) -> None:
    """A status word, its bits, its signed view and a 32-bit value over it: one request per poll."""
    cfg = ModbusTcpDevice.model_validate({
        "type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": holey,
        "points": [
            {"name": "word", "address": 255},  # 255 = 0x00FF
            {"name": "bit0", "address": 255, "data_type": "bool", "bit": 0},
            {"name": "bit8", "address": 255, "data_type": "bool", "bit": 8},
            {"name": "signed", "address": 255, "data_type": "int16"},
            {"name": "pair", "address": 255, "data_type": "uint32"},  # 255, 256
            {"name": "next", "address": 256, "data_type": "int16"},
        ],
    })
    async with ModbusDriver(cfg, first_index=0) as drv:
        got = await _poll(drv, cfg)
        assert drv.requests == drv.requests_per_poll == 1
    assert {k: v for k, (v, _q, _r) in got.items()} == {
        "word": 255, "bit0": True, "bit8": False, "signed": 255, "pair": (255 << 16) | 256, "next": 256,
    }


async def test_signed_and_unsigned_views_of_a_negative_word(holey: int) -> None:
    cfg = ModbusTcpDevice.model_validate({
        "type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": holey,
        "points": [
            {"name": "unsigned", "address": 7},
            {"name": "signed", "address": 7, "data_type": "int16"},
            {"name": "high_bit", "address": 7, "data_type": "bool", "bit": 15},
        ],
    })
    async with ModbusDriver(cfg, first_index=0) as drv:
        got = await _poll(drv, cfg)
        assert drv.requests == 1
    assert got == {"unsigned": (0xFFFE, Quality.GOOD, None), "signed": (-2, Quality.GOOD, None),
                   "high_bit": (True, Quality.GOOD, None)}


def _libmodbus_points() -> list[dict[str, Any]]:
    # the map has 200 holding registers: r199 is the last, r200 is refused; r195..r199 must stay good;
    # register 196 also as its bits and as a signed view (one request with the rest)
    return [{"name": f"r{a}", "address": a} for a in range(195, 201)] + [
        {"name": "bit2", "address": 196, "data_type": "bool", "bit": 2},
        {"name": "bit0", "address": 196, "data_type": "bool", "bit": 0},
        {"name": "signed", "address": 196, "data_type": "int16"},
    ]


async def _libmodbus_polls(cfg: ModbusTcpDevice | ModbusRtuDevice) -> None:
    async with ModbusDriver(cfg, first_index=0) as drv:
        for _ in range(3):
            got = await _poll(drv, cfg)
            # 196 = 0b11000100
            assert [got.pop(n) for n in ("bit2", "bit0", "signed")] == [
                (True, Quality.GOOD, None), (False, Quality.GOOD, None), (196, Quality.GOOD, None)]
            _expect(got, {"r200"})
        assert drv.unbridgeable == {(HR, 200)}
        assert drv.requests_per_poll == 2


async def test_illegal_point_at_the_end_of_a_libmodbus_map_over_tcp(libmodbus_server: Path, tmp_path: Path) -> None:
    with LibmodbusServer(libmodbus_server, tmp_path, holding_registers=list(range(200))) as server:
        await _libmodbus_polls(ModbusTcpDevice.model_validate(
            {"type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": server.port,
             "points": _libmodbus_points()}
        ))


async def test_illegal_point_at_the_end_of_a_libmodbus_map_over_rtu(
    libmodbus_server: Path, tmp_path: Path, pty_pair: PtyPair
) -> None:
    with LibmodbusServer(libmodbus_server, tmp_path, holding_registers=list(range(200)), serial_port=pty_pair.a,
                         unit_id=5):
        await _libmodbus_polls(ModbusRtuDevice.model_validate(
            {"type": "modbus_rtu", "name": "plc", "port": pty_pair.b, "baudrate": 19200, "parity": "N",
             "unit_id": 5, "points": _libmodbus_points()}
        ))
