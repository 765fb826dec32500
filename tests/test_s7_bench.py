"""`edgegw bench s7` end to end, tiny: the benchmark must not rot (speed figures are never asserted)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


async def test_bench_smoke_prints_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "bench", "s7", "--devices", "3", "--points", "150",
        "--seconds", "1", "--workers", "1", "--json", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode()
    figures = json.loads(out.read_text())["median"]
    for key in ("points_per_s", "cpu_fraction", "requests_per_cycle", "min_requests_per_cycle", "deadline_misses",
                "rss_mb", "pdu_size"):
        assert key in figures
    # 150 points, one every 4 bytes: 600 bytes of DB1 at PDU 480 take two requests per poll
    assert figures["pdu_size"] == 480 and figures["min_requests_per_cycle"] == 2
    assert figures["failed_polls"] == 0 and b"points/s" in stdout
