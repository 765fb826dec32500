"""Long commands (``buffer export``, ``ids register``, the drain of ``edgegw run`` at a stop) draw a
progress bar on a terminal's stderr, and only there."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.buffer import SqliteBuffer
from hil.services import Mosquitto, free_port
from tests.gateway_process import REPO
from tests.test_buffer_durability import catalog, encoded_batch

__all__: list[str] = []


def _buffer(tmp_path: Path, batches: int) -> Path:
    db = tmp_path / "buffer.db"
    buf = SqliteBuffer(db)
    cat = catalog()
    for seq in range(1, batches + 1):
        assert buf.put(encoded_batch(cat, seq), 4)
    buf.close()
    return db


def _export(db: Path, out: Path, *, tty: bool, extra: tuple[str, ...] = ()) -> str:
    """Run the export with stderr on a pseudo-terminal (or a pipe); what stderr received."""
    return _cli([*extra, "buffer", "export", "--file", str(db), "--out", str(out)], tty=tty)


def _cli(args: list[str], *, tty: bool, env: dict[str, str] | None = None, expect: int = 0,
         started: Callable[[subprocess.Popen[bytes]], None] | None = None) -> str:
    """Run ``edgegw ARGS`` with stderr on a pseudo-terminal (or a pipe); what stderr received.
    ``started`` is called once the process runs (to signal it)."""
    cmd = [sys.executable, "-m", "gateway.cli", *args]
    env = {**os.environ, **(env or {}), "COLUMNS": "100", "TERM": "xterm"}
    env.pop("EDGEGW_LOG_FORMAT", None)
    if not tty:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == expect, done.stderr
        return done.stderr
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=slave, env=env)
        os.close(slave)
        if started is not None:
            started(proc)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == expect
    finally:
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_export_shows_a_bar_on_a_terminal(tmp_path: Path) -> None:
    db = _buffer(tmp_path, 50)
    out = tmp_path / "dump.jsonl"
    seen = _export(db, out, tty=True)
    assert "exporting to" in seen and "50/50" in seen, seen[-2000:]
    assert len(out.read_text().splitlines()) == 50  # the data is untouched by the bar
    assert all(json.loads(line)["seq"] for line in out.read_text().splitlines())


def test_no_bar_in_a_pipe_or_with_json_logs(tmp_path: Path) -> None:
    db = _buffer(tmp_path, 5)
    piped = _export(db, tmp_path / "a.jsonl", tty=False)
    assert "exporting to" not in piped and "5 batches" in piped
    quiet = _export(db, tmp_path / "b.jsonl", tty=True, extra=("--log-format", "json"))
    assert "exporting to" not in quiet


def test_ids_register_shows_a_bar_on_a_terminal(tmp_path: Path) -> None:
    """A real resolution node (hil/resolution_node.py) in this process, `edgegw ids register` in another;
    one code per batch request, so the bar counts every code."""
    from hil.resolution_node import ResolutionNode

    with ResolutionNode(users={"88.608.5288/App_gw": "pw"}) as node:
        points = "".join(f'[[devices.points]]\nname = "p{i}"\naddress = {i}\n' for i in range(12))
        cfg = tmp_path / "gw.toml"
        cfg.write_text(
            '[gateway]\nid = "gw-reg"\nsite = "baotou-mine-01"\nenterprise_prefix = "88.608.5288"\n'
            '[[devices]]\ntype = "modbus_tcp"\nname = "gas-sub-01"\nhost = "127.0.0.1"\n' + points
            + f'[registry]\napi = "snms"\nurl = "{node.url}"\nidentity = "88.608.5288/App_gw"\n'
            'password_env = "EDGEGW_TEST_IDIS_PW"\nbatch_size = 1\n'
        )
        env = {"EDGEGW_TEST_IDIS_PW": "pw"}
        seen = _cli(["ids", "register", "-c", str(cfg)], tty=True, env=env)
        assert "registering" in seen and "13/13" in seen, seen[-2000:]  # 12 points and the device
        assert len(node.store) == 13
        piped = _cli(["ids", "register", "-c", str(cfg)], tty=False, env=env)
        assert "registering" not in piped


def test_the_drain_at_a_stop_shows_a_bar_on_a_terminal(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`edgegw run` on a terminal, stopped while a large backlog drains to a real mosquitto one batch at a
    time (max_inflight = 1): the stop's drain (shutdown_drain_s) draws its bar."""
    from gateway.buffer import SqliteBuffer

    db = tmp_path / "buffer.db"
    buf = SqliteBuffer(db)
    cat = catalog()
    backlog = 60_000  # minutes at one batch in flight; the drain is cut after shutdown_drain_s
    assert all(buf.put_many([(encoded_batch(cat, seq), 4) for seq in range(1, backlog + 1)]))
    buf.close()
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        '[gateway]\nid = "gw-drain"\nsite = "baotou-mine-01"\nenterprise_prefix = "88.608.5288"\n'
        f'[buffer]\npath = "{db}"\n'
        f'[uplink]\nhost = "127.0.0.1"\nport = {mosquitto.port}\ntopic_prefix = "t-drain"\nmax_inflight = 1\n'
        "shutdown_drain_s = 2.0\nno_subscribers = \"accept\"\n"
        f'[[devices]]\ntype = "modbus_tcp"\nname = "dead-plc"\nhost = "127.0.0.1"\nport = {free_port()}\n'
        '[[devices.points]]\nname = "p"\naddress = 0\n'
    )

    def stop_once_draining(proc: subprocess.Popen[bytes]) -> None:
        def run() -> None:
            end = time.monotonic() + 60
            while time.monotonic() < end and _delivered(db) == 0:
                time.sleep(0.1)  # polling a condition (another process's buffer), under a deadline
            proc.send_signal(signal.SIGTERM)

        threading.Thread(target=run, daemon=True).start()

    seen = _cli(["run", "-c", str(cfg)], tty=True, started=stop_once_draining)
    assert "stopping: delivering the buffer" in seen, seen[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen)  # without the colours
    assert re.search(r"\d+/\d+ batches", plain), plain[-3000:]  # delivered of those pending at the stop


def _delivered(db: Path) -> int:
    import sqlite3

    from gateway.buffer import SqliteBuffer
    from gateway.core.errors import BufferCorruptError

    try:
        buf = SqliteBuffer(db, readonly=True)
    except (BufferCorruptError, sqlite3.Error):
        return 0
    try:
        return buf.counters()["delivered_batches"]
    except sqlite3.Error:
        return 0
    finally:
        buf.close()
