"""``edgegw read``: the live truth on the box, without a broker: every point's value, unit, quality,
reason and code from a real device (the libmodbus server, over TCP), and the device's state line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import tomli_w
from rich.console import Console

from gateway.cli import main
from gateway.config import load
from gateway.readout import read_devices
from hil.libmodbus_peer import LibmodbusServer

ILLEGAL = "modbus_exception_2_illegal_data_address"


def _config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps({
        "gateway": {"id": "gw-read", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288",
                    "site_display_name": "包头某煤矿", "display_name": "一号网关"},
        "devices": [{
            "type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": port, "timeout_ms": 500,
            "display_name": "瓦斯监控分站",
            "points": [
                {"name": "ch4", "address": 10, "scale": 0.01, "unit": "%CH4", "display_name": "甲烷浓度"},
                {"name": "status", "address": 11},
                {"name": "running", "address": 11, "data_type": "bool", "bit": 0},
                {"name": "typo", "address": 200, "unit": "ppm"},  # the map ends at 199
            ],
        }],
        "buffer": {"path": str(tmp_path / "buffer.db")},
        "uplink": {"host": "127.0.0.1", "port": 1},  # never contacted by `read`
    }))
    return path


def test_read_prints_every_point_and_the_device_state(
    libmodbus_server: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = list(range(200))
    image[10], image[11] = 125, 0x0001
    with LibmodbusServer(libmodbus_server, tmp_path, holding_registers=image) as server:
        code = main(["read", "-c", str(_config(tmp_path, server.port))])
    out = capsys.readouterr().out
    assert code == 1  # not every device is up
    rows = {line.split("│")[2].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in out.splitlines() if line.count("│") > 5}
    assert rows["ch4"][2:] == ["甲烷浓度", "1.25", "%CH4", "good", "", rows["ch4"][-1]]
    assert rows["ch4"][-1].startswith("88.608.5288/")  # the identifier code
    assert rows["status"][3:6] == ["1", "", "good"]
    assert rows["running"][3:6] == ["True", "", "good"]
    assert rows["typo"][3:7] == ["", "ppm", "bad", ILLEGAL]
    assert f"Device gas-sub-01 (瓦斯监控分站) degraded: 1 of 4 points bad: {ILLEGAL}" in out
    assert "site 包头某煤矿 (baotou-mine-01) · gateway 一号网关 (gw-read)" in out


def test_read_an_unreachable_device_and_an_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, 1)  # nothing listens on port 1
    assert main(["read", "-c", str(cfg)]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("Device gas-sub-01"))
    assert line.startswith("Device gas-sub-01 (瓦斯监控分站) down: unreachable"), line
    assert line.count("gas-sub-01") == 1 and "(check the address and port" in line, line  # named once, a hint
    assert main(["read", "-c", str(cfg), "gas-sub-02"]) == 2
    err = capsys.readouterr().err
    assert "no device named 'gas-sub-02' (the config has: gas-sub-01)" in err
    assert "Traceback" not in err


async def test_watch_polls_again(libmodbus_server: Path, tmp_path: Path) -> None:
    with LibmodbusServer(libmodbus_server, tmp_path, holding_registers=list(range(200))) as server:
        cfg = load(str(_config(tmp_path, server.port)))
        console = Console(width=200, record=True, force_terminal=False)
        readout = await asyncio.wait_for(
            read_devices(cfg, ["gas-sub-01"], watch=True, interval_s=0.05, console=console, rounds=3), 30
        )
    assert readout.health("gas-sub-01") == ("degraded", f"1 of 4 points bad: {ILLEGAL}")
    assert "甲烷浓度" in console.export_text()
