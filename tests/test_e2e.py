"""End to end on real servers: simulated PLC (pymodbus) -> gateway -> mosquitto -> ingest -> InfluxDB.

The firmware stub is the oracle: every poll of the input-register block carries the stub's tick
(``seq``), so for each timestamp the test recomputes exactly what must have arrived.  Runs for both
InfluxDB write paths: v1 ``/write`` against InfluxDB 1.x, v2 ``/api/v2/write`` (influxdb-client)
against VictoriaMetrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.gas_substation import GasSubstation, expected_values, point_config
from gateway.app import Gateway
from gateway.config import Config, parse
from gateway.ingest import Ingest
from hil.modbus_server import SimulatedPlc
from hil.services import Influx1, Mosquitto, VictoriaMetrics
from tests.conftest import eventually

PREFIX = "88.608.5288"
SITE = "baotou-mine-01"
IR_POINTS = ("seq", "ch4", "co", "o2", "wind", "temp")
UNITS = {p["name"]: p.get("unit", "") for p in point_config()}


def make_config(
    plc_port: int, broker_port: int, tmp: Path, influx: dict[str, Any], client_suffix: str, topic_prefix: str,
    **uplink: Any,
) -> Config:
    return parse(config_dict(plc_port, broker_port, tmp, influx, client_suffix, topic_prefix, **uplink))


def config_dict(
    plc_port: int, broker_port: int, tmp: Path, influx: dict[str, Any], client_suffix: str, topic_prefix: str,
    **uplink: Any,
) -> dict[str, Any]:
    mqtt = {"host": "127.0.0.1", "port": broker_port, "protocol": "5", "topic_prefix": topic_prefix}
    return {
        "gateway": {"id": "gw-e2e", "site": SITE, "enterprise_prefix": PREFIX},
        "devices": [
            {
                "type": "modbus_tcp",
                "name": "gas-sub-01",
                "host": "127.0.0.1",
                "port": plc_port,
                "poll_interval_ms": 100,
                "timeout_ms": 1000,
                "asset": "face-T1-1201",
                "points": point_config(),
            }
        ],
        "buffer": {"path": str(tmp / "buffer.db"), "linger_ms": 50},
        "uplink": {**mqtt, "client_id": f"gw-e2e-{client_suffix}", **uplink},
        "ingest": {
            "mqtt": {**mqtt, "client_id": f"ingest-e2e-{client_suffix}"},
            "influx": influx,
            "linger_ms": 50,
            "dead_letter_path": str(tmp / "dead-letters.db"),
        },
    }


@contextlib.asynccontextmanager
async def running(*coros: Any) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def step(gw: Gateway, plc: SimulatedPlc, ticks: range) -> None:
    """Advance the PLC tick by tick (not for tick 0) and wait until the gateway polled each one."""
    for tick in ticks:
        if tick:
            await plc.advance()
        polls = gw.runners[0].health.polls
        await eventually(lambda p=polls: gw.runners[0].health.polls >= p + 2, what="two more polls")


async def drive_chain(cfg: Config, plc: SimulatedPlc, ticks: int) -> tuple[Gateway, Ingest]:
    """Run gateway + ingest while the PLC steps through ``ticks`` ticks; stop once all is delivered."""
    assert cfg.ingest is not None
    gw = Gateway(cfg)
    ingest = Ingest(cfg.ingest)
    async with running(ingest.run()):
        await asyncio.wait_for(ingest.subscribed.wait(), 10)
        async with running(gw.run()):
            await step(gw, plc, range(ticks + 1))
        # the gateway is stopped: everything it accepted must reach InfluxDB
        accepted = gw.buffer_counters["accepted_points"]
        await eventually(lambda: ingest.stats.written_points >= accepted, what="ingest to write all accepted points")
    return gw, ingest


def check_rows(rows: list[dict[str, Any]], stub: GasSubstation, ticks: int, rel: float = 0.0) -> int:
    """Rows are {point, code, unit, device_code, ts, value}; check every IR poll against the oracle.

    ``rel`` is 0 (bit-exact) for InfluxDB; VictoriaMetrics stores floats with about 12 significant
    digits, so its comparison allows that storage rounding and nothing more.
    """
    by_ts: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        name = r["point"].split(".", 1)[1]
        if name in IR_POINTS:  # one read of the input-register block: one timestamp
            by_ts[r["ts"]][name] = r
    checked = 0
    seen_seq = set()
    for group in by_ts.values():
        if "seq" not in group:
            continue
        assert set(group) == set(IR_POINTS), group.keys()
        seq = int(group["seq"]["value"])
        seen_seq.add(seq)
        want = expected_values(stub.reading(seq))
        for name in IR_POINTS:
            r = group[name]
            assert r["value"] == pytest.approx(want[name], rel=rel, abs=0), (name, seq, r["value"], want[name])
            assert r["code"] == f"{PREFIX}/DEV.{SITE}.gas-sub-01.{name}"
            assert r["device_code"] == f"{PREFIX}/DEV.{SITE}.gas-sub-01"
            assert (r.get("unit") or "") == UNITS[name]
            checked += 1
    assert seen_seq >= set(range(ticks + 1)), sorted(seen_seq)
    hr = [r for r in rows if r["point"].endswith(".ch4_alarm")]
    assert hr and all(r["value"] == 1.0 and r.get("unit") == "%CH4" for r in hr)
    return checked


@pytest.mark.integration
@pytest.mark.parametrize(("wire_format", "payload_format", "compression"),
                         [(2, "msgpack", "auto"), (2, "msgpack", "zlib"), (1, "msgpack", "none"), (1, "json", "zlib")])
async def test_chain_into_influxdb_v1(
    tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1, wire_format: int, payload_format: str, compression: str
) -> None:
    """The chain with each wire format: v2 (the default: catalog + zstd; and zlib) and v1."""
    db = f"e2e_w{wire_format}_{payload_format}_{compression}"
    influx1.create_database(db)
    name = f"w{wire_format}-{payload_format}-{compression}"
    async with SimulatedPlc(tick_s=0, seed=7) as plc:
        cfg = make_config(plc.port, mosquitto.port, tmp_path, {"api": "v1", "url": influx1.url, "database": db},
                          f"v1-{name}", f"e2e-v1-{name}", payload_format=payload_format,
                          compression=compression, wire_format=wire_format)
        gw, ingest = await drive_chain(cfg, plc, ticks=4)
    res = influx1.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0]["series"][0]  # type: ignore[index]
    cols = series["columns"]
    rows = []
    for values in series["values"]:
        r = dict(zip(cols, values, strict=True))
        rows.append({**r, "ts": r["time"]})
    assert all(r["quality"] == 0 and r["site"] == SITE and r["asset"] == "face-T1-1201" for r in rows)
    checked = check_rows(rows, plc.stub, ticks=4)
    assert checked >= 5 * len(IR_POINTS)
    # exactly what was accepted, no more (InfluxDB dedups identical (series, time) replays anyway)
    assert len(rows) == gw.buffer_counters["accepted_points"]
    assert ingest.stats.undecodable == 0


@pytest.mark.integration
async def test_chain_into_v2_write_api(tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics) -> None:
    async with SimulatedPlc(tick_s=0, seed=11) as plc:
        cfg = make_config(plc.port, mosquitto.port, tmp_path,
                          {"api": "v2", "url": victoria.url, "org": "plant", "bucket": "edgegw",
                           "dialect": "victoriametrics"}, "v2", "e2e-v2")
        gw, _ = await drive_chain(cfg, plc, ticks=3)
    accepted = gw.buffer_counters["accepted_points"]

    def rows() -> list[dict[str, Any]]:
        out = []
        for s in victoria.export('{__name__="telemetry_value"}'):
            m: dict[str, str] = s["metric"]  # type: ignore[assignment]
            for v, t in zip(s["values"], s["timestamps"], strict=True):  # type: ignore[call-overload]
                out.append({**m, "value": v, "ts": t})
        return out

    await eventually(lambda: len(rows()) >= accepted, timeout=15, interval=0.5, what="VictoriaMetrics rows")
    found = rows()
    # VictoriaMetrics keeps millisecond timestamps: polls are >= 100 ms apart, so groups stay distinct
    checked = check_rows(found, plc.stub, ticks=3, rel=1e-11)
    assert checked >= 4 * len(IR_POINTS)
