"""`edgegw bench opcua`: N monitored items changing every second on a server in another process.

The default server is node-opcua (hil/node_opcua): it offers the full 10,000 changes/s, where the
asyncua simulator (``--server asyncua``) tops out near 8,000 on a 2-core machine.  Measures what the
gateway pays, not the server: notifications/s received, the gateway process's CPU
seconds per wall second while streaming, and the time from a server restart (the server process is
killed and started again on the same port) to data flowing again.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from gateway.config import parse
from gateway.core.point import SampleBatch
from gateway.runner import StreamRunner
from hil.opcua_server import bench_node_id
from hil.services import free_port

__all__ = ["BenchResult", "run_bench"]


@dataclass(frozen=True, slots=True)
class BenchResult:
    items: int
    window_s: float
    notifications: int
    notifications_per_s: float
    cpu_fraction: float
    reconnect_s: float | None
    subscribe_s: float
    server: str
    notifications_per_publish: float
    load_avg_1m: float  # of the whole machine when the window ended: the figures are only as quiet as it


async def _start_server(port: int, items: int, server: str, workdir: str) -> asyncio.subprocess.Process:
    if server == "node-opcua":
        from hil.node_opcua_peer import NODE_DIR

        proc = await asyncio.create_subprocess_exec(
            "node", str(NODE_DIR / "server.js"), str(port), workdir, str(items),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "HOME": workdir},
        )
    else:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hil.opcua_server", "--port", str(port), "--items", str(items), "--plants", "",
            "--tick-s", "1",
            stdout=asyncio.subprocess.PIPE,
        )
    assert proc.stdout is not None
    line = b""
    while not line.startswith(b"READY"):  # node-opcua logs to stdout before it is ready
        line = await proc.stdout.readline()
        if not line:
            break
    if proc.stdout is not None and server == "node-opcua":
        asyncio.get_running_loop().create_task(_drain(proc.stdout))
    if not line.startswith(b"READY"):
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"benchmark server did not start: {line!r}")
    return proc


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        async with asyncio.timeout(5):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def run_bench(
    items: int = 10_000,
    window_s: float = 10.0,
    restart: bool = True,
    server_kind: str = "node-opcua",
    profile_path: str | None = None,
) -> BenchResult:
    port = free_port()
    ns = 1 if server_kind == "node-opcua" else 2
    points: list[dict[str, Any]] = [
        {"name": f"i{i:05d}", "node_id": bench_node_id(i, ns)} for i in range(items)
    ]
    path = "" if server_kind == "node-opcua" else "/edgegw/"
    workdir = tempfile.mkdtemp(prefix="edgegw-bench-")
    cfg = parse({
        "gateway": {"id": "bench", "site": "bench", "enterprise_prefix": "88.608.5288"},
        "devices": [{
            "type": "opcua", "name": "bench", "endpoint": f"opc.tcp://127.0.0.1:{port}{path}",
            "security_policy": "None", "security_mode": "None", "allow_no_security": True,
            "publishing_interval_ms": 500, "sampling_interval_ms": 500, "timeout_ms": 10_000,
            "backoff_max_ms": 1000, "points": points,
        }],
    })
    catalog = cfg.catalog()
    from drivers.opcua.driver import OpcUaDriver

    driver = OpcUaDriver(cfg.devices[0], 0)  # type: ignore[arg-type]
    received = 0
    target = items  # `reached` is set once `received` gets here
    reached = asyncio.Event()
    down = asyncio.Event()

    async def sink(batch: SampleBatch) -> None:
        nonlocal received
        good = sum(1 for s in batch if s[2] is not None)
        received += good
        if received >= target:
            reached.set()
        if batch and not good and len(batch) == items:  # the runner reports every point bad: device down
            down.set()

    server = await _start_server(port, items, server_kind, workdir)
    runner = StreamRunner(driver, catalog, sink, connect_timeout_s=60, backoff_max_s=1.0, backoff_initial_s=0.2)
    t0 = time.monotonic()
    task = asyncio.create_task(runner.run())
    try:
        await reached.wait()  # the initial values of every item
        subscribe_s = time.monotonic() - t0
        await asyncio.sleep(1.5)  # warm-up: past the first burst
        profiler = None
        if profile_path:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        n0, c0, w0, p0 = received, time.process_time(), time.monotonic(), driver.counters.publish_responses
        await asyncio.sleep(window_s)
        n1, c1, w1, p1 = received, time.process_time(), time.monotonic(), driver.counters.publish_responses
        load = os.getloadavg()[0]
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
        reconnect_s: float | None = None
        if restart:
            await _stop(server)
            await down.wait()
            server = await _start_server(port, items, server_kind, workdir)
            back = time.monotonic()
            target = received + items // 2  # half the items delivered again = data flowing
            reached.clear()
            await reached.wait()
            reconnect_s = time.monotonic() - back
        return BenchResult(
            items=items,
            window_s=round(w1 - w0, 3),
            notifications=n1 - n0,
            notifications_per_s=round((n1 - n0) / (w1 - w0), 1),
            cpu_fraction=round((c1 - c0) / (w1 - w0), 4),
            reconnect_s=None if reconnect_s is None else round(reconnect_s, 3),
            subscribe_s=round(subscribe_s, 3),
            server=server_kind,
            notifications_per_publish=round((n1 - n0) / max(1, p1 - p0), 1),
            load_avg_1m=round(load, 2),
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await _stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


def median_of(results: list[BenchResult]) -> dict[str, Any]:
    """Per-field medians of several runs (the machine is shared: one run proves little)."""
    out: dict[str, Any] = {}
    for name, first in asdict(results[0]).items():
        values = [getattr(r, name) for r in results]
        if isinstance(first, int | float) and all(isinstance(v, int | float) for v in values):
            out[name] = statistics.median(values)
        elif all(v is None for v in values) or isinstance(first, str):
            out[name] = first
        else:
            numbers = [v for v in values if isinstance(v, int | float)]
            out[name] = statistics.median(numbers) if numbers else None
    out["runs"] = len(results)
    return out


def main(
    items: int,
    json_path: str | None,
    window_s: float,
    restart: bool,
    server_kind: str = "node-opcua",
    runs: int = 1,
    profile_path: str | None = None,
) -> list[BenchResult]:
    results: list[BenchResult] = []
    for i in range(runs):
        result = asyncio.run(run_bench(items, window_s, restart, server_kind, profile_path if i == 0 else None))
        results.append(result)
        print(json.dumps(asdict(result), indent=2))
    doc: dict[str, Any] = asdict(results[0])
    if runs > 1:
        doc = {**median_of(results), "all_runs": [asdict(r) for r in results]}
        print("median:", json.dumps({k: v for k, v in doc.items() if k != "all_runs"}, indent=2))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
    return results
