"""DL/T 645 driver against simulated meters: several meters on one line over TCP (a serial device
server in transparent mode) and over a real serial line (socat pty pair), values checked against the
stubs; bad input on the wire (garbage, truncated frames, wrong checksum, abnormal answers, another
meter answering, silence) spoils only what it must, with a reason; a silent meter is suspended and
does not starve the others; config mistakes are reported with their location."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from drivers.dlt645.config import Dlt645DeviceBase
from drivers.dlt645.driver import Dlt645Driver, LinePool
from firmware_stubs.energy_meters import METER_POINTS, EnergyMeter, plant_meters
from gateway.catalog import Catalog, build_catalog
from gateway.config import Config, parse
from gateway.core.errors import ConfigError, ReadError
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.dlt645_server import SimulatedMeters
from hil.services import PtyPair
from tests.conftest import eventually, stop_tasks

GATEWAY = {"id": "gw1", "site": "ordos-chem-01", "enterprise_prefix": "88.608.5288"}


def meter_device(kind: str, name: str, address: str, **where: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "address": address, "points": EnergyMeter.point_config(),
            "timeout_ms": 300, "frame_gap_ms": 0, **where}


def _config(devices: list[dict[str, Any]]) -> Config:
    return parse({"gateway": GATEWAY, "devices": devices})


def _by_name(catalog: Catalog, batch: SampleBatch) -> dict[str, tuple[Any, Quality, str | None]]:
    return {catalog.points[i].key.split(".", 1)[1]: (v, q, r) for i, _ts, v, q, r in batch}


def _check_against_stub(sim: SimulatedMeters, address: str, got: dict[str, tuple[Any, Quality, str | None]]) -> None:
    assert set(got) == set(METER_POINTS)
    for name, (di, _, _) in METER_POINTS.items():
        value, quality, reason = got[name]
        assert (quality, reason) == (Quality.GOOD, None), name
        assert value == pytest.approx(sim.expected(address, di), abs=1e-9), name


async def _drivers(cfg: Config, pool: LinePool) -> tuple[Catalog, list[Dlt645Driver]]:
    catalog = build_catalog(cfg)
    drivers = [Dlt645Driver(d, catalog.by_device[d.name].start, pool) for d in cfg.devices]  # type: ignore[arg-type]
    for d in drivers:
        await d.__aenter__()
    return catalog, drivers


async def test_several_meters_on_one_tcp_line_read_in_turn() -> None:
    meters = plant_meters(seed=3)
    async with SimulatedMeters(meters, tick_s=0) as sim:
        cfg = _config([meter_device("dlt645_tcp", f"m{n}", m.address, host="127.0.0.1", port=sim.port)
                       for n, m in enumerate(meters)])
        pool = LinePool()
        catalog, drivers = await _drivers(cfg, pool)
        try:
            for tick in (0, 5):
                sim.bus.tick = tick
                for d, m in zip(drivers, meters, strict=True):
                    _check_against_stub(sim, m.address, _by_name(catalog, await d.read()))
            (line,) = pool.lines.values()
            assert line.opens == 1 and line.users == len(meters)
            assert sim.bus.requests == 2 * len(meters) * len(METER_POINTS)
        finally:
            for d in drivers:
                await d.__aexit__()


async def test_several_meters_on_one_serial_line(pty_pair: PtyPair) -> None:
    meters = plant_meters(seed=5, count=3)
    async with SimulatedMeters(meters, transport="serial", serial_port=pty_pair.a, tick_s=0) as sim:
        cfg = _config([meter_device("dlt645", f"m{n}", m.address, port=pty_pair.b, parity="N", frame_gap_ms=5)
                       for n, m in enumerate(meters)])
        pool = LinePool()
        catalog, drivers = await _drivers(cfg, pool)
        try:
            results = await asyncio.gather(*(d.read() for d in drivers))  # they queue for the line
            for batch, m in zip(results, meters, strict=True):
                _check_against_stub(sim, m.address, _by_name(catalog, batch))
            assert [d.requests for d in drivers] == [len(METER_POINTS)] * 3
        finally:
            for d in drivers:
                await d.__aexit__()


async def test_energy_counters_increase_between_polls() -> None:
    meter = EnergyMeter("000000000007", seed=7)
    async with SimulatedMeters([meter], tick_s=0) as sim:
        cfg = _config([meter_device("dlt645_tcp", "m", meter.address, host="127.0.0.1", port=sim.port)])
        catalog, (drv,) = await _drivers(cfg, LinePool())
        try:
            first = _by_name(catalog, await drv.read())
            sim.advance(60)
            second = _by_name(catalog, await drv.read())
            for name in ("energy_forward", "energy_tariff_4", "energy_combined"):
                assert second[name][0] > first[name][0], name
        finally:
            await drv.__aexit__()


# -- bad input on the wire ---------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "reason"), [
    ("silent", "timeout"),
    ("wrong_address", "wrong_address"),
    ("bad_checksum", "bad_checksum"),
    ("garbage", "malformed_response"),
    ("truncated", "malformed_response"),
])
async def test_a_meter_that_answers_badly_fails_its_poll_with_the_reason_and_spares_the_others(
    fault: Any, reason: str
) -> None:
    meters = plant_meters(seed=1, count=3)
    async with SimulatedMeters(meters, tick_s=0) as sim:
        cfg = _config([meter_device("dlt645_tcp", f"m{n}", m.address, host="127.0.0.1", port=sim.port)
                       for n, m in enumerate(meters)])
        pool = LinePool()
        catalog, drivers = await _drivers(cfg, pool)
        try:
            sim.fault(meters[1].address, fault)
            with pytest.raises(ReadError) as err:
                await drivers[1].read()
            assert err.value.reason == reason
            assert not err.value.disconnect  # the line stays open for the others
            for n in (0, 2):  # the neighbours, before and after, read fine on the same connection
                _check_against_stub(sim, meters[n].address, _by_name(catalog, await drivers[n].read()))
            sim.fault(meters[1].address, None)
            _check_against_stub(sim, meters[1].address, _by_name(catalog, await drivers[1].read()))
            (line,) = pool.lines.values()
            assert line.opens == 1
        finally:
            for d in drivers:
                await d.__aexit__()


async def test_abnormal_answers_spoil_only_their_points() -> None:
    meter = EnergyMeter("000000000001", seed=1, missing=frozenset({0x02800002, 0x00010400}))
    async with SimulatedMeters([meter], tick_s=0) as sim:
        cfg = _config([meter_device("dlt645_tcp", "m", meter.address, host="127.0.0.1", port=sim.port)])
        catalog, (drv,) = await _drivers(cfg, LinePool())
        try:
            got = _by_name(catalog, await drv.read())
            assert got["frequency"] == (None, Quality.BAD, "dlt645_no_such_data")
            assert got["energy_tariff_4"] == (None, Quality.BAD, "dlt645_no_such_data")
            good = {k: v for k, v in got.items() if v[1] is Quality.GOOD}
            assert len(good) == len(METER_POINTS) - 2
            sim.fault(meter.address, "abnormal")
            got = _by_name(catalog, await drv.read())
            assert {(q, r) for _, q, r in got.values()} == {(Quality.BAD, "dlt645_no_such_data")}
        finally:
            await drv.__aexit__()


async def test_a_value_that_is_not_bcd_is_bad_not_a_wrong_number() -> None:
    """A meter that fills a quantity it lacks with 0xFF (seen on single-phase meters asked for phase B)."""
    from drivers.dlt645.codec import Control, encode_frame, parse_address

    address = parse_address("000000000001")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from drivers.dlt645.codec import Deframer

        d = Deframer()
        while data := await reader.read(512):
            for f in d.feed(data):
                writer.write(encode_frame(address, Control.READ_OK, f.data[:4] + b"\xff" * 4))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        cfg = _config([{**meter_device("dlt645_tcp", "m", "000000000001", host="127.0.0.1", port=port),
                        "points": [{"name": "u_b", "di": "02 01 02 00"}, {"name": "e", "di": "00 01 00 00"}]}])
        catalog, (drv,) = await _drivers(cfg, LinePool())
        try:
            got = _by_name(catalog, await drv.read())
            assert got == {"u_b": (None, Quality.BAD, "bad_bcd"), "e": (None, Quality.BAD, "bad_bcd")}
        finally:
            await drv.__aexit__()
    finally:
        server.close()


# -- suspension ---------------------------------------------------------------------------------------

async def test_a_silent_meter_is_suspended_and_does_not_starve_the_others(
    pty_pair: PtyPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edgegw.runner")
    meters = plant_meters(seed=2, count=3)
    async with SimulatedMeters(meters, transport="serial", serial_port=pty_pair.a, tick_s=0) as sim:
        cfg = _config([{**meter_device("dlt645", f"m{n}", m.address, port=pty_pair.b, parity="N"),
                        "points": EnergyMeter.point_config()[:4], "poll_interval_ms": 500, "timeout_ms": 200,
                        "suspend_after_timeouts": 2, "suspended_poll_interval_ms": 500}
                       for n, m in enumerate(meters)])
        catalog = build_catalog(cfg)
        pool = LinePool()
        seen: list[SampleBatch] = []

        async def emit(batch: SampleBatch) -> None:
            seen.append(batch)

        runners = []
        for dev in cfg.devices:
            drv = Dlt645Driver(dev, catalog.by_device[dev.name].start, pool)  # type: ignore[arg-type]
            runners.append(DeviceRunner(
                drv, catalog, emit, poll_interval_s=0.5, timeout_s=0.2, backoff_max_s=0.6, backoff_initial_s=0.1,
                retries=1, watchdog=False, suspend_after=2, suspended_interval_s=0.5,
            ))
        r0, r1, r2 = runners
        tasks = [asyncio.create_task(r.run()) for r in runners]
        try:
            await eventually(lambda: all(r.health.polls >= 2 for r in runners), what="every meter polled")
            sim.fault(meters[1].address, "silent")
            await eventually(lambda: r1.health.suspended, what="the silent meter suspended")
            polls = (r0.health.polls, r2.health.polls)
            failed = r1.health.failed_polls
            await eventually(lambda: r1.health.failed_polls >= failed + 3, what="three attempts while suspended")
            assert r0.health.polls - polls[0] >= 3 and r2.health.polls - polls[1] >= 3
            assert r0.health.failed_polls == r2.health.failed_polls == 0
            print(f"live meters missed {r0.health.deadline_misses} and {r2.health.deadline_misses} deadlines")
            dead = [s for b in seen for s in b if catalog.points[s[0]].device == "m1" and s[3] is Quality.BAD]
            assert dead and {s[4] for s in dead} == {"timeout"}
            assert any("Device m1 suspended after 2 timeouts in a row" in r.message for r in caplog.records)
            sim.fault(meters[1].address, None)
            await eventually(lambda: not r1.health.suspended, what="the meter back")
            (line,) = pool.lines.values()
            assert line.opens == 1
        finally:
            await stop_tasks(*tasks)


# -- config ---------------------------------------------------------------------------------------------

def _issues(devices: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        _config(devices)
    return [str(i) for i in err.value.issues]


TCP = {"host": "127.0.0.1", "port": 4001}


@pytest.mark.parametrize(("change", "expected"), [
    ({"address": "999999999999"}, "devices[0].address: meter address '999999999999' is the broadcast address"),
    ({"address": "AAAAAAAAAAAA"}, "devices[0].address: meter address 'AAAAAAAAAAAA' uses the wildcard 'AA'"),
    ({"address": "12345"}, None),  # short: leading zeros are implied
    ({"address": "1234567890123"}, "devices[0].address: meter address '1234567890123' is not 12 decimal digits"),
    ({"preamble_bytes": 17}, "devices[0].preamble_bytes: Input should be less than or equal to 16"),
    ({"points": [{"name": "x", "di": "02 01 01"}]}, "devices[0].points[0].di: data identifier '02 01 01' is not"),
    ({"points": [{"name": "x", "di": "05 06 01 00"}]}, "devices[0].points[0]: data identifier 05 06 01 00 is not in "
                                                       "the built-in table"),
    ({"points": [{"name": "x", "di": "05 06 01 00", "format": "XX.X"}]},
     "devices[0].points[0].format: format 'XX.X' has 3 digits"),
    ({"points": [{"name": "x", "di": "02010100"}, {"name": "y", "di": "02 01 01 00"}]},
     "devices[0]: points[1] ('y') reads data identifier 02 01 01 00, as points[0] ('x') does"),
])
def test_config_errors_are_located(change: dict[str, Any], expected: str | None) -> None:
    dev = {**meter_device("dlt645_tcp", "m", "000000000001", **TCP), **change}
    if expected is None:
        cfg = _config([dev])
        meter = cfg.devices[0]
        assert isinstance(meter, Dlt645DeviceBase)
        assert meter.address == "000000012345"
        return
    issues = _issues([dev])
    assert any(i.startswith(expected) for i in issues), issues


def test_meters_on_one_line_agree_and_have_distinct_addresses() -> None:
    a = meter_device("dlt645", "a", "000000000001", port="/dev/ttyS1")
    b = meter_device("dlt645", "b", "1", port="/dev/ttyS1", baudrate=9600)
    c = meter_device("dlt645", "c", "000000000002", port="/dev/ttyS2")
    issues = _issues([a, b, c])
    assert "devices[1].baudrate: 9600 differs from 2400 of devices[0] ('a') on the same line /dev/ttyS1" in issues
    assert ("devices[1].address: meter address 000000000001 is already used on line /dev/ttyS1 by devices[0]"
            in issues)
    assert len(issues) == 2


def test_units_and_formats_come_from_the_table() -> None:
    cfg = _config([{**meter_device("dlt645_tcp", "m", "1", **TCP), "points": [
        {"name": "e", "di": "00 01 00 00"}, {"name": "i", "di": "02 02 01 00"},
        {"name": "odd", "di": "04 00 04 09", "format": "XXXXXX", "unit": "imp/kWh"},
    ]}])
    dev: Any = cfg.devices[0]
    assert [p.unit for p in dev.points] == ["kWh", "A", "imp/kWh"]
    assert [str(p.value_format()) for p in dev.points] == ["XXXXXX.XX", "XXX.XXX", "XXXXXX"]
    assert dev.points[1].value_format().signed
    assert (dev.baudrate if hasattr(dev, "baudrate") else None) is None
    serial: Any = _config([meter_device("dlt645", "s", "1", port="/dev/ttyS1")]).devices[0]
    assert (serial.baudrate, serial.parity, serial.preamble_bytes) == (2400, "E", 4)


def test_unknown_type_lists_the_meter_types() -> None:
    issues = _issues([{"type": "dlt645_rtu", "name": "x"}])
    assert "dlt645, dlt645_tcp" in issues[0]
