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
from hil.netns import HilUnavailable, Netns
from hil.opcua_plc_process import OPCUA_POINTS, node_id
from hil.oracle import Judgement, Row, histogram_quantile, judge, points_per_read, recovery_times
from hil.plc_process import read_counts, write_fault
from hil.scenario import TARGET_PREFIX, Fault, FaultKind, Scenario
from hil.services import Influx1, Mosquitto, PtyPair, VictoriaMetrics, free_port
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
    env: dict[str, str] | None = None  # added to the runner's environment (libfaketime for clock steps)

    def start(self) -> None:
        if self.running:  # two faults overlapping on one process: it is already back
            return
        env = {**os.environ, **self.env} if self.env else None
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=env)
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
        self.misses_live: dict[int, float] = {}  # gateway -> poll instants missed (its /metrics), per process
        self.misses_done = 0.0
        self.ptys: list[PtyPair] = []  # Modbus RTU: one socat pty pair per PLC
        self.mounts: list[Path] = []  # tmpfs mounted for the buffers
        self.clock_steps: dict[int, int] = {}  # gateway -> backward steps of its wall clock played
        self.t0 = 0.0

    # ---- set-up --------------------------------------------------------------------------------

    def _plcs_serving(self) -> bool:
        """Every PLC serves (its counts file is there).  One that exited first had its port taken
        meanwhile (a free port is only a guess on a busy machine): it starts again on another one."""
        for i, child in enumerate(self.plcs):
            if self._plc_counts_path(i).exists() or child.running or child.starts > 3 or "--port" not in child.argv:
                continue
            port = free_port()
            self.plc_ports[i] = port
            child.argv[child.argv.index("--port") + 1] = str(port)
            child.start()
        return all(self._plc_counts_path(i).exists() for i in range(self.sc.plcs.count))

    def _plc_counts_path(self, i: int) -> Path:
        return self.wd / f"plc-{i}.counts.json"

    def _plc_fault_path(self, i: int) -> Path:
        return self.wd / f"plc-{i}.fault.json"

    def _faketime_path(self, g: int) -> Path:
        return self.wd / f"gateway-{g}.faketime"

    def _device(self, i: int) -> dict[str, Any]:
        common = {"name": f"plc-{i}", "poll_interval_ms": self.sc.plcs.poll_interval_ms, "timeout_ms": 1000,
                  "asset": f"face-{i}"}
        match self.sc.plcs.protocol:
            case "modbus_rtu":
                return {"type": "modbus_rtu", "port": self.ptys[i].b, "baudrate": 115200, "parity": "N",
                        **common, "points": point_config()}
            case "opcua":
                return {"type": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{self.plc_ports[i]}/edgegw/",
                        "mode": "polling", "timestamp": "gateway", "security_policy": "None",
                        "security_mode": "None", "allow_no_security": True,
                        "pki_dir": str(self.wd / f"gateway-pki-{i}"), **common,
                        "points": [{"name": p, "node_id": node_id(p)} for p in OPCUA_POINTS]}
        return {"type": "modbus_tcp", "host": "127.0.0.1", "port": self.plc_ports[i], **common,
                "points": point_config()}

    def _buffer_dir(self, g: int) -> Path:
        return self.wd / f"gateway-{g}-buffer" if self.sc.gateway.buffer_tmpfs_kb else self.wd

    def _gateway_config(self, g: int, broker: tuple[str, int]) -> dict[str, Any]:
        n = self.sc.gateway.count
        devices = [self._device(i) for i in range(self.sc.plcs.count) if i % n == g]
        buffer = {"path": str(self._buffer_dir(g) / f"gateway-{g}.buffer.db"), "linger_ms": 50,
                  **self.sc.gateway.buffer}
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

    def _faketime_env(self, g: int) -> dict[str, str] | None:
        """A gateway whose wall clock a clock_step fault steps runs under libfaketime: an offset read
        from a file of its own (re-read every second), monotonic clocks untouched (as an NTP step)."""
        if not any(f.kind == FaultKind.CLOCK_STEP and self._target(f) == f"gateway-{g}" for f in self.sc.faults):
            return None
        lib = faketime_library()
        assert lib is not None  # _check_capabilities
        self._faketime_path(g).write_text("+0s\n")
        return {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(self._faketime_path(g)),
                "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}

    def _prefix(self, g: int) -> list[str]:
        """Gateway ``g`` and its PLCs run in its namespace, if the scenario has them."""
        return self.netns[g].exec_prefix() if self.netns else []

    def _check_capabilities(self) -> None:
        """What the scenario needs and this machine may lack, before anything starts: one line each."""
        if self.sc.gateway.buffer_tmpfs_kb and os.geteuid() != 0:
            raise HilUnavailable("gateway.buffer_tmpfs_kb mounts a tmpfs for each buffer: run as root")
        if self.sc.gateway.buffer_tmpfs_kb and shutil.which("mount") is None:
            raise HilUnavailable("gateway.buffer_tmpfs_kb needs mount(8) (util-linux)")
        if any(f.kind == FaultKind.CLOCK_STEP for f in self.sc.faults) and faketime_library() is None:
            raise HilUnavailable("clock_step needs libfaketime (the Debian package libfaketime)")
        if self.sc.plcs.protocol == "modbus_rtu" and shutil.which("socat") is None:
            raise HilUnavailable("Modbus RTU PLCs need socat (a pty pair per PLC)")

    def _mount_tmpfs(self, g: int) -> None:
        d = self._buffer_dir(g)
        d.mkdir(exist_ok=True)
        kb = self.sc.gateway.buffer_tmpfs_kb
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k,mode=0755", f"edgegw-hil-{os.getpid()}",
                               str(d)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise HilUnavailable(f"cannot mount a tmpfs for the buffer: {proc.stderr.strip()}")
        self.mounts.append(d)

    def _unmount_all(self) -> None:
        for d in reversed(self.mounts):
            if subprocess.run(["umount", str(d)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(d)], capture_output=True, check=False)  # still busy: detach
        self.mounts.clear()

    def _plc_argv(self, i: int, port: int) -> list[str]:
        common = ["--seed", str(self.sc.plcs.seed + i), "--tick-ms", str(self.sc.plcs.tick_ms),
                  "--counts", str(self._plc_counts_path(i))]
        match self.sc.plcs.protocol:
            case "opcua":
                return [self.py, "-m", "hil.opcua_plc_process", "--port", str(port), *common]
            case "modbus_rtu":
                return [self.py, "-m", "hil.plc_process", "--serial", self.ptys[i].a, *common]
        return [self.py, "-m", "hil.plc_process", "--port", str(port), "--fault", str(self._plc_fault_path(i)),
                *common]

    async def _start(self) -> None:
        self._check_capabilities()
        for g in range(self.sc.gateway.count if self.sc.gateway.buffer_tmpfs_kb else 0):
            await asyncio.to_thread(self._mount_tmpfs, g)
        if self.sc.plcs.protocol == "modbus_rtu":
            for i in range(self.sc.plcs.count):
                pty = PtyPair(workdir=self.wd / f"pty-{i}")
                self.ptys.append(pty)
                await asyncio.to_thread(pty.start)
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
            child = Child(f"plc-{i}", [*inside, *self._plc_argv(i, port)], self.wd / f"plc-{i}.log")
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
                                                        str(cfg)], self.wd / f"gateway-{g}.log",
                                       env=self._faketime_env(g)))
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
            misses = m.get("edgegw_device_poll_deadline_misses_total", m.get("edgegw_device_poll_deadline_misses"))
            if misses is not None:
                self.misses_live[g] = sum(v for _lab, v in misses)
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
        self.misses_done += self.misses_live.pop(g, 0.0)

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
            case FaultKind.PLC_SLOW:
                write_fault(self._plc_fault_path(n), {"kind": "slow", "delay_ms": f.delay_ms})
            case FaultKind.PLC_TIMEOUTS:
                write_fault(self._plc_fault_path(n), {"kind": "timeouts", "drop_every": f.drop_every})
            case FaultKind.PLC_EXCEPTIONS:
                write_fault(self._plc_fault_path(n), {"kind": "exceptions", "code": f.exception_code})
            case FaultKind.CLOCK_STEP:
                step = float(f.step_s or 0)
                self._faketime_path(n).write_text(f"{step:+.0f}s\n")
                self.clock_steps[n] = self.clock_steps.get(n, 0) + 1  # the step or its correction goes back

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
            case FaultKind.PLC_SLOW | FaultKind.PLC_TIMEOUTS | FaultKind.PLC_EXCEPTIONS:
                write_fault(self._plc_fault_path(n), {})
            case FaultKind.CLOCK_STEP:  # NTP steps it back
                self._faketime_path(n).write_text("+0s\n")

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
        res = self.store.query('SELECT "value", "quality", "point", "reason" FROM "telemetry"', db=DATABASE)
        rows: list[Row] = []
        for series in res["results"][0].get("series", []):  # type: ignore[index]
            cols = series["columns"]
            for values in series["values"]:
                r = dict(zip(cols, values, strict=True))
                device, _, point = str(r["point"]).partition(".")
                value = None if r["value"] is None else float(r["value"])
                rows.append(Row(device, point, int(r["time"]), value, int(r["quality"] or 0), r.get("reason")))
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
        # the undisturbed rate: the 90th percentile of the run's produced rates, not the median, which
        # a fault that stops polling for half of the run (a PLC down) would halve
        nominal = produced_rates[int(len(produced_rates) * 0.9)] if produced_rates else 0.0
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
        if rule.min_dropped is not None and j.dropped_counted < rule.min_dropped:
            reasons.append(f"dropped {j.dropped_counted} < {rule.min_dropped} (the buffer never filled)")
        if rule.max_unaccounted is not None and j.unaccounted > rule.max_unaccounted:
            reasons.append(f"unaccounted {j.unaccounted} > {rule.max_unaccounted} (answered, neither accepted nor "
                           f"counted as dropped)")
        missed = int(self.misses_done + sum(self.misses_live.values()))
        if rule.min_missed_polls is not None and missed < rule.min_missed_polls:
            reasons.append(f"missed polls {missed} < {rule.min_missed_polls} (the fault was not felt)")
        if isinstance(self.store, Influx1) and j.exception_rows != j.exception_rows_expected:
            reasons.append(f"bad rows of Modbus exceptions {j.exception_rows} != {j.exception_rows_expected} "
                           f"(the PLCs' exception answers x points)")
        if any(f.kind == FaultKind.CLOCK_STEP for f in self.sc.faults):
            n = self.sc.gateway.count
            for device, descents in sorted(j.clock_descents.items()):
                allowed = self.clock_steps.get(int(device.rpartition("-")[2]) % n, 0)
                if descents > allowed:
                    reasons.append(f"{device}: {descents} steps back in seq in timestamp order > {allowed} "
                                   f"backward clock steps")
        return CampaignResult(self.sc, j, None if p99 is None else round(p99 * 1000, 1), self.plays, recovery,
                              samples, round(run_s, 1), drained, not reasons, reasons, self.report_dir,
                              extra={"nominal_points_per_s": nominal, "missed_polls": missed,
                                     "clock_steps_backward": self.clock_steps,
                                     "gateway_starts": [g.starts for g in self.gateways],
                                     "ingest_starts": [i.starts for i in self.ingests]})

    async def close(self) -> None:
        """Stop everything this campaign started, by PID; safe to call twice."""
        for proxy in self.proxies:
            with contextlib.suppress(OSError, RuntimeError):
                await proxy.__aexit__(None, None, None)
        self.proxies.clear()
        self.stop_processes()

    def stop_processes(self) -> None:
        """Synchronous, idempotent: every process by PID, the pty pairs, the namespaces, the mounts."""
        for child in [*self.gateways, *self.ingests, *self.plcs]:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                child.stop()
        for svc in [self.broker, self.store, *self.ptys]:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                svc.stop()
        for ns in self.netns:
            ns.delete()
        self._unmount_all()


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


FAKETIME_DIRS = ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime", "/usr/lib/faketime",
                 "/usr/local/lib/faketime", "/usr/lib64/faketime")


def faketime_library() -> str | None:
    """libfaketime's multi-threaded preload library (Debian: package libfaketime), or None."""
    for d in FAKETIME_DIRS:
        p = Path(d) / "libfaketimeMT.so.1"
        if p.exists():
            return str(p)
    return None


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
        campaign.stop_processes()  # a second Ctrl-C may have cut the async close short
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
