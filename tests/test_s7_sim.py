"""`edgegw sim s7-hoist`: the S7 hoist served on python-snap7's server; its --print-config block, under a
[gateway], reads every point good with `edgegw read`, with the stub's own values."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from drivers.s7.driver import S7Driver
from firmware_stubs.s7_hoist import S7Hoist
from gateway.cli import main
from gateway.config import load
from tests.gateway_process import REPO

HEADER = '[gateway]\nid = "gw-sim"\nsite = "baotou-mine-01"\nenterprise_prefix = "88.608.5288"\n\n'


def test_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--list"]) == 0
    assert "s7-hoist\tmine hoist on an S7-1500 CPU" in capsys.readouterr().out


async def test_the_simulated_hoist_reads_as_its_stub_says(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "s7-hoist", "--port", "0", "--seed", "5", "--tick-s", "0",
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("Serving s7-hoist (seed 5) over S7comm on 127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split(";")[0])
        block = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "sim", "s7-hoist", "--port", str(port), "--print-config",
            cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )
        toml, _ = await block.communicate()
        cfg_path = tmp_path / "gateway.toml"
        cfg_path.write_text(HEADER + toml.decode())
        cfg = load(cfg_path)
        dev = cfg.devices[0]
        async with S7Driver(dev, 0) as drv:  # type: ignore[arg-type]
            got = {dev.points[s[0]].name: s[2] for s in await drv.read()}
        assert got == S7Hoist(5).expected(0)
        read = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "read", "-c", str(cfg_path), cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(read.communicate(), 60)
        assert read.returncode == 0, (out, err)  # every point good
        assert "Device sim-s7-hoist up: 22 points good" in out.decode()
    finally:
        proc.terminate()
        await proc.wait()
