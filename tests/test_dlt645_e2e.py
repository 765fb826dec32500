"""End to end with DL/T 645 meters: simulated meters (two behind a serial device server over TCP, one
on a serial line, a socat pty pair) and a Modbus gas substation in one config -> gateway -> buffer ->
mosquitto -> ingest -> InfluxDB 1.x; every meter row is checked against the meter stubs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.energy_meters import METER_POINTS, EnergyMeter, plant_meters
from firmware_stubs.gas_substation import point_config
from gateway.app import Gateway
from gateway.config import parse
from gateway.ingest import Ingest
from hil.dlt645_server import SimulatedMeters
from hil.modbus_server import SimulatedPlc
from hil.services import Influx1, Mosquitto, PtyPair
from tests.conftest import eventually
from tests.test_e2e import running

PREFIX = "88.608.5288"
SITE = "ordos-chem-01"
TICKS = 3


@pytest.mark.integration
async def test_meters_through_the_chain_into_influxdb(
    tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1, pty_pair: PtyPair
) -> None:
    db = "e2e_dlt645"
    influx1.create_database(db)
    tcp_meters = plant_meters(seed=6, count=2)
    serial_meter = EnergyMeter("310000000001", seed=31)
    mqtt = {"host": "127.0.0.1", "port": mosquitto.port, "protocol": "5", "topic_prefix": "e2e-dlt645"}
    async with SimulatedMeters(tcp_meters, tick_s=0) as tcp_sim, \
            SimulatedMeters([serial_meter], transport="serial", serial_port=pty_pair.a, tick_s=0) as serial_sim, \
            SimulatedPlc(tick_s=0, seed=3) as plc:
        meter_devices: list[dict[str, Any]] = [
            {"type": "dlt645_tcp", "name": f"meter-{m.address}", "host": "127.0.0.1", "port": tcp_sim.port,
             "address": m.address, "frame_gap_ms": 0, "poll_interval_ms": 200, "points": EnergyMeter.point_config()}
            for m in tcp_meters
        ]
        meter_devices.append({
            "type": "dlt645", "name": f"meter-{serial_meter.address}", "port": pty_pair.b, "parity": "N",
            "address": serial_meter.address, "frame_gap_ms": 2, "poll_interval_ms": 200,
            "points": EnergyMeter.point_config(),
        })
        cfg = parse({
            "gateway": {"id": "gw-dlt645", "site": SITE, "enterprise_prefix": PREFIX},
            "devices": [{"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": plc.port,
                         "poll_interval_ms": 200, "points": point_config()}, *meter_devices],
            "buffer": {"path": str(tmp_path / "buffer.db"), "linger_ms": 50},
            "uplink": {**mqtt, "client_id": "gw-dlt645-e2e"},
            "ingest": {"mqtt": {**mqtt, "client_id": "ingest-dlt645-e2e"},
                       "influx": {"api": "v1", "url": influx1.url, "database": db}, "linger_ms": 50,
                       "dead_letter_path": str(tmp_path / "dead-letters.db")},
        })
        assert cfg.ingest is not None
        gw = Gateway(cfg)
        ingest = Ingest(cfg.ingest)
        async with running(ingest.run()):
            await asyncio.wait_for(ingest.subscribed.wait(), 10)
            async with running(gw.run()):
                for tick in range(TICKS + 1):
                    for sim in (tcp_sim, serial_sim):
                        sim.bus.tick = tick
                    polls = [r.health.polls for r in gw.runners]
                    await eventually(lambda p=polls: all(r.health.polls >= n + 2 for r, n in zip(gw.runners, p,
                                                                                               strict=True)),
                                     what="two more polls of every device")
            accepted = gw.buffer_counters["accepted_points"]
            await eventually(lambda: ingest.stats.written_points >= accepted, what="ingest to write all points")
    res = influx1.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0]["series"][0]  # type: ignore[index]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert len(rows) == accepted
    sims = {m.address: tcp_sim for m in tcp_meters} | {serial_meter.address: serial_sim}
    checked = 0
    forward_seen: dict[str, set[float]] = {}
    for r in rows:
        device, name = r["point"].split(".", 1)
        if not device.startswith("meter-"):
            continue
        address = device.removeprefix("meter-")
        di, _, unit = METER_POINTS[name]
        assert r["quality"] == 0, r
        # a poll spans a tick change at most once: the value is the stub's at one of the ticks stepped through
        want = {sims[address].expected(address, di, t) for t in range(TICKS + 1)}
        assert any(r["value"] == pytest.approx(w, abs=1e-9) for w in want), (r["point"], r["value"], want)
        assert r["code"] == f"{PREFIX}/DEV.{SITE}.{device}.{name}"
        assert (r.get("unit") or "") == unit
        if name == "energy_forward":
            forward_seen.setdefault(address, set()).add(r["value"])
        checked += 1
    assert checked >= 2 * 3 * len(METER_POINTS) * (TICKS + 1)
    for address, seen in forward_seen.items():  # every tick's (increasing) energy reading arrived
        expected = {sims[address].expected(address, 0x00010000, t) for t in range(TICKS + 1)}
        assert seen == expected, address
    assert any(r["point"].startswith("gas-sub-01.") for r in rows)
