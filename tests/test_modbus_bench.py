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
