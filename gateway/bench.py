"""`edgegw bench pipeline | latency | drain`: uplink-path benchmarks on a real mosquitto.

Each command starts its own mosquitto on 127.0.0.1 (hil.services), runs the real components
(Normalise, Batcher, Encoder, SqliteBuffer in fsync durability, Forwarder, MqttUplink) several
times, prints a table of the runs and their medians with the load average, and writes JSON with
``--json FILE``.  Figures only: nothing here asserts a speed.

- pipeline: synthetic source -> normalise + tag -> fsync buffer -> PUBACK; and, in the same run,
  the floor: pre-built batches through the same buffer and publish with no per-point work.
- latency: acquisition time -> PUBACK at a paced rate (25,000 points/s by default).
- drain: a backlog on disk drained while paced live data continues; RSS sampled throughout.
- overload: the offered rate raised step by step until less than 99 % is delivered; what the
  gateway logged (gateway.watch) at the step beyond.
- chain: simulated Modbus PLCs (other processes) polled at 1 Hz by the real gateway (drivers,
  pipeline, durable buffer, forwarder) into mosquitto: polled vs delivered points/s per durability.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from gateway.app import Batcher, Gateway, tune_gc, uplink_encoder
from gateway.buffer import SqliteBuffer
from gateway.catalog import Catalog, PointInfo, decimal_divisor
from gateway.codec import Encoder, inflate
from gateway.config import BufferConfig, UplinkConfig, parse
from gateway.core.point import SampleBatch, good_samples, index_int, now_ns
from gateway.forwarder import Forwarder
from gateway.sinks.mqtt import MqttUplink
from gateway.watch import Watch
from hil.services import Mosquitto, free_ports, rss_mb
from pipelines.pipeline import Pipeline
from pipelines.spec import PointSpec

__all__ = [
    "bench_chain", "bench_drain", "bench_latency", "bench_overload", "bench_pipeline", "burning", "main",
    "native_build", "synthetic_catalog", "with_sync_delay",
]

_SITE, _GW = "bench-site", "bench-gw"


def _uplink(port: int = 1883, max_inflight: int = 20) -> UplinkConfig:
    """The benches' uplink: the default settings (so the default wire format and compression), on the
    benchmark's own broker, where nobody subscribes (its PUBACK 0x10 counts as delivered)."""
    return UplinkConfig(port=port, topic_prefix="bench", max_inflight=max_inflight, timeout_s=30,
                        no_subscribers="accept")


def encoding() -> dict[str, Any]:
    """The encoding the benches ship (the gateway's default uplink), for the JSON params."""
    up = _uplink()
    enc = uplink_encoder(synthetic_catalog(1), up)
    return {"wire_format": enc.version, "compression": enc.compression, "payload_format": enc.payload_format,
            "native_build": native_build()}


def native_build() -> bool:
    """Whether the hot loops run compiled (the native build, setup.py), for the benches' JSON params."""
    from gateway import codec
    from pipelines import normalise

    return codec._KERNEL is not None and normalise._KERNEL is not None


def synthetic_catalog(n_points: int) -> Catalog:
    """A plant-like point table: half the points scaled by 0.1 (Modbus tenths), a quarter with an
    offset too, a quarter as read; some with a valid range."""
    pts = []
    for i in range(n_points):
        kind = i % 4
        scale, offset = ((0.1, 0.0), (0.1, 0.0), (0.01, -40.0), (1.0, 0.0))[kind]
        lo, hi = (0.0, 6553.5) if kind == 0 else (None, None)
        # the stages read the scaling from the spec (as compile_spec makes it from a config), not from
        # PointInfo's scale / offset: without it every value passed through as the raw int
        spec = PointSpec(scale=scale, divisor=decimal_divisor(scale), offset=offset, min=lo, max=hi)
        pts.append(PointInfo(
            i, f"plc{i // 100}.p{i % 100}", f"88.608.5288/DEV.{_SITE}.plc{i // 100}.p{i % 100}", f"plc{i // 100}",
            f"88.608.5288/DEV.{_SITE}.plc{i // 100}", ("degC", "kPa", "m3/h", "")[kind], scale, offset, lo, hi,
            "general", (("site", _SITE), ("asset", f"line{i // 500}")), spec,
        ))
    return Catalog(_GW, _SITE, tuple(pts), {})


