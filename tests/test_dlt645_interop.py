"""Interop with an independent DL/T 645-2007 implementation: the ``dlt645`` package (3.2, a client and a
meter server with their own framing and BCD code).

- our driver reads its meter server (TCP) and gets the values set on it, signs and decimals included;
- its client reads our simulated meters and gets the stubs' values.

Finding: that package takes a meter address as wire-order bytes (A0 first), so the nameplate address
210100000009 is ``09 00 00 00 01 21`` for it; the spec and our config use the nameplate order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import dlt645
import pytest

from drivers.dlt645.codec import parse_address
from drivers.dlt645.driver import Dlt645Driver, LinePool
from firmware_stubs.energy_meters import plant_meters
from gateway.catalog import build_catalog
from gateway.core.point import Quality
from hil.dlt645_server import SimulatedMeters
from hil.services import free_port
from tests.test_dlt645_driver import _config

ADDRESS = "210100000009"
SET: dict[str, tuple[str, float]] = {  # point -> (DI, value set on the peer's meter)
    "energy_forward": ("00 01 00 00", 12345.67),
    "energy_combined": ("00 00 00 00", -12.5),
    "voltage_a": ("02 01 01 00", 221.3),
    "current_a": ("02 02 01 00", -12.345),
    "power": ("02 03 00 00", 12.3456),
    "pf": ("02 06 00 00", -0.951),
    "frequency": ("02 80 00 02", 50.01),
}


@pytest.fixture
def peer_meter() -> Iterator[int]:
    """The package's TCP meter server on a free loopback port (it runs its own threads)."""
    port = free_port()
    svc: Any = dlt645.MeterServerService.new_tcp_server("127.0.0.1", port, 3.0)
    svc.set_address(parse_address(ADDRESS))
    for di, value in SET.values():
        n = int(di.replace(" ", ""), 16)
        (svc.set_00 if n >> 24 == 0 else svc.set_02)(n, value)
    svc.server.start()
    try:
        yield port
    finally:
        svc.server.stop()


async def test_our_driver_reads_the_peer_meter(peer_meter: int) -> None:
    cfg = _config([{"type": "dlt645_tcp", "name": "peer", "host": "127.0.0.1", "port": peer_meter,
                    "address": ADDRESS, "frame_gap_ms": 0, "timeout_ms": 2000,
                    "points": [{"name": n, "di": di} for n, (di, _) in SET.items()]}])
    catalog = build_catalog(cfg)
    drv = Dlt645Driver(cfg.devices[0], 0, LinePool())  # type: ignore[arg-type]
    async with drv:
        batch = await drv.read()
    got: dict[str, Any] = {catalog.points[i].key.split(".", 1)[1]: (v, q) for i, _, v, q, _ in batch}
    assert got == {n: (pytest.approx(v, abs=1e-9), Quality.GOOD) for n, (_, v) in SET.items()}


async def test_the_peer_client_reads_our_simulated_meters() -> None:
    meters = plant_meters(seed=4, count=2)
    target = meters[1]
    dis = [0x00010000, 0x00000000, 0x00020000, 0x02010100, 0x02020200, 0x02030000, 0x02060300, 0x02800002]
    async with SimulatedMeters(meters, tick_s=0) as sim:
        sim.advance(1234)

        def read_all() -> list[float | None]:
            client: Any = dlt645.MeterClientService.new_tcp_client("127.0.0.1", sim.port, 3.0)
            client.set_address(parse_address(target.address).hex())  # wire order, see the module docstring
            try:
                out = []
                for di in dis:
                    item = client.read_00(di) if di >> 24 == 0 else client.read_02(di)
                    out.append(None if item is None else float(item.value))
                return out
            finally:
                client.disconnect()

        values = await asyncio.to_thread(read_all)
        assert values == [pytest.approx(sim.expected(target.address, di), abs=1e-9) for di in dis]
