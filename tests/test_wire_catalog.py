"""Wire format v2 end to end: the retained point catalog on real mosquitto, ingest and InfluxDB 1.x.

The ingest recovers the catalog by itself: restarted with a cleared state it gets the retained
catalog again; a batch that arrives before its catalog is held (not acknowledged) until it comes;
after a config change the backlog of the old catalog and the live data of the new one both land
on the right series.  The firmware stub is the oracle (``tests.test_e2e.check_rows``): a value
under the wrong label fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from pathlib import Path

import aiomqtt
import pytest

from gateway.app import Gateway
from gateway.catalog import build_catalog
from gateway.codec import CatalogCache, Encoder, decode
from gateway.config import Config, parse
from gateway.core.point import Quality, SampleBatch
from gateway.deadletter import DeadLetterStore
from gateway.deadletter_admin import replay
from gateway.ingest import Ingest
from hil.modbus_server import SimulatedPlc
from hil.services import Influx1, Mosquitto
from tests.conftest import eventually
from tests.test_e2e import check_rows, config_dict, running, step

pytestmark = pytest.mark.integration


def _rows(influx1: Influx1, db: str) -> list[dict[str, object]]:
    res = influx1.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0].get("series")  # type: ignore[index]
    if not series:
        return []
    cols = series[0]["columns"]
    return [{**r, "ts": r["time"]} for r in (dict(zip(cols, v, strict=True)) for v in series[0]["values"])]


async def test_ingest_restarted_with_cleared_state_gets_the_catalog_again(
    tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1
) -> None:
    db = "wire_restart"
    influx1.create_database(db)
    async with SimulatedPlc(tick_s=0, seed=3) as plc:
        cfg = parse(config_dict(plc.port, mosquitto.port, tmp_path, {"api": "v1", "url": influx1.url, "database": db},
                                "restart", "wire-restart"))
        assert cfg.ingest is not None and cfg.uplink is not None and cfg.uplink.wire_format == 2
        gw = Gateway(cfg)
        first = Ingest(cfg.ingest)
        async with running(gw.run()) as gw_tasks:
            async with running(first.run()):
                await asyncio.wait_for(first.subscribed.wait(), 10)
                await step(gw, plc, range(3))
                await eventually(lambda: first.stats.written_points > 0, what="the first ingest to write")
            assert first.stats.catalogs >= 1
            # a new ingest process: nothing of the first one's state, while the gateway keeps sending
            second = Ingest(cfg.ingest)
            async with running(second.run()):
                await asyncio.wait_for(second.subscribed.wait(), 10)
                await step(gw, plc, range(3, 6))
                gw_tasks[0].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gw_tasks[0]
                accepted = gw.buffer_counters["accepted_points"]
                await eventually(lambda: first.stats.written_points + second.stats.written_points >= accepted,
                                 what="every accepted point written")
    assert second.stats.catalogs >= 1 and second.stats.catalog_missing == 0
    assert first.stats.undecodable == second.stats.undecodable == 0
    rows = _rows(influx1, db)
    assert check_rows(rows, plc.stub, ticks=5) >= 6 * 6
    assert len({(r["point"], r["ts"]) for r in rows}) == accepted  # nothing lost (a redelivery overwrites)


async def test_config_change_under_load_backlog_and_live_keep_their_labels(
    tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1
) -> None:
    """Config A runs with no ingest (every batch stays buffered: PUBACK 0x10); then config B, whose
    points are in the reverse order (every index changes), runs on the same buffer and the ingest
    joins with an empty state while B sends: the backlog decodes with catalog A (archived and
    published again by B), the live data with catalog B, every value under its own point."""
    db = "wire_config_change"
    influx1.create_database(db)
    async with SimulatedPlc(tick_s=0, seed=5) as plc:
        d = config_dict(plc.port, mosquitto.port, tmp_path, {"api": "v1", "url": influx1.url, "database": db},
                        "change", "wire-change")
        cfg_a = parse(d)
        d["devices"][0]["points"] = list(reversed(copy.deepcopy(d["devices"][0]["points"])))
        cfg_b = parse(d)
        assert cfg_b.ingest is not None
        gw_a = Gateway(cfg_a)
        async with running(gw_a.run()):
            await step(gw_a, plc, range(3))
        backlog = gw_a.buffer_counters["accepted_points"]
        assert backlog > 0
        gw_b = Gateway(cfg_b)
        assert gw_b.encoder.catalog_id != gw_a.encoder.catalog_id
        ingest = Ingest(cfg_b.ingest)
        async with running(gw_b.run()) as gw_tasks:
            await step(gw_b, plc, range(3, 5))
            async with running(ingest.run()):
                await asyncio.wait_for(ingest.subscribed.wait(), 10)
                await step(gw_b, plc, range(5, 8))
                gw_tasks[0].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gw_tasks[0]
                accepted = gw_b.buffer_counters["accepted_points"]  # the buffer's counters: A's and B's
                await eventually(lambda: ingest.stats.written_points >= accepted, what="every accepted point written")
    assert accepted > backlog
    assert ingest.stats.undecodable == 0 and ingest.stats.catalog_missing == 0
    assert ingest.stats.catalogs >= 2  # A (archived, published again for the backlog) and B
    rows = _rows(influx1, db)
    assert check_rows(rows, plc.stub, ticks=7) >= 8 * 6
    assert len({(r["point"], r["ts"]) for r in rows}) == accepted


def _batch(cfg: Config, prefix: str) -> tuple[Encoder, SampleBatch, str]:
    """A batch of every point of ``cfg``'s catalog, as a v2 gateway encodes it."""
    enc = Encoder(build_catalog(cfg), compression="zstd", version=2)
    now = time.time_ns()
    samples: SampleBatch = [(i, now + i, float(i) + 0.5, Quality.GOOD, None) for i in range(len(enc.catalog.points))]
    return enc, samples, f"{prefix}/{enc.catalog.site}/{enc.catalog.gateway_id}"


