"""End to end on real servers: the S7 hoist (python-snap7's S7 server) -> gateway (S7 driver) ->
mosquitto -> ingest -> InfluxDB 1.x.  The firmware stub is the oracle: every poll reads the whole DB
in one request, so all DB points of one poll share a timestamp, and ``seq`` in it names the tick
whose values the test recomputes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.s7_hoist import point_config
from gateway.app import Gateway
from gateway.config import parse
from gateway.ingest import Ingest
from hil.s7_server import S7Plc
from hil.services import Influx1, Mosquitto
from tests.conftest import eventually
from tests.test_e2e import running

PREFIX = "88.608.5288"
SITE = "baotou-mine-01"
RAW = ("seq", "rope_speed", "hoist_position", "load", "rope_tension", "trips", "state", "heartbeat")
FLAGS = ("overwind", "overspeed", "brake_applied", "running", "brake_release")
TEXT = ("conveyance", "wind_started", "hoist_name")
SCALED = {"motor_current": 0.1, "brake_pressure": 0.01}


@pytest.mark.integration
async def test_s7_chain_into_influxdb(tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1) -> None:
    db = "e2e_s7"
    influx1.create_database(db)
    async with S7Plc(tick_s=0, seed=4) as plc:
        mqtt = {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "topic_prefix": "e2e-s7"}
        cfg = parse({
            "gateway": {"id": "gw-s7", "site": SITE, "enterprise_prefix": PREFIX},
            "devices": [{"type": "s7", "name": "hoist-01", "host": "127.0.0.1", "port": plc.port, "family": "s7-1500",
                         "poll_interval_ms": 100, "timeout_ms": 2000, "asset": "main-shaft",
                         "points": point_config()}],
            "buffer": {"path": str(tmp_path / "buffer.db"), "linger_ms": 50},
            "uplink": {**mqtt, "client_id": "gw-e2e-s7"},
            "ingest": {"mqtt": {**mqtt, "client_id": "ingest-e2e-s7"},
                       "influx": {"api": "v1", "url": influx1.url, "database": db}, "linger_ms": 50,
                       "dead_letter_path": str(tmp_path / "dead-letters.db")},
        })
        assert cfg.ingest is not None
        gw = Gateway(cfg)
        ingest = Ingest(cfg.ingest)
        ticks = (0, 15, 45, 70, 100, 130)  # idle, accelerating, full speed, decelerating, creeping, lowering
        async with running(ingest.run()):
            await eventually(ingest.subscribed.is_set, what="ingest subscribed")
            async with running(gw.run()):
                for tick in ticks:
                    plc.advance(tick - plc.tick)
                    polls = gw.runners[0].health.polls
                    await eventually(lambda p=polls: gw.runners[0].health.polls >= p + 2, what="two more polls")
            accepted = gw.buffer_counters["accepted_points"]
            await eventually(lambda: ingest.stats.written_points >= accepted, what="ingest wrote all points")

    res = influx1.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0]["series"][0]  # type: ignore[index]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert len(rows) == accepted
    assert all(r["quality"] == 0 and r["site"] == SITE and r["asset"] == "main-shaft" for r in rows)
    by_ts: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_ts[r["time"]][r["point"].split(".", 1)[1]] = r
    seen = set()
    for group in by_ts.values():
        if "seq" not in group:
            continue
        seq = int(group["seq"]["value"])
        seen.add(seq)
        want = plc.stub.expected(seq)
        for name in RAW:
            assert group[name]["value"] == pytest.approx(float(want[name]), rel=1e-12), (name, seq)
        for name in FLAGS:
            assert group[name]["value_bool"] is want[name], (name, seq)
        for name in TEXT:
            assert group[name]["value_str"] == want[name], (name, seq)
        for name, scale in SCALED.items():
            assert group[name]["value"] == pytest.approx(int(want[name]) * scale, rel=1e-12), (name, seq)
        assert group["seq"]["code"] == f"{PREFIX}/DEV.{SITE}.hoist-01.seq"
    assert seen >= set(ticks), sorted(seen)
    units = {r["point"].split(".", 1)[1]: r.get("unit") for r in rows}
    assert units["rope_speed"] == "m/s" and units["brake_pressure_ai"] == "MPa"
    assert ingest.stats.undecodable == 0
