"""Overload is said, not only counted: the WARNING lines of gateway.watch against the buffer's counters.

A real buffer file and a controlled clock (tests/clocks.py): time moves when the test says, so
"once a minute" and rates are exact and nothing sleeps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.buffer import Outcome, SqliteBuffer
from gateway.watch import Watch
from tests.clocks import ManualClock, S

PAYLOAD = b"x" * 1000
NPOINTS = 10
WALL = 1_800_000_000 * S


def _lines(caplog: pytest.LogCaptureFixture, condition: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "condition", None) == condition]


def _open(tmp_path: Path, when_full: str, clock: ManualClock, **kw: object) -> SqliteBuffer:
    # room for exactly ten batches
    return SqliteBuffer(tmp_path / "b.db", max_bytes=10 * len(PAYLOAD), when_full=when_full, clock=clock,
                        durability="fsync", **kw)  # type: ignore[arg-type]


def _put(buf: SqliteBuffer, n: int) -> None:
    for _ in range(n):
        buf.put(PAYLOAD, NPOINTS)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_drops_at_the_bound_are_logged_with_the_counters_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    prefix, condition = f"dropped_{policy.removeprefix('drop_')}", f"buffer_{policy}"
    clock = ManualClock(WALL)
    buf = _open(tmp_path, policy, clock)
    watch = Watch(buf, clock=clock)
    with caplog.at_level(logging.INFO, logger="edgegw.watch"):
        _put(buf, 8)
        watch.check()
        _put(buf, 1)
        watch.check()
        fill = _lines(caplog, "buffer_fill")
        assert [r.levelno for r in fill] == [logging.WARNING, logging.WARNING]
        assert [r.__dict__["level_pct"] for r in fill] == [75, 90]
        assert not _lines(caplog, condition)

        _put(buf, 4)  # 13 offered, room for 10: three dropped
        watch.check()
        clock.advance(30 * S)
        _put(buf, 5)
        watch.check()  # within the minute: no line
        clock.advance(30 * S)
        _put(buf, 2)
        watch.check()  # a minute after the start: the periodic line
        clock.advance(5 * S)
        watch.check()  # quiet for 5 s: still in force
        clock.advance(5 * S)
        watch.check()  # quiet for 10 s: stopped

    lines = _lines(caplog, condition)
    assert [r.__dict__["phase"] for r in lines] == ["start", "repeat", "stop"]
    assert all(r.levelno == logging.WARNING for r in lines)
    c = buf.counters()
    assert c[f"{prefix}_points"] == 10 * NPOINTS and c[f"{prefix}_batches"] == 10
    assert [r.__dict__["batches"] for r in lines] == [3, 7, 0]
    assert sum(r.__dict__["points"] for r in lines) == c[f"{prefix}_points"]
    assert sum(r.__dict__["batches"] for r in lines) == c[f"{prefix}_batches"]
    assert lines[-1].__dict__["total_points"] == c[f"{prefix}_points"]
    assert lines[-1].__dict__["total_batches"] == c[f"{prefix}_batches"]
    # the sentences carry the same figures
    assert "30 points in 3 batches" in lines[0].getMessage()
    assert "70 points (7 batches) in the last 60 s, 1 points/s" in lines[1].getMessage()
    assert f"policy {policy}" in lines[1].getMessage()
    assert "100 points (10 batches) in all" in lines[2].getMessage()
    # the other policy's condition stayed silent
    other = "buffer_drop_newest" if policy == "drop_oldest" else "buffer_drop_oldest"
    assert not _lines(caplog, other)
    buf.close()


def test_a_drop_still_lasting_at_stop_gets_its_final_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(WALL)
    buf = _open(tmp_path, "drop_oldest", clock)
    watch = Watch(buf, clock=clock)
    with caplog.at_level(logging.WARNING, logger="edgegw.watch"):
        _put(buf, 12)
        watch.check()
        _put(buf, 3)
        clock.advance(2 * S)
        watch.close()
    lines = _lines(caplog, "buffer_drop_oldest")
    assert [r.__dict__["phase"] for r in lines] == ["start", "stop"]
    assert [r.__dict__["batches"] for r in lines] == [2, 3]
    assert lines[-1].__dict__["total_points"] == buf.counters()["dropped_oldest_points"] == 50
    buf.close()


def test_fill_going_down_is_said_once_and_facts_follow(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(WALL)
    buf = _open(tmp_path, "drop_oldest", clock)
    watch = Watch(buf, clock=clock)
    _put(buf, 10)
    with caplog.at_level(logging.INFO, logger="edgegw.watch"):
        watch.check()
        v = watch.version
        assert watch.facts()["buffer_fill_level_pct"] == 90
        tx = buf.begin(4)

        buf.end(tx, [Outcome.DELIVERED] * 4)  # 60 %
        watch.check()
        watch.check()
    fill = _lines(caplog, "buffer_fill")
    assert [(r.levelno, r.__dict__["phase"]) for r in fill] == [(logging.WARNING, "start"), (logging.INFO, "stop")]
    assert "buffer_fill_level_pct" not in watch.facts()
    assert watch.version > v
    buf.close()


def test_expiry_is_said_with_the_expired_counters(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(WALL)
    buf = SqliteBuffer(tmp_path / "b.db", max_age_s=30, clock=clock)
    watch = Watch(buf, clock=clock, lag_warn_s=3600)
    _put(buf, 4)
    with caplog.at_level(logging.WARNING, logger="edgegw.watch"):
        clock.advance(31 * S)
        buf.maintain()
        watch.check()
        assert "buffer_expired" in watch.facts()
        watch.close()
    lines = _lines(caplog, "buffer_expired")
    assert [r.__dict__["phase"] for r in lines] == ["start", "stop"]
    assert lines[-1].__dict__["total_points"] == buf.counters()["expired_points"] == 40
    buf.close()


def test_uplink_lag_above_the_bound(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(WALL)
    buf = SqliteBuffer(tmp_path / "b.db", clock=clock)
    watch = Watch(buf, clock=clock, lag_warn_s=60)
    _put(buf, 2)
    with caplog.at_level(logging.WARNING, logger="edgegw.watch"):
        clock.advance(59 * S)
        watch.check()
        assert not _lines(caplog, "uplink_lag")
        clock.advance(2 * S)
        watch.check()
        assert watch.facts()["uplink_lag"]
        clock.advance(60 * S)
        watch.check()  # still above, a minute later
        tx = buf.begin(10)

        buf.end(tx, [Outcome.DELIVERED] * len(tx.ids))
        watch.check()
    lines = _lines(caplog, "uplink_lag")
    assert [r.__dict__["phase"] for r in lines] == ["start", "repeat", "stop"]
    assert lines[0].__dict__["lag_s"] == 61.0
    assert "2 batches (20 points) wait" in lines[0].getMessage()
    buf.close()


def test_poll_deadlines_missed_by_more_than_a_share_of_devices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(WALL)
    buf = SqliteBuffer(tmp_path / "b.db", clock=clock)
    misses = [0] * 20
    watch = Watch(buf, clock=clock, deadline_misses=lambda: misses, poll_miss_share=0.1)
    with caplog.at_level(logging.WARNING, logger="edgegw.watch"):
        misses[0] += 5
        misses[1] += 1  # 2 of 20 = 10 %: not more than the share
        clock.advance(10 * S)
        watch.check()
        assert not _lines(caplog, "poll_behind")
        for i in range(5):
            misses[i] += 2
        clock.advance(10 * S)
        watch.check()
        clock.advance(10 * S)
        watch.check()  # a clean window: stopped
    lines = _lines(caplog, "poll_behind")
    assert [r.__dict__["phase"] for r in lines] == ["start", "stop"]
    assert lines[0].__dict__["devices_late"] == 5
    assert "5 of 20 devices (25 %" in lines[0].getMessage()
    buf.close()


def test_event_loop_blocked_longer_than_the_bound(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(WALL)
    buf = SqliteBuffer(tmp_path / "b.db", clock=clock)
    watch = Watch(buf, clock=clock, loop_block_s=0.5)
    with caplog.at_level(logging.WARNING, logger="edgegw.watch"):
        watch.loop_late(400_000_000)
        watch.check()
        assert not _lines(caplog, "loop_blocked")
        watch.loop_late(1_200_000_000)
        watch.check()
        clock.advance(61 * S)
        watch.check()  # a minute without: stopped
    lines = _lines(caplog, "loop_blocked")
    assert [r.__dict__["phase"] for r in lines] == ["start", "stop"]
    assert "worst 1.200 s" in lines[0].getMessage()
    buf.close()


def test_the_conditions_reach_the_metrics(tmp_path: Path) -> None:
    """The same facts as the log lines, on /metrics (the collector of gateway.metrics, scraped)."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest

    from gateway.metrics import GatewayCollector

    clock = ManualClock(WALL)
    buf = _open(tmp_path, "drop_oldest", clock)
    watch = Watch(buf, clock=clock)
    collector = GatewayCollector()

    def scrape() -> dict[str, float]:
        registry = CollectorRegistry()

        class One:
            def collect(self):  # type: ignore[no-untyped-def]
                return collector._overload(SimpleNamespace(watch=watch))  # type: ignore[arg-type]

        registry.register(One())
        out = {}
        for line in generate_latest(registry).decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    _put(buf, 5)
    watch.check()
    before = scrape()
    assert before['edgegw_overload_active{condition="buffer_drop_oldest"}'] == 0
    assert before["edgegw_buffer_fill_ratio"] == 0.5
    _put(buf, 8)  # past the bound: oldest dropped
    watch.check()
    during = scrape()
    assert during['edgegw_overload_active{condition="buffer_drop_oldest"}'] == 1
    assert during["edgegw_buffer_fill_ratio"] == 1.0
    buf.close()