@pytest.mark.parametrize("catalog_comes", [True, False])
async def test_a_batch_before_its_catalog_waits_for_it(
    tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1, catalog_comes: bool
) -> None:
    """A v2 batch whose catalog the ingest has not seen is held, unacknowledged, while the ingest
    asks the broker again; it is written once the catalog arrives, and dead-lettered (payload kept,
    nothing lost) if it does not arrive within ``catalog_wait_s``."""
    db = f"wire_wait_{catalog_comes}"
    influx1.create_database(db)
    prefix = f"wire-wait-{catalog_comes}"
    d = config_dict(1, mosquitto.port, tmp_path, {"api": "v1", "url": influx1.url, "database": db}, "wait", prefix)
    d["ingest"]["catalog_wait_s"] = 30 if catalog_comes else 1.5
    cfg = parse(d)
    assert cfg.ingest is not None
    enc, samples, base = _batch(cfg, prefix)
    ingest = Ingest(cfg.ingest)
    async with running(ingest.run()), aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"pub-{prefix}",
                                                     protocol=aiomqtt.ProtocolVersion.V5) as pub:
        await asyncio.wait_for(ingest.subscribed.wait(), 10)
        await pub.publish(f"{base}/data", enc.encode(samples, 1, time.time_ns()), qos=1)
        await eventually(lambda: ingest.stats.catalog_waits >= 1, what="the batch to wait for its catalog")
        if catalog_comes:
            await asyncio.sleep(1.0)  # it waits: nothing written, nothing dead-lettered
            assert ingest.stats.written_points == 0 and ingest.stats.dead_letter_messages == 0
            await pub.publish(f"{base}/catalog/{enc.catalog_id}", enc.catalog_message, qos=1, retain=True)
            await eventually(lambda: ingest.stats.written_points >= len(samples), what="the held batch written")
            assert ingest.stats.catalog_missing == 0
        else:
            await eventually(lambda: ingest.stats.dead_letter_messages >= 1, what="the batch dead-lettered")
            assert ingest.stats.catalog_missing == 1 and ingest.stats.written_points == 0
            await pub.publish(f"{base}/catalog/{enc.catalog_id}", enc.catalog_message, qos=1, retain=True)
    if not catalog_comes:
        store = DeadLetterStore(cfg.ingest.dead_letter_path)
        (letter,) = list(store.entries())
        assert "catalog" in letter.reason
        known = CatalogCache()
        known.learn(enc.catalog_message)
        assert [p.value for p in decode(letter.payload, known).points] == [s[2] for s in samples]  # nothing lost
        # the operator's replay fetches the retained catalogs from the broker and writes it
        report = await replay(cfg.ingest, store, None)
        assert [(o.written, o.ok) for o in report.outcomes] == [(len(samples), True)] and store.count == 0
        store.close()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"clear-{prefix}",
                              protocol=aiomqtt.ProtocolVersion.V5) as pub:
        await pub.publish(f"{base}/catalog/{enc.catalog_id}", b"", qos=1, retain=True)  # clear the retained one
    assert len(_rows(influx1, db)) == len(samples)


