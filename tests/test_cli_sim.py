"""`edgegw sim`: a firmware stub as a standalone simulated PLC, listed by --list; its --print-config
block, under a [gateway], reads every point good with `edgegw read`, with the stub's own values."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from drivers.modbus.driver import ModbusDriver
from firmware_stubs.ventilation_fan import VentilationFan
from gateway.catalog import build_catalog
from gateway.cli import main
from gateway.config import load
from tests.gateway_process import REPO
from tests.test_modbus_transports import _assert_matches, _values

HEADER = '[gateway]\nid = "gw-sim"\nsite = "baotou-mine-01"\nenterprise_prefix = "88.608.5288"\n\n'


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--list"]) == 0
    assert "ventilation-fan\tmain ventilation fan, 17 points" in capsys.readouterr().out
    assert main(["sim", "no-such"]) == 2
    assert "no simulator named 'no-such'" in capsys.readouterr().err


async def test_a_simulated_fan_reads_as_its_stub_says(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "ventilation-fan", "--port", "0", "--seed", "5", "--tick-s", "0",
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("Serving ventilation-fan (seed 5) as unit 1 over tcp on 127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split(";")[0])
        block = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "sim", "ventilation-fan", "--port", str(port), "--print-config",
            cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )
        toml, _ = await block.communicate()
        cfg_path = tmp_path / "gateway.toml"
        cfg_path.write_text(HEADER + toml.decode())
        cfg = load(cfg_path)
        catalog = build_catalog(cfg)
        async with ModbusDriver(cfg.devices[0], 0) as drv:  # type: ignore[arg-type]
            _assert_matches(_values(catalog, await drv.read(), "sim-ventilation-fan"), VentilationFan(5).expected(0))
        read = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "read", "-c", str(cfg_path), cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(read.communicate(), 60)
        assert read.returncode == 0, (out, err)  # every point good
        assert "Device sim-ventilation-fan up: 17 points good" in out.decode()
    finally:
        proc.terminate()
        await proc.wait()


async def test_an_opcua_plant_is_served_and_browsable() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "hot-stove", "--port", "0", "--tick-s", "0",
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("Serving hot-stove on opc.tcp://127.0.0.1:"), line
        endpoint = line.split(" on ")[1].split(" ")[0]
        browse = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "browse", endpoint, "--filter", "Objects/HotStove2/*", cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(browse.communicate(), 60)
        assert browse.returncode == 0, err
        assert "HotStove2" in out.decode()
    finally:
        proc.terminate()
        await proc.wait()
