"""`edgegw bench iec104`: a station in another process sends time-tagged short floats spontaneously;
the real driver and stream runner receive them (acknowledging by w and t2, honouring k), then the
normalise stage.  Measures points/s delivered and the gateway process's CPU fraction, per 1-s window
after a warm-up; the table shows medians.  ``rate`` 0 offers as much as the k window lets through
(the ceiling); a paced rate shows the cost at a plant's load.  Asserts nothing.
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

from drivers.iec104.config import Iec104Device
from drivers.iec104.driver import Iec104Driver
from gateway.catalog import build_catalog
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import StreamRunner
from hil.services import free_port, stop_process
from pipelines.normalise import Normalise

__all__ = ["BenchResult", "main", "run_bench"]

_quality = operator.itemgetter(3)


@dataclass(frozen=True, slots=True)
class BenchResult:
    points: int
    offered_rate: float  # points/s the station aims at; 0 = as fast as the window allows
    windows: int
    points_per_s: float  # good points after normalise, median over 1-s windows
    cpu_fraction: float  # gateway process CPU seconds / wall seconds, median
    cpu_s_per_million_points: float
    i_frames_per_s: float
    s_frames_sent: int
    reconnects: int
    load_average_1m: float


async def run_bench(points: int = 2000, rate: float = 0.0, seconds: int = 10) -> BenchResult:
    import logging

    logging.getLogger("edgegw.runner").setLevel(logging.WARNING)
    port = free_port()
    cfg = parse({
        "gateway": {"id": "bench", "site": "bench", "enterprise_prefix": "88.608.5288"},
        "devices": [{"type": "iec104", "name": "station", "host": "127.0.0.1", "port": port,
                     "interrogation_period_s": 0, "points": [
                         {"name": f"m{i}", "ioa": i, "type_id": "M_ME_TF_1", "unit": "kV"}
                         for i in range(1, points + 1)]}],
    })
    catalog = build_catalog(cfg)
    normalise = Normalise(catalog.specs)
    good = 0
    first = asyncio.Event()

    async def emit(batch: SampleBatch) -> None:
        nonlocal good
        good += list(map(_quality, normalise(batch))).count(Quality.GOOD)
        first.set()

    dev = cfg.devices[0]
    assert isinstance(dev, Iec104Device)
    driver = Iec104Driver(dev, 0)
    runner = StreamRunner(driver, catalog, emit, connect_timeout_s=driver.connect_timeout_s, backoff_max_s=2.0)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil.iec104_server", str(port), str(points), str(rate),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    task: asyncio.Task[None] | None = None
    try:
        if (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("the bench station did not start")
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(first.wait(), 60)
        await asyncio.sleep(1.0)

        def snapshot() -> tuple[float, float, int, int]:
            return time.monotonic(), time.process_time(), good, driver.stats().get("i_received", 0)

        rows = []
        prev = snapshot()
        for _ in range(seconds):
            await asyncio.sleep(1.0)
            cur = snapshot()
            wall = cur[0] - prev[0]
            rows.append({"points_per_s": (cur[2] - prev[2]) / wall, "cpu_fraction": (cur[1] - prev[1]) / wall,
                         "i_frames_per_s": max(0, cur[3] - prev[3]) / wall})
            prev = cur
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        pts = med["points_per_s"]
        return BenchResult(
            points=points, offered_rate=rate, windows=len(rows), points_per_s=round(pts, 1),
            cpu_fraction=round(med["cpu_fraction"], 4),
            cpu_s_per_million_points=round(med["cpu_fraction"] / pts * 1e6, 2) if pts else 0.0,
            i_frames_per_s=round(med["i_frames_per_s"], 1), s_frames_sent=driver.stats().get("s_sent", 0),
            reconnects=runner.health.connects - 1, load_average_1m=round(os.getloadavg()[0], 2),
        )
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await stop_process(proc, 10, by_stdin=True)


def format_table(r: BenchResult) -> str:
    rows = [
        ("points", f"{r.points} short floats (M_ME_TF_1), offered "
                   + (f"{r.offered_rate:,.0f} points/s" if r.offered_rate else "as fast as k allows")),
        ("points/s (median)", f"{r.points_per_s:,.0f}"),
        ("I-frames/s (median)", f"{r.i_frames_per_s:,.0f}"),
        ("gateway CPU fraction (median)", f"{r.cpu_fraction:.3f}"),
        ("CPU s per million points", f"{r.cpu_s_per_million_points:.2f}"),
        ("S-frames sent", f"{r.s_frames_sent}"),
        ("reconnects", f"{r.reconnects}  in {r.windows} s"),
        ("load average (1 min)", f"{r.load_average_1m:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(points: int, rate: float, json_path: str | None, seconds: int = 10) -> BenchResult:
    result = asyncio.run(run_bench(points, rate, seconds))
    print(format_table(result))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(json.dumps(asdict(result), indent=2) + "\n")
    return result
