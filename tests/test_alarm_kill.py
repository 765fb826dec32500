"""An alarm event accepted before a kill -9 of ``edgegw run`` is delivered after the restart.

The first run has no broker (its port is bound but not listening: connections are refused), so
the CH4 excursion's events can only be in the alarm buffer when the process is killed.  The second
run reaches mosquitto; a subscriber connected all along must receive exactly those events.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from firmware_stubs.gas_substation import GasSubstation, ch4_excursion
from gateway.buffer import SqliteBuffer, alarm_buffer_path
from gateway.cli import main
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto
from tests.collector import collect
from tests.conftest import eventually
from tests.gateway_process import accepted_batches, gas_substations_toml, kill_9, start_gateway, stop_gateway

__all__: list[str] = []


def _config(path: Path, plc_port: int, broker_port: int, buffer: Path) -> None:
    lines = [
        '[gateway]\nid = "gw-akill"\nsite = "ordos-mine-05"\nenterprise_prefix = "88.608.5288"\n',
        f'[buffer]\npath = "{buffer.as_posix()}"\nlinger_ms = 20\n',
        f'[uplink]\nport = {broker_port}\ntopic_prefix = "alarmkill"\nclient_id = "gw-akill"\n'
        "timeout_s = 3\nshutdown_drain_s = 10\nkeepalive_s = 5\n",
        gas_substations_toml(plc_port, 1, first=3, poll_interval_ms=50, ch4_class=True),
    ]
    path.write_text("\n".join(lines))


@pytest.mark.integration
async def test_alarm_accepted_before_kill_9_is_delivered_after_restart(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    buffer = tmp_path / "buffer.db"
    alarms_db = alarm_buffer_path(buffer)
    cfg = tmp_path / "gw.toml"
    log = tmp_path / "gateway.log"
    refused = socket.socket()  # holds a port nobody listens on
    refused.bind(("127.0.0.1", 0))
    try:
        async with SimulatedPlc(tick_s=0, stub=GasSubstation(3, ch4_excursion(1))) as plc, collect(
            mosquitto.port, "alarmkill/+/+/alarm", "alarm-kill-subscriber"
        ) as received:
            _config(cfg, plc.port, refused.getsockname()[1], buffer)
            proc = await start_gateway(cfg, log)
            try:
                # ticks 1..5: 0.8, 1.2 (high), 1.6 (power_off), 1.2, 0.9 (normal)
                for tick, events in ((1, 0), (2, 1), (3, 2), (4, 2), (5, 3)):
                    await plc.advance()
                    assert plc.tick == tick
                    await eventually(lambda n=events: accepted_batches(alarms_db) >= n, timeout=8,
                                     what=f"{events} alarm event(s) committed")
                await kill_9(proc)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            buf = SqliteBuffer(alarms_db, readonly=True)
            stored = [json.loads(b.payload) for b in buf.batches()]
            buf.close()
            assert [m["level"] for m in stored] == ["high", "power_off", "normal"]
            assert received == []  # nothing could leave before the kill
            capsys.readouterr()
            assert main(["buffer", "export", "-c", str(cfg), "--alarms"]) == 0  # what an engineer would inspect
            exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            assert [r["alarm"] for r in exported] == stored and not any("error" in r for r in exported)

            _config(cfg, plc.port, mosquitto.port, buffer)
            proc = await start_gateway(cfg, log)
            await eventually(lambda: len(received) >= 3, timeout=10, what="the events after the restart")
            await stop_gateway(proc, log, timeout=15)
        got = [json.loads(p) for p in received]
        assert [(m["level"], m["ts_ns"]) for m in got] == [(m["level"], m["ts_ns"]) for m in stored]
        assert got == stored  # the wire format exactly as encoded (no backlog mark)
        buf = SqliteBuffer(alarms_db, readonly=True)
        counters, pending = buf.counters(), buf.pending_batches
        buf.close()
        assert pending == 0 and counters["delivered_batches"] == counters["accepted_batches"] == 3
        capsys.readouterr()
        assert main(["buffer", "stats", "-c", str(cfg)]) == 0
        shown = json.loads(capsys.readouterr().out)["alarm_buffer"]
        assert (shown["batches"], shown["counters"]["delivered_batches"], shown["max_age_s"]) == (0, 3, None)
    finally:
        refused.close()
