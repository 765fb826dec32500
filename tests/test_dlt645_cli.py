"""The DL/T 645 commands: `edgegw import-tags dlt645` (meter point lists, bad rows located, nothing
written), `edgegw sim energy-meters` (its --print-config reads every point good with `edgegw read`,
with the stubs' values) and `edgegw bench dlt645` (must not rot; figures are never asserted)."""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.energy_meters import METER_POINTS, plant_meters
from gateway.cli import main
from gateway.config import load
from gateway.readout import read_devices
from tests.gateway_process import REPO

HEADER = '[gateway]\nid = "gw-sim"\nsite = "ordos-chem-01"\nenterprise_prefix = "88.608.5288"\n\n'

GOOD_LIST = """meter_address,name,data_identifier,unit,display_name,tags.feeder
2101 0000 0001,energy_forward,00 01 00 00,,正向有功总电能,F1
210100000001,voltage_a,02010100,V,,F1
210100000002,energy_forward,0x00010000,kWh,,F2
210100000002,odd_counter,04 00 04 09,,,F2
"""


def test_a_meter_list_becomes_one_device_per_meter(tmp_path: Path) -> None:
    src = tmp_path / "meters.csv"
    src.write_text(
        "meter_address,name,data_identifier,unit,display_name,tags.feeder,format\n"
        "2101 0000 0001,energy_forward,00 01 00 00,,正向有功总电能,F1,\n"
        "210100000001,voltage_a,02010100,V,,F1,\n"
        "210100000002,energy_forward,0x00010000,kWh,,F2,\n"
        "210100000002,odd_counter,04 00 04 09,imp,,F2,XXXXXX\n", encoding="utf-8")
    out = tmp_path / "meters.toml"
    assert main(["import-tags", "dlt645", str(src), "--server", "127.0.0.1:4001", "-o", str(out)]) == 0
    cfg = load_with_header(tmp_path, out.read_text(encoding="utf-8"))
    devs = cfg.devices
    assert [d.name for d in devs] == ["meter-210100000001", "meter-210100000002"]
    assert [(d.type, d.address) for d in devs] == [("dlt645_tcp", "210100000001"), ("dlt645_tcp", "210100000002")]
    assert [p.di for p in devs[1].points] == ["00 01 00 00", "04 00 04 09"]
    assert devs[0].points[0].unit == "kWh" and devs[0].points[0].display_name == "正向有功总电能"
    assert devs[0].points[0].tags == {"feeder": "F1"}
    assert main(["import-tags", "dlt645", str(src), "--serial-port", "/dev/ttyS3", "-o", str(out)]) == 0
    assert tomllib.loads(out.read_text(encoding="utf-8"))["devices"][0]["port"] == "/dev/ttyS3"


def load_with_header(tmp_path: Path, toml: str) -> Any:
    f = tmp_path / "full.toml"
    f.write_text(HEADER + toml, encoding="utf-8")
    return load(f)


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD_LIST, "meters.csv:5: data identifier 04 00 04 09 is not in the built-in table"),
    (GOOD_LIST.replace("210100000002,energy_forward", "999999999999,energy_forward"),
     "meters.csv:4: address: meter address '999999999999' is the broadcast address"),
    (GOOD_LIST.replace("210100000002,energy_forward", "AAAAAAAAAAAA,energy_forward"),
     "meters.csv:4: address: meter address 'AAAAAAAAAAAA' uses the wildcard"),
    (GOOD_LIST.replace("02010100", "020101"), "meters.csv:3: di: data identifier '020101' is not 4 bytes"),
    (GOOD_LIST.replace("voltage_a,02010100", "energy_forward,02010100"),
     "meters.csv:3: name: meter 210100000001 already has name 'energy_forward' (line 2)"),
    (GOOD_LIST.replace("voltage_a,02010100", "voltage_a,00010000"),
     "meters.csv:3: di: meter 210100000001 already has data identifier '00 01 00 00' (line 2)"),
    ("name,di\nx,00010000\n", "meters.csv:1: missing column 'address'"),
    ("address,name,di\n", "meters.csv: no rows"),
    ("address,name,di\n1,x,00010000,extra\n", "meters.csv:2: more cells than columns"),
    ("address,name,di,colour\n1,x,00010000,red\n", "meters.csv:2: colour: unknown column"),
])
def test_bad_meter_lists_are_located_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    src = tmp_path / "meters.csv"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "meters.toml"
    assert main(["import-tags", "dlt645", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err.replace(str(tmp_path) + "/", ""), err
    assert "Traceback" not in err
    assert not out.exists()


def test_sim_lists_the_meters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--list"]) == 0
    assert "energy-meters\tDL/T 645-2007 three-phase energy meters" in capsys.readouterr().out


async def test_simulated_meters_read_as_their_stubs_say(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "energy-meters", "--port", "0", "--seed", "2", "--tick-s", "0",
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("Serving energy-meters (seed 2), meters 210100000001, "), line
        port = int(line.split("127.0.0.1:")[1].split(";")[0])
        block = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "sim", "energy-meters", "--port", str(port), "--seed", "2",
            "--print-config", cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )
        toml, _ = await asyncio.wait_for(block.communicate(), 30)
        cfg_path = tmp_path / "sim.toml"
        cfg_path.write_text(HEADER + toml.decode(), encoding="utf-8")
        cfg = load(cfg_path)
        assert len(cfg.devices) == 4
        readout = await read_devices(cfg)
        assert not readout.errors, readout.errors
        for meter in plant_meters(seed=2, count=4):
            for name, (di, _, _) in METER_POINTS.items():
                idx = next(i for i, p in enumerate(readout.catalog.points)
                           if p.key == f"sim-meter-{meter.address}.{name}")
                value, quality, reason = readout.last[idx]
                assert (quality.name, reason) == ("GOOD", None), name
                assert value == pytest.approx(meter.read(di, 0), abs=1e-9), name
    finally:
        proc.terminate()
        await proc.wait()


async def test_bench_smoke_prints_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "bench", "dlt645", "--lines", "2", "--meters", "2", "--seconds", "1",
        "--json", str(out), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    figures = json.loads(out.read_text())
    for key in ("points_per_s", "cpu_fraction", "requests_per_s", "failed_polls", "deadline_misses"):
        assert key in figures
    assert figures["points"] == 2 * 2 * len(METER_POINTS) and b"points/s" in stdout
