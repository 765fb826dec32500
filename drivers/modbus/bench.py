"""`edgegw bench modbus`: N simulated PLCs of M holding registers in other processes, polled at 1 Hz.

The gateway side is the real thing minus the buffer and uplink: the config is parsed and the point
table built as for `edgegw run`, then one :class:`DeviceRunner` per device drives a
:class:`ModbusDriver` (one TCP connection each), and every poll batch goes through the normalise
stage.  Figures are per 1-second window after a warm-up; the table shows medians.  Asserts nothing.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import math
import operator
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from drivers.modbus.driver import LinePool, ModbusDriver
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.services import free_ports, rss_mb
from pipelines.normalise import Normalise

__all__ = ["BenchResult", "main", "run_bench"]


@dataclass(frozen=True, slots=True)
class BenchResult:
    devices: int
    registers: int
    points: int
    windows: int
    points_per_s: float  # medians over the 1-s windows
    cpu_fraction: float  # gateway process CPU seconds / wall seconds
    cpu_s_per_million_points: float
    requests_per_s: float
    requests_per_cycle: float
    min_requests_per_cycle: int
    deadline_misses: int  # total over the measured windows
    failed_polls: int
    rss_mb: float  # resident set size at the end
    peak_rss_mb: float
    load_average_1m: float
    setup_s: float
    cpu_quota: float | None = None  # the gateway's cgroup CPU quota in cores (--cpu-quota), None: none


_quality = operator.itemgetter(3)


def _points(registers: int) -> list[dict[str, Any]]:
    """One point per register: uint16 and int16, a fifth of them scaled (as a plant's tag list is)."""
    out: list[dict[str, Any]] = []
    for a in range(registers):
        p: dict[str, Any] = {"name": f"r{a:03d}", "address": a, "data_type": "int16" if a % 2 else "uint16"}
        if a % 5 == 0:
            p["scale"] = 0.1
        out.append(p)
    return out


async def _start_plcs(registers: int, ports: list[int], workers: int) -> list[asyncio.subprocess.Process]:
    procs = []
    per = math.ceil(len(ports) / workers)
    for w in range(workers):
        chunk = ports[w * per : (w + 1) * per]
        if not chunk:
            continue
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hil.bench_plcs", str(registers), *map(str, chunk),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if line.strip() != b"ready":
            raise RuntimeError("a simulated-PLC worker did not start")
    return procs


async def _stop_plcs(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.stdin is not None:
            proc.stdin.close()
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run_bench(
    devices: int = 200, registers: int = 125, seconds: int = 10, workers: int = 2, profile: str | None = None,
    confine: Callable[[], Callable[[], None]] | None = None, cpu_quota: float | None = None,
) -> BenchResult:
    """``confine``: called once the simulated PLCs run (they stay outside), puts this process under a
    CPU quota of ``cpu_quota`` cores and returns the undo (see gateway.cpuquota)."""
    import logging

    logging.getLogger("edgegw.runner").setLevel(logging.WARNING)  # not 200 "device is up" lines
    t_setup = time.monotonic()
    ports = free_ports(devices)
    points = _points(registers)
    cfg = parse({
        "gateway": {"id": "bench", "site": "bench", "enterprise_prefix": "88.608.5288"},
        "devices": [
            {"type": "modbus_tcp", "name": f"plc{d:04d}", "host": "127.0.0.1", "port": port, "unit_id": 1,
             "poll_interval_ms": 1000, "timeout_ms": 1000, "backoff_max_ms": 2000, "points": points}
            for d, port in enumerate(ports)
        ],
    })
    del points
    catalog = cfg.catalog()
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
        good += list(map(_quality, normalise(batch))).count(Quality.GOOD)  # counted in C, not a Python loop

    pool = LinePool()
    drivers = [ModbusDriver(dev, catalog.by_device[dev.name].start, pool) for dev in cfg.devices]  # type: ignore[arg-type]
    runners = [
        DeviceRunner(drv, catalog, emit, poll_interval_s=1.0, timeout_s=1.0, backoff_max_s=2.0,
                     schedules=drv.schedules(), retries=1, watchdog=False)
        for drv in drivers
    ]
    procs = await _start_plcs(registers, ports, workers)
    try:
        undo = confine() if confine is not None else None
    except BaseException:
        await _stop_plcs(procs)
        raise
    tasks = [asyncio.create_task(r.run(), name=f"device:{r.driver.name}") for r in runners]
    profiler = cProfile.Profile() if profile else None
    try:
        await all_polled.wait()  # every device polled once (jittered start)
        setup_s = time.monotonic() - t_setup
        await asyncio.sleep(1.0)

        def snapshot() -> tuple[float, float, int, int, int, int]:
            return (time.monotonic(), time.process_time(), good, sum(d.requests for d in drivers),
                    sum(r.health.deadline_misses for r in runners), sum(r.health.polls for r in runners))

        rows = []
        if profiler:
            profiler.enable()
        prev = snapshot()
        first = prev
        for _ in range(seconds):
            await asyncio.sleep(1.0)
            cur = snapshot()
            wall = cur[0] - prev[0]
            polls = cur[5] - prev[5]
            rows.append({
                "points_per_s": (cur[2] - prev[2]) / wall,
                "cpu_fraction": (cur[1] - prev[1]) / wall,
                "requests_per_s": (cur[3] - prev[3]) / wall,
                "requests_per_cycle": (cur[3] - prev[3]) * devices / polls if polls else 0.0,
            })
            prev = cur
        if profiler:
            profiler.disable()
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        pts = med["points_per_s"]
        result = BenchResult(
            devices=devices,
            registers=registers,
            points=len(catalog.points),
            windows=len(rows),
            points_per_s=round(pts, 1),
            cpu_fraction=round(med["cpu_fraction"], 4),
            cpu_s_per_million_points=round(med["cpu_fraction"] / pts * 1e6, 3) if pts else 0.0,
            requests_per_s=round(med["requests_per_s"], 1),
            requests_per_cycle=round(med["requests_per_cycle"], 2),
            min_requests_per_cycle=devices * math.ceil(registers / 125),
            deadline_misses=prev[4] - first[4],
            failed_polls=sum(r.health.failed_polls for r in runners),
            rss_mb=round(rss_mb(), 1),
            peak_rss_mb=round(max(rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), 1),
            load_average_1m=round(os.getloadavg()[0], 2),
            setup_s=round(setup_s, 2),
            cpu_quota=cpu_quota,
        )
        if profiler and profile:
            profiler.dump_stats(profile)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
        return result
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if undo is not None:
            undo()
        await _stop_plcs(procs)


def format_table(r: BenchResult) -> str:
    rows = [
        ("devices x registers", f"{r.devices} x {r.registers} ({r.points} points)"),
        ("points/s (median)", f"{r.points_per_s:,.0f}"),
        ("gateway CPU fraction (median)", f"{r.cpu_fraction:.3f}  target <= 0.10"),
        ("CPU s per million points", f"{r.cpu_s_per_million_points:.2f}"),
        ("requests/s (median)", f"{r.requests_per_s:,.0f}"),
        ("requests per cycle (median)", f"{r.requests_per_cycle:g}  minimum {r.min_requests_per_cycle}"),
        ("deadline misses", f"{r.deadline_misses}  in {r.windows} s"),
        ("failed polls", f"{r.failed_polls}"),
        ("RSS MB (end / peak)", f"{r.rss_mb:.1f} / {r.peak_rss_mb:.1f}  target <= 100"),
        ("load average (1 min)", f"{r.load_average_1m:.2f}"),
        ("CPU quota (cores)", "none" if r.cpu_quota is None else f"{r.cpu_quota:g} (cgroup)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(devices: int, registers: int, json_path: str | None, seconds: int = 10, workers: int = 2,
         profile: str | None = None, confine: Callable[[], Callable[[], None]] | None = None,
         cpu_quota: float | None = None) -> BenchResult:
    result = asyncio.run(run_bench(devices, registers, seconds, workers, profile, confine, cpu_quota))
    print(format_table(result))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(json.dumps(asdict(result), indent=2) + "\n")
    return result
