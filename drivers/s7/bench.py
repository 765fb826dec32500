"""`edgegw bench s7`: N simulated S7 CPUs in other processes, each a DB of P points, polled at 1 Hz.

The gateway side is the real thing minus the buffer and uplink: the config is parsed and the point
table built as for `edgegw run`, one :class:`DeviceRunner` per device drives an :class:`S7Driver`
(one ISO-on-TCP connection each, PDU 480), every poll batch goes through the normalise stage.  The
CPUs are ``hil.s7_peer`` servers (asyncio, light enough that the gateway is what is measured).
Figures are per 1-second window after a warm-up; the table shows medians.  Asserts nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import operator
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from drivers.s7.driver import S7Driver
from drivers.s7.plan import lower_bound
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.services import rss_mb, stop_process
from pipelines.normalise import Normalise

__all__ = ["BenchResult", "main", "run_bench"]

_quality = operator.itemgetter(3)


@dataclass(frozen=True, slots=True)
class BenchResult:
    devices: int
    points_per_device: int
    windows: int
    points_per_s: float  # medians over the 1-s windows
    cpu_fraction: float  # gateway process CPU seconds / wall seconds
    cpu_s_per_million_points: float
    requests_per_cycle: float  # per device
    min_requests_per_cycle: int  # per device: no plan can use fewer
    pdu_size: int
    deadline_misses: int
    failed_polls: int
    rss_mb: float
    load_average_1m: float


def _points(n: int) -> list[dict[str, Any]]:
    """REAL, INT and BOOL in turn, one every 4 bytes of DB1, a fifth of them scaled."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        kind = i % 3
        address = (f"DB1.DBD{4 * i}", f"DB1.DBW{4 * i}", f"DB1.DBX{4 * i}.0")[kind]
        p: dict[str, Any] = {"name": f"p{i:04d}", "address": address, "data_type": ("real", "int", "bool")[kind]}
        if i % 5 == 0 and kind != 2:
            p["scale"] = 0.1
        out.append(p)
    return out


async def _start(points: int, devices: int, workers: int) -> tuple[list[asyncio.subprocess.Process], list[int]]:
    """Worker processes serving ``devices`` CPUs on ports they bound themselves: (processes, ports)."""
    procs = []
    per = math.ceil(devices / workers)
    for w in range(workers):
        count = min(per, devices - w * per)
        if count > 0:
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hil.s7_peer", str(points), str(count),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE))
    ports: list[int] = []
    for proc in procs:
        assert proc.stdout is not None
        words = (await asyncio.wait_for(proc.stdout.readline(), 120)).split()
        if not words or words[0] != b"ready":
            await _stop(procs)
            raise BenchError("a simulated-CPU worker did not start")
        ports += [int(w) for w in words[1:]]
    return procs, ports


class BenchError(Exception):
    """The benchmark could not run (printed as one line by the CLI)."""


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    await asyncio.gather(*(stop_process(p, 10, by_stdin=True) for p in procs))


