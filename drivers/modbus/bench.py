"""`edgegw bench modbus`: N simulated PLCs of M holding registers in other processes, polled at 1 Hz.

The gateway side is the real thing minus the buffer and uplink: the config is parsed and the point
table built as for `edgegw run`, then one :class:`DeviceRunner` per device drives a
:class:`ModbusDriver` (one TCP connection each), and every poll batch goes through the normalise
stage.  Figures are per 1-second window after a warm-up; the table shows medians.  Asserts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import json
import math
import operator
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drivers.modbus.driver import LinePool, ModbusDriver
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.services import free_port, free_ports, rss_mb, stop_process
from pipelines.normalise import Normalise

__all__ = ["BenchError", "BenchResult", "PlcStartError", "ScaleResult", "main", "main_scale", "run_bench", "run_scale"]


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


class PlcStartError(RuntimeError):
    """A simulated-PLC worker did not get ready (usually: another process took one of its free ports
    between :func:`free_ports` choosing it and the worker listening on it)."""


async def _start_plcs(registers: int, ports: list[int], workers: int, *, quiet: bool = False
                      ) -> list[asyncio.subprocess.Process]:
    """``quiet``: a worker's error output is dropped (the caller retries on other ports)."""
    procs: list[asyncio.subprocess.Process] = []
    per = math.ceil(len(ports) / workers)
    try:
        for w in range(workers):
            chunk = ports[w * per : (w + 1) * per]
            if not chunk:
                continue
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hil.bench_plcs", str(registers), *map(str, chunk),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None,
            )
            procs.append(proc)
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            if line.strip() != b"ready":
                raise PlcStartError("a simulated-PLC worker did not start")
    except BaseException:
        await _stop_plcs(procs)  # the workers that did start: none is left behind
        raise
    return procs


async def _stop_plcs(procs: list[asyncio.subprocess.Process]) -> None:
    await asyncio.gather(*(stop_process(p, 10, by_stdin=True) for p in procs))


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


# -- scale: `edgegw bench modbus --points N` ---------------------------------------------------------
BASE_MB = 40.0  # the memory budget: 40 MB base + 0.5 KB per configured point (#17)
_MB = 2**20
_PHASE = re.compile(r"Start-up: (?P<name>[^.]+?) in (?P<s>[0-9.]+) s")
_DONE = re.compile(r"Start-up done in (?P<s>[0-9.]+) s")


class BenchError(Exception):
    """A bench that cannot run as asked (one line for the user, no traceback)."""


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """One run of ``edgegw run`` (a process of its own) on ``points`` points; see :func:`run_scale`."""

    points: int
    devices: int
    registers: int
    config_mb: float  # size of the generated TOML file
    check_s: float  # `edgegw check -c FILE` wall time, process start to exit
    startup_s: float  # `edgegw run` process start -> every device polled once (the first full round)
    built_s: float | None  # process start -> "Start-up done" in its log (Gateway built; None: start < 1 s)
    startup_phases: dict[str, float]  # what `edgegw run` logged (logger edgegw.startup), seconds
    seconds: float  # measured window after the warm-up
    polled_points_per_s: float
    delivered_points_per_s: float  # confirmed by PUBACK from the bench's own mosquitto
    cpu_fraction: float  # gateway process CPU seconds / wall seconds over the window
    cpu_s_per_million_points: float  # per polled point
    deadline_misses: int  # over the window
    failed_polls: int  # over the window
    rss_mb: float  # VmRSS of the gateway process at the end of the window
    peak_rss_mb: float  # VmHWM (start-up included)
    rss_bytes_per_point: float  # (rss_mb - BASE_MB) / points, the budget is <= 512
    gateway_fds: int
    load_average_1m: float


def _split(points: int, registers: int) -> tuple[int, int]:
    """``points`` as devices x registers; devices = points / registers, which must divide."""
    if points <= 0 or registers <= 0:
        raise BenchError("--points and --registers must be positive")
    if points % registers:
        raise BenchError(f"--points {points} is not a multiple of --registers {registers}: "
                         f"use e.g. --points {max(1, points // registers) * registers}")
    return points // registers, registers


