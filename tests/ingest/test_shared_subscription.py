"""Several ingest processes on one shared subscription split the load; kill -9 of one under load
loses nothing and writes nothing twice (#14).

mosquitto 2.0.11 keeps a member whose session is alive in the group's rotation while it is away
(shared/reference/ingest.md section 4): a third of the messages published meanwhile wait in the
killed member's session and are written when it is restarted (as systemd does) - the test checks
exactly that, with rows in InfluxDB equal to the points sent.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from hil.services import Influx1, Mosquitto, free_port
from tests.conftest import eventually
from tests.ingest.test_flow_control import SHIPPED, Publisher, _count, _ingest_process, own
from tests.test_e2e import running


def _written(port: int) -> int:
    """The process's own count, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for raw in r.read().decode().splitlines():
            if raw.startswith("edgegw_ingest_written_points_total "):
                return int(float(raw.split()[-1]))
    return 0


def _config(tmp: Path, k: int, broker: int, influx: str, http: int) -> Path:
    cfg = tmp / f"ingest-{k}.toml"
    cfg.write_text(
        f'[http]\nlisten = "127.0.0.1:{http}"\n'
        f'[ingest]\nshare_group = "shared"\ndead_letter_path = "{tmp / f"dl-{k}.db"}"\nlinger_ms = 50\n'
        f'[ingest.mqtt]\nport = {broker}\nclient_id = "ingest-shared-{k}"\nkeepalive_s = 5\n'
        f'[ingest.influx]\napi = "v1"\nurl = "{influx}"\ndatabase = "flow"\n')
    return cfg


def _subscribed(log: Path, times: int = 1) -> bool:
    return log.exists() and log.read_text(errors="replace").count("Ingest subscribed") >= times


@pytest.mark.integration
async def test_three_ingests_share_the_load_and_survive_a_kill(tmp_path: Path) -> None:
    with own(Mosquitto, shipped=SHIPPED) as broker, own(Influx1) as influx:
        influx.create_database("flow")
        ports = [free_port() for _ in range(3)]
        cfgs = [_config(tmp_path, k, broker.port, influx.url, ports[k]) for k in range(3)]
        logs = [tmp_path / f"ingest-{k}.log" for k in range(3)]
        procs = [_ingest_process(c, lg) for c, lg in zip(cfgs, logs, strict=True)]
        pubs = [Publisher(broker.port, "site-s", f"gw-{i}") for i in range(3)]
        batches, points = 300, 4
        total = batches * points * len(pubs)
        try:
            for lg in logs:
                await eventually(lambda lg=lg: _subscribed(lg), what="every ingest subscribed")
            async with running(*(p.run(batches, 40.0, points) for p in pubs)):
                await eventually(lambda: _count(influx, "flow") >= total // 4, timeout=30, what="a quarter written")
                shares = [_written(p) for p in ports]
                assert all(n > 0 for n in shares) and sum(shares) <= _count(influx, "flow"), shares  # all three work
                procs[1].send_signal(signal.SIGKILL)
                procs[1].wait(10)
                killed_at = sum(p.acked for p in pubs)
                await eventually(lambda: sum(p.acked for p in pubs) >= killed_at + 150, timeout=30,
                                 what="publishing while one ingest is dead")
                # the two others carry on meanwhile
                during = _count(influx, "flow")
                await eventually(lambda: _count(influx, "flow") > during + 100, timeout=30,
                                 what="the other ingests writing while one is dead")
                procs[1] = _ingest_process(cfgs[1], logs[1])  # systemd restarts it
                await eventually(lambda: _subscribed(logs[1], 2), what="the restarted ingest subscribed")
                await eventually(lambda: all(p.acked == batches for p in pubs), timeout=60, what="all published")
                await eventually(lambda: _count(influx, "flow") >= total, timeout=60, interval=0.5,
                                 what="every point written")
            assert _count(influx, "flow") == total  # nothing lost, no duplicate (series, time)
            assert all("Traceback" not in lg.read_text(errors="replace") for lg in logs)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
                if p.poll() is None:
                    p.kill()

