"""`edgegw bench ingest`: throughput of the central ingest, against the store's own limit.

Each run starts its own mosquitto (the shipped ``deploy/mosquitto/mosquitto.conf``) and store
(VictoriaMetrics, or InfluxDB 1.x with ``--store influxdb1``) on 127.0.0.1, then:

- ``points_per_s``: one ``edgegw ingest`` process (a real subprocess) drains a backlog of
  pre-encoded 1000-point batches that waited at the broker for its session; the clock runs from its
  subscription (its log line; imports and connect are not timed) to the last row counted in the store;
- ``points_per_s_2procs``: the same backlog split between two processes of one share group;
- ``limit_points_per_s``: the store's own ingest of the same rows as pre-built line-protocol bodies
  of ``batch_max_points`` lines, posted one after the other through the same writer (same HTTP path);
- ``ratio_to_limit``: points_per_s / limit_points_per_s; ``cpu_fraction``: the one process's CPU time
  over the wall time of its drain.

Figures only: nothing here asserts a speed.  Quote medians; the machine is noisy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.bench import SyntheticSource, _summary, synthetic_catalog
from gateway.codec import CatalogCache, Encoder, decode_columns, row_tags
from gateway.config import InfluxConfig, MqttConfig
from gateway.core.lineproto import Dialect, line, telemetry_fields, telemetry_series
from gateway.sinks.influx import make_writer
from gateway.sinks.mqtt import MqttClient
from hil.services import Influx1, Mosquitto, Service, VictoriaMetrics

__all__ = ["bench_ingest"]

_SHIPPED = Path(__file__).parents[1] / "deploy" / "mosquitto" / "mosquitto.conf"
_SITE, _GW = "bench-site", "bench-gw"
_BODY_LINES = 5000


@contextlib.contextmanager
def _service(kind: type[Service], **kw: Any) -> Iterator[Any]:
    work = Path(tempfile.mkdtemp(prefix="edgegw-bench-ingest-"))
    work.chmod(0o755)
    svc = kind(workdir=work, **kw)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(work, ignore_errors=True)


def _payloads(total: int, batch_points: int, wire: int = 2) -> tuple[list[bytes], tuple[str, bytes] | None]:
    """The batches, and for wire format 2 the catalog (id, message) they refer to: the gateway's
    defaults (v2, zstd with the shipped dictionary); wire 1: v1 msgpack, uncompressed, rows in every batch."""
    cat = synthetic_catalog(batch_points)
    src = SyntheticSource(batch_points)
    enc = Encoder(cat, compression="zstd", version=2) if wire == 2 else Encoder(cat)
    out = []
    for seq in range(max(1, total // batch_points)):
        samples = src.poll()
        samples = [(i, ts + seq, v, q, r) for i, ts, v, q, r in samples]  # distinct timestamps per batch
        out.append(enc.encode(samples, seq, time.time_ns()))
    return out, ((enc.catalog_id, enc.catalog_message) if wire == 2 else None)


class _Store:
    def __init__(self, svc: Any, kind: str) -> None:
        self.svc, self.kind = svc, kind
        self.dialect: Dialect = "victoriametrics" if kind == "victoriametrics" else "influxdb"

    def influx_config(self, db: str) -> dict[str, Any]:
        if self.kind == "victoriametrics":
            return {"api": "v2", "url": self.svc.url, "dialect": "victoriametrics", "bucket": db}
        self.svc.create_database(db)
        return {"api": "v1", "url": self.svc.url, "database": db}

    def rows(self, db: str) -> int:
        """Points stored so far (VictoriaMetrics: its insert counter, two fields per point)."""
        if self.kind == "victoriametrics":
            with urllib.request.urlopen(f"{self.svc.url}/metrics", timeout=10) as r:
                for raw in r.read().decode().splitlines():
                    if raw.startswith('vm_rows_inserted_total{type="influx"}'):
                        return int(float(raw.split()[-1])) // 2
            return 0
        res = self.svc.query('SELECT count(quality) FROM "telemetry"', db=db)
        series = res["results"][0].get("series")
        return int(series[0]["values"][0][1]) if series else 0


def _config(path: Path, broker: int, influx: dict[str, Any], client_id: str, workdir: Path,
            writes_in_flight: int | None = None) -> None:
    group = client_id.rsplit("-ingest-", 1)[0]  # one share group per drain: a stopped member with a live
    # session stays in its group's rotation and would keep a share of the next drain's messages
    lines = ["[ingest]", f'share_group = "{group}"', f'dead_letter_path = "{workdir / (client_id + "-dl.db")}"']
    if writes_in_flight is not None:
        lines.append(f"writes_in_flight = {writes_in_flight}")
    lines += ["[ingest.mqtt]",
             f"port = {broker}", f'client_id = "{client_id}"', "[ingest.influx]"]
    lines += [f'{k} = "{v}"' for k, v in influx.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "ingest", "-c", str(cfg)], stdout=out,
                                stderr=subprocess.STDOUT)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait(cond: Any, timeout_s: float, what: str, every_s: float = 0.05) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"bench ingest: timed out waiting for {what}")
        time.sleep(every_s)


async def _publish(port: int, payloads: list[bytes], catalog: tuple[str, bytes] | None) -> None:
    cfg = MqttConfig(port=port, max_inflight=1000, timeout_s=60)
    async with MqttClient(cfg, f"bench-pub-{os.getpid()}") as client:
        if catalog is not None:  # as the gateway does: retained, before the batches that refer to it
            await client.publish_checked(f"edgegw/{_SITE}/{_GW}/catalog/{catalog[0]}", catalog[1], retain=True,
                                         timeout=60)
        topic = f"edgegw/{_SITE}/{_GW}/data"
        for k in range(0, len(payloads), 500):
            await asyncio.gather(*(client.publish_checked(topic, p, timeout=60) for p in payloads[k:k + 500]))


def _drain(broker: Mosquitto, store: _Store, db: str, payloads: list[bytes], catalog: tuple[str, bytes] | None,
           total: int, procs: int, work: Path, writes_in_flight: int | None = None) -> tuple[float, float]:
    """Sessions first, then the backlog at the broker, then the timed drain; (points/s, CPU fraction)."""
    influx = store.influx_config(db)
    cfgs = []
    for k in range(procs):
        cfg = work / f"{db}-{k}.toml"
        _config(cfg, broker.port, influx, f"{db}-ingest-{k}", work, writes_in_flight)
        cfgs.append(cfg)
    logs = [work / f"{db}-{k}.log" for k in range(procs)]
    first = [_start(c, lg) for c, lg in zip(cfgs, logs, strict=True)]  # create the persistent sessions
    for lg in logs:
        _wait(lambda lg=lg: "Ingest subscribed" in lg.read_text(errors="replace"), 30, "the ingest's session")
    for p in first:
        _stop(p)
    asyncio.run(_publish(broker.port, payloads, catalog))
    before = store.rows(db)
    seen = [lg.read_text(errors="replace").count("Ingest subscribed") for lg in logs]
    running = [_start(c, lg) for c, lg in zip(cfgs, logs, strict=True)]
    try:
        # the clock starts when the (first) process has subscribed: its imports and connect are not the
        # drain; the backlog flows from that moment (looked for every 10 ms)
        _wait(lambda: any(lg.read_text(errors="replace").count("Ingest subscribed") > k
                          for lg, k in zip(logs, seen, strict=True)), 120, "the ingest's subscription", 0.01)
        t0, cpu0 = time.monotonic(), _cpu_s(running[0].pid)
        _wait(lambda: store.rows(db) - before >= total, 600, f"{total} points in the store")
        wall = time.monotonic() - t0
        cpu = _cpu_s(running[0].pid) - cpu0
    finally:
        for p in running:
            _stop(p)
    return total / wall, cpu / wall


def _limit(store: _Store, db: str, payloads: list[bytes], catalog: tuple[str, bytes] | None) -> float:
    """The same rows as pre-built bodies, posted one after the other through the ingest's writer."""
    writer = make_writer(InfluxConfig.model_validate(store.influx_config(db)))
    rows: list[bytes] = []
    catalogs = CatalogCache()
    if catalog is not None:
        catalogs.learn(catalog[1], (_SITE, _GW))
    for p in payloads:
        cols = decode_columns(p, catalogs)
        series = {i: telemetry_series("telemetry", *row[:5], row_tags(row), _SITE, _GW, store.dialect)
                  for i, row in cols.cat.items()}
        rows += [line(series[i], telemetry_fields(v, q, r, False, store.dialect), ts)
                 for i, ts, v, q, r in zip(cols.idx, cols.ts, cols.val, cols.q, cols.rsn, strict=True)]
    bodies = [b"\n".join(rows[k:k + _BODY_LINES]) + b"\n" for k in range(0, len(rows), _BODY_LINES)]
    before = store.rows(db)

    async def post() -> None:
        for body in bodies:
            await writer.write(body)

    t0 = time.monotonic()
    asyncio.run(post())
    _wait(lambda: store.rows(db) - before >= len(rows), 120, "the limit run's rows")
    wall = time.monotonic() - t0
    writer.close()
    return len(rows) / wall