def _scale_config(path: Path, ports: list[int], registers: int, mqtt_port: int) -> None:
    """The config a commissioning engineer would write: one [[devices]] table per PLC, the points inline."""
    import tomli_w

    points = _points(registers)
    doc = {
        "gateway": {"id": "scale", "site": "bench", "enterprise_prefix": "88.608.5288"},
        "uplink": {"host": "127.0.0.1", "port": mqtt_port, "client_id": f"scale-{os.getpid()}",
                   "no_subscribers": "accept"},
        "buffer": {"path": "buffer.db"},
        "devices": [
            {"type": "modbus_tcp", "name": f"plc{d:04d}", "host": "127.0.0.1", "port": port, "unit_id": 1,
             "poll_interval_ms": 1000, "timeout_ms": 1000, "backoff_max_ms": 2000, "points": points}
            for d, port in enumerate(ports)
        ],
    }
    path.write_bytes(tomli_w.dumps(doc).encode("utf-8"))


def _raise_nofile(need: int) -> None:
    """Simulated PLCs hold a listening and an accepted socket each: raise the soft limit to the hard one
    (children inherit it) or say why the bench cannot run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(max(need, soft), hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            raise BenchError(f"needs {need} open files per process, the hard limit is {hard} (ulimit -Hn): "
                             "use more --workers or fewer --points")


class _Metrics:
    """The figures the bench reads from the gateway's own /metrics (Prometheus text)."""

    def __init__(self, text: str) -> None:
        self.sums: dict[str, float] = {}
        self.devices_polled = 0
        for line in text.splitlines():
            if not line or line[0] == "#":
                continue
            name, _, value = line.rpartition(" ")
            family = name.split("{", 1)[0]
            v = float(value)
            self.sums[family] = self.sums.get(family, 0.0) + v
            if family == "edgegw_device_reads_total" and v > 0:
                self.devices_polled += 1

    def __getitem__(self, family: str) -> float:
        return self.sums.get(family, 0.0)


def _get(url: str, timeout_s: float = 10.0) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # loopback: the gateway's own endpoint
        body: bytes = resp.read()
    return body.decode("utf-8")


async def _scrape(url: str, proc: asyncio.subprocess.Process) -> _Metrics:
    try:
        return _Metrics(await asyncio.to_thread(_get, url))
    except OSError as err:
        state = "running" if proc.returncode is None else f"exited with {proc.returncode}"
        raise BenchError(f"the gateway's {url} did not answer ({err}); the gateway is {state}") from None


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _proc_status_mb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    return float("nan")


def _phases(log_text: str) -> dict[str, float]:
    """The phases `edgegw run` logged at INFO (a start under 1 s logs them at DEBUG: none then), and
    ``config to Gateway built``: its own total from reading the file to a constructed Gateway."""
    out = {m["name"]: float(m["s"]) for m in _PHASE.finditer(log_text)}
    if done := _DONE.search(log_text):
        out["config to Gateway built (total of the above)"] = float(done["s"])
    return out