class SyntheticSource:
    """Raw register-like integers for every point, one poll = one batch, deterministic.

    A poll's samples are built as the Modbus driver builds a block's (drivers/modbus/decode.py:
    :func:`~gateway.core.point.good_samples` over the point table's shared index ints, one time
    for the poll); the values are taken from eight precomputed cycles instead of being unpacked
    from a response."""

    def __init__(self, n_points: int) -> None:
        self.index = tuple(index_int(i) for i in range(n_points))
        self.cycles = [[(i * 7 + c * 13) % 60_000 for i in range(n_points)] for c in range(8)]
        self.n = 0

    def poll(self) -> SampleBatch:
        ts = now_ns()
        values = self.cycles[self.n % 8]
        self.n += 1
        return good_samples(self.index, ts, values)


@contextmanager
def broker() -> Iterator[Mosquitto]:
    work = Path(tempfile.mkdtemp(prefix="edgegw-bench-mqtt-"))
    work.chmod(0o755)  # mosquitto started as root reads its config as user 'mosquitto'
    svc = Mosquitto(workdir=work)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Rig:
    """One run's buffer, batcher and forwarder on a fresh fsync buffer file."""

    catalog: Catalog
    buffer: SqliteBuffer
    batcher: Batcher
    forwarder: Forwarder
    wake: asyncio.Event
    delivered: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})


@asynccontextmanager
async def _rig(
    port: int, workdir: Path, n_points: int, batch_points: int, linger_ms: int, *,
    backlog_share: float = 0.5, on_delivered: Callable[[bytes, bool], None] | None = None,
    prefill: Callable[[SqliteBuffer], None] | None = None, start_forwarder: bool = True, max_inflight: int = 20,
    durability: str = "fsync", max_bytes: int = 64 << 30, when_full: str = "block",
) -> AsyncIterator[Rig]:
    catalog = synthetic_catalog(n_points)
    path = workdir / f"buffer-{time.monotonic_ns()}.db"
    buffer = SqliteBuffer(path, max_bytes=max_bytes, when_full=when_full, durability=durability)
    wake = asyncio.Event()
    cfg = _uplink(port, max_inflight)
    fwd_box: list[Forwarder] = []  # natural batching, as in the gateway (Gateway._link_free)
    batcher = Batcher(catalog, buffer, BufferConfig(batch_max_points=batch_points, linger_ms=linger_ms), wake,
                      encoder=uplink_encoder(catalog, cfg),
                      link_free=lambda: bool(fwd_box) and fwd_box[0].stats.connected
                      and buffer.pending_batches < max_inflight)
    if prefill is not None:
        prefill(buffer)
    rig: Rig

    def delivered(payload: bytes, historical: bool) -> None:
        if on_delivered is not None:
            on_delivered(payload, historical)

    fwd = Forwarder(buffer, MqttUplink(cfg, _SITE, _GW), wake, max_inflight=cfg.max_inflight,
                    backlog_share=backlog_share, on_delivered=delivered)
    fwd_box.append(fwd)
    rig = Rig(catalog, buffer, batcher, fwd, wake)
    tasks = [asyncio.create_task(batcher.run(), name="batcher")]
    try:
        if start_forwarder:
            tasks.append(asyncio.create_task(fwd.run(), name="forwarder"))
        yield rig
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        buffer.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"benchmark timed out waiting for {what}")
        await asyncio.sleep(0.002)


# -- pipeline ------------------------------------------------------------------------------------
def _prebuilt(n_points: int, batch_points: int) -> bytes:
    """One encoded batch of ``batch_points`` samples: the floor's and the backlog's payload, with the
    stages run (scaled values, as the pipeline run sends) and the uplink's encoder."""
    catalog = synthetic_catalog(n_points)
    pipeline = Pipeline(catalog.specs)
    src = SyntheticSource(n_points)
    samples: SampleBatch = []
    while len(samples) < batch_points:
        samples.extend(pipeline(src.poll(), now_ns(), time.monotonic_ns())[0])
    encoder: Encoder = uplink_encoder(catalog, _uplink())
    return encoder.encode(samples[:batch_points], 1, now_ns())


