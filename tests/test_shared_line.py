"""The shared RS-485 line (gateway/core/line.py) as both serial-line drivers use it, through their
registration (``SPEC``): Modbus RTU over TCP against a real pymodbus server, DL/T 645 over TCP against
the simulated meters.  One contract, run over both: what a config reload keeps (the open lines of the
devices that keep running, and nothing else), and a line that cannot be opened is the device's
ConnectError naming the line."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from drivers.dlt645.spec import SPEC as DLT645
from drivers.modbus.spec import SPEC as MODBUS
from firmware_stubs.energy_meters import EnergyMeter, plant_meters
from gateway.catalog import build_catalog
from gateway.config import Config, parse
from gateway.core.driver import DriverSpec
from gateway.core.errors import ConnectError
from gateway.core.point import Quality
from hil.dlt645_server import SimulatedMeters
from hil.modbus_server import SimulatedPlc
from hil.services import free_port

GATEWAY = {"id": "gw1", "site": "ordos-chem-01", "enterprise_prefix": "88.608.5288"}
METER = plant_meters(seed=2, count=1)[0]


def _modbus(name: str, port: int) -> dict[str, Any]:
    return {"type": "modbus_rtu_tcp", "name": name, "host": "127.0.0.1", "port": port, "unit_id": 1,
            "timeout_ms": 500, "points": [{"name": "r0", "address": 0, "data_type": "uint16"}]}


def _meter(name: str, port: int) -> dict[str, Any]:
    return {"type": "dlt645_tcp", "name": name, "host": "127.0.0.1", "port": port, "address": METER.address,
            "timeout_ms": 500, "frame_gap_ms": 0, "points": EnergyMeter.point_config()[:1]}


@contextlib.asynccontextmanager
async def _modbus_server() -> AsyncIterator[int]:
    async with SimulatedPlc(tick_s=0, transport="rtu_tcp") as plc:
        yield plc.port


@contextlib.asynccontextmanager
async def _meter_server() -> AsyncIterator[int]:
    async with SimulatedMeters([METER], tick_s=0) as sim:
        yield sim.port


KINDS: dict[str, tuple[DriverSpec[Any], Callable[[str, int], dict[str, Any]],
                       Callable[[], contextlib.AbstractAsyncContextManager[int]]]] = {
    "modbus_rtu_tcp": (MODBUS, _modbus, _modbus_server),
    "dlt645_tcp": (DLT645, _meter, _meter_server),
}


def _config(devices: list[dict[str, Any]]) -> Config:
    return parse({"gateway": GATEWAY, "devices": devices})


def _drivers(spec: DriverSpec[Any], cfg: Config, shared: Any) -> list[Any]:
    """The drivers (a ModbusDriver or Dlt645Driver each: a PollingDriver with its ``line``)."""
    catalog = build_catalog(cfg)
    return [spec.make(d, catalog.by_device[d.name].start, shared) for d in cfg.devices]


async def _read_good(driver: Any) -> None:
    batch = await driver.read()
    assert batch and all(q is Quality.GOOD for _i, _ts, _v, q, _r in batch), batch


@pytest.mark.parametrize("kind", KINDS)
async def test_a_reload_keeps_the_open_lines_of_the_kept_devices_only(kind: str) -> None:
    spec, device, server = KINDS[kind]
    assert spec.shared is not None and spec.keep_shared is not None
    async with server() as port_a, server() as port_b:
        cfg = _config([device("a", port_a), device("b", port_b)])
        pool: Any = spec.shared()
        old = _drivers(spec, cfg, pool)
        async with contextlib.AsyncExitStack() as stack:
            for d in old:
                await stack.enter_async_context(d)
                await _read_good(d)
            line_a = old[0].line
            conn_a = line_a.conn
            assert len(pool.lines) == 2 and conn_a is not None and conn_a.is_open

            kept = spec.keep_shared(pool, [cfg.devices[0]])
            assert isinstance(kept, type(pool)) and kept is not pool
            assert list(kept.lines.values()) == [line_a], "only device a's line is kept"
            assert len(pool.lines) == 2, "the old pool is left as it was"

            (new_a,) = _drivers(spec, _config([device("a", port_a)]), kept)
            async with new_a:
                assert new_a.line is line_a
                await _read_good(new_a)
                assert line_a.opens == 1 and line_a.conn is conn_a, "the kept line was not reopened"
                assert line_a.users == 2
        assert line_a.conn is None, "the last user closed the line"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_line_that_cannot_be_opened_is_the_devices_connect_error(kind: str) -> None:
    spec, device, _server = KINDS[kind]
    assert spec.shared is not None
    port = free_port()  # nothing listens there: connecting is refused
    (drv,) = _drivers(spec, _config([device("a", port)]), spec.shared())
    with pytest.raises(ConnectError) as err:
        await drv.__aenter__()
    assert f"cannot open 127.0.0.1:{port}" in str(err.value)
    assert drv.line.users == 0 and not drv.line.members
