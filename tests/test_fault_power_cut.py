"""A simulated power cut of ``edgegw run``: what the buffer's durability mode promises survives.

kill -9 keeps every written byte (the page cache outlives the process), so it cannot test a power
cut.  Here the gateway runs with hil/powercut's LD_PRELOAD library, which copies each buffer file at
every fsync / fdatasync; after the kill, those copies are the disk as a power cut at that moment
would leave it (the strict model: no unsynced write survives).  The uplink's broker port refuses
connections, so every batch stays in the buffer and the two states can be compared batch by batch.

Oracles, for ``fsync`` and ``interval`` durability:
- the files after the cut open cleanly (integrity check run, nothing quarantined or lost as corrupt);
- what survived is exactly the oldest batches the kill -9 state holds, byte for byte (a prefix: no
  hole, nothing changed), and the surviving ledger balances (accepted = pending);
- ``fsync``: nothing acknowledged is lost (at most the one commit in progress at the cut, whose fsync
  had not returned: never accepted, never published);
- ``interval``: only batches above the last sync marker are lost (what ``edgegw buffer stats``
  showed as ``unsynced_batches``), all committed within the sync window before the cut;
- ``interval``: the restarted buffer numbers the next batch above every batch committed before the
  cut (a lost batch may have been published; its sequence number is never reused).
Under CI a missing gcc fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from pathlib import Path

import pytest

from gateway.buffer import SqliteBuffer
from gateway.catalog_archive import archive_dir, learn_archive
from gateway.cli import main
from gateway.codec import KNOWN_CATALOGS, decode
from hil.modbus_server import SimulatedPlc
from hil.powercut import PowerCut
from tests.clocks import AnotherBoot
from tests.conftest import eventually
from tests.gateway_process import accepted_batches, gas_substations_toml, kill_9, start_gateway

__all__: list[str] = []

SYNC_INTERVAL_MS = 300
MAINTAIN_MS = 100  # the app's maintenance tick, which syncs when due
DEVICES = 3


def _config(path: Path, plc_port: int, broker_port: int, buffer: Path, durability: str) -> None:
    lines = [
        '[gateway]\nid = "gw-cut"\nsite = "baotou-mine-02"\nenterprise_prefix = "88.608.5288"\n',
        f'[buffer]\npath = "{buffer.as_posix()}"\ndurability = "{durability}"\n'
        f"sync_interval_ms = {SYNC_INTERVAL_MS}\nbatch_max_points = 30\nlinger_ms = 20\n",
        f'[uplink]\nport = {broker_port}\ntopic_prefix = "cut"\nclient_id = "gw-cut"\ntimeout_s = 2\n',
    ]
    lines.append(gas_substations_toml(plc_port, DEVICES))
    path.write_text("\n".join(lines))


def _rows(buf: SqliteBuffer) -> tuple[list[tuple[int, int, int, bytes]], dict[str, int]]:
    try:
        return [(b.id, b.created_ns, b.npoints, b.payload) for b in buf.batches()], buf.counters()
    finally:
        buf.close()


@pytest.mark.integration
@pytest.mark.parametrize("durability", ["fsync", "interval"])
async def test_power_cut_keeps_what_the_durability_mode_promises(
    powercut_library: Path, tmp_path: Path, durability: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live_dir, snapshots, after = tmp_path / "disk", tmp_path / "snapshots", tmp_path / "after-cut"
    live_dir.mkdir()
    buffer = live_dir / "buffer.db"
    cfg, log = tmp_path / "gw.toml", tmp_path / "gateway.log"
    SqliteBuffer(buffer, durability=durability).close()  # created and closed cleanly: durable
    cut = PowerCut(powercut_library, live_dir, snapshots)
    cut.baseline()
    refused = socket.socket()  # a port nobody listens on: connections refused, all stays buffered
    refused.bind(("127.0.0.1", 0))
    try:
        async with SimulatedPlc(tick_s=0.01, seed=3) as plc:
            _config(cfg, plc.port, refused.getsockname()[1], buffer, durability)
            proc = await start_gateway(cfg, log, env=cut.env())
            try:
                await eventually(lambda: accepted_batches(buffer) >= 40, timeout=30,
                                 what=f"batches committed (log: {log.read_text()[-2000:] if log.exists() else ''})")
                await asyncio.sleep(random.Random(durability).uniform(0.0, 0.5))  # cut at some moment
                cut_ns = time.time_ns()
                await kill_9(proc)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    finally:
        refused.close()

    capsys.readouterr()
    assert main(["buffer", "stats", "-c", str(cfg)]) == 0  # what the operator would have seen
    shown = json.loads(capsys.readouterr().out)
    written, written_counters = _rows(SqliteBuffer(buffer, readonly=True))  # the kill -9 state: every commit
    assert learn_archive(archive_dir(buffer), KNOWN_CATALOGS) >= 1  # the wire format v2 catalog beside the buffer
    assert written and written_counters["accepted_batches"] == len(written)

    cut.restore(after)
    reopened = SqliteBuffer(  # the restart; a cut reboots
        after / buffer.name, durability=durability, startup_check="always", clock=AnotherBoot("the-boot-after-the-cut")
    )
    assert reopened.damaged is None
    next_seq = reopened.last_seq + 1
    survived, counters = _rows(reopened)
    last_written_seq = decode(written[-1][3]).seq
    lost = written[len(survived):]
    window_ms = (cut_ns - min(c for _i, c, _n, _p in lost)) / 1e6 if lost else 0.0
    syncs = [n for n, _size in cut.syncs()]
    print(f"\npower cut ({durability}): {len(written)} batches committed, {len(survived)} survived, "
          f"{len(lost)} lost ({sum(n for _i, _c, n, _p in lost)} points, committed within {window_ms:.0f} ms "
          f"before the cut); shown as unsynced: {shown['unsynced_batches']} batches; "
          f"{len(syncs)} syncs ({syncs.count('buffer.db-wal')} of the WAL)")

    assert syncs.count("buffer.db-wal") >= 1  # the preload library saw the buffer's syncs
    assert survived == written[:len(survived)]  # the oldest, byte for byte: no hole, nothing altered
    assert counters["accepted_batches"] == len(survived) and counters["unclean_starts"] == 1
    assert counters["quarantined_batches"] == counters["lost_corrupt_batches"] == 0
    if durability == "fsync":
        # nothing acknowledged is lost; at most the commit in progress at the cut (its pages written,
        # its fsync not yet done): put() had not returned, so nothing had taken or published it
        assert len(lost) <= 1, lost
        assert len(survived) >= 40
        assert next_seq == decode(survived[-1][3]).seq + 1 and counters["seq_skipped"] == 0
    else:
        # a batch the cut took may have been published before: its number is never given again
        assert next_seq > last_written_seq
        # only what the gateway had not yet synced, which it showed as at risk (the marker is
        # written just after each sync, so it can lag the sync by one)
        assert len(lost) <= shown["unsynced_batches"]
        assert window_ms <= SYNC_INTERVAL_MS + MAINTAIN_MS + 1000  # + scheduling slack on a loaded machine
        assert len(survived) >= 10  # it did sync during the run, not only at the end