@pytest.mark.parametrize("archive_writable", [True, False], ids=["archived", "archive-unwritable"])
async def test_after_a_reload_a_new_connection_publishes_every_catalog_of_the_run_again(
    tmp_path: Path, mosquitto: Mosquitto, archive_writable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that changes the catalog (every index): batches of the old catalog may still be
    buffered, so each connection publishes both catalogs, retained, byte for byte.  The running
    gateway keeps the catalogs of its run in the archive beside the buffer, not in memory (about
    8 B a point each, #17), and reads them back for a new connection; where the archive cannot be
    written, the message stays in memory and is published all the same.  (A connection made with
    batches buffered also publishes every archived catalog: that scan is turned off here, so only
    the run's own list can bring the old catalog back.)"""
    import gateway.app

    monkeypatch.setattr(gateway.app, "messages", lambda folder: [])
    prefix = f"wire-reload-{archive_writable}"
    async with SimulatedPlc(tick_s=0, seed=5) as plc:
        d = config_dict(plc.port, mosquitto.port, tmp_path, {"api": "v1", "url": "http://127.0.0.1:1", "database": "x"},
                        f"reload-{archive_writable}", prefix)
        cfg_a = parse(d)
        d["devices"][0]["points"] = list(reversed(copy.deepcopy(d["devices"][0]["points"])))
        cfg_b = parse(d)
        if not archive_writable:
            (tmp_path / "buffer-catalogs").write_text("not a folder")
        gw = Gateway(cfg_a)
        id_a, message_a = gw.encoder.catalog_id, gw.encoder.catalog_message
        base = f"{prefix}/{gw.catalog.site}/{gw.catalog.gateway_id}"
        async with running(gw.run()):
            await step(gw, plc, range(2))
            await gw.reload(cfg_b)
            id_b, message_b = gw.encoder.catalog_id, gw.encoder.catalog_message
            assert id_b != id_a
            kept = {cid: m is not None for cid, m in gw.catalogs_used.items()}
            assert kept == {id_a: not archive_writable, id_b: not archive_writable}
            await step(gw, plc, range(2, 4))
            client_id = cfg_a.uplink.client_id if cfg_a.uplink else ""
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"clear-{prefix}",
                                      protocol=aiomqtt.ProtocolVersion.V5) as pub:
                for cid in (id_a, id_b):  # the broker forgets both: only a new connection brings them back
                    await pub.publish(f"{base}/catalog/{cid}", b"", qos=1, retain=True)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=client_id,
                                      protocol=aiomqtt.ProtocolVersion.V5):
                pass  # takes the gateway's session over: the gateway connects again
            retained: dict[str, bytes] = {}

            async def fetch() -> bool:
                async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"read-{prefix}",
                                          protocol=aiomqtt.ProtocolVersion.V5) as sub:
                    await sub.subscribe(f"{base}/catalog/+", qos=1)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            async for msg in sub.messages:
                                retained[str(msg.topic).rsplit("/", 1)[1]] = bytes(msg.payload)
                return len(retained) == 2

            for _ in range(60):
                if await fetch():
                    break
                await asyncio.sleep(0.5)
            assert retained == {id_a: message_a, id_b: message_b}
            async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier=f"clear-{prefix}",
                                      protocol=aiomqtt.ProtocolVersion.V5) as pub:
                for cid in (id_a, id_b):
                    await pub.publish(f"{base}/catalog/{cid}", b"", qos=1, retain=True)
