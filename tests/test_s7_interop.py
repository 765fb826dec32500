"""Interop: the gateway's S7 driver (its own S7comm framing, drivers/s7/wire.py) against python-snap7's
pure-Python S7 server, a separate implementation of the protocol written by other people; and the
values it reads against what python-snap7's own client and getters read from the same server.

What could be installed here: python-snap7 3.x (server and client, pure Python).  No native snap7
library or PLCSIM is available on this machine; a real CPU is the commissioning check in docs/s7.md.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from drivers.s7.config import S7Device
from drivers.s7.driver import S7Driver
from firmware_stubs.s7_hoist import DB_NUMBER, point_config
from gateway.core.point import Quality
from hil.s7_server import S7Plc


def device(port: int, points: list[dict[str, Any]] | None = None, **extra: Any) -> S7Device:
    return S7Device.model_validate({"type": "s7", "name": "hoist", "host": "127.0.0.1", "port": port,
                                    "family": "s7-1500", "timeout_ms": 2000, "points": points or point_config(),
                                    **extra})


@pytest_asyncio.fixture(loop_scope="function")
async def plc() -> AsyncIterator[S7Plc]:
    async with S7Plc(tick_s=0, seed=3) as p:
        yield p


@pytest.mark.parametrize("pdu", [240, 480, 960])
async def test_every_type_against_snap7_server(plc: S7Plc, pdu: int) -> None:
    dev = device(plc.port, pdu_size=pdu)
    async with S7Driver(dev, 0) as drv:
        assert drv.pdu_size == min(pdu, 480)  # python-snap7's server grants at most 480
        for tick in (0, 17, 45, 75, 130, 250):
            plc.advance(tick - plc.tick)
            batch = await drv.read()
            want = plc.stub.expected(tick)
            got = {dev.points[s[0]].name: s[2] for s in batch}
            assert got == want, tick
            assert {s[3] for s in batch} == {Quality.GOOD}


async def test_wrong_addresses_against_snap7_server(plc: S7Plc) -> None:
    points: list[dict[str, Any]] = [*point_config()[:3],
              {"name": "past_end", "address": f"DB{DB_NUMBER}.DBD84"},
              {"name": "no_such_db", "address": "DB99.DBW0"},
              {"name": "heartbeat", "address": "MW10"}]
    dev = device(plc.port, points)
    plc.advance(5)
    async with S7Driver(dev, 0) as drv:
        for _ in range(2):  # the first poll learns which item failed; both polls give the same samples
            got = {dev.points[s[0]].name: (s[2], s[4]) for s in await drv.read()}
            want = plc.stub.expected(5)
            assert got == {
                "seq": (5, None), "rope_speed": (want["rope_speed"], None),
                "hoist_position": (want["hoist_position"], None),
                "past_end": (None, "s7_address_out_of_range"), "no_such_db": (None, "s7_object_does_not_exist"),
                "heartbeat": (5, None),
            }


async def test_many_points_over_several_requests(plc: S7Plc) -> None:
    """A DB larger than one answer: 250 REALs (1000 bytes) over several requests, then checked."""
    from snap7.type import SrvArea

    db = bytearray(1000)
    for i in range(250):
        struct.pack_into(">f", db, 4 * i, i * 1.5)
    plc.server.register_area(SrvArea.DB, 20, db)
    points = [{"name": f"r{i}", "address": f"DB20.DBD{4 * i}", "data_type": "real"} for i in range(250)]
    dev = device(plc.port, points, pdu_size=240)
    async with S7Driver(dev, 0) as drv:
        assert drv.requests_per_poll == 5  # 1000 bytes at 222 per answer
        got = sorted((s[0], s[2]) for s in await drv.read())
    assert got == [(i, i * 1.5) for i in range(250)]


async def test_same_values_as_snap7_client(plc: S7Plc) -> None:
    """python-snap7's client and getters (snap7.util) read the same DB: both agree with the driver."""
    from snap7 import util
    from snap7.client import Client

    plc.advance(33)
    dev = device(plc.port)
    async with S7Driver(dev, 0) as drv:
        ours = {dev.points[s[0]].name: s[2] for s in await drv.read()}

    def theirs() -> dict[str, Any]:
        c = Client()
        c.connect("127.0.0.1", 0, 1, plc.port)
        try:
            buf = c.db_read(DB_NUMBER, 0, 84)
        finally:
            c.disconnect()
        return {
            "seq": util.get_dword(buf, 0), "rope_speed": util.get_real(buf, 4),
            "hoist_position": util.get_lreal(buf, 8),
            "load": util.get_dint(buf, 16), "motor_current": util.get_int(buf, 20),
            "brake_pressure": util.get_word(buf, 22), "trips": util.get_dword(buf, 28),
            "brake_applied": util.get_bool(buf, 32, 3), "state": util.get_byte(buf, 33),
            "conveyance": util.get_string(buf, 34),
            "wind_started": util.get_date_time_object(buf, 52).isoformat(timespec="milliseconds"),
            "hoist_name": util.get_wstring(buf, 60),
        }

    snap = await asyncio.to_thread(theirs)
    assert {k: ours[k] for k in snap} == snap


