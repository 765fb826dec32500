"""`edgegw bench dlt645`: L serial device servers (transparent TCP) with M meters each, in another process,
every meter's 22 points polled in turn through the real driver and runner, then the normalise stage.

A real RS-485 line at 2400 baud carries about 8 reads a second, so a plant needs many lines; this
measures what the gateway spends per point when the line is not the limit (loopback, no frame gap).
Figures are per 1-second window after a warm-up; the table shows medians.  Asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from drivers.dlt645.driver import Dlt645Driver, LinePool
from firmware_stubs.energy_meters import EnergyMeter, plant_meters
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.services import free_ports, stop_process
from pipelines.normalise import Normalise

__all__ = ["BenchResult", "main", "run_bench"]

_quality = operator.itemgetter(3)


@dataclass(frozen=True, slots=True)
class BenchResult:
    lines: int
    meters: int
    points: int
    poll_interval_s: float
    windows: int
    points_per_s: float  # good points after normalise, median over 1-s windows
    requests_per_s: float
    cpu_fraction: float  # gateway process CPU seconds / wall seconds
    cpu_s_per_million_points: float
    failed_polls: int
    deadline_misses: int
    load_average_1m: float


async def run_bench(lines: int = 8, meters: int = 8, seconds: int = 10, poll_interval_s: float = 1.0) -> BenchResult:
    import logging

    logging.getLogger("edgegw.runner").setLevel(logging.WARNING)
    ports = free_ports(lines)
    devices: list[dict[str, Any]] = []
    for n, port in enumerate(ports):
        for m in plant_meters(seed=n + 1, count=meters):
            devices.append({"type": "dlt645_tcp", "name": f"l{n}-{m.address}", "host": "127.0.0.1", "port": port,
                            "address": m.address, "frame_gap_ms": 0, "poll_interval_ms": int(poll_interval_s * 1000),
                            "timeout_ms": 1000, "points": EnergyMeter.point_config()})
    cfg = parse({"gateway": {"id": "bench", "site": "bench", "enterprise_prefix": "88.608.5288"}, "devices": devices})
    catalog = cfg.catalog()
    normalise = Normalise(catalog.specs)
    good = 0
    polled: set[str] = set()
    all_polled = asyncio.Event()

    async def emit(batch: SampleBatch) -> None:
        nonlocal good
        if not all_polled.is_set() and batch:
            polled.add(catalog.points[batch[0][0]].device)
            if len(polled) == len(devices):
                all_polled.set()
        good += list(map(_quality, normalise(batch))).count(Quality.GOOD)

    pool = LinePool()
    drivers = [Dlt645Driver(d, catalog.by_device[d.name].start, pool) for d in cfg.devices]  # type: ignore[arg-type]
    runners = [DeviceRunner(drv, catalog, emit, poll_interval_s=poll_interval_s, timeout_s=1.0, backoff_max_s=2.0,
                            retries=1, watchdog=False, suspend_after=2) for drv in drivers]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.dlt645_server", str(meters), *map(str, ports),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    tasks: list[asyncio.Task[None]] = []
    try:
        if (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("the simulated meters did not start")
        tasks = [asyncio.create_task(r.run()) for r in runners]
        await asyncio.wait_for(all_polled.wait(), 60)
        await asyncio.sleep(poll_interval_s)

        def snapshot() -> tuple[float, float, int, int, int]:
            return (time.monotonic(), time.process_time(), good, sum(d.requests for d in drivers),
                    sum(r.health.deadline_misses for r in runners))

        rows = []
        prev = first = snapshot()
        for _ in range(seconds):
            await asyncio.sleep(1.0)
            cur = snapshot()
            wall = cur[0] - prev[0]
            rows.append({"points_per_s": (cur[2] - prev[2]) / wall, "cpu_fraction": (cur[1] - prev[1]) / wall,
                         "requests_per_s": (cur[3] - prev[3]) / wall})
            prev = cur
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        pts = med["points_per_s"]
        return BenchResult(
            lines=lines, meters=lines * meters, points=len(catalog.points), poll_interval_s=poll_interval_s,
            windows=len(rows), points_per_s=round(pts, 1), requests_per_s=round(med["requests_per_s"], 1),
            cpu_fraction=round(med["cpu_fraction"], 4),
            cpu_s_per_million_points=round(med["cpu_fraction"] / pts * 1e6, 2) if pts else 0.0,
            failed_polls=sum(r.health.failed_polls for r in runners), deadline_misses=prev[4] - first[4],
            load_average_1m=round(os.getloadavg()[0], 2),
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await stop_process(proc, 10, by_stdin=True)


def format_table(r: BenchResult) -> str:
    rows = [
        ("lines x meters",
         f"{r.lines} x {r.meters // r.lines} ({r.points} points, polled every {r.poll_interval_s:g} s)"),
        ("points/s (median)", f"{r.points_per_s:,.0f}"),
        ("requests/s (median)", f"{r.requests_per_s:,.0f}"),
        ("gateway CPU fraction (median)", f"{r.cpu_fraction:.3f}"),
        ("CPU s per million points", f"{r.cpu_s_per_million_points:.2f}"),
        ("failed polls", f"{r.failed_polls}"),
        ("deadline misses", f"{r.deadline_misses}  in {r.windows} s"),
        ("load average (1 min)", f"{r.load_average_1m:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(
    lines: int, meters: int, json_path: str | None, seconds: int = 10, poll_interval_s: float = 1.0
) -> BenchResult:
    result = asyncio.run(run_bench(lines, meters, seconds, poll_interval_s))
    print(format_table(result))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(json.dumps(asdict(result), indent=2) + "\n")
    return result