async def _scale_once(work: Path, run: int, ports: list[int], registers: int, mqtt_port: int, seconds: int,
                      check_s: float, config_mb: float) -> ScaleResult:
    """One `edgegw run` process on the config in ``work``: start-up, then ``seconds`` of polling."""
    devices = len(ports)
    points = devices * registers
    cfg = work / "scale.toml"
    http = f"127.0.0.1:{free_port()}"
    log_path = work / f"run{run}.log"
    (work / "buffer.db").unlink(missing_ok=True)
    for wal in ("buffer.db-wal", "buffer.db-shm"):
        (work / wal).unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg), "--http", http,
            cwd=work, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, env=env,
        )
    finally:
        os.close(log_fd)
    url = f"http://{http}/metrics"
    try:
        deadline = t0 + 60 + points / 1000  # 160 s for 100,000 points: a start 10x slower than measured
        m = None
        built_s: float | None = None
        while time.monotonic() < deadline:
            if built_s is None and _DONE.search(log_path.read_text(errors="replace")):
                built_s = time.monotonic() - t0  # within the 0.25 s of this loop
            if proc.returncode is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise BenchError(f"edgegw run exited with {proc.returncode}: {' '.join(tail)}")
            try:
                m = _Metrics(await asyncio.to_thread(_get, url))
            except OSError:  # not listening yet (the HTTP endpoint starts with the gateway)
                m = None
            if m is not None and m.devices_polled >= devices:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.25)
        else:
            polled = m.devices_polled if m is not None else 0
            raise BenchError(f"only {polled} of {devices} devices polled within {deadline - t0:.0f} s of start")
        startup_s = time.monotonic() - t0
        await asyncio.sleep(2.0)  # warm-up: the first cycles are jittered
        # counters are read at the middle of a scrape (800 devices: ~0.2 s); CPU is read outside the
        # scrapes, so that their own cost is not counted
        s0 = time.monotonic()
        m0 = await _scrape(url, proc)
        t1, cpu1 = time.monotonic(), _proc_cpu_s(proc.pid)
        s0 = (s0 + t1) / 2
        await asyncio.sleep(seconds)
        t2, cpu2 = time.monotonic(), _proc_cpu_s(proc.pid)
        rss, peak = _proc_status_mb(proc.pid, "VmRSS"), _proc_status_mb(proc.pid, "VmHWM")
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        m1 = await _scrape(url, proc)
        s1 = (t2 + time.monotonic()) / 2
    finally:
        await stop_process(proc)
    wall = t2 - t1
    polled_rate = (m1["edgegw_device_points_total"] - m0["edgegw_device_points_total"]) / (s1 - s0)
    cpu = (cpu2 - cpu1) / wall
    return ScaleResult(
        points=points, devices=devices, registers=registers, config_mb=round(config_mb, 2),
        check_s=round(check_s, 2), startup_s=round(startup_s, 2),
        built_s=None if built_s is None else round(built_s, 2), startup_phases=_phases(log_path.read_text()),
        seconds=round(wall, 2), polled_points_per_s=round(polled_rate, 1),
        delivered_points_per_s=round(
            (m1["edgegw_uplink_published_points_total"] - m0["edgegw_uplink_published_points_total"]) / (s1 - s0), 1),
        cpu_fraction=round(cpu, 4), cpu_s_per_million_points=round(cpu / polled_rate * 1e6, 3) if polled_rate else 0.0,
        deadline_misses=int(m1["edgegw_device_poll_deadline_misses_total"]
                            - m0["edgegw_device_poll_deadline_misses_total"]),
        failed_polls=int(m1["edgegw_device_read_errors_total"] - m0["edgegw_device_read_errors_total"]),
        rss_mb=round(rss, 1), peak_rss_mb=round(peak, 1),
        rss_bytes_per_point=round((rss - BASE_MB) * _MB / points, 1),
        gateway_fds=fds, load_average_1m=round(os.getloadavg()[0], 2),
    )


def _check(cfg: Path) -> float:
    """`edgegw check -c FILE` as a user runs it: a process of its own, timed from start to exit."""
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", str(cfg)], cwd=cfg.parent,
                          capture_output=True, timeout=600, check=False)
    took = time.monotonic() - t0
    if done.returncode != 0:
        raise BenchError(f"edgegw check failed on the generated config: {done.stdout.decode().strip()} "
                         f"{done.stderr.decode().strip()}".strip())
    return took


async def run_scale(points: int, registers: int = 125, seconds: int = 10, workers: int = 2, runs: int = 1
                    ) -> list[ScaleResult]:
    """``points`` across ``points / registers`` simulated PLCs (``workers`` processes), a mosquitto of its
    own, and the real ``edgegw run`` in a process of its own on a generated TOML file, ``runs`` times."""
    from gateway.bench import broker

    devices, registers = _split(points, registers)
    if workers < 1 or seconds < 1 or runs < 1:
        raise BenchError("--workers, --seconds and --runs must be at least 1")
    per_worker = math.ceil(devices / min(workers, devices))
    _raise_nofile(2 * per_worker + devices + 256)  # a worker: listening + accepted per PLC; gateway: 1 per PLC
    results = []
    with broker() as mq, tempfile.TemporaryDirectory(prefix="edgegw-bench-scale-") as tmp:
        work = Path(tmp)
        cfg = work / "scale.toml"
        attempts = 3  # other benches on a shared machine take ephemeral ports too: choose again
        for attempt in range(attempts):
            ports = free_ports(devices)
            try:
                procs = await _start_plcs(registers, ports, workers, quiet=attempt < attempts - 1)
                break
            except PlcStartError:
                if attempt == attempts - 1:
                    raise BenchError(f"the simulated PLCs could not listen on {devices} free loopback ports "
                                     f"({attempts} tries): is another process taking ports?") from None
        _scale_config(cfg, ports, registers, mq.port)
        config_mb = cfg.stat().st_size / 1e6
        try:
            for run in range(runs):
                check_s = await asyncio.to_thread(_check, cfg)
                results.append(await _scale_once(work, run, ports, registers, mq.port, seconds, check_s, config_mb))
        finally:
            await _stop_plcs(procs)
    return results


