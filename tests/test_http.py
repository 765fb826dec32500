"""The status endpoint against running parts: simulated PLCs (pymodbus) -> gateway -> mosquitto, and an ingest.

Values are checked against the firmware stub (the oracle): the ``seq`` point carries the PLC's tick.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from firmware_stubs.gas_substation import point_config
from gateway.app import Gateway
from gateway.config import Config, parse, parse_listen
from gateway.ingest import Ingest
from gateway.latency import Histogram
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto, free_port
from tests.conftest import eventually
from tests.test_e2e import running

NAMES_ZH = {"seq": "采样序号", "ch4": "甲烷浓度", "co": "一氧化碳", "o2": "氧气浓度"}
DEVICES_ZH = {"gas-sub-01": "1201工作面瓦斯监控分站", "gas-sub-02": "1201回风巷瓦斯监控分站"}


SITE_ZH = "包头某煤矿"
TEXTS_ZH = {"ch4": "1201 回风巷 激光甲烷传感器"}


def plant_config(plc_ports: list[int], broker_port: int, tmp: Path, *, listen: str = "127.0.0.1:0",
                 name: str = "http", names: dict[str, str] | None = None, **device: Any) -> Config:
    """Up to two gas substations (simulated PLCs), with Chinese display names, and the endpoint on."""
    names = NAMES_ZH if names is None else names
    points = [{**p, "display_name": names.get(str(p["name"]), ""), "description": TEXTS_ZH.get(str(p["name"]), "")}
              for p in point_config()]
    return parse({
        "gateway": {"id": f"gw-{name}", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288",
                    "site_display_name": SITE_ZH},
        "devices": [
            {
                "type": "modbus_tcp", "name": dev, "display_name": DEVICES_ZH[dev], "host": "127.0.0.1",
                "port": port, "poll_interval_ms": 100, "timeout_ms": 300, "backoff_max_ms": 500,
                "points": points, **device,
            }
            for dev, port in zip(DEVICES_ZH, plc_ports, strict=False)
        ],
        "buffer": {"path": str(tmp / "buffer.db"), "linger_ms": 20},
        # nothing subscribes here: a PUBACK 0x10 counts as delivered (uplink.no_subscribers)
        "uplink": {"host": "127.0.0.1", "port": broker_port, "client_id": f"gw-{name}-{tmp.name}",
                   "no_subscribers": "accept",
                   "topic_prefix": f"t-{name}"},
        "http": {"listen": listen},
    })


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


async def metrics(session: aiohttp.ClientSession, base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    async with session.get(f"{base}/metrics") as r:
        assert r.status == 200
        assert r.content_type == "text/plain"
        text = await r.text()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def point(status: dict[str, Any], key: str) -> dict[str, Any]:
    return next(p for p in status["points"] if p["key"] == key)


async def test_endpoints_of_a_running_gateway(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with SimulatedPlc(tick_s=0, seed=3) as plc1, SimulatedPlc(tick_s=0, seed=4) as plc2:
        gw = Gateway(plant_config([plc1.port, plc2.port], mosquitto.port, tmp_path))
        assert gw.http is not None
        async with running(gw.run()), aiohttp.ClientSession() as session:
            await asyncio.wait_for(gw.http.started.wait(), 10)
            base = gw.http.url
            assert base.startswith("http://127.0.0.1:")
            assert await get(session, f"{base}/healthz") == (200, {"status": "alive"})

            async def ready() -> bool:
                return (await get(session, f"{base}/readyz"))[0] == 200

            await eventually(ready, what="/readyz to answer 200")
            _, body = await get(session, f"{base}/readyz")
            assert body["ready"] is True and body["not_ready"] == []
            assert {c["name"] for c in body["checks"]} == {"buffer", "devices", "uplink"}

            # live values: the seq point follows the PLC's tick
            await plc1.advance(5)

            async def seq_is(tick: int) -> bool:
                _, st = await get(session, f"{base}/api/status?q=seq")
                p = point(st, "gas-sub-01.seq")
                return bool(p["value"] == tick and p["quality"] == "good")

            await eventually(lambda: seq_is(5), what="seq = 5 on /api/status")
            _, st = await get(session, f"{base}/api/status?device=gas-sub-01")
            assert {p["device"] for p in st["points"]} == {"gas-sub-01"}
            assert st["points_matched"] == len(point_config())
            ch4 = point(st, "gas-sub-01.ch4")
            assert ch4["display_name"] == "甲烷浓度" and ch4["unit"] == "%CH4"
            assert ch4["code"] == "88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4"
            dev = next(d for d in st["devices"] if d["name"] == "gas-sub-01")
            assert dev["display_name"] == DEVICES_ZH["gas-sub-01"] and dev["state"] == "up"

            # metrics: read from the live objects at scrape time
            async def published() -> bool:
                m = await metrics(session, base)
                return m[("edgegw_uplink_publish_latency_seconds_count", (("uplink", "data"),))] > 0

            await eventually(published, what="a publish confirmed by PUBACK")
            m = await metrics(session, base)
            d1 = (("device", "gas-sub-01"),)
            assert m[("edgegw_device_reads_total", d1)] > 0
            assert m[("edgegw_device_points_total", (("device", "gas-sub-01"), ("quality", "good")))] > 0
            assert m[("edgegw_device_up", d1)] == 1
            assert m[("edgegw_device_state", (("device", "gas-sub-01"), ("state", "up")))] == 1
            assert m[("edgegw_uplink_connected", (("uplink", "data"),))] == 1
            assert m[("edgegw_buffer_accepted_points_total", (("buffer", "data"),))] > 0
            assert ("edgegw_buffer_unsynced_points", (("buffer", "data"),)) in m
            assert ("edgegw_buffer_oldest_age_seconds", (("buffer", "data"),)) in m
            assert m[("edgegw_buffer_dropped_points_total", (("buffer", "data"), ("policy", "drop_oldest")))] == 0
            assert m[("edgegw_uplink_publish_latency_seconds_bucket", (("le", "+Inf"), ("uplink", "data")))] > 0
            assert m[("edgegw_ready", (("check", "devices"),))] == 1
            assert ("process_resident_memory_bytes", ()) in m
            for name, _labels in m:  # conventions: our prefix, base units
                assert name.startswith(("edgegw_", "process_")), name
                assert not name.endswith(("_ms", "_milliseconds", "_kb")), name

            # the page and its assets, from the package
            status, html = await get(session, f"{base}/")
            assert status == 200 and '<script src="/static/status.js"' in html
            async with session.get(f"{base}/static/status.js") as r:
                assert r.status == 200 and "textContent" in await r.text()
                assert "script-src 'self'" in r.headers["Content-Security-Policy"]

            # read-only, and nothing is served that is not ours
            async with session.post(f"{base}/", data=b"x") as r:
                assert r.status in (405, 413)
            assert (await get(session, f"{base}/static/../config.py"))[0] == 404

            # one PLC stops: its device goes down with a reason, the gateway stays ready (the other is up)
            await plc1.stop()

            async def down() -> bool:
                _, st = await get(session, f"{base}/api/status")
                d = next(d for d in st["devices"] if d["name"] == "gas-sub-01")
                return bool(d["state"] == "down" and d["last_error"])

            await eventually(down, what="gas-sub-01 down on /api/status")
            _, st = await get(session, f"{base}/api/status?device=gas-sub-01&quality=bad")
            assert st["points_matched"] == len(point_config())
            assert all(p["value"] is None and p["reason"] for p in st["points"])
            m = await metrics(session, base)
            errors = {k: v for k, v in m.items() if k[0] == "edgegw_device_read_errors_total" and d1[0] in k[1]}
            assert errors and all(v > 0 for v in errors.values()), m
            assert m[("edgegw_device_state", (("device", "gas-sub-01"), ("state", "down")))] == 1
            assert m[("edgegw_device_points_total", (("device", "gas-sub-01"), ("quality", "bad")))] > 0
            assert (await get(session, f"{base}/readyz"))[0] == 200

            # both down: not ready, and the body says why
            await plc2.stop()

            async def not_ready() -> bool:
                return (await get(session, f"{base}/readyz"))[0] == 503

            await eventually(not_ready, what="/readyz 503 with every device down")
            _, body = await get(session, f"{base}/readyz")
            assert body["ready"] is False
            assert [c for c in body["not_ready"] if c.startswith("gateway.devices:")], body


async def test_gateway_without_a_broker_is_ready_while_buffering_within_bounds(tmp_path: Path) -> None:
    dead = free_port()  # a port nobody listens on
    async with SimulatedPlc(tick_s=0, seed=5) as plc:
        gw = Gateway(plant_config([plc.port], dead, tmp_path, name="nobroker"))
        assert gw.http is not None
        server = gw.http
        async with running(gw.run()), aiohttp.ClientSession() as session:
            await asyncio.wait_for(server.started.wait(), 10)

            async def buffering() -> bool:
                status, body = await get(session, f"{server.url}/readyz")
                uplink = next(c for c in body["checks"] if c["name"] == "uplink")
                return status == 200 and "not connected" in uplink["detail"] and "buffered" in uplink["detail"]

            await eventually(buffering, what="ready while buffering")
            m = await metrics(session, gw.http.url)
            assert m[("edgegw_uplink_connected", (("uplink", "data"),))] == 0
            assert m[("edgegw_uplink_reconnects_total", (("uplink", "data"),))] >= 1


async def test_occupied_port_is_logged_and_telemetry_goes_on(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with SimulatedPlc(tick_s=0, seed=6) as plc:
            gw = Gateway(plant_config([plc.port], mosquitto.port, tmp_path, listen=f"127.0.0.1:{port}", name="busy"))
            with caplog.at_level(logging.ERROR, logger="edgegw.http"):
                async with running(gw.run()) as tasks:
                    await eventually(lambda: "cannot listen" in caplog.text, what="the bind error in the log")
                    polls = gw.runners[0].health.polls
                    await eventually(lambda: gw.runners[0].health.polls > polls + 2, what="polling to go on")
                    assert not tasks[0].done()
                    assert gw.http is not None and not gw.http.started.is_set()


async def test_ingest_endpoint(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = parse({
        "ingest": {
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": "ingest-http",
                     "topic_prefix": "t-ingest-http"},
            "influx": {"api": "file", "path": str(tmp_path / "out.lp")},
            "dead_letter_path": str(tmp_path / "dl.db"),
        },
    })
    assert cfg.ingest is not None
    ingest = Ingest(cfg.ingest, http_listen="127.0.0.1:0")
    assert ingest.http is not None
    async with running(ingest.run()), aiohttp.ClientSession() as session:
        await asyncio.wait_for(ingest.subscribed.wait(), 10)
        await asyncio.wait_for(ingest.http.started.wait(), 10)
        base = ingest.http.url
        status, body = await get(session, f"{base}/readyz")
        assert status == 200, body
        assert {(c["role"], c["name"]) for c in body["checks"]} == {("ingest", "broker"), ("ingest", "store")}
        m = await metrics(session, base)
        assert m[("edgegw_ingest_connected", ())] == 1
        for name in ("messages", "written_points", "write_retries", "dead_letter_messages"):
            assert m[(f"edgegw_ingest_{name}_total", ())] == 0
        assert m[("edgegw_build_info", (("role", "ingest"), ("version", "0.1.0")))] == 1
        # a store outage makes it not ready, with the reason
        ingest.stats.store_down_since = time.monotonic() - 5
        ingest.stats.store_errors["network"] += 1
        status, body = await get(session, f"{base}/readyz")
        assert status == 503 and body["not_ready"][0].startswith("ingest.store: down for"), body
    assert not ingest.http.started.is_set()  # stopped with the ingest


def test_histogram_buckets_are_cumulative_with_le_semantics() -> None:
    h = Histogram(bounds=(0.01, 0.1))
    for v in (0.005, 0.01, 0.05, 3.0):
        h.observe(v)
    assert h.cumulative() == [(0.01, 2), (0.1, 3), (float("inf"), 4)]
    assert h.count == 4 and h.sum == pytest.approx(3.065)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:9180", ("127.0.0.1", 9180)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:80", ("localhost", 80)),
        ("9180", None),
        (":9180", None),
        ("127.0.0.1:", None),
        ("::1:9180", None),
        ("127.0.0.1:65536", None),
        ("127.0.0.1:-1", None),
    ],
)
def test_listen_addresses(text: str, want: tuple[str, int] | None) -> None:
    if want is None:
        with pytest.raises(ValueError):
            parse_listen(text)
    else:
        assert parse_listen(text) == want


def test_cli_http_flag_overrides_the_section(tmp_path: Path) -> None:
    from gateway.prebuild import with_http as _with_http

    cfg = plant_config([1502], 1883, tmp_path, listen="127.0.0.1:9180")
    assert _with_http(cfg, None).http == cfg.http
    new = _with_http(cfg, "127.0.0.1:9999")
    assert new.http is not None and new.http.address == ("127.0.0.1", 9999)


async def test_ingest_metrics_follow_a_running_chain(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Simulated PLC -> gateway -> mosquitto -> ingest (file store): the ingest's counters and lag."""
    async with SimulatedPlc(tick_s=0, seed=13) as plc:
        gw_cfg = plant_config([plc.port], mosquitto.port, tmp_path, name="chain")
        cfg = parse({
            "ingest": {
                "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": "ingest-chain",
                         "topic_prefix": "t-chain"},
                "influx": {"api": "file", "path": str(tmp_path / "out.lp")},
                "dead_letter_path": str(tmp_path / "dl.db"), "linger_ms": 20,
            },
        })
        assert cfg.ingest is not None
        ingest = Ingest(cfg.ingest, http_listen="127.0.0.1:0")
        assert ingest.http is not None
        async with running(ingest.run()), aiohttp.ClientSession() as session:
            await asyncio.wait_for(ingest.subscribed.wait(), 10)
            async with running(Gateway(gw_cfg).run()):
                await eventually(lambda: ingest.stats.written_points >= 3 * len(point_config()),
                                 what="three polls written")
            base = ingest.http.url
            m = await metrics(session, base)
            assert m[("edgegw_ingest_messages_total", ())] >= 1
            assert m[("edgegw_ingest_written_points_total", ())] == ingest.stats.written_points
            assert 0 <= m[("edgegw_ingest_lag_seconds", ())] < 60
            _, st = await get(session, f"{base}/api/status")
            assert st["role"] == "ingest" and st["ingest"]["written_points"] == ingest.stats.written_points