# --- the original Snap7 server (C++, through node-snap7: hil/node_snap7) -----------------------------------


@pytest_asyncio.fixture(loop_scope="function")
async def native() -> AsyncIterator[Any]:
    from hil.snap7_native_peer import NativeS7Plc, PeerUnavailable
    from tests.conftest import IN_CI

    try:
        async with NativeS7Plc(seed=6) as p:
            yield p
    except PeerUnavailable as err:
        if IN_CI:
            pytest.fail(f"the Snap7 interop peer must run in CI: {err}")
        pytest.skip(str(err))


@pytest.mark.parametrize("pdu", [240, 480, 960])
async def test_every_type_against_the_snap7_cpp_server(native: Any, pdu: int) -> None:
    dev = device(native.port, pdu_size=pdu)
    async with S7Driver(dev, 0) as drv:
        assert drv.pdu_size == pdu  # Snap7's server grants what is asked, up to 960
        for tick in (0, 17, 45, 75, 130):
            await native.advance(tick - native.tick)
            batch = await drv.read()
            assert {dev.points[s[0]].name: s[2] for s in batch} == native.stub.expected(tick), tick
            assert {s[3] for s in batch} == {Quality.GOOD}


async def test_refused_items_next_to_good_ones_on_the_snap7_cpp_server(native: Any) -> None:
    """Snap7's server answers a refused item with length 4 and no data: the items after it must still
    be read right (this is what the interop test found)."""
    points: list[dict[str, Any]] = [
        {"name": "no_such_db", "address": "DB99.DBW0"},
        {"name": "past_end", "address": f"DB{DB_NUMBER}.DBD200"},
        *point_config(),
    ]
    dev = device(native.port, points)
    await native.advance(50)
    async with S7Driver(dev, 0) as drv:
        for _ in range(2):
            got = {dev.points[s[0]].name: (s[2], s[4]) for s in await drv.read()}
            assert got.pop("no_such_db") == (None, "s7_object_does_not_exist")
            assert got.pop("past_end") == (None, "s7_address_out_of_range")
            assert got == {k: (v, None) for k, v in native.stub.expected(50).items()}


async def test_many_points_on_the_snap7_cpp_server(native: Any) -> None:
    db = bytearray(1000)
    for i in range(250):
        struct.pack_into(">f", db, 4 * i, -i * 0.25)
    native.extra[("DB", 20)] = bytes(db)
    await native.advance(0)
    points = [{"name": f"r{i}", "address": f"DB20.DBD{4 * i}", "data_type": "real"} for i in range(250)]
    for pdu, requests in ((240, 5), (480, 3), (960, 2)):
        dev = device(native.port, points, pdu_size=pdu)
        async with S7Driver(dev, 0) as drv:
            assert drv.requests_per_poll == requests
            assert sorted((s[0], s[2]) for s in await drv.read()) == [(i, -i * 0.25) for i in range(250)]
