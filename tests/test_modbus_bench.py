"""`edgegw bench modbus` end to end, tiny: the benchmark must not rot (figures are never asserted)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


async def test_bench_smoke_prints_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "bench", "modbus", "--devices", "3", "--registers", "130",
        "--seconds", "1", "--workers", "1", "--json", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    figures = json.loads(out.read_text())
    for key in ("points_per_s", "cpu_fraction", "requests_per_cycle", "min_requests_per_cycle", "deadline_misses",
                "rss_mb"):
        assert key in figures
    assert figures["min_requests_per_cycle"] == 6  # 130 registers: two reads per PLC
    assert figures["points"] == 390 and b"points/s" in stdout


async def test_bench_points_reports_scale_figures(tmp_path: Path) -> None:
    """`--points`: the real `edgegw run` in its own process on 2 simulated PLCs (figures never asserted
    against a speed; only that each is there and consistent with the others)."""
    out = tmp_path / "scale.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "bench", "modbus", "--points", "20", "--registers", "10",
        "--seconds", "2", "--workers", "1", "--json", str(out),  # 2 s: some polls in the window even when late
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    f = json.loads(out.read_text())
    assert (f["points"], f["devices"], f["registers"], f["runs_count"]) == (20, 2, 10, 1)
    for key in ("check_s", "startup_s", "cpu_s_per_million_points", "deadline_misses", "failed_polls", "rss_mb",
                "peak_rss_mb", "rss_bytes_per_point", "polled_points_per_s", "delivered_points_per_s",
                "startup_phases", "gateway_fds", "base_mb"):
        assert key in f, key
    assert f["check_s"] > 0 and f["startup_s"] > 0
    assert 0 < f["rss_mb"] <= f["peak_rss_mb"]
    assert abs(f["rss_bytes_per_point"] - (f["rss_mb"] - f["base_mb"]) * 2**20 / 20) < 2**20 / 20 * 0.1  # rounding
    assert 0 < f["polled_points_per_s"] < 100  # 20 points at 1 Hz: about 20
    assert f["failed_polls"] >= 0 and f["deadline_misses"] >= 0  # counts (a loaded machine may time a poll out)
    assert f["gateway_fds"] >= 2  # one connection per PLC at least
    assert b"RSS bytes per point" in stdout and b"edgegw check" in stdout


async def test_bench_points_that_do_not_split_say_so_in_one_line() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "bench", "modbus", "--points", "25", "--registers", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "not a multiple of --registers 10" in lines[0] and "--points 20" in lines[0]
