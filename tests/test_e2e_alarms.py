"""End to end on real servers: a CH4 excursion in the gas-substation stub raises alarm events that
arrive on their own MQTT topic and in InfluxDB (measurement ``alarm``), with identifier codes and
grades as tags; a NaN from the sensor arrives as quality bad, never as a number; a grade whose
policy is ``keep_on_site`` never leaves the gateway; no topic carries a raw identifier code.

Chain: pymodbus server (firmware stub) -> gateway -> mosquitto -> ingest -> InfluxDB 1.x.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from firmware_stubs.gas_substation import GasSubstation, ch4_excursion, point_config
from gateway.app import Gateway
from gateway.config import Config, parse
from gateway.ingest import Ingest
from hil.modbus_server import SimulatedPlc
from hil.services import Influx1, Mosquitto
from tests.conftest import eventually
from tests.test_e2e import config_dict, running, step

PREFIX = "88.608.5288"
SITE = "baotou-mine-01"
TOPIC_PREFIX = "e2e-alarm"
EXCURSION_START = 3  # ticks 3..8: 0.8, 1.2, 1.6, 1.2, 0.9, 0.4 % CH4
NAN_TICK = 10
TICKS = 11


def points() -> list[dict[str, Any]]:
    out = []
    for p in point_config():
        p = dict(p)
        if p["name"] == "ch4":
            p.update({"class": "ch4", "data_grade": "important"})
        if p["name"] == "temp":
            p["data_grade"] = "core"  # kept on site by the policy below
        out.append(p)
    return out


def make_config(plc_port: int, broker_port: int, tmp: Path, influx_url: str) -> Config:
    data = config_dict(plc_port, broker_port, tmp, {"api": "v1", "url": influx_url, "database": "alarms"},
                       "alarm", TOPIC_PREFIX)
    data["gateway"]["id"] = "gw-alarm"
    data["devices"][0].update(line="panel-12", points=points())
    data["data_policy"] = {"core": "keep_on_site"}  # the core-graded point stays on site
    return parse(data)


async def watch(port: int, seen: list[tuple[str, bytes]], ready: asyncio.Event) -> None:
    """An independent subscriber on everything under the prefix: what a SCADA client would see."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="alarm-watcher") as client:
        await client.subscribe(f"{TOPIC_PREFIX}/#", qos=1)
        ready.set()
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
            seen.append((msg.topic.value, payload))


