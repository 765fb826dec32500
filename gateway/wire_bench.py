"""`edgegw bench wire`: bytes and CPU per point on the wire, by batch size and codec.

The samples are :mod:`gateway.wire_mix` (deadband-driven traffic of a plant-like value mix, said
in ``mix``).  For each batch size (10, 100, 1000 samples) and each codec — wire format v2 with no
compression, zlib, zstd, zstd with the shipped dictionary (the default), and wire format v1 as it
was (msgpack, no compression; and zlib) — it reports bytes per point (deterministic) and the CPU
time to encode and to decode (as the ingest does, :func:`gateway.codec.decode_columns` with its
catalogs), microseconds per point, the median of ``runs`` runs.

``e2e``: the same mix through the real Batcher (natural batching), SQLite buffer and Forwarder to
a real mosquitto at paced rates; every payload byte the broker acknowledged (and the catalog
message) divided by the points delivered.  Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.app import Batcher
from gateway.buffer import SqliteBuffer
from gateway.codec import WIRE_V2, CatalogCache, Compression, Encoder, decode_columns
from gateway.config import BufferConfig, UplinkConfig
from gateway.core.point import SampleBatch
from gateway.forwarder import Forwarder
from gateway.sinks.mqtt import MqttUplink
from gateway.wire_mix import GW, MIX, SITE, WireMix, mix_catalog

__all__ = ["CODECS", "bench_wire", "bytes_per_point"]

# name -> (wire format version, compression, zstd dictionary)
CODECS: dict[str, tuple[int, Compression, bool]] = {
    "v2 none": (WIRE_V2, "none", False),
    "v2 zlib": (WIRE_V2, "zlib", False),
    "v2 zstd": (WIRE_V2, "zstd", False),
    "v2 zstd+dict (default)": (WIRE_V2, "zstd", True),
    "v1 msgpack (old default)": (1, "none", False),
    "v1 zlib": (1, "zlib", False),
}
DEFAULT = "v2 zstd+dict (default)"
_COUNTS = {10: 3000, 100: 300, 1000: 40}  # batches per size: 30,000 to 40,000 samples each


def _encoder(codec: str) -> Encoder:
    version, compression, zdict = CODECS[codec]
    return Encoder(mix_catalog(), compression=compression, version=version, zstd_dict=zdict)


def bytes_per_point(batch_points: int, codec: str = DEFAULT) -> float:
    """Payload bytes per sample of the mix at this batch size (deterministic)."""
    enc = _encoder(codec)
    batches = WireMix().batches(batch_points, _COUNTS.get(batch_points, 100))
    total = sum(len(enc.encode(b, k + 1, 1_764_000_000_000_000_000 + k)) for k, b in enumerate(batches))
    return total / (batch_points * len(batches))


def _cpu(enc: Encoder, batches: list[SampleBatch]) -> tuple[float, float, int]:
    catalogs = CatalogCache()
    if enc.version == WIRE_V2:
        catalogs.learn(enc.catalog_message)
    t0 = time.process_time()
    payloads = [enc.encode(b, k + 1, 1_764_000_000_000_000_000 + k) for k, b in enumerate(batches)]
    t1 = time.process_time()
    for p in payloads:
        decode_columns(p, catalogs, (SITE, GW))
    t2 = time.process_time()
    n = sum(map(len, batches))
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6, sum(map(len, payloads))


def table(runs: int) -> list[dict[str, Any]]:
    rows = []
    for size, count in _COUNTS.items():
        batches = WireMix().batches(size, count)
        n = size * count
        for codec in CODECS:
            enc = _encoder(codec)
            figures = [_cpu(enc, batches) for _ in range(runs)]
            rows.append({
                "batch_points": size, "codec": codec,
                "bytes_per_point": round(figures[0][2] / n, 2),
                "encode_us_per_point": round(statistics.median(f[0] for f in figures), 2),
                "decode_us_per_point": round(statistics.median(f[1] for f in figures), 2),
            })
    return rows


class _Passthrough(Batcher):
    """The mix is already normalised and deadband-filtered: the stages are not measured here."""

    def process(self, batch: SampleBatch) -> SampleBatch:
        return batch


async def _e2e_once(port: int, work: Path, rate: float, seconds: float) -> dict[str, Any]:
    catalog = mix_catalog()
    enc = Encoder(catalog, compression="zstd", version=WIRE_V2)
    path = work / f"buffer-{time.monotonic_ns()}.db"
    buffer = SqliteBuffer(path, max_bytes=1 << 30, when_full="block", durability="fsync")
    wake = asyncio.Event()
    cfg = UplinkConfig(port=port, topic_prefix="bench", timeout_s=30, no_subscribers="accept")
    sent = {"bytes": 0, "batches": 0}

    def delivered(payload: bytes, _historical: bool) -> None:
        sent["bytes"] += len(payload)
        sent["batches"] += 1

    async def catalogs(conn: Any, _backlog: bool) -> None:
        await conn.publish_catalog(enc.catalog_id, enc.catalog_message)
        sent["catalog"] = len(enc.catalog_message)

    fwd_box: list[Forwarder] = []
    batcher = _Passthrough(catalog, buffer, BufferConfig(), wake, encoder=enc,
                           link_free=lambda: bool(fwd_box) and fwd_box[0].stats.connected
                           and buffer.pending_batches < cfg.max_inflight)
    fwd = Forwarder(buffer, MqttUplink(cfg, SITE, GW), wake, max_inflight=cfg.max_inflight, on_delivered=delivered,
                    on_connect=catalogs)
    fwd_box.append(fwd)
    tasks = [asyncio.create_task(batcher.run()), asyncio.create_task(fwd.run())]
    try:
        await _until(lambda: fwd.stats.connected, 10)
        # device polls (the samples of one source time) offered at ``rate`` points per second
        polls: list[SampleBatch] = []
        it = WireMix().samples()
        for _ in range(2000):  # the first poll of every point: not steady state
            next(it)
        total = int(rate * seconds)
        cur: SampleBatch = []
        for _ in range(total):
            s = next(it)
            if cur and s[1] != cur[-1][1]:
                polls.append(cur)
                cur = []
            cur.append(s)
        polls.append(cur)
        t0 = time.monotonic()
        offered = 0
        for poll in polls:
            await batcher.submit(poll)
            offered += len(poll)
            lag = t0 + offered / rate - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
        await _until(lambda: fwd.stats.published_points >= total, 60)
        points = fwd.stats.published_points
        return {
            "rate": rate, "points": points, "batches": sent["batches"],
            "mean_batch_points": round(points / max(1, sent["batches"]), 1),
            "bytes_per_point": round((sent["bytes"] + sent.get("catalog", 0)) / max(1, points), 2),
            "bytes_per_point_without_catalog": round(sent["bytes"] / max(1, points), 2),
            "catalog_bytes": sent.get("catalog", 0),
        }
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        buffer.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _until(cond: Callable[[], bool], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            return  # the figures then show what was delivered
        await asyncio.sleep(0.01)


async def _e2e(runs: int, seconds: float) -> list[dict[str, Any]]:
    from gateway.bench import broker

    out = []
    with broker() as svc:
        work = Path(tempfile.mkdtemp(prefix="edgegw-bench-wire-"))
        for rate in (1_000.0, 20_000.0):
            results = [await _e2e_once(svc.port, work, rate, seconds) for _ in range(runs)]
            med = {k: statistics.median(r[k] for r in results) for k in results[0]}
            out.append({**med, "runs": results})
    return out


async def bench_wire(runs: int = 3, e2e_seconds: float = 5.0) -> dict[str, Any]:
    rows = table(runs)
    result: dict[str, Any] = {
        "bytes_per_point_1000": round(bytes_per_point(1000), 2),
        "bytes_per_point_10": round(bytes_per_point(10), 2),
        "default": DEFAULT,
        "mix": MIX,
        "catalog_message_bytes": len(_encoder(DEFAULT).catalog_message),
        "catalog_points": len(mix_catalog().points),
        "runs": runs,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "table": rows,
    }
    if e2e_seconds > 0:
        result["e2e"] = await _e2e(runs, e2e_seconds)
    return result


def print_result(r: dict[str, Any]) -> None:
    print(f"edgegw bench wire  (mix: {r['mix']})")
    print(f"default settings ({r['default']}): {r['bytes_per_point_1000']} B/point at 1000-point batches, "
          f"{r['bytes_per_point_10']} B/point at 10-point batches; catalog message {r['catalog_message_bytes']} B "
          f"for {r['catalog_points']} points (once per connection)")
    print(f"{'batch':>6} {'codec':<26} {'B/point':>8} {'encode us/pt':>13} {'decode us/pt':>13}")
    for row in r["table"]:
        print(f"{row['batch_points']:>6} {row['codec']:<26} {row['bytes_per_point']:>8.2f} "
              f"{row['encode_us_per_point']:>13.2f} {row['decode_us_per_point']:>13.2f}")
    for e in r.get("e2e", []):
        print(f"end to end at {e['rate']:,.0f} points/s: {e['bytes_per_point']:.2f} B/point "
              f"({e['bytes_per_point_without_catalog']:.2f} without the catalog message), "
              f"mean batch {e['mean_batch_points']:.0f} points")
    print(f"CPU medians of {r['runs']} runs; load average {r['load_avg_1m']} on {r['cpus']} CPUs")


def main(json_path: str | None, runs: int, e2e_seconds: float) -> dict[str, Any]:
    import json

    result = asyncio.run(bench_wire(runs, e2e_seconds))
    print_result(result)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return result