_SCALE_KEYS = ("check_s", "startup_s", "polled_points_per_s", "delivered_points_per_s", "cpu_fraction",
               "cpu_s_per_million_points", "deadline_misses", "failed_polls", "rss_mb", "peak_rss_mb",
               "rss_bytes_per_point", "gateway_fds", "load_average_1m")


def scale_summary(results: list[ScaleResult]) -> dict[str, Any]:
    """Medians over the runs at the top level (the keys of :class:`ScaleResult`), each run under ``runs``."""
    first = results[0]
    out: dict[str, Any] = {"bench": "modbus-scale", "points": first.points, "devices": first.devices,
                           "registers": first.registers, "config_mb": first.config_mb,
                           "base_mb": BASE_MB, "runs_count": len(results)}
    for k in _SCALE_KEYS:
        out[k] = statistics.median(getattr(r, k) for r in results)
    built = [r.built_s for r in results if r.built_s is not None]
    out["built_s"] = statistics.median(built) if built else None
    names = list(dict.fromkeys(n for r in results for n in r.startup_phases))
    # a phase is logged (at INFO) only once a start has taken 1 s: the median of the runs that logged it
    out["startup_phases"] = {n: statistics.median(r.startup_phases[n] for r in results if n in r.startup_phases)
                             for n in names}
    out["runs"] = [asdict(r) for r in results]
    out["cpus"] = os.cpu_count()
    return out


def format_scale(s: dict[str, Any]) -> str:
    n = s["runs_count"]
    rows = [
        ("devices x registers", f"{s['devices']} x {s['registers']} ({s['points']:,} points; "
                                f"config {s['config_mb']:.1f} MB; medians of {n} run{'s' * (n > 1)})"),
        ("edgegw check", f"{s['check_s']:.2f} s"),
        ("start-up (process -> all polled)", f"{s['startup_s']:.2f} s"),
        ("  process -> Gateway built", "-" if s["built_s"] is None else f"{s['built_s']:.2f} s  (its log)"),
        *((f"  {name}", f"{took:.2f} s") for name, took in s["startup_phases"].items()),
        ("points/s polled / delivered", f"{s['polled_points_per_s']:,.0f} / {s['delivered_points_per_s']:,.0f}"),
        ("gateway CPU fraction", f"{s['cpu_fraction']:.3f}"),
        ("CPU s per million points", f"{s['cpu_s_per_million_points']:.2f}"),
        ("deadline misses / failed polls", f"{s['deadline_misses']:g} / {s['failed_polls']:g}"),
        ("RSS MB (end / peak)", f"{s['rss_mb']:.1f} / {s['peak_rss_mb']:.1f}"),
        ("RSS bytes per point", f"{s['rss_bytes_per_point']:,.0f}  (RSS - {s['base_mb']:g} MB base) / points; "
                                "target <= 512"),
        ("gateway open files", f"{s['gateway_fds']:g}"),
        ("load average (1 min)", f"{s['load_average_1m']:.2f} on {s['cpus']} CPUs"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main_scale(points: int, registers: int, json_path: str | None, seconds: int = 10, workers: int = 2,
               runs: int = 1) -> dict[str, Any]:
    summary = scale_summary(asyncio.run(run_scale(points, registers, seconds, workers, runs)))
    print(format_scale(summary))
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
