"""Flow control without loss, on a mosquitto started with the shipped deploy/mosquitto/mosquitto.conf
and a real InfluxDB 1.x of the test's own.

- InfluxDB stopped for 60 s while two gateways publish 40 batches/s: no ingest restart, and within
  30 s of InfluxDB's return every batch is written, none twice.
- A burst of 3000 one-point messages: all written within 20 s (none discarded client-side).
- Exactly once per (series, time): kill -9 of an ``edgegw ingest`` process and a broker restart
  under load; the rows in InfluxDB equal the points sent.

The "gateways" here are MQTT 5 publishers that behave as the uplink does (QoS 1, a batch counts as
sent only on a success PUBACK, resent after a reconnect), so that the test controls the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.codec import points_payload
from gateway.config import IngestSection, MqttConfig
from gateway.core.errors import RejectedError, RetryableError
from gateway.core.point import Point, Quality
from gateway.ingest import Ingest
from gateway.sinks.mqtt import MqttClient
from hil.services import Influx1, Mosquitto
from tests.conftest import _start, eventually
from tests.test_e2e import running

SHIPPED = Path(__file__).parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"
BASE_TS = 1_764_500_000_000_000_000


@contextlib.contextmanager
def own(service: type[Any], **kw: Any) -> Iterator[Any]:
    d = Path(tempfile.mkdtemp(prefix="edgegw-flow-"))
    d.chmod(0o755)
    srv = service(workdir=d, **kw)
    _start(srv)
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def _batch(site: str, gw: str, seq: int, n: int) -> bytes:
    ts = BASE_TS + seq * 1000
    pts = [Point(f"dev.p{i}", f"88.608.5288/F.{gw}.{i}", ts + i, float(seq), Quality.GOOD, None, "", "dev", "", ())
           for i in range(n)]
    return points_payload(gw, site, pts)


class Publisher:
    """One gateway's uplink in miniature: QoS 1, sent = success PUBACK, retried across reconnects and
    after PUBACK 0x10 (no matching subscribers: mosquitto dropped it), as uplink.no_subscribers = keep."""

    def __init__(self, port: int, site: str, gw: str) -> None:
        self.cfg = MqttConfig(port=port, max_inflight=1000, timeout_s=5, keepalive_s=5)
        self.site, self.gw = site, gw
        self.topic = f"edgegw/{site}/{gw}/data"
        self.acked = 0
        self.client_id = f"pub-{gw}-{os.getpid()}"

    async def run(self, batches: int, per_s: float, points: int = 10) -> None:
        seq = 0
        while seq < batches:
            try:
                async with MqttClient(self.cfg, self.client_id) as client:
                    t0 = time.monotonic()
                    start = seq
                    while seq < batches:
                        code = await client.publish_checked(self.topic, _batch(self.site, self.gw, seq, points),
                                                            timeout=5)
                        if code == 0x10:  # nobody subscribed (a restarted broker before the ingest is back):
                            await asyncio.sleep(0.05)  # the message was dropped; resend, as the gateway does
                            continue
                        seq += 1
                        self.acked = seq
                        delay = t0 + (seq - start) / per_s - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
            except (RetryableError, RejectedError, OSError, aiomqtt.MqttError):
                await asyncio.sleep(0.2)  # the broker is away: reconnect, resend the unacknowledged batch

    async def burst(self, messages: int) -> None:
        async with MqttClient(self.cfg, self.client_id) as client:
            await asyncio.gather(*(client.publish_checked(self.topic, _batch(self.site, self.gw, s, 1), timeout=60)
                                   for s in range(messages)))
        self.acked = messages


def _count(influx: Influx1, db: str) -> int:
    res = influx.query('SELECT count(quality) FROM "telemetry"', db=db)
    series = res["results"][0].get("series")  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


def _ingest_cfg(broker: int, influx: str, tmp: Path, client_id: str) -> IngestSection:
    return IngestSection.model_validate({
        "mqtt": {"port": broker, "client_id": client_id, "keepalive_s": 5},
        "influx": {"api": "v1", "url": influx, "database": "flow"},
        "dead_letter_path": str(tmp / f"{client_id}-dl.db"),
    })

@pytest.mark.integration
@pytest.mark.timeout(600)  # ~75 s by design (a 60 s outage): above the suite's per-test default
async def test_influxdb_down_60_s_at_40_batches_per_s(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with own(Mosquitto, shipped=SHIPPED) as broker, own(Influx1) as influx:
        influx.create_database("flow")
        ingest = Ingest(_ingest_cfg(broker.port, influx.url, tmp_path, "ingest-flow"))
        gws = [Publisher(broker.port, "site-a", "gw-a"), Publisher(broker.port, "site-b", "gw-b")]
        seconds, rate, points = 70, 20.0, 10
        async with running(ingest.run()) as tasks:
            await asyncio.wait_for(ingest.subscribed.wait(), 10)
            async with running(*(g.run(int(seconds * rate), rate, points) for g in gws)):
                await eventually(lambda: _count(influx, "flow") > 0, what="first rows")
                influx.stop()
                down_at = time.monotonic()
                await eventually(lambda: time.monotonic() - down_at >= 60, timeout=70, interval=0.5,
                                 what="60 s of InfluxDB outage")
                held = sum(g.acked for g in gws) * points - ingest.stats.written_points
                influx.start()
                back_at = time.monotonic()
                total = int(seconds * rate) * points * len(gws)
                await eventually(lambda: all(g.acked == int(seconds * rate) for g in gws), timeout=30,
                                 what="the publishers to finish")
                await eventually(lambda: _count(influx, "flow") >= total, timeout=30, interval=0.5,
                                 what="every batch written after InfluxDB returned")
                caught_up = time.monotonic() - back_at
            assert not any(t.done() for t in tasks)  # the ingest never stopped
        assert _count(influx, "flow") == total
        assert ingest.stats.dead_letter_messages == 0 and ingest.dead_letters.count == 0
        assert ingest.stats.store_errors["network"] > 0
        ingest.close()
    with capsys.disabled():
        print(f"\n[flow] {total} points in {total // points} batches; {held} points held at the broker during the "
              f"outage; all written {caught_up:.1f} s after InfluxDB returned")


@pytest.mark.integration
async def test_burst_of_3000_one_point_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with own(Mosquitto, shipped=SHIPPED) as broker, own(Influx1) as influx:
        influx.create_database("flow")
        ingest = Ingest(_ingest_cfg(broker.port, influx.url, tmp_path, "ingest-burst"))
        pub = Publisher(broker.port, "site-a", "gw-burst")
        async with running(ingest.run()):
            await asyncio.wait_for(ingest.subscribed.wait(), 10)
            t0 = time.monotonic()
            await pub.burst(3000)
            await eventually(lambda: ingest.stats.written_points >= 3000, timeout=20, what="3000 points written")
            took = time.monotonic() - t0
        assert _count(influx, "flow") == 3000 and ingest.stats.written_points == 3000
        ingest.close()
    with capsys.disabled():
        print(f"\n[burst] 3000 one-point messages written in {took:.1f} s")


def _ingest_process(cfg_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "ingest", "-c", str(cfg_path)],
                                stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.integration
async def test_exactly_once_after_ingest_kill_and_broker_restart(tmp_path: Path) -> None:
    with own(Mosquitto, shipped=SHIPPED) as broker, own(Influx1) as influx:
        influx.create_database("flow")
        cfg = tmp_path / "ingest.toml"
        cfg.write_text(
            f'[ingest]\ndead_letter_path = "{tmp_path / "dl.db"}"\n'
            f'[ingest.mqtt]\nport = {broker.port}\nclient_id = "ingest-kill"\nkeepalive_s = 5\n'
            f'[ingest.influx]\napi = "v1"\nurl = "{influx.url}"\ndatabase = "flow"\n')
        log = tmp_path / "ingest.log"
        proc = _ingest_process(cfg, log)
        pubs = [Publisher(broker.port, "site-k", f"gw-{i}") for i in range(2)]
        batches, points = 400, 5
        try:
            await eventually(lambda: "Ingest subscribed" in log.read_text(), what="ingest subscribed")
            async with running(*(p.run(batches, 40.0, points) for p in pubs)):
                await eventually(lambda: _count(influx, "flow") >= 300, what="rows before the kill")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                await eventually(lambda: pubs[0].acked >= 150, what="publishing while the ingest is dead")
                proc = _ingest_process(cfg, log)
                await eventually(lambda: pubs[0].acked >= 250, what="publishing after the ingest restart")
                broker.stop()  # a clean restart: the persistent sessions and queued messages are saved
                broker.start()
                await eventually(lambda: all(p.acked == batches for p in pubs), timeout=60, what="all published")
                total = batches * points * len(pubs)
                await eventually(lambda: _count(influx, "flow") >= total, timeout=60, interval=0.5,
                                 what="every point written")
            assert _count(influx, "flow") == total  # every point once: redeliveries overwrote their own rows
        finally:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
