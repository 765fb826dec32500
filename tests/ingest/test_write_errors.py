"""Write errors, one test per class, against real InfluxDB 1.x servers.

- the data's fault (400 partial write: type conflict, retention) -> only the refused points are
  dead-lettered, exactly as many as InfluxDB refused, the rest written;
- the store's fault (404 database missing, 401 credentials, 500 unknown retention policy, server
  down) -> nothing settles (so nothing would be acknowledged), the error is logged at once, and
  everything is written once the cause is fixed;
- too large (413 or a reset on a large body) -> the body is split; a row too large on its own is
  dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.codec import decode, points_payload
from gateway.config import IngestSection
from gateway.core.point import Point, Quality
from gateway.deadletter import DeadLetterStore
from gateway.ingest import IngestCore
from hil.services import Influx1, VictoriaMetrics
from tests.conftest import _start, eventually

SITE, GW = "site-w", "gw-w"
TOPIC = f"edgegw/{SITE}/{GW}/data"


def _points(n: int, base: int | None = None, value: Any = 1.5) -> list[Point]:
    base = base if base is not None else time.time_ns() - 10**9
    return [Point(f"dev.p{i}", f"88.608.5288/W.{i}", base + i, value, Quality.GOOD, None, "", "dev", "",
                  ()) for i in range(n)]


def _core(tmp: Path, influx: dict[str, Any], **ingest: Any) -> IngestCore:
    cfg = IngestSection.model_validate({"influx": {"api": "v1", **influx}, **ingest})
    return IngestCore(cfg, dead_letters=DeadLetterStore(tmp / "dl.db"))


def _count(influx: Influx1, db: str, measurement: str = "telemetry") -> int:
    res = influx.query(f'SELECT count(quality) FROM "{measurement}"', db=db)
    series = res["results"][0].get("series")  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


@contextlib.contextmanager
def own_influx(**kw: Any) -> Iterator[Influx1]:
    d = Path(tempfile.mkdtemp(prefix="edgegw-influx-"))
    srv = Influx1(workdir=d, **kw)
    _start(srv)
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.integration
async def test_type_conflict_dead_letters_only_the_refused_points(influx1: Influx1, tmp_path: Path) -> None:
    db = "werr_conflict"
    influx1.create_database(db)
    # value_bool already stored as a float: a boolean point is refused by InfluxDB (partial write)
    with contextlib.closing(_core(tmp_path, {"url": influx1.url, "database": db})) as core:
        good = _points(9)
        # (field types are fixed per shard: the seed goes into the same one)
        await core.writer.write(f"telemetry,point=seed value_bool=1.0,quality=0i {good[0].ts_ns - 1000}\n".encode())
        flip = Point("dev.flag", "88.608.5288/W.flag", good[0].ts_ns + 100, True)
        prep = core.prepare(TOPIC, points_payload(GW, SITE, [*good[:4], flip, *good[4:]]))
        await core.settle([prep])
        assert _count(influx1, db) == 1 + 9  # the seed row and every good point
        (letter,) = core.dead_letters.entries()
        assert letter.kind == "points" and letter.points == 1 and "field type conflict" in letter.reason
        assert [p.key for p in decode(letter.payload).points] == ["dev.flag"]
        assert core.stats.written_points == 9 and core.stats.dead_letter_points == 1


@pytest.mark.integration
async def test_points_beyond_retention_are_isolated_by_splitting(influx1: Influx1, tmp_path: Path) -> None:
    db = "werr_retention"
    influx1.create_database(db)
    influx1.execute(f'CREATE RETENTION POLICY "short" ON "{db}" DURATION 1h REPLICATION 1 DEFAULT')
    old = _points(3, base=time.time_ns() - 3 * 86_400 * 10**9)
    new = _points(20)
    mixed = [new[0], old[0], *new[1:10], old[1], *new[10:], old[2]]
    mixed = [Point(f"dev.m{i}", p.code, p.ts_ns, p.value) for i, p in enumerate(mixed)]
    with contextlib.closing(_core(tmp_path, {"url": influx1.url, "database": db})) as core:
        await core.settle([core.prepare(TOPIC, points_payload(GW, SITE, mixed))])
        assert _count(influx1, db) == 20
        refused = {p.key for d in core.dead_letters.entries() for p in decode(d.payload).points}
        assert refused == {"dev.m1", "dev.m11", "dev.m22"}
        assert all("beyond retention" in d.reason for d in core.dead_letters.entries())
        assert core.stats.write_splits > 0


async def _held_until(core: IngestCore, fix: Any, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """settle() must not return while the store refuses; after ``fix()`` it returns."""
    prep = core.prepare(TOPIC, points_payload(GW, SITE, _points(5)))
    task = asyncio.create_task(core.settle([prep]))
    await eventually(lambda: core.stats.store_errors[kind] >= 2, what=f"retries of a {kind} failure")
    assert not task.done()  # nothing settled: nothing would be acknowledged
    assert any("InfluxDB cannot take writes" in r.message and r.levelname == "ERROR" for r in caplog.records)
    fix()
    await asyncio.wait_for(task, 20)
    assert core.stats.written_points == 5 and core.dead_letters.count == 0


@pytest.mark.integration
async def test_missing_database_is_retried_not_dropped(influx1: Influx1, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    db = "werr_created_later"
    with contextlib.closing(_core(tmp_path, {"url": influx1.url, "database": db})) as core:
        await _held_until(core, lambda: influx1.create_database(db), "not_found", caplog)
    assert _count(influx1, db) == 5


@pytest.mark.integration
async def test_unknown_retention_policy_500_is_retried(influx1: Influx1, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    db = "werr_rp"
    influx1.create_database(db)
    with contextlib.closing(_core(tmp_path, {"url": influx1.url, "database": db, "retention_policy": "later"})) as core:
        await _held_until(core, lambda: influx1.execute(
            f'CREATE RETENTION POLICY "later" ON "{db}" DURATION 1d REPLICATION 1'), "server", caplog)


@pytest.mark.integration
async def test_credentials_401_retried_until_the_user_exists_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cret-Writer-pw"
    monkeypatch.setenv("TEST_INFLUX_PW", secret)
    with own_influx(http_extra="  auth-enabled = true") as srv:
        srv.execute("CREATE USER admin WITH PASSWORD 'adminpw' WITH ALL PRIVILEGES")
        srv.execute('CREATE DATABASE "authdb"', auth=("admin", "adminpw"))
        influx = {"url": srv.url, "database": "authdb", "username": "writer", "password_env": "TEST_INFLUX_PW"}
        with contextlib.closing(_core(tmp_path, influx)) as core:
            def fix() -> None:
                srv.execute(f"CREATE USER writer WITH PASSWORD '{secret}'", auth=("admin", "adminpw"))
                srv.execute('GRANT WRITE ON "authdb" TO writer', auth=("admin", "adminpw"))

            await _held_until(core, fix, "auth", caplog)
    assert secret not in caplog.text


@pytest.mark.integration
async def test_body_too_large_is_split_and_a_lone_giant_row_dead_lettered(tmp_path: Path) -> None:
    with own_influx(http_extra="  max-body-size = 1000000") as srv:
        srv.create_database("big")
        # rows of ~100 kB: bodies of up to 8 MB go out, InfluxDB takes at most 1 MB
        pts = [Point(f"dev.s{i}", "88.608.5288/B", time.time_ns() - 10**9 + i, f"{i:06d}" + "x" * 100_000)
               for i in range(40)]
        giant = Point("dev.giant", "88.608.5288/B", time.time_ns() - 10**9 + 99, "y" * 1_500_000)
        with contextlib.closing(_core(tmp_path, {"url": srv.url, "database": "big"})) as core:
            prep = core.prepare(TOPIC, points_payload(GW, SITE, [*pts[:20], giant, *pts[20:]]))
            await asyncio.wait_for(core.settle([prep]), 60)
            assert core.stats.written_points == 40 and core.stats.write_splits > 0
            (letter,) = core.dead_letters.entries()
            assert [p.key for p in decode(letter.payload).points] == ["dev.giant"]
            assert "too large" in letter.reason
        assert _count(srv, "big") == 40


@pytest.mark.integration
async def test_victoriametrics_down_is_retried_through_the_v2_writer(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    d = Path(tempfile.mkdtemp(prefix="edgegw-vm-"))
    vm = VictoriaMetrics(workdir=d)
    _start(vm)
    try:
        core = IngestCore(IngestSection.model_validate({
            "influx": {"api": "v2", "url": vm.url, "dialect": "victoriametrics"}}),
            dead_letters=DeadLetterStore(tmp_path / "dl.db"))
        with contextlib.closing(core):
            vm.stop()
            await _held_until(core, vm.start, "network", caplog)

            def stored() -> int:
                series = vm.export('{__name__="telemetry_value",site="site-w"}')
                return sum(len(s["values"]) for s in series)  # type: ignore[arg-type,misc]

            await eventually(lambda: stored() == 5, timeout=15, interval=0.3, what="5 rows in VictoriaMetrics")
    finally:
        vm.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.integration
async def test_v1_writer_keeps_its_connection_and_outlives_a_store_restart(tmp_path: Path) -> None:
    """The v1 writer posts on kept-alive connections (one per write in flight); when the store restarts
    between two writes the dead connections are replaced silently: no retry, no outage, every row written."""
    with own_influx() as srv:
        srv.create_database("keep")
        with contextlib.closing(_core(tmp_path, {"url": srv.url, "database": "keep"})) as core:
            writer = core.writer
            base = time.time_ns() - 10**9
            await core.settle([core.prepare(TOPIC, points_payload(GW, SITE, _points(5, base)))])
            first = list(writer._idle)  # type: ignore[attr-defined]
            assert len(first) == 1
            await core.settle([core.prepare(TOPIC, points_payload(GW, SITE, _points(5, base + 100)))])
            assert writer._idle == first  # type: ignore[attr-defined]  # the same connection, kept alive
            # while a write holds that connection (the ingest has writes_in_flight), another opens a second
            busy, reused = writer._take()  # type: ignore[attr-defined]
            assert reused and writer._idle == []  # type: ignore[attr-defined]
            await core.settle([core.prepare(TOPIC, points_payload(GW, SITE, _points(5, base + 300)))])
            writer._idle.append(busy)  # type: ignore[attr-defined]  # the first write ends: both kept
            assert len(set(map(id, writer._idle))) == 2  # type: ignore[attr-defined]
            srv.stop()
            srv.start()  # returns once it answers on the same port
            await core.settle([core.prepare(TOPIC, points_payload(GW, SITE, _points(5, base + 200)))])
            assert core.stats.write_retries == 0  # both stale connections replaced, none judged an outage
            assert _count(srv, "keep") == 20
