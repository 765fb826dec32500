"""Honest time: samples stamped before the plausible floor are clock_unsynced, a wall-clock step is
flagged and logged once with its size.  A controlled clock is handed to the batcher (no patching of
:mod:`time`); the samples are stamped from it as a Modbus poll stamps them."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.app import Batcher
from gateway.buffer import SqliteBuffer
from gateway.config import BufferConfig, parse
from gateway.core.clock import DEFAULT_MIN_VALID_NS, RELEASE_DATE, describe_step, ns_of_date
from gateway.core.point import Quality, Sample, SampleBatch
from pipelines.pipeline import Pipeline
from pipelines.spec import PointSpec
from pipelines.validate import ClockCheck, Plausibility
from tests.clocks import ManualClock
from tests.test_buffer_durability import catalog

S = 1_000_000_000
FLOOR = ns_of_date(RELEASE_DATE)
NOW = FLOOR + 30 * 86_400 * S


def good(idx: int, ts: int, value: float = 1.0) -> Sample:
    return (idx, ts, value, Quality.GOOD, None)


def _batcher(tmp_path: Path, clock: ManualClock) -> Batcher:
    cat = catalog()
    return Batcher(
        cat, SqliteBuffer(tmp_path / "b.db", clock=clock), BufferConfig(), asyncio.Event(),
        pipeline=Pipeline(cat.specs, min_valid_ns=FLOOR), clock=clock,
    )


def _poll(clock: ManualClock) -> SampleBatch:
    return [good(0, clock.wall_ns(), 12.5), good(1, clock.wall_ns(), 40.0)]


def _clock_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgegw.app" and r.levelno == logging.WARNING]


def test_boot_at_1970_then_ntp_steps_to_now(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edgegw.app")
    clock = ManualClock(wall_ns=12 * S, mono_ns=12 * S)  # the RTC lost power: 1970, 12 s after boot
    b = _batcher(tmp_path, clock)
    for _ in range(3):
        out = b.process(_poll(clock))
        assert [(q, r) for *_, q, r in out] == [(Quality.UNCERTAIN, "clock_unsynced")] * 2
        assert [v for _i, _t, v, _q, _r in out] == [12.5, 40.0]  # values kept
        clock.advance(S)
    assert _clock_warnings(caplog) == [
        "The gateway's clock reads 1970-01-01T00:00:12+00:00, before clock_min_valid_time "
        f"({RELEASE_DATE.isoformat()}T00:00:00+00:00): it has not been set. Samples are flagged clock_unsynced "
        "until it is; check NTP (timedatectl status, chronyc tracking)."
    ]  # once, not once per batch

    # a poll stamped just before NTP steps the clock, processed just after: its stamp is still 1970
    stale = _poll(clock)
    step = NOW - clock.wall
    clock.step(step)
    out = b.process(stale + _poll(clock))
    assert [r for *_, r in out] == ["clock_unsynced"] * 2 + ["clock_jump"] * 2
    warnings = _clock_warnings(caplog)
    assert len(warnings) == 2 and warnings[1].startswith(f"The wall clock stepped {describe_step(step)} ")
    assert "forward by " in warnings[1]
    assert any("clock is set" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)

    for _ in range(3):
        clock.advance(S)
        out = b.process(_poll(clock))
        assert [(q, r) for *_, q, r in out] == [(Quality.GOOD, None)] * 2
    assert len(_clock_warnings(caplog)) == 2
    assert b.pipeline.clock.unsynced == 8 and b.pipeline.clock.jumps == 1
    b.buffer.close()


@pytest.mark.parametrize("step_s", [-3600, 7200])
def test_a_step_is_flagged_and_logged_once_with_its_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, step_s: int
) -> None:
    clock = ManualClock(wall_ns=NOW)
    b = _batcher(tmp_path, clock)
    assert [r for *_, r in b.process(_poll(clock))] == [None, None]
    clock.advance(S)
    clock.step(step_s * S)
    assert [r for *_, r in b.process(_poll(clock))] == ["clock_jump"] * 2
    for _ in range(3):
        clock.advance(S)
        assert [r for *_, r in b.process(_poll(clock))] == [None, None]
    (warning,) = _clock_warnings(caplog)
    expected = "backward by 1 h 0 min 0.000 s" if step_s < 0 else "forward by 2 h 0 min 0.000 s"
    assert f"stepped {expected} " in warning
    b.buffer.close()


def test_a_server_timestamp_before_the_floor_is_unsynced_while_the_gateway_clock_is_fine() -> None:
    """An OPC UA server whose own clock was never set stamps its values 1970 (or 2000)."""
    c = ClockCheck(future_tolerance_ns=2 * S, jump_tolerance_ns=2 * S, min_valid_ns=FLOOR)
    batch: SampleBatch = [
        good(0, NOW), good(1, 946_684_800 * S), (2, 5 * S, None, Quality.BAD, "timeout"), good(3, NOW + 9 * S)
    ]
    out = c(batch, NOW, 100 * S)
    assert [(q, r) for *_, q, r in out] == [
        (Quality.GOOD, None), (Quality.UNCERTAIN, "clock_unsynced"), (Quality.BAD, "timeout"),
        (Quality.UNCERTAIN, "future_timestamp")]
    assert c.clock_valid is True and c.unsynced == 1
    assert c([good(0, NOW + S)], NOW + S, 101 * S) == [good(0, NOW + S)]  # nothing to flag: unchanged


def test_while_the_gateway_clock_is_unset_every_good_sample_is_unsynced() -> None:
    """A plausible server stamp cannot be checked against a clock that reads 1970 either."""
    c = ClockCheck(future_tolerance_ns=2 * S, jump_tolerance_ns=2 * S, min_valid_ns=FLOOR)
    out = c([good(0, NOW), (1, 3 * S, None, Quality.BAD, "timeout")], 3 * S, 3 * S)
    assert [(q, r) for *_, q, r in out] == [(Quality.UNCERTAIN, "clock_unsynced"), (Quality.BAD, "timeout")]
    assert c.clock_valid is False


def test_the_default_floor_is_the_release_date() -> None:
    assert DEFAULT_MIN_VALID_NS == FLOOR
    cfg = parse({"gateway": {"id": "g", "site": "s"}})
    assert cfg.gateway is not None and cfg.gateway.clock_min_valid_ns == FLOOR
    cfg = parse({"gateway": {"id": "g", "site": "s", "clock_min_valid_time": "2030-01-01T08:00:00+08:00"}})
    assert cfg.gateway is not None and cfg.gateway.clock_min_valid_ns == ns_of_date(RELEASE_DATE.replace(2030, 1, 1))


def test_a_naive_datetime_floor_is_refused_with_its_location() -> None:
    from gateway.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        parse({"gateway": {"id": "g", "site": "s", "clock_min_valid_time": "2030-01-01T08:00:00"}})
    assert "gateway.clock_min_valid_time" in str(err.value) and "UTC offset" in str(err.value)


def test_a_step_restarts_the_stuck_timers() -> None:
    """Source times across a step cannot be subtracted: a steady value is not "stuck" because NTP
    moved the clock 2 h forward, and a stuck one is found again after a step back."""
    specs = [PointSpec(stuck_after_ns=60 * S)]
    p = Pipeline(specs, min_valid_ns=FLOOR)
    clock = ManualClock(wall_ns=NOW)
    reasons = []
    for i in range(40):
        if i == 10:
            clock.step(7200 * S)
        out, _ = p([good(0, clock.wall, 3.0)], clock.wall, clock.mono)
        reasons.append(out[0][4])
        clock.advance(S)
    assert reasons == [None] * 10 + ["clock_jump"] + [None] * 29

    pl = Plausibility(specs)
    assert [s[4] for s in pl([good(0, NOW), good(0, NOW + 70 * S)])] == [None, "stuck"]
    pl.clock_stepped()
    assert pl([good(0, NOW + 71 * S)])[0][4] is None  # the timer started again
    assert pl([good(0, NOW + 140 * S)])[0][4] == "stuck"
