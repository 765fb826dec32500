"""Smoke test of the uplink benchmarks: each command runs with tiny sizes and writes its JSON keys.

Speed is never asserted here; the figures come from running the commands (see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.bench import encoding
from hil.services import Mosquitto

__all__: list[str] = []

CASES = {
    "pipeline": (["--points", "3000", "--points-per-poll", "100", "--batch-points", "1000"],
                 {"points_per_s", "limit_points_per_s", "ratio_to_limit"}),
    "latency": (["--rate", "2000", "--duration", "0.5", "--points-per-poll", "50"], {"p50_ms", "p99_ms"}),
    "drain": (["--points", "5000", "--rate", "2000", "--points-per-poll", "50", "--batch-points", "500"],
              {"drain_points_per_s", "live_points_per_s", "live_p99_ms", "rss_mb"}),
    "overload": (["--start", "2000", "--factor", "2", "--steps", "2", "--duration", "0.5", "--points-per-poll", "50"],
                 {"max_points_per_s_full_delivery", "cpu_fraction_at_max", "beyond_delivered_share",
                  "beyond_lag_p99_ms", "beyond_logged"}),
    "chain": (["--devices", "4", "--registers", "50", "--seconds", "2"],
              {"polled_points_per_s", "delivered_points_per_s", "delivered_share", "deadline_misses"}),
}


@pytest.mark.integration
@pytest.mark.parametrize("command", list(CASES))
def test_bench_command_writes_its_keys(command: str, tmp_path: Path, mosquitto: Mosquitto) -> None:
    # the `mosquitto` fixture only makes sure the broker is installed: each bench starts its own
    args, keys = CASES[command]
    out = tmp_path / f"{command}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "bench", command, *args, "--runs", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert keys <= set(result)
    assert len(result["runs"]) == 2 and len(result["load_avg"]) == 3
    assert "median" in proc.stdout
    if command == "chain":  # the real gateway polled the PLCs and its uplink delivered what it polled
        assert result["polled_points_per_s"] > 0 and result["delivered_points_per_s"] > 0
    else:  # the rig ships what the gateway's default uplink ships (wire format 2, zstd where installed)
        assert result["params"]["encoding"] == encoding() and encoding()["wire_format"] == 2


@pytest.mark.integration
def test_bench_wire_writes_its_keys(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`edgegw bench wire`: the two headline keys (the default settings), the table per batch size and
    codec, and the end-to-end figures through a real mosquitto (the bench starts its own)."""
    out = tmp_path / "wire.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "bench", "wire", "--runs", "1", "--e2e-seconds", "0.5",
         "--json", str(out)], capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert 0 < result["bytes_per_point_1000"] <= 6 and 0 < result["bytes_per_point_10"] <= 20
    assert {(r["batch_points"], r["codec"]) for r in result["table"]} >= {
        (b, c) for b in (10, 1000) for c in ("v2 none", "v2 zlib", "v2 zstd", "v2 zstd+dict (default)")}
    assert all(e["points"] > 0 and e["bytes_per_point"] > 0 for e in result["e2e"])
    assert "B/point" in proc.stdout


@pytest.mark.integration
def test_bench_ingest_writes_its_keys(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`edgegw bench ingest` at a small size with three writes in flight: real mosquitto,
    VictoriaMetrics and `edgegw ingest` processes (the bench starts its own); every point reaches the
    store (the drain waits for the store's count), so positive figures mean a complete drain."""
    out = tmp_path / "ingest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "bench", "ingest", "--points", "200000", "--runs", "1",
         "--writes-in-flight", "3", "--json", str(out)], capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["params"]["writes_in_flight"] == 3
    for key in ("points_per_s", "points_per_s_2procs", "limit_points_per_s", "ratio_to_limit"):
        assert result[key] > 0, (key, result)
    assert result["cpu_fraction"] >= 0
    assert result["ratio_to_limit"] == pytest.approx(result["points_per_s"] / result["limit_points_per_s"], rel=0.01)
