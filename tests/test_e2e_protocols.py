"""Every protocol on one gateway: Modbus TCP, OPC UA, Siemens S7, IEC 60870-5-104 and DL/T 645 devices
in one config -> gateway -> buffer -> mosquitto -> ingest -> InfluxDB 1.x.

Real servers on 127.0.0.1, each driven by its firmware stub: the gas substation (pymodbus), the hot
stove (asyncua), the mine hoist (python-snap7's S7 server), the coal-chemical substation (our 104
station) and an energy meter behind a serial device server.  The stubs stand still (no tick), so
each is the oracle of its rows: every configured point of every device must be in InfluxDB, with its
identifier code and unit, holding the stub's value; and the store holds exactly the points the
gateway accepted (nothing lost, nothing doubled).  The per-protocol end-to-end tests step their stubs
through time; this one proves the five drivers share one chain."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.energy_meters import METER_POINTS, EnergyMeter, plant_meters
from firmware_stubs.gas_substation import point_config as gas_points
from firmware_stubs.iec104_substation import point_config as substation_points
from firmware_stubs.s7_hoist import point_config as hoist_points
from gateway.app import Gateway
from gateway.config import parse
from gateway.ingest import Ingest
from hil.dlt645_server import SimulatedMeters
from hil.iec104_server import Substation104
from hil.modbus_server import SimulatedPlc
from hil.opcua_server import PlantServer
from hil.s7_server import S7Plc
from hil.services import Influx1, Mosquitto
from tests.conftest import eventually
from tests.opcua.conftest import device as opcua_device
from tests.test_e2e import running

PREFIX = "88.608.5288"
SITE = "ordos-chem-05"
STOVE = {"dome": ("HotStove2.Dome.Temperature", "degC"), "hot_blast": ("HotStove2.Blast.HotBlastTemperature", "degC")}


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_five_protocols_on_one_gateway_into_influxdb(
    tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1
) -> None:
    db = "e2e_protocols"
    influx1.create_database(db)
    mqtt = {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "topic_prefix": "e2e-protocols"}
    meters = plant_meters(seed=6, count=1)
    async with SimulatedPlc(tick_s=0, seed=3) as gas, PlantServer(["hot_stove"]) as plant, \
            S7Plc(tick_s=0, seed=4) as hoist, Substation104(tick_s=0, seed=4) as station, \
            SimulatedMeters(meters, tick_s=0) as meter_sim:
        stove = [{"name": k, "node_id": plant.node_id(n), "unit": u} for k, (n, u) in STOVE.items()]
        devices: list[dict[str, Any]] = [
            {"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": gas.port,
             "poll_interval_ms": 200, "points": gas_points()},
            opcua_device(plant.endpoint, stove, name="stove-2"),
            {"type": "s7", "name": "hoist-01", "host": "127.0.0.1", "port": hoist.port, "family": "s7-1500",
             "poll_interval_ms": 200, "timeout_ms": 2000, "points": hoist_points()},
            {"type": "iec104", "name": "sub-110kv", "host": "127.0.0.1", "port": station.port,
             "points": substation_points()},
            {"type": "dlt645_tcp", "name": f"meter-{meters[0].address}", "host": "127.0.0.1",
             "port": meter_sim.port, "address": meters[0].address, "frame_gap_ms": 0, "poll_interval_ms": 200,
             "points": EnergyMeter.point_config()},
        ]
        cfg = parse({
            "gateway": {"id": "gw-all", "site": SITE, "enterprise_prefix": PREFIX},
            "devices": devices,
            "buffer": {"path": str(tmp_path / "buffer.db"), "linger_ms": 50},
            "uplink": {**mqtt, "client_id": "gw-all-e2e"},
            "ingest": {"mqtt": {**mqtt, "client_id": "ingest-all-e2e"},
                       "influx": {"api": "v1", "url": influx1.url, "database": db}, "linger_ms": 50,
                       "dead_letter_path": str(tmp_path / "dead-letters.db")},
        })
        assert cfg.ingest is not None
        assert sorted({d["type"] for d in devices}) == ["dlt645_tcp", "iec104", "modbus_tcp", "opcua", "s7"]
        gw = Gateway(cfg)
        ingest = Ingest(cfg.ingest)
        async with running(ingest.run()):
            await eventually(ingest.subscribed.is_set, what="ingest subscribed")
            async with running(gw.run()):
                # polled devices read twice; the pushed ones (OPC UA subscription, 104) answered at least once.
                # (a point the stove reports BadOutOfService makes it "degraded", not down)
                await eventually(lambda: all(r.health.state in ("up", "degraded") and r.health.polls >= 2 - pushed
                                             for r, pushed in zip(gw.runners, (0, 1, 0, 1, 0), strict=True)),
                                 timeout=60, what="every device read")
            accepted = gw.buffer_counters["accepted_points"]
            await eventually(lambda: ingest.stats.written_points >= accepted, what="ingest to write all points")
        specs = {k: next(s for s in plant.specs if s.string_id == n) for k, (n, _) in STOVE.items()}
        stove_now = {k: (spec.status(plant.t), spec.value(plant.t)) for k, spec in specs.items()}

    res = influx1.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0]["series"][0]  # type: ignore[index]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert len(rows) == accepted  # nothing lost, nothing written twice
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_device[r["point"].split(".", 1)[0]].append(r)
    units: dict[str, str] = {}
    for d in cfg.devices:
        names = {r["point"].split(".", 1)[1] for r in by_device[d.name]}
        assert names == {p.name for p in d.points}, d.name  # every configured point arrived
        units.update({f"{d.name}.{p.name}": getattr(p, "unit", None) or "" for p in d.points})
    for r in rows:
        assert r["code"] == f"{PREFIX}/DEV.{SITE}.{r['point']}", r
        assert (r.get("unit") or "") == units[r["point"]], r
        assert r["gateway"] == "gw-all" and r["site"] == SITE

    # each stub is the oracle of its own rows
    for r in by_device["gas-sub-01"]:
        assert r["quality"] == 0, r
    for r in by_device["stove-2"]:
        status, value = stove_now[r["point"].split(".", 1)[1]]
        if status == "Good":
            assert (r["quality"], r["value"]) == (0, value), r
        else:  # the server's status code is the reason
            assert r["quality"] != 0 and r["reason"] == status, r
    want_hoist = hoist.stub.expected(hoist.tick)  # raw PLC values: scaled as configured
    hoist_cfg = {p.name: p for d in cfg.devices if d.name == "hoist-01" for p in d.points}
    for r in by_device["hoist-01"]:
        name = r["point"].split(".", 1)[1]
        assert r["quality"] == 0, r
        want = want_hoist[name]
        if isinstance(want, bool):
            assert r["value_bool"] is want, name
        elif isinstance(want, str):
            assert r["value_str"] == want, name
        elif isinstance(want, int | float):
            pc = hoist_cfg[name]
            sc = getattr(pc, "scaling", None)
            if sc is not None:  # raw counts -> engineering range
                want = sc.eng_low + (want - sc.raw_low) * (sc.eng_high - sc.eng_low) / (sc.raw_high - sc.raw_low)
            else:
                want = want * (getattr(pc, "scale", None) or 1.0) + (getattr(pc, "offset", None) or 0.0)
            assert r["value"] == pytest.approx(float(want), rel=1e-9, abs=1e-9), name
    reading = station.stub.reading(0)
    for r in by_device["sub-110kv"]:
        name = r["point"].split(".", 1)[1]
        got = r["value"] if r.get("value") is not None else r.get("value_bool")
        assert r["quality"] == 0, r
        assert got == pytest.approx(reading[name], rel=0, abs=0), (name, got, reading[name])
    address = meters[0].address
    for r in by_device[f"meter-{address}"]:
        name = r["point"].split(".", 1)[1]
        di = METER_POINTS[name][0]
        assert r["quality"] == 0, r
        assert r["value"] == pytest.approx(meter_sim.expected(address, di, 0), abs=1e-9), name
