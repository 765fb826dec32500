"""Start real servers on loopback for tests, benchmarks and HIL runs: mosquitto, InfluxDB 1.x,
VictoriaMetrics.  Each gets a free port and its own directory, and is stopped by PID.

Used by ``tests/conftest.py``.  Under CI (``CI=true``) a missing server binary is an error, never a
silent skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Influx1", "Mosquitto", "PtyPair", "Service", "ServiceUnavailable", "VictoriaMetrics", "compile_c", "free_port",
]


class ServiceUnavailable(RuntimeError):
    """The server's binary is not installed (run the README's test command as root to install it)."""


def compile_c(source: Path, out: Path, *flags: str) -> Path:
    """Build a test helper written in C (an interop server, a preload library) with gcc;
    ServiceUnavailable if gcc is missing, RuntimeError with the compiler's output if it fails."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ServiceUnavailable("gcc is not installed")
    proc = subprocess.run([gcc, "-O1", "-Wall", "-o", str(out), str(source), *flags], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {source.name} failed: {proc.stderr}")
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (closed again: a server may bind it, or nothing listens
    there and connecting is refused).  The one helper for servers, peers, tests and benches."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """n loopback ports free right now and distinct (all held open at once while choosing)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def rss_mb() -> float:
    """This process's resident set size in MB (benchmarks)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 30.0, *, by_stdin: bool = False) -> None:
    """Stop a process started with asyncio (the benchmarks' gateways and simulator workers): SIGTERM, or
    with ``by_stdin`` its stdin closed (the simulator workers end at end of input); its own stop
    awaited for up to ``timeout_s``, then SIGKILL."""
    if proc.returncode is None:
        if by_stdin and proc.stdin is not None:
            proc.stdin.close()
        else:
            proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def _find(binary: str) -> str:
    path = shutil.which(binary) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin") if (p := Path(d) / binary).exists()), None
    )
    if path is None:
        raise ServiceUnavailable(f"{binary} is not installed")
    return path


@dataclass(kw_only=True)
class Service:
    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files before start."""

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self, timeout_s: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.prepare()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready on 127.0.0.1:{self.port}: {self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _http_status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=0.5) as r:
                return int(r.status)
        except OSError:
            return 0

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


_OWN_KEYS = ("listener", "persistence_location", "log_dest", "allow_anonymous", "password_file", "acl_file",
             "pid_file", "user")


@dataclass(kw_only=True)
class Mosquitto(Service):
    """A mosquitto of the tests' own.  ``shipped``: start from a mosquitto.conf (e.g. the one in
    deploy/), keeping its settings but the listener, paths, logging and authentication."""

    name: str = "mosquitto"
    extra_config: str = ""
    shipped: Path | None = None

    def prepare(self) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            # mosquitto started as root drops to user 'mosquitto': it must own its persistence dir
            shutil.chown(data, "mosquitto", "mosquitto")
        if self.shipped is not None:
            kept = [line for line in self.shipped.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#") and line.split()[0] not in _OWN_KEYS]
            (self.workdir / "mosquitto.conf").write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence_location {data}/\n"
                "log_dest stderr\n" + "\n".join(kept) + "\n" + self.extra_config
            )
            return
        (self.workdir / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {data}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n" + self.extra_config
        )

    def command(self) -> list[str]:
        return [_find("mosquitto"), "-c", str(self.workdir / "mosquitto.conf")]


@dataclass(kw_only=True)
class Influx1(Service):
    name: str = "influxd"
    rpc_port: int = field(default_factory=free_port)
    http_extra: str = ""  # more [http] settings, e.g. 'auth-enabled = true' or 'max-body-size = 1000000'

    def prepare(self) -> None:
        d = self.workdir
        (d / "influxdb.conf").write_text(
            f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
{self.http_extra}
[monitor]
  store-enabled = false
"""
        )

    def command(self) -> list[str]:
        return [_find("influxd"), "-config", str(self.workdir / "influxdb.conf")]

    def ready(self) -> bool:
        return self._http_status("/ping") == 204

    def query(self, q: str, db: str) -> dict[str, object]:
        import json
        import urllib.parse

        url = f"{self.url}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"})
        with urllib.request.urlopen(url, timeout=10) as r:
            return dict(json.loads(r.read()))

    def create_database(self, db: str) -> None:
        self.execute(f'CREATE DATABASE "{db}"')

    def execute(self, q: str, auth: tuple[str, str] | None = None) -> None:
        """Run a statement (CREATE USER, GRANT, CREATE RETENTION POLICY ...) through /query."""
        import urllib.parse

        creds = "?" + urllib.parse.urlencode({"u": auth[0], "p": auth[1]}) if auth else ""
        body = urllib.parse.urlencode({"q": q}).encode()
        with urllib.request.urlopen(f"{self.url}/query{creds}", data=body, timeout=10) as r:
            r.read()


@dataclass(kw_only=True)
class VictoriaMetrics(Service):
    name: str = "victoria-metrics"

    def command(self) -> list[str]:
        return [
            _find("victoria-metrics"),
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]

    def ready(self) -> bool:
        return self._http_status("/health") == 200

    def export(self, match: str) -> list[dict[str, object]]:
        """Force a flush, then export every series matching the selector (JSON lines)."""
        import json
        import urllib.parse

        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10) as r:
            r.read()
        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(url, timeout=10) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]


@dataclass(kw_only=True)
class PtyPair(Service):
    """A null-modem cable in software: ``socat`` joins two ptys, ``a`` and ``b`` (raw, no echo).

    A Modbus RTU server opens one end, the gateway the other; socat ignores baud rates and needs
    parity N on ptys.
    """

    name: str = "socat"

    @property
    def a(self) -> str:
        return str(self.workdir / "ttyA")

    @property
    def b(self) -> str:
        return str(self.workdir / "ttyB")

    def command(self) -> list[str]:
        return [_find("socat"), "-d", "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"]

    def ready(self) -> bool:
        return os.path.exists(self.a) and os.path.exists(self.b)