def test_alarm_buffer_drops_are_said_with_its_own_counters(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(WALL)
    buf = _open(tmp_path, "drop_oldest", clock)
    alarms = SqliteBuffer(tmp_path / "alarms.db", max_bytes=5 * len(PAYLOAD), when_full="drop_newest", clock=clock,
                          durability="fsync")
    watch = Watch(buf, alarm_buffer=alarms, clock=clock)
    with caplog.at_level(logging.INFO, logger="edgegw.watch"):
        _put(alarms, 8)  # room for five: three turned away
        watch.check()
        clock.advance(10 * S)
        watch.check()
    lines = _lines(caplog, "alarm_buffer_drop_newest")
    assert [r.__dict__["phase"] for r in lines] == ["start", "stop"]
    assert lines[0].getMessage().startswith("Alarm buffer full: started turning new batches away")
    c = alarms.counters()
    assert c["dropped_newest_batches"] == 3
    assert sum(r.__dict__["points"] for r in lines) == c["dropped_newest_points"] == 3 * NPOINTS
    # the telemetry buffer dropped nothing and said nothing
    assert not _lines(caplog, "buffer_drop_newest") and not _lines(caplog, "buffer_drop_oldest")
    assert "alarm_buffer_drop_newest" in watch.conditions()
    buf.close()
    alarms.close()


def test_a_disk_smaller_than_max_bytes_is_named_before_and_in_the_drops(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """max_bytes larger than the filesystem holds (a common sizing mistake): the watch says at once
    that the disk bounds the buffer, and the drop lines name the disk as the bound."""
    clock = ManualClock(WALL)
    buf = SqliteBuffer(small_fs / "b.db", max_bytes=1 << 30, when_full="drop_oldest", clock=clock,
                       durability="fsync", disk_reserve_bytes=1 << 20)
    watch = Watch(buf, clock=clock)
    with caplog.at_level(logging.INFO, logger="edgegw.watch"):
        watch.check()
        bound = _lines(caplog, "buffer_disk_bound")
        assert [r.__dict__["phase"] for r in bound] == ["start"]
        assert "Buffer bound by the disk, not by max_bytes" in bound[0].getMessage()
        assert watch.facts().get("buffer_disk_bound") is True
        payload = b"y" * 8192
        for _ in range(600):  # ~5 MB offered to a 3 MiB filesystem
            buf.put(payload, NPOINTS)
        watch.check()
    drops = _lines(caplog, "buffer_drop_oldest")
    assert drops and "bound the disk" in drops[0].getMessage()
    assert drops[0].__dict__["points"] == buf.counters()["dropped_oldest_points"] > 0
    buf.close()
