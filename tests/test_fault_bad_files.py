"""Bad buffer files met by the real ``edgegw run`` process at start-up.

- a buffer written by a newer format version: start-up refuses (exit 1) with a message naming the
  file and what to do; the file is byte for byte unchanged;
- a corrupt buffer file (a zeroed page after kill -9): start-up succeeds, the file is moved aside
  (never deleted), every readable batch is delivered to a real mosquitto, the unreadable ones are
  counted exactly;
- a missing write-ahead log after kill -9: start-up succeeds, the loss is reported loudly and
  counted, what the main file holds is delivered.

The buffer is filled by the gateway itself with the broker unreachable (a port nobody listens on),
then the gateway is killed with SIGKILL, so the files are exactly what a crash leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.buffer import SqliteBuffer
from gateway.buffer.sqlite import FORMAT_VERSION
from gateway.codec import decode
from gateway.core.point import Point
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto, free_port
from tests.collector import collect
from tests.conftest import eventually
from tests.gateway_process import REPO, kill_9, start_gateway, stop_gateway
from tests.test_buffer_durability import assert_ledger

__all__: list[str] = []


def _config(path: Path, plc_port: int, broker_port: int, buffer: Path, prefix: str) -> Path:
    from firmware_stubs.gas_substation import point_config

    points = "\n".join(
        "[[devices.points]]\n" + "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in p.items())
        for p in point_config()
    )
    path.write_text(
        '[gateway]\nid = "gw-files"\nsite = "ordos-plant-04"\nenterprise_prefix = "88.608.5288"\n'
        f'[buffer]\npath = "{buffer.as_posix()}"\nbatch_max_points = 16\nlinger_ms = 10\n'
        f'[uplink]\nport = {broker_port}\ntopic_prefix = "{prefix}"\nclient_id = "gw-files-{prefix}"\n'
        "timeout_s = 3\nshutdown_drain_s = 20\n"
        f'[[devices]]\ntype = "modbus_tcp"\nname = "gas-sub-1"\nhost = "127.0.0.1"\nport = {plc_port}\n'
        f"poll_interval_ms = 10\n{points}\n"
    )
    return path


def _pending(buffer: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{buffer}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])
    except sqlite3.Error:
        return 0


async def _fill_then_kill(tmp: Path, plc: SimulatedPlc, batches: int, checkpoint_at: int = 0) -> tuple[Path, Path]:
    """Run the gateway with no broker until ``batches`` are buffered, then kill -9 it. With
    ``checkpoint_at``, the first that many batches are folded into the main file on the way (another
    connection's passive checkpoint, as SQLite's auto-checkpoint would do later)."""
    buffer = tmp / "buffer.db"
    cfg = _config(tmp / "offline.toml", plc.port, free_port(), buffer, "offline")
    log = tmp / "gateway.log"
    proc = await start_gateway(cfg, log)
    if checkpoint_at:
        await eventually(lambda: _pending(buffer) >= checkpoint_at, timeout=30,
                         what=f"{checkpoint_at} batches buffered")
        with contextlib.closing(sqlite3.connect(buffer, isolation_level=None, timeout=10)) as db:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0
    await eventually(lambda: _pending(buffer) >= batches, timeout=30, what=f"{batches} batches buffered")
    await kill_9(proc)
    return buffer, log


async def _drain(tmp: Path, plc: SimulatedPlc, broker: Mosquitto, buffer: Path, prefix: str
                 ) -> tuple[list[bytes], str]:
    """Start the gateway against the real broker, stop it with SIGTERM; return what arrived and the log."""
    cfg = _config(tmp / f"{prefix}.toml", plc.port, broker.port, buffer, prefix)
    log = tmp / f"{prefix}.log"
    async with collect(broker.port, f"{prefix}/+/+/data", f"sub-{prefix}") as received:
        proc = await start_gateway(cfg, log)
        await eventually(lambda: len(received) >= 5, timeout=30, what=f"publishing ({prefix})")
        await stop_gateway(proc, log)
        final = SqliteBuffer(buffer)
        accepted = final.counters()["accepted_batches"]
        assert final.pending_batches == 0
        assert_ledger(final)
        final.close()
        await eventually(lambda: len({decode(p).seq for p in received}) >= accepted - _lost(buffer), timeout=30,
                         what="every delivered batch at the subscriber")
    return list(received), log.read_text()


def _counters(buffer: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{buffer}?mode=ro", uri=True)) as db:
        return {str(k): int(v) for k, v in db.execute("SELECT name, value FROM counters").fetchall()}


def _live(points: list[Point]) -> list[Point]:
    """Points as acquired: a replay after a restart flags them historical, nothing else changes."""
    return [dataclasses.replace(p, historical=False) for p in points]


def _lost(buffer: Path) -> int:
    return _counters(buffer)["lost_corrupt_batches"]


@contextlib.asynccontextmanager
async def _killed_gateway(
    tmp: Path, *, seed: int, batches: int, checkpoint_at: int = 0
) -> AsyncIterator[tuple[SimulatedPlc, Path]]:
    """A simulated PLC, and a buffer the gateway filled with it before it was killed with SIGKILL."""
    async with SimulatedPlc(tick_s=0.01, seed=seed) as plc:
        buffer, _ = await _fill_then_kill(tmp, plc, batches, checkpoint_at)
        yield plc, buffer


@pytest.mark.integration
async def test_newer_format_refuses_start_up_and_leaves_the_file(tmp_path: Path) -> None:
    buffer = tmp_path / "buffer.db"
    SqliteBuffer(buffer).close()
    with contextlib.closing(sqlite3.connect(buffer, isolation_level=None)) as db:
        db.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    before = hashlib.sha256(buffer.read_bytes()).hexdigest()
    async with SimulatedPlc(tick_s=0) as plc:
        cfg = _config(tmp_path / "gw.toml", plc.port, free_port(), buffer, "newer")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg), cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
    assert proc.returncode == 1
    message = err.decode()
    assert str(buffer) in message and "newer" in message and "untouched" in message
    assert "Traceback" not in message
    assert hashlib.sha256(buffer.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["buffer.db", "gw.toml"]


@pytest.mark.integration
async def test_corrupt_buffer_is_moved_aside_and_readable_batches_delivered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with _killed_gateway(tmp_path, seed=9, batches=150) as (plc, buffer):
        # fold the WAL into the main file (the 'open' marker of the killed run stays), then damage a page
        with contextlib.closing(sqlite3.connect(buffer, isolation_level=None)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            total = db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
            page = db.execute("PRAGMA page_count").fetchone()[0] // 2
        with buffer.open("r+b") as f:
            f.seek(page * 4096)
            f.write(b"\x00" * 4096)
        received, log = await _drain(tmp_path, plc, mosquitto, buffer, "salvage")
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].stat().st_size > 0
    assert "moved aside" in log and str(aside[0]) in log
    counters = _counters(buffer)
    assert counters["corrupt_files_moved"] == 1
    lost = counters["lost_corrupt_batches"]
    assert 1 <= lost < total
    seqs = {decode(p).seq for p in received}
    # every batch except the unreadable ones arrived: the gaps in the sequence are exactly the loss
    missing = set(range(1, counters["accepted_batches"] + 1)) - seqs
    print(f"\ncorrupt file: {total} batches buffered, {lost} unreadable ({counters['lost_corrupt_points']} points), "
          f"{len(seqs)} distinct batches delivered, gaps {sorted(missing)}")
    assert len(missing) == lost
    assert max(missing) <= total


@pytest.mark.integration
async def test_missing_wal_after_kill_is_reported_and_the_rest_delivered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # 20 batches reach the main file, 40 more stay in the WAL only (left alone, the 60 batches would all
    # still be in the WAL, the main file would be empty, and "the rest delivered" would check nothing)
    async with _killed_gateway(tmp_path, seed=10, batches=60, checkpoint_at=20) as (plc, buffer):
        wal = Path(f"{buffer}-wal")
        assert wal.exists()
        # what the main file alone holds
        with contextlib.closing(sqlite3.connect(f"file:{buffer}?immutable=1", uri=True)) as db:
            in_main_file = [bytes(p) for (p,) in db.execute("SELECT payload FROM batches ORDER BY id")]
        wal.unlink()  # a cleanup job deleted it
        Path(f"{buffer}-shm").unlink(missing_ok=True)
        received, log = await _drain(tmp_path, plc, mosquitto, buffer, "nowal")
    assert "write-ahead log" in log and f"{buffer}-wal" in log and "missing" in log
    assert _counters(buffer)["wal_missing_starts"] == 1
    assert len(in_main_file) >= 20
    # every batch the main file held arrived with the same points (replayed: flagged historical)
    main = {decode(p).seq: _live(decode(p).points) for p in in_main_file}
    arrived = {decode(p).seq: _live(decode(p).points) for p in received}
    assert {seq: arrived.get(seq) for seq in main} == main
