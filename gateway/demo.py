"""``edgegw demo``: the whole chain on one machine, with embedded defaults.

Two simulated gas monitoring substations (real Modbus TCP servers on loopback) -> the gateway
(normalise, identifier tags, coal-mine alarm thresholds, durable buffer) -> an MQTT broker (in-process amqtt unless
``--broker`` names one) -> the ingest role -> InfluxDB 1.x when ``--influx-url`` is given, else a
line-protocol file.  What the ingest side receives is shown live.  The second substation's
methane rises through the 1.0 % alarm and the 1.5 % power-off level a few seconds after the start
and then once a minute, so alarm events show up too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firmware_stubs.gas_substation import GasSubstation, ch4_excursion, point_config
from gateway.app import Gateway
from gateway.codec import Batch
from gateway.config import Config, parse
from gateway.core.point import Point, Quality
from gateway.ingest import Ingest
from hil.modbus_server import SimulatedPlc
from hil.services import free_port

__all__ = ["demo_config", "run_demo"]

log = logging.getLogger("edgegw.demo")

_SUBSTATIONS = (("gas-sub-01", "face-T1-1201", 1), ("gas-sub-02", "return-T2-1201", 2))
# status page names, as the control room says them
_DEVICE_NAMES = {"gas-sub-01": "1201工作面瓦斯监控分站", "gas-sub-02": "1201回风巷瓦斯监控分站"}
_POINT_NAMES = {"seq": "采样序号", "ch4": "甲烷浓度", "co": "一氧化碳", "o2": "氧气浓度", "wind": "风速",
                "temp": "温度", "status": "状态字", "ch4_alarm": "甲烷报警值"}
_EXCURSION_EVERY = 60  # ticks (seconds) between two CH4 excursions of the second substation


def _points() -> list[dict[str, object]]:
    """The stub's point list with the coal-mine class on CH4: range and alarm thresholds from the preset."""
    points = [{**p, "display_name": _POINT_NAMES.get(str(p["name"]), "")} for p in point_config()]
    return [{**p, "class": "ch4"} if p["name"] == "ch4" else p for p in points]


def _excursions(hours: int = 24) -> dict[int, float]:
    out: dict[int, float] = {}
    for start in range(2, hours * 3600, _EXCURSION_EVERY):
        out.update(ch4_excursion(start))
    return out


def demo_config(
    plc_ports: list[int],
    broker: tuple[str, int],
    data_dir: Path,
    protocol: str,
    influx_url: str | None = None,
    influx_db: str = "edgegw",
    http: str | None = None,
) -> Config:
    influx: dict[str, Any] = (
        {"api": "v1", "url": influx_url, "database": influx_db}
        if influx_url
        else {"api": "file", "path": str(data_dir / "telemetry.lp")}
    )
    mqtt = {"host": broker[0], "port": broker[1], "protocol": protocol}
    return parse(
        {
            "gateway": {
                "id": "demo-gw",
                "site": "baotou-mine-01",
                "enterprise_prefix": "88.608.5288",
                "code": "88.608.5288/GW.baotou-mine-01.demo-gw",
            },
            "devices": [
                {
                    "type": "modbus_tcp",
                    "name": name,
                    "display_name": _DEVICE_NAMES[name],
                    "host": "127.0.0.1",
                    "port": port,
                    "asset": asset,
                    "poll_interval_ms": 1000,
                    "points": _points(),
                }
                for (name, asset, _seed), port in zip(_SUBSTATIONS, plc_ports, strict=True)
            ],
            "buffer": {"path": str(data_dir / "buffer.db"), "linger_ms": 100},
            "uplink": {**mqtt, "client_id": "edgegw-demo-gw"},
            "ingest": {"mqtt": {**mqtt, "client_id": "edgegw-demo-ingest"}, "influx": influx, "linger_ms": 100,
                       "dead_letter_path": str(data_dir / "dead-letters.db")},
            **({"http": {"listen": http}} if http else {}),
        },
        source="demo",
    )


@contextlib.asynccontextmanager
async def _amqtt_broker(port: int) -> AsyncIterator[None]:
    from amqtt.broker import Broker

    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        yield
    finally:
        await broker.shutdown()


class _View:
    """Latest point per key, as the ingest side received it."""

    def __init__(self) -> None:
        self.latest: dict[str, Point] = {}
        self.alarms: list[dict[str, Any]] = []  # the latest alarm events, newest last
        self.alarm_count = 0
        self.batches = 0
        self.points = 0
        self.first_at: float | None = None

    def __call__(self, batch: Batch) -> None:
        self.batches += 1
        self.points += len(batch.points)
        if self.first_at is None:
            self.first_at = time.monotonic()
        for p in batch.points:
            self.latest[p.key] = p

    def alarm(self, doc: dict[str, Any]) -> None:
        self.alarm_count += 1
        self.alarms = [*self.alarms[-4:], doc]