async def run_bench(devices: int = 50, points: int = 200, seconds: int = 10, workers: int = 2) -> BenchResult:
    import logging

    logging.getLogger("edgegw.runner").setLevel(logging.WARNING)
    procs, ports = await _start(points, devices, workers)
    cfg = parse({
        "gateway": {"id": "bench", "site": "bench", "enterprise_prefix": "88.608.5288"},
        "devices": [{"type": "s7", "name": f"cpu{d:04d}", "host": "127.0.0.1", "port": port, "family": "s7-1500",
                     "poll_interval_ms": 1000, "timeout_ms": 1000, "backoff_max_ms": 2000, "points": _points(points)}
                    for d, port in enumerate(ports)],
    })
    catalog = cfg.catalog()  # built once, by parse
    normalise = Normalise(catalog.specs)
    good = 0
    polled: set[str] = set()
    all_polled = asyncio.Event()

    async def emit(batch: SampleBatch) -> None:
        nonlocal good
        if not all_polled.is_set() and batch:
            polled.add(catalog.points[batch[0][0]].device)
            if len(polled) == devices:
                all_polled.set()
        good += list(map(_quality, normalise(batch))).count(Quality.GOOD)

    drivers = [S7Driver(dev, catalog.by_device[dev.name].start) for dev in cfg.devices]  # type: ignore[arg-type]
    runners = [DeviceRunner(d, catalog, emit, poll_interval_s=1.0, timeout_s=1.0, backoff_max_s=2.0) for d in drivers]
    tasks = [asyncio.create_task(r.run(), name=f"device:{r.driver.name}") for r in runners]
    try:
        await asyncio.wait_for(all_polled.wait(), 120)
        await asyncio.sleep(1.0)

        def snap() -> tuple[float, float, int, int, int, int]:
            return (time.monotonic(), time.process_time(), good, sum(d.requests for d in drivers),
                    sum(r.health.deadline_misses for r in runners), sum(r.health.polls for r in runners))

        rows = []
        prev = first = snap()
        for _ in range(seconds):
            await asyncio.sleep(1.0)
            cur = snap()
            wall = cur[0] - prev[0]
            polls = cur[5] - prev[5]
            rows.append({"points_per_s": (cur[2] - prev[2]) / wall, "cpu_fraction": (cur[1] - prev[1]) / wall,
                         "requests_per_cycle": (cur[3] - prev[3]) / polls if polls else 0.0})
            prev = cur
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        d0 = drivers[0]
        assert d0.plan is not None
        counts = [c.count for req in d0.plan.requests for c in req]
        minimum = lower_bound(counts, d0.pdu_size, d0.config.max_items)
        pts = med["points_per_s"]
        return BenchResult(
            devices=devices, points_per_device=points, windows=len(rows), points_per_s=round(pts, 1),
            cpu_fraction=round(med["cpu_fraction"], 4),
            cpu_s_per_million_points=round(med["cpu_fraction"] / pts * 1e6, 3) if pts else 0.0,
            requests_per_cycle=round(med["requests_per_cycle"], 2), min_requests_per_cycle=minimum,
            pdu_size=d0.pdu_size, deadline_misses=prev[4] - first[4],
            failed_polls=sum(r.health.failed_polls for r in runners), rss_mb=round(rss_mb(), 1),
            load_average_1m=round(os.getloadavg()[0], 2),
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _stop(procs)


def format_table(r: BenchResult) -> str:
    rows = [
        ("devices x points", f"{r.devices} x {r.points_per_device} ({r.devices * r.points_per_device} points)"),
        ("points/s (median)", f"{r.points_per_s:,.0f}"),
        ("gateway CPU fraction (median)", f"{r.cpu_fraction:.3f}"),
        ("CPU s per million points", f"{r.cpu_s_per_million_points:.2f}"),
        ("requests per device poll",
         f"{r.requests_per_cycle:g}  minimum {r.min_requests_per_cycle} (PDU {r.pdu_size})"),
        ("deadline misses", f"{r.deadline_misses}  in {r.windows} s"),
        ("failed polls", f"{r.failed_polls}"),
        ("RSS MB", f"{r.rss_mb:.1f}"),
        ("load average (1 min)", f"{r.load_average_1m:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(devices: int, points: int, json_path: str | None, seconds: int = 10, workers: int = 2,
         runs: int = 1) -> BenchResult:
    results = [asyncio.run(run_bench(devices, points, seconds, workers)) for _ in range(max(1, runs))]
    if len(results) == 1:
        result = results[0]
    else:
        fields = asdict(results[0])
        med = {k: (statistics.median(asdict(r)[k] for r in results) if isinstance(v, float)
                   else statistics.median_low(asdict(r)[k] for r in results)) for k, v in fields.items()}
        result = BenchResult(**med)
    print(format_table(result) + (f"\n(medians of {len(results)} runs)" if len(results) > 1 else ""))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(json.dumps({"median": asdict(result), "runs": [asdict(r) for r in results]}, indent=2) + "\n")
    return result
