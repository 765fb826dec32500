"""The commissioning path of docs/commissioning.md, on real parts: the shipped example tag CSV is
imported with `edgegw import-tags`, pasted under a Modbus TCP device, passes `edgegw check`, and a
poll of the gas-substation stub on a real pymodbus server returns the stub's exact values.  The
shipped systemd unit calls commands that exist."""

from __future__ import annotations

import shlex
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.driver import ModbusDriver
from firmware_stubs.gas_substation import GasSubstation, expected_values
from gateway.catalog import build_catalog
from gateway.cli import build_parser, main
from gateway.config import parse
from gateway.core.point import Quality
from hil.modbus_server import SimulatedPlc
from pipelines.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CSV = ROOT / "deploy" / "examples" / "gas-substation-tags.csv"


def _config(points: list[dict[str, Any]], port: int) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw1", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288"},
        "devices": [
            {"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": port, "points": points}
        ],
    }


async def test_the_example_tag_list_reads_the_stub_exactly(tmp_path: Path) -> None:
    out = tmp_path / "points.toml"
    assert main(["import-tags", "modbus", str(EXAMPLE_CSV), "-o", str(out)]) == 0
    points = tomllib.loads(out.read_text())["devices"]["points"]
    stub = GasSubstation(seed=3)
    async with SimulatedPlc(stub=stub, tick_s=0) as plc:
        await plc.advance(421)
        data = _config(points, plc.port)
        cfg_file = tmp_path / "gateway.toml"
        cfg_file.write_text(_toml(data))
        assert main(["check", "-c", str(cfg_file)]) == 0
        cfg = parse(data)
        catalog = build_catalog(cfg)
        async with ModbusDriver(cfg.devices[0], 0) as drv:  # type: ignore[arg-type]
            batch, _events = Pipeline(catalog.specs)(await drv.read(), time.time_ns(), time.monotonic_ns())
    want = expected_values(stub.reading(421))
    got = {catalog.points[i].key.split(".", 1)[1]: (v, q) for i, _ts, v, q, _r in batch}
    assert set(got) == {"ch4", "co", "o2", "wind", "temp"}
    for name, (value, quality) in got.items():
        assert quality is Quality.GOOD, name
        assert value == pytest.approx(want[name], rel=1e-12), name
    # the coal-mine preset filled the CH4 thresholds from the class column
    ch4 = next(p for p in cfg.devices[0].points if p.name == "ch4")
    assert ch4.alarm is not None and ch4.alarm.high == 1.0 and ch4.alarm.power_off == 1.5


def _toml(data: dict[str, Any]) -> str:
    """Just enough TOML for this config (tomllib reads, it does not write)."""

    def val(v: Any) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{ " + ", ".join(f'"{k}" = {val(x)}' for k, x in v.items()) + " }"
        return repr(v)

    lines = ["[gateway]", *(f"{k} = {val(v)}" for k, v in data["gateway"].items())]
    for dev in data["devices"]:
        lines += ["", "[[devices]]", *(f"{k} = {val(v)}" for k, v in dev.items() if k != "points")]
        for p in dev["points"]:
            lines += ["", "[[devices.points]]", *(f"{k} = {val(v)}" for k, v in p.items())]
    return "\n".join(lines) + "\n"


def test_the_systemd_unit_calls_commands_that_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unit = (ROOT / "deploy" / "systemd" / "edgegw.service").read_text()
    commands = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert len(commands) == 1
    # RestartPreventExitStatus= covers only the main process: a config check as ExecStartPre= would
    # be restarted on a config mistake; `edgegw run` checks the config itself and exits 2
    assert not any(line.startswith("ExecStartPre=") for line in unit.splitlines())
    assert "RestartPreventExitStatus=2" in unit
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command)
        assert argv[0].endswith("/edgegw")
        args = parser.parse_args(argv[1:])  # exits (SystemExit) on an unknown command or option
        assert args.config == "/etc/edgegw/gateway.toml"
    # ... which the unit's RestartPreventExitStatus=2 relies on: no restart loop on a config mistake
    bad = tmp_path / "gateway.toml"
    bad.write_text('[gateway]\nid = "gw1"\nsite = "s1"\ncolour = "red"\n')
    assert main(["run", "-c", str(bad)]) == 2
    assert "gateway.colour: unknown key" in capsys.readouterr().err
