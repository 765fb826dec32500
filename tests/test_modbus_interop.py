"""Interop with an independent implementation: our driver reads every data type and byte order from a
libmodbus server (compiled from hil/libmodbus/server.c), over Modbus TCP and over Modbus RTU through a
socat pty pair.  Under CI a missing gcc, libmodbus-dev or socat fails these tests instead of skipping."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.config import ModbusRtuDevice, ModbusTcpDevice
from drivers.modbus.driver import ModbusDriver
from gateway.core.point import Quality
from hil.libmodbus_peer import LibmodbusServer
from hil.services import PtyPair
from tests.conftest import IN_CI
from tests.test_modbus_driver import _register_image, check_image_values

INPUTS = [7, *([0] * 9), 42]  # "mode" = 7 (running) at input register 0, "hole" = 42 at 10
COILS = [False, False, True, False]


def _points() -> tuple[list[int], list[dict[str, Any]]]:
    image, points = _register_image()
    points.append({"name": "beyond", "address": 300})  # past the server's 220 registers: exception 2
    return image, points


def _check(got: dict[str, Any]) -> None:
    check_image_values(got)
    assert got["beyond"] == (None, Quality.BAD, "modbus_exception_2_illegal_data_address")


async def _read(cfg: ModbusTcpDevice | ModbusRtuDevice) -> dict[str, Any]:
    names = [p.name for p in cfg.points]
    async with ModbusDriver(cfg, first_index=0) as drv:
        got = {names[i]: (v, q, why) for i, _ts, v, q, why in await drv.read()}
        again = {names[i]: (v, q, why) for i, _ts, v, q, why in await drv.read()}
    assert again == got  # a second poll on the same connection reads the same
    return got


async def test_every_type_and_byte_order_from_libmodbus_over_tcp(libmodbus_server: Path, tmp_path: Path) -> None:
    image, points = _points()
    with LibmodbusServer(libmodbus_server, tmp_path, coils=COILS, discrete_inputs=[True], holding_registers=image,
                         input_registers=INPUTS) as server:
        cfg = ModbusTcpDevice.model_validate(
            {"type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": server.port, "points": points}
        )
        _check(await _read(cfg))


async def test_every_type_and_byte_order_from_libmodbus_over_rtu_on_a_pty(
    libmodbus_server: Path, tmp_path: Path, pty_pair: PtyPair
) -> None:
    image, points = _points()
    with LibmodbusServer(libmodbus_server, tmp_path, coils=COILS, discrete_inputs=[True], holding_registers=image,
                         input_registers=INPUTS, serial_port=pty_pair.a, unit_id=17):
        cfg = ModbusRtuDevice.model_validate(
            {"type": "modbus_rtu", "name": "plc", "port": pty_pair.b, "baudrate": 19200, "parity": "N",
             "unit_id": 17, "points": points}
        )
        _check(await _read(cfg))


def _mbpoll() -> str:
    path = shutil.which("mbpoll")
    if path is None:
        if IN_CI:
            pytest.fail("mbpoll is not installed: CI must install it (scripts/test.sh does, as root)")
        pytest.skip("mbpoll is not installed")
    return path


async def _mbpoll_read(args: list[str], table: str, count: int) -> list[int]:
    """Registers read by mbpoll, an independent (libmodbus-based) client; -t 4 holding, -t 3 input."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        _mbpoll(), "-a", "1", "-r", "1", "-c", str(count), "-t", table, "-1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    values = [int(line.split("]:")[1].split()[0]) for line in out.decode().splitlines() if line.startswith("[")]
    assert len(values) == count, (out.decode(), err.decode())
    return values


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_mbpoll_reads_the_stub_images_our_hil_server_serves(transport: str, request: Any) -> None:
    """The register images of the firmware stubs, as a third-party client sees them on the wire."""
    from firmware_stubs.belt_conveyor import BeltConveyor
    from firmware_stubs.drainage_pump import DrainagePump
    from firmware_stubs.mine_hoist import MineHoist
    from firmware_stubs.ventilation_fan import VentilationFan
    from hil.modbus_server import SimulatedPlc

    _mbpoll()
    pty: PtyPair | None = request.getfixturevalue("pty_pair") if transport == "rtu" else None
    for stub in (VentilationFan(3), BeltConveyor(4), DrainagePump(5), MineHoist(6)):
        where: dict[str, Any] = {"transport": "rtu", "serial_port": pty.a} if pty else {}
        async with SimulatedPlc(units={1: stub}, tick_s=0, **where) as plc:
            await plc.advance(1234)
            img = stub.image(1234)
            if pty:
                args = ["-m", "rtu", "-b", "19200", "-P", "none", pty.b]
            else:
                args = ["-m", "tcp", "-p", str(plc.port), "127.0.0.1"]
            assert await _mbpoll_read(args, "3", len(img.input_registers)) == img.input_registers
            assert await _mbpoll_read(args, "4", len(img.holding_registers)) == img.holding_registers


