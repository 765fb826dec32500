"""The IEC 104 commands and config errors: `edgegw import-tags iec104` (point lists, bad rows located,
nothing written), `edgegw sim substation-104` (its --print-config reads every point as the stub says
with `edgegw read`), `edgegw check` locating 104 mistakes, and `edgegw bench iec104` (must not rot;
figures are never asserted)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from drivers.iec104.config import Iec104Device
from firmware_stubs.iec104_substation import POINTS, Iec104Substation, point_config, tag_list_csv
from gateway.cli import main
from gateway.config import load
from gateway.readout import read_devices
from tests.gateway_process import REPO

HEADER = '[gateway]\nid = "gw-sim"\nsite = "ordos-chem-01"\nenterprise_prefix = "88.608.5288"\n\n'


def load_with_header(tmp_path: Path, toml: str) -> Any:
    f = tmp_path / "full.toml"
    f.write_text(HEADER + toml, encoding="utf-8")
    return load(f)


STATION = '[[devices]]\ntype = "iec104"\nname = "sub"\nhost = "127.0.0.1"\n\n'


def test_the_stations_point_list_becomes_its_points(tmp_path: Path) -> None:
    src = tmp_path / "points.csv"
    src.write_text(tag_list_csv(), encoding="utf-8")
    out = tmp_path / "points.toml"
    assert main(["import-tags", "iec104", str(src), "-o", str(out)]) == 0
    (dev,) = load_with_header(tmp_path, STATION + out.read_text(encoding="utf-8")).devices
    want = [{k: v for k, v in p.items() if k != "description"} | {"ca": 1} for p in point_config()]
    got = [p.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True) for p in dev.points]
    assert got == want


def test_numbers_hex_and_other_columns(tmp_path: Path) -> None:
    src = tmp_path / "points.csv"
    src.write_text("name,ca,ioa,type,unit,scale,display_name,tags.bay\n"
                   "u_bus,1,0x4001,13,kV,,110kV 母线电压,B1\n"
                   "brk,2,1,M_DP_TB_1,,,,B1\n"
                   "t_oil,,16417,m_me_na_1,degC,150,,B2\n", encoding="utf-8")
    out = tmp_path / "points.toml"
    assert main(["import-tags", "iec104", str(src), "-o", str(out)]) == 0
    (dev,) = load_with_header(tmp_path, STATION + out.read_text(encoding="utf-8")).devices
    assert [(p.name, p.ca, p.ioa, p.type_id.value) for p in dev.points] == [
        ("u_bus", 1, 16385, "M_ME_NC_1"), ("brk", 2, 1, "M_DP_TB_1"), ("t_oil", None, 16417, "M_ME_NA_1")]
    assert [dev.address(p) for p in dev.points] == [(1, 16385), (2, 1), (1, 16417)]
    assert dev.points[0].display_name == "110kV 母线电压" and dev.points[2].scale == 150
    assert dev.points[1].tags == {"bay": "B1"}


GOOD = "name,ca,ioa,type,unit,scale\nu,1,16385,M_ME_NC_1,kV,\nbrk,1,1,M_DP_NA_1,,\n"


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("M_DP_NA_1", "M_BO_NA_1"), "points.csv:3: type: 'M_BO_NA_1' is not a monitored type"),
    (GOOD.replace("M_DP_NA_1", "C_SC_NA_1"), "points.csv:3: type: 'C_SC_NA_1' is not a monitored type"),
    (GOOD.replace("brk,1,1,", "brk,1,16385,"), "points.csv:3: ioa: CA 1 IOA 16385 is also on line 2"),
    (GOOD.replace("brk,1,1,", "brk,1,0,"), "points.csv:3: ioa: Input should be greater than or equal to 1"),
    (GOOD.replace("brk,1,1,", "brk,1,16777216,"), "points.csv:3: ioa: Input should be less than or equal to"),
    (GOOD.replace("brk,1,1,", "brk,65535,1,"), "points.csv:3: ca: Input should be less than or equal to 65534"),
    (GOOD.replace("brk,1,1,", "brk,one,1,"), "points.csv:3: ca: Input should be a valid integer"),
    (GOOD.replace("brk,", "u,"), "points.csv: two rows are named 'u'"),
    (GOOD.replace(",kV,", ",kV,lots"), "points.csv:2: scale: Input should be a valid number"),
    (GOOD + "x,1,2,M_SP_NA_1,,,surplus\n", "points.csv:4: more cells than columns"),
    ("name,ioa\nu,1\n", "points.csv:1: missing column 'type'"),
    ("name,ioa,type\n", "points.csv: no points in the list"),
    ("name,ioa,type,colour\nu,1,M_SP_NA_1,red\n", "points.csv:2: colour: unknown column"),
    # what only `edgegw check` finds (one identifier code for two points), located at the row
    ("name,ioa,type,code\nu,1,M_ME_NC_1,88.608.5288/u\nv,2,M_ME_NC_1,88.608.5288/u\n", "points.csv:3: code:"),
])
def test_bad_point_lists_are_located_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    src = tmp_path / "points.csv"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "station.toml"
    assert main(["import-tags", "iec104", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err.replace(str(tmp_path) + "/", ""), err
    assert "Traceback" not in err
    assert not out.exists()


CHECK_CASES = [
    ({"w": 13}, "devices[0]: w (13) must not exceed k (12)"),
    ({"t2_s": 20}, "devices[0]: t2_s (20) must be shorter than t1_s (15)"),
    ({"time_zone": "Mars/Olympus"}, "devices[0].time_zone: unknown time zone 'Mars/Olympus'"),
    ({"k": 0}, "devices[0].k: Input should be greater than or equal to 1"),
    ({"port": 70000}, "devices[0].port: Input should be less than or equal to 65535"),
    ({"clock_sync": "always"}, "devices[0].clock_sync: Input should be 'off' or 'on_connect'"),
    ({"points": [{"name": "a", "ioa": 1, "type_id": "M_XX_NA_1"}]}, "devices[0].points[0].type_id: Input should be"),
    ({"points": [{"name": "a", "ioa": 1, "type_id": "M_SP_NA_1"}, {"name": "b", "ioa": 1, "type_id": "M_SP_NA_1"}]},
     "devices[0]: points 'a' and 'b' both have CA 1 IOA 1"),
    ({"points": [{"name": "a", "ioa": 1, "type_id": "M_SP_NA_1", "ca": 0}]},
     "devices[0].points[0].ca: Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("change", "expected"), CHECK_CASES)
def test_check_locates_104_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], expected: str
) -> None:
    import tomli_w

    dev = {"type": "iec104", "name": "sub", "host": "127.0.0.1",
           "points": [{"name": "a", "ioa": 1, "type_id": "M_SP_NA_1"}], **change}
    f = tmp_path / "gw.toml"
    f.write_text(HEADER + tomli_w.dumps({"devices": [dev]}), encoding="utf-8")
    assert main(["check", "-c", str(f)]) == 2
    err = capsys.readouterr()
    text = err.out + err.err
    assert expected in text, text
    assert "Traceback" not in text


def test_sim_lists_the_station(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--list"]) == 0
    assert "substation-104\t110/10 kV substation" in capsys.readouterr().out


@pytest.mark.integration
async def test_simulated_station_reads_as_its_stub_says(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "substation-104", "--port", "0", "--seed", "2", "--tick-s", "0",
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("Serving substation-104 (seed 2, CA 1) on 127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split(";")[0])
        block = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "sim", "substation-104", "--port", str(port), "--print-config",
            cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )
        toml, _ = await asyncio.wait_for(block.communicate(), 30)
        cfg = load_with_header(tmp_path, toml.decode())
        readout = await read_devices(cfg)
        assert not readout.errors, readout.errors
        want = Iec104Substation(seed=2).reading(0)
        for p in POINTS:
            idx = next(i for i, q in enumerate(readout.catalog.points) if q.key == f"sim-substation-104.{p.name}")
            value, quality, reason = readout.last[idx]
            assert (quality.name, reason) == ("GOOD", None), p.name
            assert value == pytest.approx(want[p.name], rel=1e-12), p.name
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.integration
async def test_bench_smoke_prints_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "bench", "iec104", "--points", "200", "--rate", "2000", "--seconds", "1",
        "--json", str(out), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    figures = json.loads(out.read_text())
    for key in ("points_per_s", "cpu_fraction", "i_frames_per_s", "s_frames_sent", "reconnects"):
        assert key in figures
    assert figures["points"] == 200 and b"points/s" in stdout


def test_the_sample_config_is_valid() -> None:
    cfg = load(REPO / "drivers" / "iec104" / "sample.toml")
    (dev,) = cfg.devices
    assert dev.type == "iec104" and len(dev.points) == 6


def test_registered_as_a_pushed_driver_whose_connect_bound_is_t0_plus_t1() -> None:
    from gateway.core.driver import RunnerKind
    from gateway.driver_registry import BY_TYPE, DriverFactory

    dev = Iec104Device.model_validate({"type": "iec104", "name": "s", "host": "127.0.0.1", "t0_s": 5, "t1_s": 3,
                                       "t2_s": 2, "points": [{"name": "a", "ioa": 1, "type_id": "M_SP_NA_1"}]})
    spec = BY_TYPE["iec104"]
    assert spec.runner_kind(dev) is RunnerKind.PUSHED
    assert dev.timeout_ms == 9000  # the stream runner bounds connecting by timeout_ms: TCP + STARTDT + 1 s
    assert Iec104Device.model_validate({**dev.model_dump(by_alias=True), "timeout_ms": 20_000}).timeout_ms == 20_000
    assert type(DriverFactory().make(dev, 0)).__name__ == "Iec104Driver"
