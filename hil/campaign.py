"""Run a HIL campaign: the whole chain on real servers, a fault timeline, a drain, then the oracle.

Simulated PLCs (one process each, ``hil.plc_process``) -> ``edgegw run`` (one process per gateway)
-> loopback proxy (link faults) -> mosquitto (the shipped deploy/ config) -> ``edgegw ingest`` ->
InfluxDB 1.x.  Every process is the scenario's own, on free loopback ports, and stopped by PID
at the end, also on Ctrl-C or an error.

Used by ``edgegw hil run`` and tests/test_hil_campaign.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from prometheus_client.parser import text_string_to_metric_families

from firmware_stubs.gas_substation import GasSubstation, point_config
from gateway.config import parse
from gateway.core.errors import ConfigError
from hil.netns import Netns
from hil.oracle import Judgement, Row, histogram_quantile, judge, points_per_read, recovery_times
from hil.plc_process import read_counts
from hil.scenario import TARGET_PREFIX, Fault, FaultKind, Scenario
from hil.services import Influx1, Mosquitto, VictoriaMetrics, free_port
from hil.tcp_proxy import FaultProxy

__all__ = ["CampaignResult", "run_campaign"]

log = logging.getLogger("edgegw.hil")

SHIPPED_BROKER_CONF = Path(__file__).parents[1] / "deploy" / "mosquitto" / "mosquitto.conf"
PREFIX = "88.608.5288"
SITE = "hil-site"
DATABASE = "hil"
SAMPLE_S = 1.0


@dataclass
class Child:
    """A child process of the campaign (PLC, gateway, ingest): started, killed and restarted by PID."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        if self.running:  # two faults overlapping on one process: it is already back
            return
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class FaultPlay:
    kind: str
    target: str
    start_s: float
    end_s: float


@dataclass
class CampaignResult:
    scenario: Scenario
    judgement: Judgement
    p99_latency_ms: float | None
    faults: list[FaultPlay]
    recovery_s: list[float | None]
    samples: list[tuple[float, float | None, float | None]]  # t, produced points/s, stored points/s
    run_s: float
    drained: bool
    passed: bool
    reasons: list[str]
    report_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