@pytest.mark.integration
async def test_ch4_excursion_raises_alarms_on_topic_and_in_influxdb(
    tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="edgegw.ingest")
    influx1.create_database("alarms")
    stub = GasSubstation(seed=7, ch4_override={**ch4_excursion(EXCURSION_START), NAN_TICK: float("nan")})
    seen: list[tuple[str, bytes]] = []
    watcher_ready = asyncio.Event()
    async with SimulatedPlc(tick_s=0, stub=stub) as plc:
        cfg = make_config(plc.port, mosquitto.port, tmp_path, influx1.url)
        assert cfg.ingest is not None
        gw = Gateway(cfg)
        ingest = Ingest(cfg.ingest)
        async with running(ingest.run(), watch(mosquitto.port, seen, watcher_ready)):
            await asyncio.wait_for(ingest.subscribed.wait(), 10)
            await asyncio.wait_for(watcher_ready.wait(), 10)
            # the log names both subscriptions (an operator looking for the alarm topic finds it)
            assert any(m.startswith(f"Ingest subscribed to {ingest.topic_filter} and {ingest.alarm_filter} on ")
                       for m in caplog.messages)
            async with running(gw.run()):
                await step(gw, plc, range(TICKS + 1))
                assert gw.alarms is not None
                await eventually(lambda: gw.alarms is not None and gw.alarms.stats.published >= 3,
                                 what="alarm events published")
            accepted = gw.buffer_counters["accepted_points"]
            await eventually(lambda: ingest.stats.alarms >= 3, what="ingest to store the alarm events")
            await eventually(lambda: ingest.stats.written_points >= accepted, what="ingest to write everything")

    # on their own topic, codes in the payload, never in the topic
    alarm_msgs = [json.loads(p) for t, p in seen if t == f"{TOPIC_PREFIX}/{SITE}/gw-alarm/alarm"]
    assert [(m["previous"], m["level"]) for m in alarm_msgs] == [
        ("normal", "high"),
        ("high", "power_off"),
        ("power_off", "normal"),
    ]
    assert [m["value"] for m in alarm_msgs] == pytest.approx([1.2, 1.6, 0.9], rel=1e-6)
    assert [m["threshold"] for m in alarm_msgs] == [1.0, 1.5, 1.5]
    for m in alarm_msgs:
        assert m["code"] == f"{PREFIX}/DEV.{SITE}.gas-sub-01.ch4"
        assert m["device_code"] == f"{PREFIX}/DEV.{SITE}.gas-sub-01"
        assert (m["data_grade"], m["class"], m["unit"]) == ("important", "ch4", "%CH4")
    topics = {t for t, _ in seen}
    assert topics >= {f"{TOPIC_PREFIX}/{SITE}/gw-alarm/data", f"{TOPIC_PREFIX}/{SITE}/gw-alarm/alarm"}
    level = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    for t in topics:
        assert "88." not in t and all(level.match(part) for part in t.split("/")), t

    # in InfluxDB: measurement alarm, codes and grade as tags, same time as the triggering sample
    res = influx1.query('SELECT * FROM "alarm"', db="alarms")
    series = res["results"][0]["series"][0]  # type: ignore[index]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert [r["level"] for r in rows] == ["high", "power_off", "normal"]
    for r in rows:
        assert r["code"] == f"{PREFIX}/DEV.{SITE}.gas-sub-01.ch4"
        assert r["device_code"] == f"{PREFIX}/DEV.{SITE}.gas-sub-01"
        assert (r["data_grade"], r["class"], r["site"], r["gateway"]) == ("important", "ch4", SITE, "gw-alarm")
        assert (r["asset"], r["line"], r["data_domain"]) == ("face-T1-1201", "panel-12", "production")
    assert [r["time"] for r in rows] == [m["ts_ns"] for m in alarm_msgs]

    res = influx1.query('SELECT * FROM "telemetry"', db="alarms")
    series = res["results"][0]["series"][0]  # type: ignore[index]
    telemetry = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    ch4 = [r for r in telemetry if r["point"] == "gas-sub-01.ch4"]
    by_time = {r["time"]: r for r in ch4}
    for m in alarm_msgs:  # the sample that changed the level is stored with the same time and value
        assert by_time[m["ts_ns"]]["value"] == pytest.approx(m["value"])
    bad = [r for r in ch4 if r["quality"] == 2]
    assert bad and all(r["reason"] == "nan" and r["value"] is None for r in bad)
    good = [r for r in ch4 if r["quality"] == 0]
    assert good and all(r["value"] is not None for r in good)
    assert {r["data_grade"] for r in ch4} == {"important"}
    assert all(r["class"] == "ch4" for r in ch4)
    for r in telemetry:  # every point: its code, its device's code, site / line / asset / unit / grade tags
        name = r["point"].split(".", 1)[1]
        assert r["code"] == f"{PREFIX}/DEV.{SITE}.gas-sub-01.{name}"
        assert r["device_code"] == f"{PREFIX}/DEV.{SITE}.gas-sub-01"
        assert (r["site"], r["line"], r["asset"], r["data_domain"]) == (SITE, "panel-12", "face-T1-1201", "production")
        assert r["data_grade"] in ("general", "important")
    assert {r["unit"] for r in ch4} == {"%CH4"}
    # the core-graded point stays on site: not on the wire, not in the database
    assert not [r for r in telemetry if r["point"] == "gas-sub-01.temp"]
    assert gw.batcher.pipeline.counters.kept_on_site > 0
    assert all(r["data_grade"] != "core" for r in telemetry)
