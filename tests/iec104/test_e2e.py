"""End to end with an IEC 104 station: the simulated coal-chemical substation (a real TCP station) and a
Modbus gas substation in one config -> gateway -> buffer -> mosquitto -> ingest -> InfluxDB 1.x.

The stub is the oracle: a spontaneous (time-tagged) row must hold exactly the stub's engineering value
at the tick its time stamp names; an interrogation row (stamped on receipt) one of the ticks' values.
The station steps through the methanol feeder's trip, so the breaker's intermediate state arrives as
quality uncertain with its reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from firmware_stubs.gas_substation import point_config as gas_points
from firmware_stubs.iec104_substation import POINTS, point_config
from gateway.app import Gateway
from gateway.config import parse
from gateway.ingest import Ingest
from hil.iec104_server import Substation104
from hil.modbus_server import SimulatedPlc
from hil.services import Influx1, Mosquitto
from tests.conftest import eventually
from tests.test_e2e import running

PREFIX = "88.608.5288"
SITE = "ordos-chem-02"
TICKS = 14
UNITS = {p.name: p.unit for p in POINTS}


@pytest.mark.integration
async def test_substation_through_the_chain_into_influxdb(
    tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1
) -> None:
    db = "e2e_iec104"
    influx1.create_database(db)
    mqtt = {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "topic_prefix": "e2e-iec104"}
    async with Substation104(tick_s=0, seed=4) as st, SimulatedPlc(tick_s=0, seed=3) as plc:
        cfg = parse({
            "gateway": {"id": "gw-iec104", "site": SITE, "enterprise_prefix": PREFIX},
            "devices": [
                {"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": plc.port,
                 "poll_interval_ms": 200, "points": gas_points()},
                {"type": "iec104", "name": "sub-110kv", "host": "127.0.0.1", "port": st.port, "asset": "substation-2",
                 "points": point_config()},
            ],
            "buffer": {"path": str(tmp_path / "buffer.db"), "linger_ms": 50},
            "uplink": {**mqtt, "client_id": "gw-iec104-e2e"},
            "ingest": {"mqtt": {**mqtt, "client_id": "ingest-iec104-e2e"},
                       "influx": {"api": "v1", "url": influx1.url, "database": db}, "linger_ms": 50,
                       "dead_letter_path": str(tmp_path / "dead-letters.db")},
        })
        assert cfg.ingest is not None
        gw = Gateway(cfg)
        ingest = Ingest(cfg.ingest)
        station = next(r for r in gw.runners if r.driver.name == "sub-110kv")
        async with running(ingest.run()):
            await asyncio.wait_for(ingest.subscribed.wait(), 10)
            async with running(gw.run()):
                await eventually(lambda: station.health.state == "up" and station.health.polls >= 1,
                                 what="the station's interrogation answer")
                for _ in range(TICKS):
                    before = station.health.polls
                    await st.advance()
                    await eventually(lambda b=before: station.health.polls > b, what="the tick's spontaneous data")
                await eventually(lambda: gw.runners[0].health.polls >= 2, what="Modbus polls")
            accepted = gw.buffer_counters["accepted_points"]
            await eventually(lambda: ingest.stats.written_points >= accepted, what="ingest to write all points")
    res = influx1.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0]["series"][0]  # type: ignore[index]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert len(rows) == accepted
    stub = st.stub
    at_tick = {stub.time_ns(t): t for t in range(1, TICKS + 1)}
    spontaneous = interrogated = 0
    seen_ticks: set[int] = set()
    for r in rows:
        device, name = r["point"].split(".", 1)
        if device != "sub-110kv":
            continue
        assert r["code"] == f"{PREFIX}/DEV.{SITE}.{device}.{name}"
        assert (r.get("unit") or "") == UNITS[name] and r["asset"] == "substation-2"
        value = r["value"] if r.get("value") is not None else r.get("value_bool")
        tick = at_tick.get(r["time"])
        if tick is not None:  # spontaneous, stamped by the station
            want = stub.reading(tick)[name]
            seen_ticks.add(tick)
            spontaneous += 1
            if name == "q12_breaker" and want == 0:
                assert (r["quality"], r["reason"]) == (1, "intermediate")
            else:
                assert r["quality"] == 0, r
            assert value == pytest.approx(want, rel=0, abs=0), (name, tick, value, want)
        else:  # interrogation answer at tick 0, stamped on receipt
            assert r["quality"] == 0, r
            assert value == pytest.approx(stub.reading(0)[name], rel=0, abs=0), (name, value)
            interrogated += 1
    assert interrogated == len(POINTS)
    assert seen_ticks == set(range(1, TICKS + 1))
    assert spontaneous >= TICKS * 5
    assert any(r["point"].startswith("gas-sub-01.") for r in rows)
