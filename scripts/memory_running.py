"""The running gateway's resident memory per configured point: python scripts/memory_running.py N [N ...]

For each N: simulated PLCs (``hil.bench_plcs``: N / 100 Modbus TCP devices of 100 holding registers, the
points of ``scripts/memory_per_point.py`` and ``edgegw bench modbus``) and a mosquitto on loopback, a
config file, and the real ``edgegw run -c FILE`` in a process of its own, polling every device and
publishing to the broker.  Once the gateway says it is running, ``--warmup`` seconds later, its resident
size is read from ``/proc/PID/statm`` every half second for ``--seconds``; a run reports the median.
``--runs`` runs per N, median of them; ``--json FILE`` writes the figures.

The gateway runs from compiled bytecode, as installed (``pip install`` writes the ``.pyc`` files of
every package, ours too: deploy/offline/install.sh): the modules it imports are compiled once, before
the first run, into a cache of this run's own (``PYTHONPYCACHEPREFIX``).  ``--from-source``: with
``PYTHONDONTWRITEBYTECODE`` as this environment sets it, every start compiles our modules from source
(about 3 MB more resident: the compiler's peak stays in the allocator's arenas).  Prints a line per run and a
table ``points -> MB``, with the least-squares fit ``base MB + bytes per point``.  #17, item 1.

Options: ``--poll-ms`` (default 1000), ``--workers`` (PLC processes, default 2), ``--reloads K``: then K
times a live reload (SIGHUP, the first device's poll interval changed), the resident size measured
again after each the same way (printed; the table's figures stay those before any reload).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

from drivers.modbus.bench import _points, _start_plcs, _stop_plcs
from hil.services import Mosquitto, free_ports, stop_process

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE / 1e6


async def _rss_median(pid: int, proc: asyncio.subprocess.Process, seconds: float) -> list[float]:
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.returncode is None:
        samples.append(_rss_mb(pid))
        await asyncio.sleep(0.5)
    if proc.returncode is not None or not samples:
        raise RuntimeError(f"the gateway exited early (code {proc.returncode})")
    return samples


async def _one(n: int, mq_port: int, work: Path, args: argparse.Namespace) -> float:
    devices = max(1, n // 100)
    for attempt in range(5):  # a port chosen free may be taken by another process before a PLC binds it
        ports = free_ports(devices)
        try:
            plcs = await _start_plcs(100, ports, args.workers)
            break
        except RuntimeError:
            if attempt == 4:
                raise
    def config(first_poll_ms: int) -> dict[str, object]:
        return {
            "gateway": {"id": "memory", "site": "bench", "enterprise_prefix": "88.608.5288"},
            "uplink": {"host": "127.0.0.1", "port": mq_port, "client_id": f"memory-{os.getpid()}",
                       "no_subscribers": "accept"},
            "buffer": {"path": str(work / "buffer.db")},
            "devices": [
                {"type": "modbus_tcp", "name": f"plc{d:04d}", "host": "127.0.0.1", "port": p, "unit_id": 1,
                 "poll_interval_ms": first_poll_ms if d == 0 else args.poll_ms, "timeout_ms": 1000,
                 "backoff_max_ms": 2000, "points": _points(100)}
                for d, p in enumerate(ports)
            ],
        }

    path = work / "gateway.toml"
    path.write_text(tomli_w.dumps(config(args.poll_ms)), encoding="utf-8")
    gw = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "run", "-c", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=args.env,
    )
    started = asyncio.Event()
    reloaded = asyncio.Event()
    assert gw.stderr is not None
    stderr = gw.stderr

    async def drain() -> None:  # read the log (a full pipe would stop the gateway); note when it runs
        while line := await stderr.readline():
            if b"starting:" in line:
                started.set()
            if b"Reloaded config" in line or b"Reload refused" in line:
                reloaded.set()
            if args.verbose:
                sys.stderr.write(line.decode(errors="replace"))

    reader = asyncio.create_task(drain())
    try:
        await asyncio.wait_for(started.wait(), args.start_timeout)
        await asyncio.sleep(args.warmup)
        samples = await _rss_median(gw.pid, gw, args.seconds)
        if args.verbose_samples:
            print(f"  samples: min {min(samples):.1f}, max {max(samples):.1f}, last {samples[-1]:.1f} MB", flush=True)
        for k in range(args.reloads):
            path.write_text(tomli_w.dumps(config(args.poll_ms // 2 if k % 2 == 0 else args.poll_ms)), encoding="utf-8")
            reloaded.clear()
            t0 = time.monotonic()
            gw.send_signal(signal.SIGHUP)
            await asyncio.wait_for(reloaded.wait(), args.start_timeout)
            took = time.monotonic() - t0
            await asyncio.sleep(args.warmup)
            after = statistics.median(await _rss_median(gw.pid, gw, args.seconds))
            print(f"  after reload {k + 1} ({took:.1f} s from SIGHUP to applied): {after:.1f} MB", flush=True)
        return statistics.median(samples)
    finally:
        await stop_process(gw)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await _stop_plcs(plcs)


def _fit(rows: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares MB = base + slope * points: (base MB, bytes per point)."""
    if len(rows) < 2:
        return float("nan"), float("nan")
    xs, ys = [r[0] for r in rows], [r[1] for r in rows]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope * 1e6