def _fmt_alarm(a: dict[str, Any]) -> str:
    ts = datetime.fromtimestamp(a["ts_ns"] / 1e9, UTC).strftime("%H:%M:%S")
    return (f"ALARM {ts} {a['device']} {a['code']}: {a['previous']} -> {a['level']} "
            f"(value {a['value']:.4g} {a['unit']}, threshold {a['threshold']})")


def _fmt_value(p: Point) -> str:
    if p.value is None:
        return "-"
    if isinstance(p.value, float):
        return f"{p.value:.4g}"
    return str(p.value)


def _table(view: _View, gw: Gateway, ingest: Ingest, started: float) -> Any:
    from rich.table import Table

    t = Table(
        title=f"edgegw demo: {view.points} points in {view.batches} batches received by ingest "
        f"({time.monotonic() - started:.0f} s; buffer {gw.buffer.pending_batches} pending; "
        f"{ingest.stats.written_points} written)",
        title_justify="left",
        caption="\n".join(_fmt_alarm(a) for a in view.alarms) or "no alarm events yet",
        caption_justify="left",
    )
    for col in ("device", "identifier", "value", "unit", "quality", "time (UTC)"):
        t.add_column(col)
    colour = {Quality.GOOD: "green", Quality.UNCERTAIN: "yellow", Quality.BAD: "red"}
    for key in sorted(view.latest):
        p = view.latest[key]
        q = f"[{colour[p.quality]}]{p.quality.label}[/]" + (f" ({p.reason})" if p.reason else "")
        ts = datetime.fromtimestamp(p.ts_ns / 1e9, UTC).strftime("%H:%M:%S.%f")[:-3]
        t.add_row(p.device, p.code, _fmt_value(p), p.unit, q, ts)
    return t


async def run_demo(
    *,
    duration_s: float | None = None,
    data_dir: str = "demo-data",
    influx_url: str | None = None,
    influx_db: str = "edgegw",
    broker: str | None = None,
    live: bool = True,
    http: str | None = None,
) -> None:
    """``http``: HOST:PORT of the status endpoint (gateway and ingest of the demo on one page)."""
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        stubs = [
            GasSubstation(seed, _excursions() if i == 1 else None) for i, (_n, _a, seed) in enumerate(_SUBSTATIONS)
        ]
        plcs = [await stack.enter_async_context(SimulatedPlc(stub=stub, tick_s=1.0)) for stub in stubs]
        if broker:
            host, _, port = broker.rpartition(":")
            address, protocol = (host or "127.0.0.1", int(port)), "5"
        else:
            address, protocol = ("127.0.0.1", free_port()), "3.1.1"
            await stack.enter_async_context(_amqtt_broker(address[1]))
        cfg = demo_config([p.port for p in plcs], address, out, protocol, influx_url, influx_db, http)
        assert cfg.ingest is not None
        view = _View()
        gw = Gateway(cfg)
        ingest = Ingest(cfg.ingest, observer=view, alarm_observer=view.alarm)
        if gw.http is not None:
            gw.http.add_ingest(ingest)  # one endpoint for both roles of the demo
        where = influx_url or str(out / "telemetry.lp")
        print(
            f"Simulated substations on 127.0.0.1:{plcs[0].port} and :{plcs[1].port}; "
            f"broker {address[0]}:{address[1]} (MQTT {protocol}); ingest writes to {where}. Ctrl-C stops."
        )
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(ingest.run()), tg.create_task(gw.run())]
            try:
                await _show(view, gw, ingest, started, duration_s, live)
            finally:
                for t in tasks:
                    t.cancel()
        if view.first_at is not None:
            print(f"First points reached the ingest side {view.first_at - started:.1f} s after start; "
                  f"{view.points} points in total.")


async def _show(view: _View, gw: Gateway, ingest: Ingest, started: float, duration_s: float | None,
                live: bool) -> None:
    end = None if duration_s is None else started + duration_s
    if live:
        from rich.console import Console
        from rich.live import Live

        with Live(_table(view, gw, ingest, started), console=Console(), refresh_per_second=4) as screen:
            while end is None or time.monotonic() < end:
                await asyncio.sleep(0.5)
                screen.update(_table(view, gw, ingest, started))
        return
    printed = 0
    alarms_printed = 0
    while end is None or time.monotonic() < end:
        await asyncio.sleep(1.0)
        new = view.alarm_count - alarms_printed
        for a in view.alarms[-new:] if new else ():
            print(_fmt_alarm(a))
        alarms_printed = view.alarm_count
        if view.batches != printed:
            printed = view.batches
            for key in sorted(view.latest):
                p = view.latest[key]
                print(f"{p.device:<12} {p.code:<45} {_fmt_value(p):>10} {p.unit:<6} {p.quality.label}")
