"""A dead unit on a shared RS-485 line (RTU on a socat pty pair) is suspended after N timeouts in a row:
tried at a reduced rate, one attempt in a quiet moment of the line, and from then on it costs the live
units on the line no poll.  Without suspension the same dead unit makes them miss polls."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import pytest

from drivers.modbus.driver import LinePool, ModbusDriver
from firmware_stubs.belt_conveyor import BeltConveyor
from firmware_stubs.mine_hoist import MineHoist
from firmware_stubs.ventilation_fan import VentilationFan
from gateway.catalog import build_catalog
from gateway.config import parse
from gateway.core.point import Quality, SampleBatch
from gateway.runner import DeviceRunner
from hil.modbus_server import SimulatedPlc
from hil.services import PtyPair
from tests.conftest import eventually
from tests.test_modbus_transports import GATEWAY

INTERVAL_S = 0.5
TIMEOUT_S = 0.3
RETRIES = 1


@pytest.mark.parametrize("suspend_after", [2, 0], ids=["suspended-after-2", "never-suspended"])
async def test_a_suspended_dead_unit_costs_the_live_units_no_poll(
    suspend_after: int, pty_pair: PtyPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "edgegw.runner")
    stubs = {1: VentilationFan(1), 2: MineHoist(2), 3: BeltConveyor(3)}
    async with SimulatedPlc(units=stubs, tick_s=0, transport="rtu", serial_port=pty_pair.a) as plc:
        where = {"port": pty_pair.b, "baudrate": 19200, "parity": "N"}
        cfg = parse({"gateway": GATEWAY, "devices": [
            {"type": "modbus_rtu", "name": f"u{u}", "unit_id": u, "points": type(s).point_config(), **where,
             "poll_interval_ms": int(INTERVAL_S * 1000), "timeout_ms": int(TIMEOUT_S * 1000), "retries": RETRIES,
             "suspend_after_timeouts": suspend_after, "suspended_poll_interval_ms": 500}
            for u, s in stubs.items()
        ]})
        catalog = build_catalog(cfg)
        pool = LinePool()
        seen: list[SampleBatch] = []

        async def emit(batch: SampleBatch) -> None:
            seen.append(batch)

        runners = []
        for dev in cfg.devices:
            drv = ModbusDriver(dev, catalog.by_device[dev.name].start, pool)  # type: ignore[arg-type]
            runners.append(DeviceRunner(
                drv, catalog, emit, poll_interval_s=INTERVAL_S, timeout_s=TIMEOUT_S, backoff_max_s=0.6,
                backoff_initial_s=0.1, schedules=drv.schedules(), retries=RETRIES, watchdog=False,
                suspend_after=suspend_after, suspended_interval_s=0.5,
            ))
        r1, r2, r3 = runners
        r1._slot = r3._slot = 0  # the live units poll at the same instants: the line is quiet between
        r2._slot = 8  # 0.4 s later: an attempt at the dead unit overlaps their next deadline
        tasks = [asyncio.create_task(r.run()) for r in runners]
        try:
            await eventually(lambda: all(r.health.polls >= 2 for r in runners), what="every unit polled")
            plc.silence(2)
            await eventually(lambda: r2.health.failed_polls >= 2, what="unit 2 down twice")
            if suspend_after:
                await eventually(lambda: r2.health.suspended, what="unit 2 suspended")
            # measure from the end of an attempt on (what the attempts before suspension cost is the same)
            n = r2.health.failed_polls
            await eventually(lambda: r2.health.failed_polls > n, what="one more attempt at unit 2")
            start = time.monotonic()
            polls = (r1.health.polls, r3.health.polls)
            misses = (r1.health.deadline_misses, r3.health.deadline_misses)
            failed = r2.health.failed_polls
            first_batch = len(seen)
            await eventually(lambda: r2.health.failed_polls >= failed + 4, what="four more attempts at unit 2")
            elapsed = time.monotonic() - start
            got = (r1.health.polls - polls[0], r3.health.polls - polls[1])
            lost = (r1.health.deadline_misses - misses[0], r3.health.deadline_misses - misses[1])
            # the longest silence between two polls of a live unit (source times of its batches)
            polled = {u: [b[0][1] for b in seen[first_batch:] if catalog.points[b[0][0]].device == u]
                      for u in ("u1", "u3")}
            gap = max((b - a) / 1e9 for times in polled.values() for a, b in itertools.pairwise(times))
            print(f"suspend_after={suspend_after}: in {elapsed:.2f} s with unit 2 dead, units 1 and 3 polled"
                  f" {got} times ({elapsed / INTERVAL_S:.1f} due), missed {lost}, longest gap {gap:.3f} s")
            assert r1.health.failed_polls == r3.health.failed_polls == 0
            (line,) = pool.lines.values()
            assert line.opens == 1
            if not suspend_after:
                # the scenario bites: an attempt at the dead unit delays the live units' polls
                assert gap >= INTERVAL_S + TIMEOUT_S / 2, gap
                return
            assert lost == (0, 0), lost
            assert gap < INTERVAL_S + TIMEOUT_S / 2, gap  # no attempt at the dead unit delayed a live poll
            assert min(got) >= int(elapsed / INTERVAL_S) - 1, (got, elapsed)
            assert r2.health.retries == 0 or r2.health.suspensions == 1
            assert any("Device u2 suspended after 2 timeouts in a row" in r.message for r in caplog.records)
            dead = [s for b in seen for s in b if catalog.points[s[0]].device == "u2" and s[3] is Quality.BAD]
            assert dead and {s[4] for s in dead} == {"timeout"}
            plc.revive(2)
            n = r2.health.polls
            await eventually(lambda: r2.health.polls > n and not r2.health.suspended, what="unit 2 back")
            assert any("Device u2 answers again" in r.message for r in caplog.records)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def test_suspension_is_configurable_per_device() -> None:
    base: dict[str, Any] = {"type": "modbus_rtu", "name": "u1", "port": "/dev/ttyS1", "points": [{"name": "a",
                                                                                                   "address": 0}]}
    cfg = parse({"gateway": GATEWAY, "devices": [base]})
    dev: Any = cfg.devices[0]
    assert (dev.suspend_after_timeouts, dev.suspended_poll_interval_ms) == (2, 10_000)
    with pytest.raises(Exception, match="suspended_poll_interval_ms"):
        parse({"gateway": GATEWAY, "devices": [{**base, "suspended_poll_interval_ms": 5}]})