async def test_a_wrong_unit_id_on_rtu_is_down_with_the_reason_and_what_to_check(
    libmodbus_server: Path, tmp_path: Path, pty_pair: PtyPair, caplog: pytest.LogCaptureFixture
) -> None:
    """libmodbus over RTU stays silent for another unit id (over TCP it answers any unit id, as many
    Modbus TCP devices do: nothing to see there): the gateway's one WARNING names the device, the
    reason and what to check first."""
    import asyncio
    import logging

    from gateway.app import Gateway
    from gateway.config import parse
    from tests.conftest import eventually
    from tests.test_modbus_transports import GATEWAY

    caplog.set_level(logging.WARNING, "edgegw.runner")
    with LibmodbusServer(libmodbus_server, tmp_path, holding_registers=list(range(20)), serial_port=pty_pair.a,
                         unit_id=1):
        # the uplink is never reached (nothing listens on port 1): the data stays buffered
        cfg = parse({"gateway": GATEWAY, "buffer": {"path": str(tmp_path / "buffer.db")},
                     "uplink": {"host": "127.0.0.1", "port": 1}, "devices": [
            {"type": "modbus_rtu", "name": "gas-sub-01", "port": pty_pair.b, "baudrate": 19200, "parity": "N",
             "unit_id": 9, "timeout_ms": 300, "points": [{"name": "ch4", "address": 1}]}]})
        gw = Gateway(cfg)
        task = asyncio.create_task(gw.run())
        try:
            await eventually(lambda: any("is down" in m for m in caplog.messages), what="the down line")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    (line,) = [m for m in caplog.messages if "is down" in m]
    assert line == ("Device gas-sub-01 is down: timeout: no answer within 0.3 s (connected but no answer: check "
                    "the unit id, the baud rate and parity on RTU, a busy device)"), line


async def test_a_wrong_unit_id_behind_a_tcp_gateway_is_degraded_with_the_dominant_reason(
    libmodbus_server: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """libmodbus as a Modbus TCP-to-RTU gateway with unit 1 behind it: asked for unit 9 it answers
    exception 11 for every read.  The device answers, so it is not down, and not up either: one
    WARNING names the device, the count and the dominant reason."""
    import asyncio
    import logging

    from gateway.app import Gateway
    from gateway.config import parse
    from tests.conftest import eventually
    from tests.test_modbus_transports import GATEWAY

    caplog.set_level(logging.INFO, "edgegw.runner")
    with LibmodbusServer(libmodbus_server, tmp_path, holding_registers=list(range(20)), unit_id=1,
                         tcp_gateway=True) as server:
        cfg = parse({"gateway": GATEWAY, "buffer": {"path": str(tmp_path / "buffer.db")},
                     "uplink": {"host": "127.0.0.1", "port": 1}, "devices": [
            {"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": server.port, "unit_id": 9,
             "points": [{"name": "ch4", "address": 1, "scale": 0.01}, {"name": "status", "address": 2},
                        {"name": "running", "address": 2, "data_type": "bool", "bit": 0}]}]})
        gw = Gateway(cfg)
        task = asyncio.create_task(gw.run())
        try:
            await eventually(lambda: gw.runners[0].health.state == "degraded", what="degraded")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    said = [m for m in caplog.messages if m.startswith("Device gas-sub-01")]
    assert said == ["Device gas-sub-01 degraded: 3 of 3 points bad: "
                    "modbus_exception_11_gateway_target_failed_to_respond"], said
