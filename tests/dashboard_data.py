"""Loads InfluxDB 1.x and VictoriaMetrics with a real run of the chain, for the dashboard tests.

Two simulated gas substations (pymodbus servers serving ``firmware_stubs.gas_substation``) and a
fan whose PLC does not answer -> one ``Gateway`` -> mosquitto -> two ``Ingest`` processes in two
shared-subscription groups, one writing InfluxDB 1.x (``/write``), one VictoriaMetrics (VM
dialect).  What the data holds, so that every dashboard panel has something to show:

- good samples with units and Chinese display names (point tag ``display_name``);
- uncertain samples: a CH4 spike on gas-sub-01 (``spike_delta``), a stuck threshold register
  on gas-sub-02 (``stuck_after_s``);
- bad samples: a NaN from gas-sub-01's CH4 sensor (reason ``nan``) and every poll of the
  unreachable fan-01 (reason ``unreachable``);
- a CH4 excursion through the 1.0 % alarm and the 1.5 % power-off level: three alarm events;
- historical samples: the first ticks are polled while the uplink is down (a first gateway run
  against a port where no broker listens), then replayed from the buffer by a second run.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_stubs.gas_substation import GasSubstation, ch4_excursion, point_config
from gateway.app import Gateway
from gateway.config import Config, parse
from gateway.ingest import Ingest
from hil.modbus_server import SimulatedPlc
from hil.services import free_port
from tests.conftest import eventually
from tests.test_e2e import running, step

__all__ = ["DISPLAY_NAMES", "GATEWAY", "SITE", "Loaded", "load"]

SITE = "baotou-mine-01"
GATEWAY = "gw-dash"
PREFIX = "88.608.5288"
TOPIC_PREFIX = "dash"
OFFLINE_TICKS = range(0, 3)  # polled while no broker is reachable: replayed as historical
ONLINE_TICKS = range(3, 13)  # excursion 3..8 (0.8, 1.2, 1.6, 1.2, 0.9, 0.4 % CH4), NaN at 10
NAN_TICK = 10
ALARM_EVENTS = 3  # normal -> high -> power_off -> normal

DISPLAY_NAMES = {
    "gas-sub-01.ch4": "1201工作面甲烷",
    "gas-sub-01.co": "1201工作面一氧化碳",
    "gas-sub-01.o2": "1201工作面氧气",
    "gas-sub-01.wind": "1201工作面风速",
    "gas-sub-01.temp": "1201工作面温度",
    "gas-sub-02.ch4": "1201回风巷甲烷",
    "gas-sub-02.co": "1201回风巷一氧化碳",
    "gas-sub-02.o2": "1201回风巷氧气",
    "fan-01.pressure": "主通风机负压",
}
CLASSES = {"ch4": "ch4", "co": "co", "o2": "o2", "wind": "wind_speed", "temp": "temperature"}


@dataclass(frozen=True, slots=True)
class Loaded:
    influx_db: str
    start_ns: int  # before the first sample
    end_ns: int  # after the last one
    written_points: int
    alarm_events: int
    historical_points: int


def _points(device: str, *, location: str, spike: bool = False, stuck: bool = False) -> list[dict[str, Any]]:
    out = []
    for p in point_config():
        p = dict(p)
        name = str(p["name"])
        if name in CLASSES:
            p["class"] = CLASSES[name]
        if name == "ch4":
            p["alarm"] = {"location": location}
            p["data_grade"] = "important"
            if spike:
                p["spike_delta"] = 0.3
        if name == "ch4_alarm" and stuck:
            p["stuck_after_s"] = 0.3
        display = DISPLAY_NAMES.get(f"{device}.{name}")
        if display:
            p["tags"] = {"display_name": display}
        out.append(p)
    return out


def _config(tmp: Path, uplink_port: int, broker_port: int, plc_a: int, plc_b: int, fan_port: int,
            influx_url: str, influx_db: str, vm_url: str) -> tuple[Config, Config]:
    mqtt = {"host": "127.0.0.1", "protocol": "5", "topic_prefix": TOPIC_PREFIX}
    gas = {"type": "modbus_tcp", "host": "127.0.0.1", "poll_interval_ms": 100, "timeout_ms": 1000, "line": "panel-12"}
    data: dict[str, Any] = {
        "gateway": {"id": GATEWAY, "site": SITE, "enterprise_prefix": PREFIX},
        "devices": [
            {**gas, "name": "gas-sub-01", "port": plc_a, "asset": "face-T1-1201",
             "points": _points("gas-sub-01", location="T1", spike=True)},
            {**gas, "name": "gas-sub-02", "port": plc_b, "asset": "return-T2-1201",
             "points": _points("gas-sub-02", location="T2", stuck=True)},
            {**gas, "name": "fan-01", "port": fan_port, "asset": "main-fan-1", "timeout_ms": 200,
             "backoff_max_ms": 200,
             "points": [{"name": "pressure", "class": "negative_pressure", "table": "input_register", "address": 0,
                         "data_type": "uint16", "scale": 0.001, "tags": {"display_name": DISPLAY_NAMES[
                             "fan-01.pressure"]}}]},
        ],
        "buffer": {"path": str(tmp / "buffer.db"), "linger_ms": 50},
        "uplink": {**mqtt, "port": uplink_port, "client_id": "gw-dash", "shutdown_drain_s": 0, "timeout_s": 1},
        "ingest": {
            "mqtt": {**mqtt, "port": broker_port, "client_id": "ingest-dash-influx"},
            "share_group": "dash-influx",
            "influx": {"api": "v1", "url": influx_url, "database": influx_db},
            "linger_ms": 50,
            "dead_letter_path": str(tmp / "dead-letters-influx.db"),
        },
    }
    influx_cfg = parse(data)
    data["ingest"] = {
        "mqtt": {**mqtt, "port": broker_port, "client_id": "ingest-dash-vm"},
        "share_group": "dash-vm",
        "influx": {"api": "v2", "url": vm_url, "org": "plant", "bucket": "edgegw", "dialect": "victoriametrics"},
        "linger_ms": 50,
        "dead_letter_path": str(tmp / "dead-letters-vm.db"),
    }
    data["uplink"]["port"] = broker_port
    return influx_cfg, parse(data)


async def _run_gateway(cfg: Config, plcs: tuple[SimulatedPlc, SimulatedPlc], ticks: range,
                       alarm_events: int = 0) -> tuple[int, int]:
    """Poll ``ticks``; with ``alarm_events``, wait until the gateway published that many.
    Returns (points delivered to the broker, historical points among them)."""
    gw = Gateway(cfg)
    async with running(gw.run()):
        for tick in ticks:
            if tick:
                await plcs[1].advance()
            await step(gw, plcs[0], range(tick, tick + 1))  # advances PLC A, waits for two polls
        if alarm_events:
            await eventually(lambda: gw.alarms is not None and gw.alarms.stats.published >= alarm_events,
                             what="alarm events published")
            await eventually(lambda: gw.buffer.pending_batches == 0, what="the backlog and live data delivered")
    return gw.buffer_counters["delivered_points"], gw.forwarder.stats.historical_points


async def load(tmp: Path, broker_port: int, influx_url: str, influx_db: str, vm_url: str) -> Loaded:
    """Run the chain once; return when both stores hold every accepted point and alarm event."""
    start_ns = time.time_ns()
    stub_a = GasSubstation(seed=7, ch4_override={**ch4_excursion(3), NAN_TICK: float("nan")})
    async with SimulatedPlc(tick_s=0, stub=stub_a) as plc_a, SimulatedPlc(tick_s=0, seed=3) as plc_b:
        offline = free_port()  # nothing listens here: the first run buffers everything
        first, _ = _config(tmp, offline, broker_port, plc_a.port, plc_b.port, free_port(), influx_url, influx_db,
                           vm_url)
        influx_cfg, vm_cfg = _config(tmp, broker_port, broker_port, plc_a.port, plc_b.port, free_port(), influx_url,
                                     influx_db, vm_url)
        _, _ = await _run_gateway(first, (plc_a, plc_b), OFFLINE_TICKS)
        assert influx_cfg.ingest is not None and vm_cfg.ingest is not None
        to_influx, to_vm = Ingest(influx_cfg.ingest), Ingest(vm_cfg.ingest)
        async with running(to_influx.run(), to_vm.run()):
            await asyncio.wait_for(asyncio.gather(to_influx.subscribed.wait(), to_vm.subscribed.wait()), 10)
            delivered, historical = await _run_gateway(influx_cfg, (plc_a, plc_b), ONLINE_TICKS, ALARM_EVENTS)

            def everything_written() -> bool:
                return all(i.stats.written_points >= delivered and i.stats.alarms >= ALARM_EVENTS
                           for i in (to_influx, to_vm))

            await eventually(everything_written,
                             what=f"both ingests to write {delivered} points and {ALARM_EVENTS} alarm events")
            written = to_influx.stats.written_points
    assert historical > 0
    return Loaded(influx_db, start_ns, time.time_ns(), written, ALARM_EVENTS, historical)