async def _timed(port: int, workdir: Path, n_points: int, batch_points: int, total: int,
                 feed: Callable[[Rig], Awaitable[None]], durability: str = "fsync") -> float:
    """Points per second from the first point fed to the last PUBACK."""
    async with _rig(port, workdir, n_points, batch_points, 50, durability=durability) as rig:
        await _wait(lambda: rig.forwarder.stats.connected, 10, "the broker")
        t0 = time.perf_counter()
        await feed(rig)
        await _wait(lambda: rig.forwarder.stats.published_points >= total, 600, "PUBACKs")
        return total / (time.perf_counter() - t0)


async def _pipeline_once(port: int, workdir: Path, total: int, n_points: int, batch_points: int,
                         durability: str = "fsync") -> float:
    src = SyntheticSource(n_points)
    polls = max(1, total // n_points)

    async def feed(rig: Rig) -> None:
        for _ in range(polls):
            await rig.batcher.submit(src.poll())

    return await _timed(port, workdir, n_points, batch_points, polls * n_points, feed, durability)


async def _floor_once(port: int, workdir: Path, total: int, n_points: int, batch_points: int,
                      durability: str = "fsync") -> float:
    """The same buffer and publish path with pre-built batches: what the I/O alone allows."""
    payload = _prebuilt(n_points, batch_points)
    batches = max(1, total // batch_points)

    async def feed(rig: Rig) -> None:
        # the batcher's own path: each batch committed on the buffer's writer thread and awaited
        for _ in range(batches):
            await rig.batcher.writer.put(payload, batch_points)
            rig.wake.set()

    return await _timed(port, workdir, n_points, batch_points, batches * batch_points, feed, durability)


@contextmanager
def burning(cores: int) -> Iterator[None]:
    """``cores`` busy-loop processes for the duration (``--burn-core``): another program on the box
    taking a whole core each, as the edge PCs' other software does."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def with_sync_delay(ms: float, argv: list[str]) -> None:
    """Run this command again with every fsync of the process (and its broker) ``ms`` slower, as cheap
    eMMC / SD storage: the hil/powercut preload library with EDGEGW_FAULT_SYNC_DELAY_US.  Returns
    only when already running so (the library is loaded at process start, hence the re-exec)."""
    if os.environ.get("EDGEGW_FAULT_SYNC_DELAY_US") is not None:
        return
    from hil.powercut import build_library

    lib = build_library(Path(tempfile.mkdtemp(prefix="edgegw-bench-lib-")))
    env = {**os.environ, "EDGEGW_FAULT_SYNC_DELAY_US": str(int(ms * 1000)),
           "LD_PRELOAD": " ".join(p for p in (str(lib), os.environ.get("LD_PRELOAD", "")) if p)}
    os.execve(sys.executable, [sys.executable, "-m", "gateway.cli", *argv], env)


def _sync_delay_ms() -> float:
    return int(os.environ.get("EDGEGW_FAULT_SYNC_DELAY_US", "0") or 0) / 1000


async def bench_pipeline(total: int, n_points: int, batch_points: int, runs: int,
                         durability: str = "fsync", burn_cores: int = 0) -> dict[str, Any]:
    with broker() as mq, tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp, burning(burn_cores):
        rows = []
        for _ in range(runs):
            pipe = await _pipeline_once(mq.port, Path(tmp), total, n_points, batch_points, durability)
            floor = await _floor_once(mq.port, Path(tmp), total, n_points, batch_points, durability)
            rows.append({"points_per_s": pipe, "limit_points_per_s": floor, "ratio_to_limit": pipe / floor})
    return _summary("pipeline", rows, {"points": total, "points_per_poll": n_points, "batch_points": batch_points,
                                       "durability": durability, "burn_cores": burn_cores,
                                       "sync_delay_ms": _sync_delay_ms(), "encoding": encoding()},
                    {"points_per_s": ">= 300000", "ratio_to_limit": ">= 0.5"})


# -- latency -------------------------------------------------------------------------------------
class LatencyProbe:
    """Acquisition -> PUBACK per point, from the source times in each delivered batch.

    Kept as a histogram of 0.1 ms buckets, not a list: the probe must not be what makes RSS grow
    during a long drain."""

    def __init__(self, historical: bool = False) -> None:
        self.historical = historical
        self.buckets: Counter[int] = Counter()
        self.points = 0
        self.recording = False

    def __call__(self, payload: bytes, historical: bool) -> None:
        if historical != self.historical or not self.recording:
            return
        now = now_ns()
        ts = source_times(payload)
        self.points += len(ts)
        self.buckets.update((now - t) // 100_000 for t in ts)

    def percentile(self, q: float) -> float:
        if not self.points:
            return float("nan")
        rank = q * self.points
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen > rank:
                return (bucket + 1) / 10  # upper edge of the bucket, ms
        return (max(self.buckets) + 1) / 10


def source_times(payload: bytes) -> list[int]:
    """The source times of a batch as published (v1 or v2, compressed or not), without decoding values."""
    doc = msgpack.unpackb(payload)
    if "z" in doc:
        doc = inflate(doc)
    if doc.get("v") == 2:
        return list(itertools.accumulate(doc["ts"])) if "ts" in doc else list(doc.get("ta", []))
    return list(doc["ts"])


async def _paced_source(rig: Rig, src: SyntheticSource, rate: float, stop: asyncio.Event) -> None:
    """Submit one poll every n_points / rate seconds on an absolute schedule (no drift)."""
    period = len(src.index) / rate
    nxt = time.monotonic()
    while not stop.is_set():
        await rig.batcher.submit(src.poll())
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()


async def _latency_once(port: int, workdir: Path, rate: float, duration_s: float, n_points: int,
                        linger_ms: int) -> dict[str, float]:
    probe = LatencyProbe()
    src = SyntheticSource(n_points)
    stop = asyncio.Event()
    async with _rig(port, workdir, n_points, 5000, linger_ms, on_delivered=probe) as rig:
        await _wait(lambda: rig.forwarder.stats.connected, 10, "the broker")
        feeder = asyncio.create_task(_paced_source(rig, src, rate, stop))
        try:
            await asyncio.sleep(min(1.0, duration_s / 5))  # warm-up, not recorded
            probe.recording = True
            t0 = time.perf_counter()
            await asyncio.sleep(duration_s)
            probe.recording = False
            elapsed = time.perf_counter() - t0
        finally:
            stop.set()
            await feeder
    return {"p50_ms": probe.percentile(0.50), "p99_ms": probe.percentile(0.99),
            "points_per_s": probe.points / elapsed}


async def bench_latency(rate: float, duration_s: float, n_points: int, linger_ms: int, runs: int,
                        burn_cores: int = 0) -> dict[str, Any]:
    with broker() as mq, tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp, burning(burn_cores):
        rows = [await _latency_once(mq.port, Path(tmp), rate, duration_s, n_points, linger_ms) for _ in range(runs)]
    return _summary("latency", rows, {"rate_points_per_s": rate, "duration_s": duration_s,
                                      "points_per_poll": n_points, "linger_ms": linger_ms,
                                      "burn_cores": burn_cores, "sync_delay_ms": _sync_delay_ms(),
                                      "encoding": encoding()},
                    {"p99_ms": "<= 50"})


# -- drain ---------------------------------------------------------------------------------------
async def _drain_once(port: int, workdir: Path, backlog: int, rate: float, n_points: int, batch_points: int,
                      linger_ms: int, share: float, max_inflight: int) -> dict[str, float]:
    src = SyntheticSource(n_points)
    payload = _prebuilt(n_points, batch_points)
    batches = max(1, backlog // batch_points)
    backlog = batches * batch_points

    def prefill(buf: SqliteBuffer) -> None:  # what piled up on disk while the uplink was down
        for _ in range(batches):
            buf.put(payload, batch_points)

    probe = LatencyProbe()
    stop = asyncio.Event()
    rss: list[float] = []
    async with _rig(port, workdir, n_points, 5000, linger_ms, backlog_share=share, on_delivered=probe,
                    prefill=prefill, start_forwarder=False, max_inflight=max_inflight) as rig:
        rss.append(rss_mb())
        feeder = asyncio.create_task(_paced_source(rig, src, rate, stop))
        fwd = asyncio.create_task(rig.forwarder.run())
        try:
            probe.recording = True
            t0 = time.perf_counter()
            next_rss = t0
            while rig.forwarder.stats.historical_points < backlog:
                await asyncio.sleep(0.01)
                if time.perf_counter() >= next_rss:
                    rss.append(rss_mb())
                    next_rss += 0.5
                if time.perf_counter() - t0 > 3600:
                    raise TimeoutError("drain did not finish within an hour")
            elapsed = time.perf_counter() - t0
            probe.recording = False
            rss.append(rss_mb())
        finally:
            stop.set()
            await feeder
            fwd.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fwd
    return {"drain_points_per_s": backlog / elapsed, "live_points_per_s": probe.points / elapsed,
            "live_p99_ms": probe.percentile(0.99), "live_p50_ms": probe.percentile(0.50),
            "rss_mb": max(rss), "rss_start_mb": rss[0], "rss_end_mb": rss[-1], "drain_s": elapsed}


async def bench_drain(backlog: int, rate: float, n_points: int, batch_points: int, linger_ms: int, share: float,
                      runs: int, max_inflight: int = 20) -> dict[str, Any]:
    with broker() as mq, tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp:
        rows = [await _drain_once(mq.port, Path(tmp), backlog, rate, n_points, batch_points, linger_ms, share,
                                  max_inflight) for _ in range(runs)]
    return _summary("drain", rows, {"backlog_points": backlog, "live_rate_points_per_s": rate,
                                    "backlog_batch_points": batch_points, "backlog_share": share,
                                    "max_inflight": max_inflight,
                                    "linger_ms": linger_ms, "encoding": encoding()},
                    {"drain_points_per_s": ">= 500000", "live_p99_ms": "<= 200", "rss_mb": "flat"})


# -- overload ------------------------------------------------------------------------------------
class _Captured(logging.Handler):
    """WARNING and worse lines of the gateway's loggers during one step."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _watch_loop(rig: Rig, watch: Watch) -> None:
    """What the gateway's upkeep task does: sync / expire, loop lateness, the watch once a second."""
    ticks = 0
    while True:
        before = time.monotonic_ns()
        await asyncio.sleep(0.1)
        watch.loop_late(time.monotonic_ns() - before - 100_000_000)
        await rig.batcher.writer.maintain()
        ticks += 1
        if ticks % 10 == 0:
            watch.check()


async def _overload_step(port: int, workdir: Path, rate: float, duration_s: float, n_points: int,
                         durability: str, max_bytes: int, lag_warn_s: float) -> dict[str, Any]:
    probe = LatencyProbe()
    src = SyntheticSource(n_points)
    stop = asyncio.Event()
    captured = _Captured()
    logger = logging.getLogger("edgegw")
    async with _rig(port, workdir, n_points, 1000, 200, on_delivered=probe, durability=durability,
                    max_bytes=max_bytes, when_full="drop_oldest") as rig:
        await _wait(lambda: rig.forwarder.stats.connected, 10, "the broker")
        watch = Watch(rig.buffer, lag_warn_s=lag_warn_s, quiet_s=2.0)
        logger.addHandler(captured)
        upkeep = asyncio.create_task(_watch_loop(rig, watch))
        probe.recording = True
        cpu0, t0 = time.process_time(), time.perf_counter()
        feeder = asyncio.create_task(_paced_source(rig, src, rate, stop))
        try:
            await asyncio.sleep(duration_s)
            stop.set()
            await feeder
            # a short grace for what was in the pipe; a pipeline that is behind stays behind
            await asyncio.sleep(1.0)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            delivered = rig.forwarder.stats.published_points
            watch.check()
            watch.close()
        finally:
            stop.set()
            upkeep.cancel()
            await asyncio.gather(upkeep, return_exceptions=True)
            logger.removeHandler(captured)
        counters = rig.buffer.counters()
    offered = src.n * n_points
    return {"rate": rate, "offered_points": offered, "nominal_points": int(rate * duration_s),
            "delivered_share": delivered / max(1, int(rate * duration_s)),
            "lag_p50_ms": probe.percentile(0.5), "lag_p99_ms": probe.percentile(0.99),
            "cpu_fraction": cpu / elapsed, "dropped_points": counters["dropped_oldest_points"],
            "warnings": len(captured.lines), "logged": captured.lines[:12]}


async def bench_overload(start: float, factor: float, steps: int, duration_s: float, n_points: int, runs: int,
                         durability: str, max_bytes: int, lag_warn_s: float) -> dict[str, Any]:
    """Raise the offered rate by ``factor`` per step until less than 99 % is delivered."""
    rows: list[dict[str, float]] = []
    beyond_runs: list[dict[str, Any]] = []
    with broker() as mq, tempfile.TemporaryDirectory(prefix="edgegw-bench-") as tmp:
        for _ in range(runs):
            rate, best, beyond = start, None, None
            for _step in range(steps):
                step = await _overload_step(mq.port, Path(tmp), rate, duration_s, n_points, durability, max_bytes,
                                            lag_warn_s)
                if step["delivered_share"] < 0.99:
                    beyond = step
                    break
                best = step
                rate *= factor
            beyond_runs.append(beyond or {})
            nan = float("nan")
            rows.append({
                "max_points_per_s_full_delivery": best["rate"] if best else nan,
                "cpu_fraction_at_max": best["cpu_fraction"] if best else nan,
                "beyond_points_per_s": beyond["rate"] if beyond else nan,
                "beyond_delivered_share": beyond["delivered_share"] if beyond else nan,
                "beyond_lag_p50_ms": beyond["lag_p50_ms"] if beyond else nan,
                "beyond_lag_p99_ms": beyond["lag_p99_ms"] if beyond else nan,
                "beyond_cpu_fraction": beyond["cpu_fraction"] if beyond else nan,
                "beyond_dropped_points": beyond["dropped_points"] if beyond else nan,
                "beyond_warnings": beyond["warnings"] if beyond else nan,
            })
    result = _summary("overload", rows, {"start_points_per_s": start, "factor": factor, "steps": steps,
                                         "duration_s": duration_s, "points_per_poll": n_points,
                                         "durability": durability, "max_bytes": max_bytes,
                                         "lag_warn_s": lag_warn_s, "encoding": encoding()},
                      {"delivered_share": ">= 0.99 up to max_points_per_s_full_delivery"})
    result["beyond_logged"] = [b.get("logged", []) for b in beyond_runs]
    return result


# -- chain (Modbus -> buffer -> broker) -----------------------------------------------------------
async def _chain_run(port: int, workdir: Path, devices: int, registers: int, seconds: int, workers: int,
                     durability: str, cpu_quota: float | None = None) -> dict[str, float]:
    """One run of the whole edge chain: simulated PLCs in other processes, polled at 1 Hz by the real
    :class:`Gateway` (drivers, pipeline, batcher, durable buffer, forwarder) into a local mosquitto."""
    from drivers.modbus.bench import _points, _start_plcs, _stop_plcs

    ports = free_ports(devices)
    points = _points(registers)
    cfg = parse({
        "gateway": {"id": "chain", "site": "bench", "enterprise_prefix": "88.608.5288"},
        "uplink": {"host": "127.0.0.1", "port": port, "client_id": f"chain-{os.getpid()}",
                   "no_subscribers": "accept"},
        "buffer": {"path": str(workdir / f"chain-{durability}.db"), "durability": durability},
        "devices": [
            {"type": "modbus_tcp", "name": f"plc{d:04d}", "host": "127.0.0.1", "port": p, "unit_id": 1,
             "poll_interval_ms": 1000, "timeout_ms": 1000, "backoff_max_ms": 2000, "points": points}
            for d, p in enumerate(ports)
        ],
    })
    polled = 0

    def observe(batch: SampleBatch) -> None:
        nonlocal polled
        polled += len(batch)

    logging.getLogger("edgegw").setLevel(logging.WARNING)
    procs = await _start_plcs(registers, ports, workers)
    undo = None
    try:
        if cpu_quota is not None:  # the PLCs and mosquitto, started before, stay outside the quota
            from gateway.cpuquota import confine

            undo = confine(cpu_quota)
        gw = Gateway(cfg, observer=observe)
        task = asyncio.create_task(gw.run(), name="gateway")
        try:
            await _wait(lambda: all(r.health.polls > 0 for r in gw.runners), 120, "every device polled once")
            await asyncio.sleep(2.0)  # warm-up: the first cycles are jittered
            misses0 = sum(getattr(r.health, "deadline_misses", 0) for r in gw.runners)
            t0, cpu0 = time.perf_counter(), time.process_time()
            polled0, sent0 = polled, gw.forwarder.stats.published_points
            await asyncio.sleep(seconds)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            produced, sent = polled - polled0, gw.forwarder.stats.published_points - sent0
            misses = sum(getattr(r.health, "deadline_misses", 0) for r in gw.runners) - misses0
            pending = gw.buffer.pending_points
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        if undo is not None:
            undo()
        await _stop_plcs(procs)
    return {"offered_points_per_s": devices * registers, "polled_points_per_s": produced / wall,
            "delivered_points_per_s": sent / wall, "delivered_share": sent / max(1, produced),
            "cpu_fraction": cpu / wall, "deadline_misses": misses, "pending_points_at_end": pending}


async def bench_chain(devices: int, registers: int, seconds: int, workers: int, durability: str, runs: int,
                      cpu_quota: float | None = None) -> dict[str, Any]:
    """``edgegw bench chain``: the Modbus load of the overload issue, end to end on the edge."""
    rows = []
    with broker() as mq, tempfile.TemporaryDirectory(prefix="edgegw-bench-chain-") as tmp:
        for _ in range(runs):
            rows.append(await _chain_run(mq.port, Path(tmp), devices, registers, seconds, workers, durability,
                                         cpu_quota))
            for f in Path(tmp).iterdir():  # each run starts with an empty buffer (and no archived catalogs)
                if f.is_dir():
                    shutil.rmtree(f)
                else:
                    f.unlink()
    return _summary("chain", rows, {"devices": devices, "registers": registers, "seconds": seconds,
                                    "workers": workers, "durability": durability, "cpu_quota": cpu_quota},
                    {"delivered_share": "fsync >= 0.9 x interval at 300,000 points/s"})


# -- reporting -----------------------------------------------------------------------------------
def _summary(name: str, rows: list[dict[str, float]], params: dict[str, Any], targets: dict[str, str]
             ) -> dict[str, Any]:
    def median(k: str) -> float | None:  # NaN (nothing measured in a run) is left out; JSON gets null
        vals = [r[k] for r in rows if not math.isnan(r[k])]
        return round(statistics.median(vals), 3) if vals else None

    return {"bench": name, **{k: median(k) for k in rows[0]},
            "runs": [{k: None if math.isnan(v) else round(v, 3) for k, v in r.items()} for r in rows],
            "load_avg": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
            "params": params, "targets": targets}


def _print(result: dict[str, Any]) -> None:
    keys = list(result["runs"][0])
    width = max(14, *(len(k) + 2 for k in keys))
    print(f"edgegw bench {result['bench']}  ({result['params']})")
    def cell(v: float | None) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:>{width},.2f}"

    print("run    " + "".join(f"{k:>{width}}" for k in keys))
    for i, r in enumerate(result["runs"], 1):
        print(f"{i:<7}" + "".join(cell(r[k]) for k in keys))
    print("median " + "".join(cell(result[k]) for k in keys))
    for i, lines in enumerate(result.get("beyond_logged", []), 1):
        for line in lines:
            print(f"run {i}, step beyond, logged: {line}")
    load = result["load_avg"]
    print(f"targets: {result['targets']}; load average {load[0]} {load[1]} {load[2]} on {result['cpus']} CPUs")


def main(name: str, coro: Any, json_path: str | None) -> dict[str, Any]:
    tune_gc()  # as the gateway does (gateway.app.tune_gc)
    result: dict[str, Any] = asyncio.run(coro)
    _print(result)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return result