# what `edgegw run` imports (its parent and its config-reading child): compiled before the first run
_IMPORTS = ("import gateway.cli, gateway.app, gateway.config, gateway.prebuild, drivers.modbus.driver, "
            "drivers.modbus.spec")


def _bytecode_env(base: Path) -> dict[str, str]:
    """The gateway's environment with a bytecode cache of its own, filled now (the first start is not measured
    compiling)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
    subprocess.run([sys.executable, "-c", _IMPORTS], env=env, check=True)
    return env


async def main(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="edgegw-memory-"))
    base.chmod(0o755)  # mosquitto started as root reads its config as user 'mosquitto'
    args.env = None if args.from_source else _bytecode_env(base)
    mq = Mosquitto(workdir=base)
    mq.start()
    result: dict[str, object] = {"poll_interval_ms": args.poll_ms, "runs": args.runs, "seconds": args.seconds,
                                 "bytecode": "from source" if args.from_source else "compiled",
                                 "load_average_1m": round(os.getloadavg()[0], 2)}
    medians: list[tuple[int, float]] = []
    try:
        for n in args.points:
            runs = []
            for k in range(args.runs):
                work = base / f"run-{n}-{k}"
                work.mkdir()
                rss = await _one(n, mq.port, work, args)
                shutil.rmtree(work, ignore_errors=True)
                runs.append(rss)
                print(f"{n} points, run {k + 1}: {rss:.1f} MB", flush=True)
            medians.append((n, statistics.median(runs)))
            result[str(n)] = {"rss_mb_runs": [round(r, 1) for r in runs], "rss_mb": round(medians[-1][1], 1),
                              "rss_bytes_per_point": round(medians[-1][1] * 1e6 / n)}
    finally:
        mq.stop()
        shutil.rmtree(base, ignore_errors=True)
    base_mb, per_point = _fit(medians)
    print("points     RSS MB (median)")
    for n, mb in medians:
        print(f"{n:>7,}    {mb:7.1f}")
    if len(medians) > 1:
        result["fit_base_mb"], result["fit_bytes_per_point"] = round(base_mb, 1), round(per_point)
        print(f"fit: {base_mb:.1f} MB + {per_point:.0f} B/point ({result['bytecode']}; load average "
              f"{os.getloadavg()[0]:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("points", type=int, nargs="+")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--poll-ms", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reloads", type=int, default=0, help="then this many live reloads (SIGHUP), RSS after each")
    p.add_argument("--start-timeout", type=float, default=300.0)
    p.add_argument("--json", default=None)
    p.add_argument("--from-source", action="store_true",
                   help="no bytecode cache: each start compiles the gateway's modules (PYTHONDONTWRITEBYTECODE)")
    p.add_argument("-v", "--verbose", action="store_true", help="pass the gateway's log through")
    p.add_argument("--samples", dest="verbose_samples", action="store_true",
                   help="also print each run's smallest, largest and last sample")
    asyncio.run(main(p.parse_args()))
