"""A graceful stop commits what was polled but not yet committed (docs/buffer.md, shutdown order).

The gateway polls a simulated PLC with a linger of a minute, so no batch is committed while it runs;
the uplink points at a port nobody listens on. Stopping it must leave every read the PLC answered in
the buffer, judged by the PLC's own record (tests/plc_oracle.py), not by the gateway's counters.
"""

from __future__ import annotations

import time
from pathlib import Path

from firmware_stubs.gas_substation import point_config
from gateway.app import Gateway
from gateway.buffer import SqliteBuffer
from gateway.config import parse
from hil.services import free_port
from tests.conftest import eventually
from tests.plc_oracle import RecordingPlc, check_against_plc
from tests.test_e2e import running

__all__: list[str] = []


async def test_a_graceful_stop_commits_every_polled_read(tmp_path: Path) -> None:
    async with RecordingPlc(tick_s=0.01, seed=13) as plc:
        gw = Gateway(parse({
            "gateway": {"id": "gw-stop", "site": "ordos-mine-12", "enterprise_prefix": "88.608.5288"},
            "devices": [{"type": "modbus_tcp", "name": "gas-sub-1", "host": "127.0.0.1", "port": plc.port,
                         "poll_interval_ms": 20, "timeout_ms": 1000, "points": point_config()}],
            "buffer": {"path": str(tmp_path / "buffer.db"), "linger_ms": 60_000, "batch_max_points": 100_000},
            "uplink": {"host": "127.0.0.1", "port": free_port(), "topic_prefix": "stop"},
        }))
        async with running(gw.run()):
            await eventually(lambda: len(plc.served) >= 50, what="50 reads answered")
            assert gw.buffer.pending_batches == 0  # all of it still in the batcher
            stopped = time.monotonic()
    buf = SqliteBuffer(tmp_path / "buffer.db", readonly=True)
    try:
        payloads = [b.payload for b in buf.batches()]
    finally:
        buf.close()
    # reads answered in the last 0.3 s may belong to a poll the stop cancelled on its way
    verdict = check_against_plc(plc, payloads, stopped=stopped)
    print(f"\n{verdict}")
    assert verdict.received >= 35, verdict