def _http_text(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return str(r.read().decode())
    except (OSError, ValueError):
        return None


def _metrics(url: str) -> dict[str, list[tuple[dict[str, str], float]]] | None:
    text = _http_text(url)
    if text is None:
        return None
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


class Campaign:
    def __init__(self, scenario: Scenario, workdir: Path, report_dir: Path) -> None:
        self.sc = scenario
        self.wd = workdir
        self.report_dir = report_dir
        self.py = sys.executable
        self.broker = Mosquitto(workdir=workdir / "broker", shipped=SHIPPED_BROKER_CONF)
        self.store: Influx1 | DedupVictoriaMetrics = (
            Influx1(workdir=workdir / "store") if scenario.store.kind == "influxdb1"
            else DedupVictoriaMetrics(workdir=workdir / "store"))
        self.plcs: list[Child] = []
        self.plc_ports: list[int] = []
        self.gateways: list[Child] = []
        self.gateway_cfgs: list[Path] = []
        self.gateway_http: list[int] = []
        self.gateway_host: list[str] = []
        self.netns: list[Netns] = [Netns(g) for g in range(scenario.gateway.count)] if scenario.gateway.netns else []
        self.ns_broker_ports: list[int] = []
        self.ingests: list[Child] = []
        self.proxies: list[FaultProxy] = []
        self.plays: list[FaultPlay] = []
        self.samples_raw: list[tuple[float, int, int | None]] = []  # t, produced points, stored rows
        self.latency_live: dict[int, dict[float, float]] = {}
        self.latency_done: list[dict[float, float]] = []
        self.t0 = 0.0

    # ---- set-up --------------------------------------------------------------------------------

    def _plcs_serving(self) -> bool:
        """Every PLC serves (its counts file is there).  One that exited first had its port taken
        meanwhile (a free port is only a guess on a busy machine): it starts again on another one."""
        for i, child in enumerate(self.plcs):
            if self._plc_counts_path(i).exists() or child.running or child.starts > 3:
                continue
            port = free_port()
            self.plc_ports[i] = port
            child.argv[child.argv.index("--port") + 1] = str(port)
            child.start()
        return all(self._plc_counts_path(i).exists() for i in range(self.sc.plcs.count))

    def _plc_counts_path(self, i: int) -> Path:
        return self.wd / f"plc-{i}.counts.json"

    def _gateway_config(self, g: int, broker: tuple[str, int]) -> dict[str, Any]:
        n = self.sc.gateway.count
        devices = [
            {"type": "modbus_tcp", "name": f"plc-{i}", "host": "127.0.0.1", "port": self.plc_ports[i],
             "poll_interval_ms": self.sc.plcs.poll_interval_ms, "timeout_ms": 1000, "asset": f"face-{i}",
             "points": point_config()}
            for i in range(self.sc.plcs.count) if i % n == g
        ]
        buffer = {"path": str(self.wd / f"gateway-{g}.buffer.db"), "linger_ms": 50, **self.sc.gateway.buffer}
        uplink = {"host": broker[0], "port": broker[1], "protocol": "5", "client_id": f"hil-gw-{g}",
                  "keepalive_s": 5, "timeout_s": 5, **self.sc.gateway.uplink}
        return {"gateway": {"id": f"gw-{g}", "site": SITE, "enterprise_prefix": PREFIX}, "devices": devices,
                "buffer": buffer, "uplink": uplink,
                "http": {"listen": f"{self.gateway_host[g]}:{self.gateway_http[g]}"}}

    def _store_config(self) -> dict[str, Any]:
        if isinstance(self.store, Influx1):
            return {"api": "v1", "url": self.store.url, "database": DATABASE}
        return {"api": "v2", "url": self.store.url, "org": "plant", "bucket": DATABASE, "dialect": "victoriametrics"}

    def _ingest_config(self, i: int, http_port: int) -> dict[str, Any]:
        return {
            "ingest": {"mqtt": {"host": "127.0.0.1", "port": self.broker.port, "client_id": f"hil-ingest-{i}",
                                "keepalive_s": 5},
                       "influx": self._store_config(),
                       "linger_ms": 50, "dead_letter_path": str(self.wd / f"ingest-{i}.dead-letters.db")},
            "http": {"listen": f"127.0.0.1:{http_port}"},
        }

    def _write_config(self, name: str, data: dict[str, Any]) -> Path:
        try:
            parse(data, name)  # the scenario's [gateway.buffer] / [gateway.uplink] keys, checked before start
        except ConfigError as err:
            raise ConfigError(err.issues, f"{name} (from the scenario's [gateway] keys)") from None
        path = self.wd / f"{name}.toml"
        path.write_bytes(tomli_w.dumps(data).encode())
        return path

    def _prefix(self, g: int) -> list[str]:
        """Gateway ``g`` and its PLCs run in its namespace, if the scenario has them."""
        return self.netns[g].exec_prefix() if self.netns else []

    async def _start(self) -> None:
        for ns in self.netns:
            await asyncio.to_thread(ns.create)
            if any(f.kind == FaultKind.NETEM for f in self.sc.faults):
                await asyncio.to_thread(ns.check_netem)
            port = free_port()
            self.ns_broker_ports.append(port)
            self.broker.extra_config += f"listener {port} {ns.host_ip}\n"
        await asyncio.to_thread(self.broker.start)
        await asyncio.to_thread(self.store.start)
        if isinstance(self.store, Influx1):
            await asyncio.to_thread(self.store.create_database, DATABASE)
        for i in range(self.sc.plcs.count):
            port = free_port()
            self.plc_ports.append(port)
            inside = self._prefix(i % self.sc.gateway.count)
            child = Child(f"plc-{i}", [*inside, self.py, "-m", "hil.plc_process", "--port", str(port),
                                       "--seed", str(self.sc.plcs.seed + i), "--tick-ms", str(self.sc.plcs.tick_ms),
                                       "--counts", str(self._plc_counts_path(i))], self.wd / f"plc-{i}.log")
            child.start()
            self.plcs.append(child)
        for i in range(self.sc.ingest.count):
            cfg = self._write_config(f"ingest-{i}", self._ingest_config(i, free_port()))
            child = Child(f"ingest-{i}", [self.py, "-m", "gateway.cli", "ingest", "-c", str(cfg)],
                          self.wd / f"ingest-{i}.log")
            child.start()
            self.ingests.append(child)
        for g in range(self.sc.gateway.count):
            self.gateway_http.append(free_port())
            if self.netns:
                self.gateway_host.append(self.netns[g].ns_ip)
                broker = (self.netns[g].host_ip, self.ns_broker_ports[g])
            else:
                proxy = FaultProxy("127.0.0.1", self.broker.port)
                await proxy.__aenter__()
                self.proxies.append(proxy)
                self.gateway_host.append("127.0.0.1")
                broker = ("127.0.0.1", proxy.port)
            cfg = self._write_config(f"gateway-{g}", self._gateway_config(g, broker))
            self.gateway_cfgs.append(cfg)
            self.gateways.append(Child(f"gateway-{g}", [*self._prefix(g), self.py, "-m", "gateway.cli", "run", "-c",
                                                        str(cfg)], self.wd / f"gateway-{g}.log"))
        await self._wait(self._plcs_serving, 60, "the PLCs to serve")
        await self._wait(lambda: all("Ingest subscribed" in _read(c.log_path) for c in self.ingests), 30,
                         "the ingests to subscribe")
        for gw in self.gateways:
            gw.start()

    async def _wait(self, cond: Callable[[], bool], timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > end:
                raise RuntimeError(f"timed out waiting for {what} (logs in {self.wd})")
            await asyncio.sleep(0.1)

    # ---- measurements --------------------------------------------------------------------------

    def _produced_points(self) -> int:
        return sum(points_per_read(read_counts(self._plc_counts_path(i))) for i in range(self.sc.plcs.count))

    def _stored_rows(self) -> int | None:
        try:
            if not isinstance(self.store, Influx1):  # every point writes one telemetry_quality sample
                series: list[Any] = self.store.export('{__name__="telemetry_quality"}')
                return sum(len(s["values"]) for s in series)
            res = self.store.query('SELECT count("quality") FROM "telemetry"', db=DATABASE)
        except (OSError, ValueError):
            return None
        series = res["results"][0].get("series")  # type: ignore[index]
        return int(series[0]["values"][0][1]) if series else 0

    def _scrape_gateway(self, g: int) -> dict[str, list[tuple[dict[str, str], float]]] | None:
        m = _metrics(f"http://{self.gateway_host[g]}:{self.gateway_http[g]}/metrics")
        if m is not None:
            buckets = {float(lab["le"]): v for lab, v in m.get("edgegw_uplink_publish_latency_seconds_bucket", [])}
            if buckets:
                self.latency_live[g] = buckets
        return m

    def _sample(self) -> None:
        t = time.monotonic() - self.t0
        self.samples_raw.append((round(t, 2), self._produced_points(), self._stored_rows()))
        for g in range(len(self.gateways)):
            self._scrape_gateway(g)

    async def _sampler(self) -> None:
        while True:
            await asyncio.to_thread(self._sample)
            await asyncio.sleep(SAMPLE_S)

    # ---- faults ---------------------------------------------------------------------------------

    def _target(self, f: Fault) -> str:
        if f.target is not None:
            return f.target
        prefix = TARGET_PREFIX.get(f.kind)
        return f"{prefix}-0" if prefix else ("broker" if "broker" in f.kind else "store")

    def _gateway_killed(self, g: int) -> None:
        if g in self.latency_live:  # the histogram lives in the process: keep what the dead one measured
            self.latency_done.append(self.latency_live.pop(g))

    async def _inject(self, f: Fault, target: str) -> None:
        n = int(target.rpartition("-")[2]) if target[-1].isdigit() else 0
        match f.kind:
            case FaultKind.BROKER_KILL:
                await asyncio.to_thread(self.broker.stop, signal.SIGKILL)
            case FaultKind.BROKER_RESTART:
                await asyncio.to_thread(self.broker.stop, signal.SIGTERM)
            case FaultKind.GATEWAY_KILL:
                await asyncio.to_thread(self._scrape_gateway, n)
                self.gateways[n].stop(signal.SIGKILL)
                self._gateway_killed(n)
            case FaultKind.INGEST_KILL:
                self.ingests[n].stop(signal.SIGKILL)
            case FaultKind.STORE_DOWN:
                await asyncio.to_thread(self.store.stop)
            case FaultKind.PLC_REBOOT:
                await asyncio.to_thread(self.plcs[n].stop)
            case FaultKind.PLC_SILENT:
                self.plcs[n].signal(signal.SIGUSR1)
            case FaultKind.LINK_CUT:
                self.proxies[n].partition()
            case FaultKind.NETEM:
                await asyncio.to_thread(self.netns[n].netem, f.netem or "")
            case FaultKind.LINK_DOWN:
                await asyncio.to_thread(self.netns[n].link, False)

    async def _heal(self, f: Fault, target: str) -> None:
        n = int(target.rpartition("-")[2]) if target[-1].isdigit() else 0
        match f.kind:
            case FaultKind.BROKER_KILL | FaultKind.BROKER_RESTART:
                await asyncio.to_thread(self.broker.start)
            case FaultKind.GATEWAY_KILL:
                self.gateways[n].start()
            case FaultKind.INGEST_KILL:
                self.ingests[n].start()
            case FaultKind.STORE_DOWN:
                await asyncio.to_thread(self.store.start)
            case FaultKind.PLC_REBOOT:
                self.plcs[n].start()
            case FaultKind.PLC_SILENT:
                self.plcs[n].signal(signal.SIGUSR2)
            case FaultKind.LINK_CUT:
                self.proxies[n].thaw()
            case FaultKind.NETEM:
                await asyncio.to_thread(self.netns[n].clear_netem)
            case FaultKind.LINK_DOWN:
                await asyncio.to_thread(self.netns[n].link, True)

    async def _play(self, f: Fault) -> None:
        target = self._target(f)
        for start, end in f.windows():
            await _sleep_until(self.t0 + start)
            t_in = time.monotonic() - self.t0
            log.info("fault %s on %s at %.1f s", f.kind.value, target, t_in)
            await self._inject(f, target)
            await _sleep_until(self.t0 + end)
            await self._heal(f, target)
            t_out = time.monotonic() - self.t0
            log.info("healed %s on %s at %.1f s", f.kind.value, target, t_out)
            self.plays.append(FaultPlay(f.kind.value, target, round(t_in, 2), round(t_out, 2)))
            self.plays.sort(key=lambda p: p.start_s)

    # ---- drain ----------------------------------------------------------------------------------

    def _pending_and_expected(self) -> tuple[int, int] | None:
        pending = expected = 0
        for g in range(len(self.gateways)):
            m = self._scrape_gateway(g)
            if m is None:
                return None
            pending += int(sum(v for _lab, v in m.get("edgegw_buffer_points", [])))
            acc = sum(v for _lab, v in m.get("edgegw_buffer_accepted_points_total", m.get(
                "edgegw_buffer_accepted_points", [])))
            dropped = sum(v for lab, v in m.get("edgegw_buffer_dropped_points_total", m.get(
                "edgegw_buffer_dropped_points", [])) if lab.get("policy") != "newest")
            expected += int(acc - dropped)
        return pending, expected

    async def _drain(self) -> bool:
        """PLCs off (no new data), then wait until every buffer is empty and the store holds what was
        delivered; bounded by the scenario's drain_timeout_s."""
        for plc in self.plcs:
            await asyncio.to_thread(plc.stop)
        await asyncio.sleep(2.5)  # the gateways notice (poll timeout, retry) and buffer their "device down" samples
        end = time.monotonic() + self.sc.drain_timeout_s
        while time.monotonic() < end:
            got = await asyncio.to_thread(self._pending_and_expected)
            stored = await asyncio.to_thread(self._stored_rows)
            if got is not None and stored is not None and got[0] == 0 and stored >= got[1]:
                return True
            await asyncio.sleep(0.5)
        return False

    async def _settle(self, stats: list[dict[str, Any]]) -> None:
        """After the gateways stopped: wait (10 s at most) until the store holds what their buffers delivered."""
        want = sum(int(s["counters"]["delivered_points"]) for s in stats)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            stored = await asyncio.to_thread(self._stored_rows)
            if stored is not None and stored >= want:
                return
            await asyncio.sleep(0.3)

    def _buffer_stats(self, g: int) -> dict[str, Any]:
        out = subprocess.run([self.py, "-m", "gateway.cli", "buffer", "stats", "-c", str(self.gateway_cfgs[g])],
                             capture_output=True, text=True, check=True)
        return dict(json.loads(out.stdout))

    def _rows(self) -> list[Row]:
        if not isinstance(self.store, Influx1):
            return _victoria_rows(self.store)
        res = self.store.query('SELECT "value", "quality", "point" FROM "telemetry"', db=DATABASE)
        rows: list[Row] = []
        for series in res["results"][0].get("series", []):  # type: ignore[index]
            cols = series["columns"]
            for values in series["values"]:
                r = dict(zip(cols, values, strict=True))
                device, _, point = str(r["point"]).partition(".")
                value = None if r["value"] is None else float(r["value"])
                rows.append(Row(device, point, int(r["time"]), value, int(r["quality"] or 0)))
        return rows

    # ---- the whole run --------------------------------------------------------------------------

    async def run(self) -> CampaignResult:
        try:
            await self._start()
            self.t0 = time.monotonic()
            sampler = asyncio.create_task(self._sampler())
            plays = [asyncio.create_task(self._play(f)) for f in self.sc.faults]
            await _sleep_until(self.t0 + self.sc.duration_s)
            await asyncio.gather(*plays)  # a fault running past the end is healed first
            run_s = time.monotonic() - self.t0
            drained = await self._drain()
            await asyncio.to_thread(self._sample)
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            for g, gw in enumerate(self.gateways):
                await asyncio.to_thread(self._scrape_gateway, g)
                await asyncio.to_thread(gw.stop)
                self._gateway_killed(g)
            stats = [await asyncio.to_thread(self._buffer_stats, g) for g in range(len(self.gateways))]
            await self._settle(stats)
            rows = await asyncio.to_thread(self._rows)
        finally:
            await self.close()
        return self._result(rows, stats, run_s, drained)

    def _result(self, rows: list[Row], stats: list[dict[str, Any]], run_s: float, drained: bool) -> CampaignResult:
        stubs = {f"plc-{i}": GasSubstation(self.sc.plcs.seed + i) for i in range(self.sc.plcs.count)}
        counts = {f"plc-{i}": read_counts(self._plc_counts_path(i)) for i in range(self.sc.plcs.count)}
        j = judge(rows, stubs, counts, stats, rel=0.0 if isinstance(self.store, Influx1) else 1e-11)
        merged: dict[float, float] = {}
        for h in self.latency_done:
            for le, v in h.items():
                merged[le] = merged.get(le, 0.0) + v
        p99 = histogram_quantile(0.99, merged)
        samples = _rates(self.samples_raw)
        produced_rates = sorted(p for t, p, _s in samples if p is not None and t <= run_s)
        nominal = produced_rates[len(produced_rates) // 2] if produced_rates else 0.0
        windows = [(p.start_s, p.end_s) for p in self.plays]
        recovery = recovery_times(samples, windows, nominal_rate=nominal, until=run_s + self.sc.drain_timeout_s)
        rule = self.sc.pass_rule
        reasons = []
        if not drained:
            reasons.append(f"not drained within {self.sc.drain_timeout_s:g} s")
        if rule.max_lost is not None and j.lost > rule.max_lost:
            reasons.append(f"lost {j.lost} > {rule.max_lost}")
        if rule.max_duplicates is not None and j.duplicates > rule.max_duplicates:
            reasons.append(f"duplicates {j.duplicates} > {rule.max_duplicates}")
        if rule.max_dropped is not None and j.dropped_counted > rule.max_dropped:
            reasons.append(f"dropped {j.dropped_counted} > {rule.max_dropped}")
        if rule.max_recovery_s is not None:
            for play, rec in zip(self.plays, recovery, strict=True):
                if rec is None or rec > rule.max_recovery_s:
                    reasons.append(f"{play.kind} at {play.start_s:g} s: recovery {rec} s > {rule.max_recovery_s:g} s")
        if j.produced and j.delivered < rule.min_delivered_ratio * j.produced:
            reasons.append(f"delivered {j.delivered} < {rule.min_delivered_ratio:g} x produced {j.produced}")
        return CampaignResult(self.sc, j, None if p99 is None else round(p99 * 1000, 1), self.plays, recovery,
                              samples, round(run_s, 1), drained, not reasons, reasons, self.report_dir,
                              extra={"nominal_points_per_s": nominal,
                                     "gateway_starts": [g.starts for g in self.gateways],
                                     "ingest_starts": [i.starts for i in self.ingests]})

    async def close(self) -> None:
        """Stop everything this campaign started, by PID; safe to call twice."""
        for proxy in self.proxies:
            with contextlib.suppress(OSError, RuntimeError):
                await proxy.__aexit__(None, None, None)
        self.proxies.clear()
        for child in [*self.gateways, *self.ingests, *self.plcs]:
            child.stop()
        self.broker.stop()
        self.store.stop()
        for ns in self.netns:
            ns.delete()


@dataclass(kw_only=True)
class DedupVictoriaMetrics(VictoriaMetrics):
    """VictoriaMetrics as deploy/ runs it: one sample per series and millisecond (``-dedup.minScrapeInterval``),
    so that a replayed point is not a second sample (docs/central.md)."""

    def command(self) -> list[str]:
        return [*super().command(), "-dedup.minScrapeInterval=1ms"]


def _victoria_rows(vm: VictoriaMetrics) -> list[Row]:
    """Samples of telemetry_quality (every point has one) joined with telemetry_value by (point, time)."""
    values: dict[tuple[str, int], list[float]] = {}
    for s in vm.export('{__name__="telemetry_value"}'):
        point = str(s["metric"]["point"])  # type: ignore[index]
        for v, t in zip(s["values"], s["timestamps"], strict=True):  # type: ignore[call-overload]
            values.setdefault((point, int(t)), []).append(float(v))
    rows: list[Row] = []
    for s in vm.export('{__name__="telemetry_quality"}'):
        point = str(s["metric"]["point"])  # type: ignore[index]
        device, _, name = point.partition(".")
        for q, t in zip(s["values"], s["timestamps"], strict=True):  # type: ignore[call-overload]
            got = values.get((point, int(t)))
            rows.append(Row(device, name, int(t), got.pop(0) if got else None, int(q)))
    return rows


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _rates(raw: list[tuple[float, int, int | None]]) -> list[tuple[float, float | None, float | None]]:
    """Cumulative samples -> points per second over each interval (stored: None while the store is down)."""
    out: list[tuple[float, float | None, float | None]] = []
    last_stored: tuple[float, int] | None = None
    for (t0, p0, _s0), (t1, p1, s1) in itertools.pairwise(raw):
        dt = max(t1 - t0, 1e-6)
        stored = None
        if s1 is not None and last_stored is not None:
            stored = (s1 - last_stored[1]) / max(t1 - last_stored[0], 1e-6)
        if s1 is not None:
            last_stored = (t1, s1)
        out.append((t1, (p1 - p0) / dt, stored))
    return out


def run_campaign(scenario: Scenario, report_dir: Path, *, keep_workdir: bool = False) -> CampaignResult:
    """Run ``scenario`` and write its report into ``report_dir`` (report.json, report.md, rates.png)."""
    from hil.report import write_report

    report_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="edgegw-hil-"))
    workdir.chmod(0o755)
    campaign = Campaign(scenario, workdir, report_dir)

    async def main() -> CampaignResult:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await campaign.run()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        result = asyncio.run(main())
    except BaseException:
        _keep_logs(workdir, report_dir)
        raise
    finally:
        if not keep_workdir:
            with contextlib.suppress(OSError):
                _keep_logs(workdir, report_dir)
                shutil.rmtree(workdir, ignore_errors=True)
    write_report(result)
    return result


def _keep_logs(workdir: Path, report_dir: Path) -> None:
    """The processes' logs and configs go with the report: a failed run can be read afterwards."""
    logs = report_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for p in workdir.glob("*"):
        if p.suffix in (".log", ".toml") and p.is_file():
            shutil.copy2(p, logs / p.name)
    for name in ("broker/mosquitto.log", "store/influxd.log", "store/victoria-metrics.log"):
        if (workdir / name).exists():
            shutil.copy2(workdir / name, logs / Path(name).name)
    os.sync()