def _once(store_kind: str, total: int, batch_points: int, run: int, wire: int,
          writes_in_flight: int | None = None) -> dict[str, float]:
    payloads, catalog = _payloads(total, batch_points, wire)
    total = len(payloads) * batch_points
    work = Path(tempfile.mkdtemp(prefix="edgegw-bench-ingest-run-"))
    kind: type[Service] = VictoriaMetrics if store_kind == "victoriametrics" else Influx1
    try:
        with _service(Mosquitto, shipped=_SHIPPED) as broker, _service(kind) as svc:
            store = _Store(svc, store_kind)
            one, cpu = _drain(broker, store, f"one{run}", payloads, catalog, total, 1, work, writes_in_flight)
            two, _ = _drain(broker, store, f"two{run}", payloads, catalog, total, 2, work, writes_in_flight)
            limit = _limit(store, f"lim{run}", payloads, catalog)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"points_per_s": one, "points_per_s_2procs": two, "limit_points_per_s": limit,
            "ratio_to_limit": one / limit, "cpu_fraction": cpu}


async def bench_ingest(store: str, total: int, batch_points: int, runs: int, wire: int = 2,
                       writes_in_flight: int | None = None) -> dict[str, Any]:
    """``writes_in_flight``: the ingest's setting of that name (None: its default)."""
    rows = [await asyncio.to_thread(_once, store, total, batch_points, k, wire, writes_in_flight)
            for k in range(runs)]
    params = {"store": store, "points": total, "batch_points": batch_points, "wire": wire,
              "writes_in_flight": writes_in_flight if writes_in_flight is not None else "default"}
    return _summary("ingest", rows, params,
                    {"points_per_s": ">= 300000 (victoriametrics)", "ratio_to_limit": ">= 0.5"})
