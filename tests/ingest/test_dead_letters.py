"""``edgegw ingest dead-letters list | export | replay | delete`` against a real InfluxDB 1.x.

Two dead letters are made by the real ingest core: a batch whose payload claims another site than
its topic (forged origin: a whole message) and a point older than the database's retention policy
(refused by InfluxDB in a partial write: only that point).  The operator lists and exports them,
replays while the cause is still there (kept, exit 1), fixes the retention policy, replays again
(written, deleted) and deletes the forged one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.codec import decode, points_payload
from gateway.config import IngestSection, load
from gateway.core.point import Point, Quality, now_ns
from gateway.deadletter import DeadLetter, DeadLetterFullError, DeadLetterStore
from gateway.ingest import IngestCore
from hil.services import Influx1, free_port

__all__: list[str] = []

TOPIC = "edgegw/site-a/gw-a/data"
HOUR_NS = 3600 * 10**9


def influx_q(influx: Influx1, q: str) -> None:
    body = urllib.parse.urlencode({"q": q}).encode()
    with urllib.request.urlopen(f"{influx.url}/query", data=body, timeout=10) as r:
        r.read()


def rows(influx: Influx1, db: str) -> list[dict[str, Any]]:
    res: Any = influx.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0].get("series", [])
    if not series:
        return []
    cols = series[0]["columns"]
    return [dict(zip(cols, v, strict=True)) for v in series[0]["values"]]


def write_config(tmp: Path, url: str, db: str) -> Path:
    path = tmp / "ingest.toml"
    path.write_text(
        "[ingest]\n"
        f"dead_letter_path = {json.dumps(str(tmp / 'dead-letters.db'))}\n"
        "[ingest.influx]\n"
        'api = "v1"\n'
        f"url = {json.dumps(url)}\n"
        f"database = {json.dumps(db)}\n"
    )
    return path


def point(key: str, ts_ns: int, value: float) -> Point:
    return Point(key, f"88.608.5288/{key}", ts_ns, value, Quality.GOOD, None, "%", "gas-sub-01", "dev-1",
                 (("asset", "face-T1"),))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def listing(capsys: pytest.CaptureFixture[str], cfg: Path) -> dict[str, Any]:
    code, out, _ = cli(capsys, "ingest", "dead-letters", "list", "-c", str(cfg), "--json")
    assert code == 0
    doc: dict[str, Any] = json.loads(out)
    return doc


def dead_letter_two(cfg: Path, now: int) -> tuple[bytes, bytes]:
    """Run the real ingest core on a forged batch and on a batch with one point beyond retention."""
    section = load(cfg).ingest
    assert isinstance(section, IngestSection)
    forged = points_payload("gw-a", "site-b", [point("ch4", now, 1.4)])
    mixed = points_payload("gw-a", "site-a", [point("ch4", now, 0.7), point("co", now - 3 * HOUR_NS, 12.0)])
    core = IngestCore(section)

    async def go() -> None:
        await core.settle([core.prepare(TOPIC, forged), core.prepare(TOPIC, mixed)])

    try:
        asyncio.run(go())
        assert core.stats.written_points == 1
        assert core.stats.dead_letter_messages == 1 and core.stats.dead_letter_points == 1
    finally:
        core.close()
    return forged, mixed


def test_list_export_replay_delete(influx1: Influx1, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = "dl_replay"
    influx_q(influx1, f'CREATE DATABASE "{db}" WITH DURATION 1h')
    cfg = write_config(tmp_path, influx1.url, db)
    now = now_ns()
    forged, _ = dead_letter_two(cfg, now)
    assert [r["point"] for r in rows(influx1, db)] == ["ch4"]

    # list: both entries with their reasons, and the totals
    doc = listing(capsys, cfg)
    assert doc["count"] == 2 and doc["points"] == 2
    by_kind = {e["kind"]: e for e in doc["entries"]}
    assert by_kind["message"]["reason"].startswith("forged origin")
    assert "'site-b'" in by_kind["message"]["reason"] and by_kind["message"]["topic"] == TOPIC
    assert "beyond retention policy" in by_kind["points"]["reason"] and by_kind["points"]["points"] == 1
    assert doc["bytes"] == sum(e["bytes"] for e in doc["entries"]) > 0
    code, out, err = cli(capsys, "ingest", "dead-letters", "list", "-c", str(cfg))
    assert code == 0 and "forged origin" in out and "beyond retention policy" in out
    assert "2 dead letters (2 points)" in err

    # export: every field, the payload as base64, the decoded points
    out_file = tmp_path / "dead.jsonl"
    code, _, err = cli(capsys, "ingest", "dead-letters", "export", "-c", str(cfg), "--out", str(out_file))
    assert code == 0 and "exported 2 dead letters" in err
    recs = {r["kind"]: r for r in map(json.loads, out_file.read_text().splitlines())}
    assert base64.b64decode(recs["message"]["payload_base64"]) == forged
    assert recs["message"]["decoded"]["site"] == "site-b"
    assert recs["message"]["reason"] == by_kind["message"]["reason"]
    old = recs["points"]["decoded"]["points"]
    assert [(p["key"], p["value"], p["ts_ns"]) for p in old] == [("co", 12.0, now - 3 * HOUR_NS)]
    assert decode(base64.b64decode(recs["points"]["payload_base64"])).site == "site-a"
    code, out, _ = cli(capsys, "ingest", "dead-letters", "export", "-c", str(cfg), "--id", str(by_kind["points"]["id"]))
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [by_kind["points"]["id"]]

    # replay while the causes are still there: both kept (as new entries), nothing more written, exit 1
    code, out, _ = cli(capsys, "ingest", "dead-letters", "replay", "-c", str(cfg), "--all")
    assert code == 1 and out.count("\trefused\t") == 2
    doc = listing(capsys, cfg)
    assert doc["count"] == 2
    assert {e["kind"] for e in doc["entries"]} == {"message", "points"}
    assert not {e["id"] for e in doc["entries"]} & {by_kind["message"]["id"], by_kind["points"]["id"]}
    assert len(rows(influx1, db)) == 1
    by_kind = {e["kind"]: e for e in doc["entries"]}
    assert "beyond retention policy" in by_kind["points"]["reason"]

    # fix the cause, replay that entry: written with the topic's identity, entry deleted
    influx_q(influx1, f'ALTER RETENTION POLICY "autogen" ON "{db}" DURATION INF')
    code, out, _ = cli(capsys, "ingest", "dead-letters", "replay", "-c", str(cfg), "--id", str(by_kind["points"]["id"]))
    assert code == 0, out
    assert "\twritten\t" in out
    written = {r["point"]: r for r in rows(influx1, db)}
    assert set(written) == {"ch4", "co"}
    assert written["co"]["value"] == 12.0 and written["co"]["time"] == now - 3 * HOUR_NS
    assert (written["co"]["site"], written["co"]["gateway"]) == ("site-a", "gw-a")
    doc = listing(capsys, cfg)
    assert [e["kind"] for e in doc["entries"]] == ["message"]

    # the forged message can never be written: export it (done above), then delete it
    code, _, _ = cli(capsys, "ingest", "dead-letters", "delete", "-c", str(cfg), "--id", str(by_kind["message"]["id"]))
    assert code == 0
    assert listing(capsys, cfg)["count"] == 0
    assert len(rows(influx1, db)) == 2  # the forged point never reached InfluxDB


def test_replay_gives_up_when_influx_is_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A store that cannot take writes is not the data's fault: the entry stays as it was, exit 1."""
    cfg = write_config(tmp_path, f"http://127.0.0.1:{free_port()}", "nowhere")
    section = load(cfg).ingest
    assert section is not None
    store = DeadLetterStore(section.dead_letter_path)
    payload = points_payload("gw-a", "site-a", [point("ch4", now_ns(), 1.0)])
    store.add([DeadLetter(TOPIC, "refused by InfluxDB: test", payload, "points", 1)])
    before = [(e.id, e.reason, e.payload) for e in store.entries()]
    store.close()
    code, _, err = cli(capsys, "ingest", "dead-letters", "replay", "-c", str(cfg), "--all", "--give-up-after", "0")
    assert code == 1 and "gave up" in err
    store = DeadLetterStore(section.dead_letter_path)
    assert [(e.id, e.reason, e.payload) for e in store.entries()] == before
    store.close()


def test_list_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9", "x")
    doc = listing(capsys, cfg)
    assert doc["count"] == 0 and doc["entries"] == []
    assert not (tmp_path / "dead-letters.db").exists()  # listing does not create the store
    code, _, err = cli(capsys, "ingest", "dead-letters", "replay", "-c", str(cfg), "--all")
    assert code == 2 and "no dead-letter store" in err
    # -c may also come before the sub-command
    code, out, _ = cli(capsys, "ingest", "-c", str(cfg), "dead-letters", "list", "--json")
    assert code == 0 and json.loads(out)["count"] == 0


def test_export_alarm_and_undecodable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An alarm entry exports its decoded event, an undecodable one the reason it does not decode;
    hostile text survives the JSON lines as it was."""
    cfg = write_config(tmp_path, "http://127.0.0.1:9", "x")
    section = load(cfg).ingest
    assert section is not None
    event = {"v": 1, "kind": "alarm", "gw": "gw-a", "site": "site-b", "point": "p\ud800", "code": "c", "device": "d",
             "device_code": "dc", "class": "gas", "data_grade": "", "data_domain": "", "unit": "%", "ts_ns": 5,
             "level": "hh", "previous": 'x"\nl', "active": True, "value": 1.5, "threshold": 1.0, "tags": {}}
    alarm_payload = json.dumps(event).encode()
    store = DeadLetterStore(section.dead_letter_path)
    store.add([DeadLetter("edgegw/site-a/gw-a/alarm", "forged origin: test", alarm_payload, "message", 1),
               DeadLetter(TOPIC, "undecodable: test", b"\xc1garbage", "message", 0)])
    store.close()
    code, out, _ = cli(capsys, "ingest", "dead-letters", "export", "-c", str(cfg))
    assert code == 0
    alarm_rec, junk = (json.loads(line) for line in out.splitlines())
    assert alarm_rec["event"] == event and base64.b64decode(alarm_rec["payload_base64"]) == alarm_payload
    assert "decoded" not in junk and "event" not in junk and junk["decode_error"].startswith("not a msgpack batch")
    assert base64.b64decode(junk["payload_base64"]) == b"\xc1garbage"
    # ids that are not there: said, exit 1
    code, out, err = cli(capsys, "ingest", "dead-letters", "export", "-c", str(cfg), "--id", "1", "99")
    assert code == 1 and len(out.splitlines()) == 1 and "1 of the ids" in err


def test_replacement_makes_room_in_a_full_store(tmp_path: Path) -> None:
    """A replay's new entry replaces the old one: the bytes it frees count against the bound."""
    store = DeadLetterStore(tmp_path / "dl.db", max_bytes=100)
    store.add([DeadLetter(TOPIC, "first", b"x" * 80)])
    (first,) = store.ids()
    with pytest.raises(DeadLetterFullError):
        store.add([DeadLetter(TOPIC, "second", b"y" * 80)])
    store.add([DeadLetter(TOPIC, "again", b"z" * 90)], replaces=[first])
    assert [(e.reason, e.payload) for e in store.entries()] == [("again", b"z" * 90)]
    assert store.bytes == 90 and store.count == 1
    store.close()


def test_a_full_store_sees_room_made_by_another_process(tmp_path: Path) -> None:
    """The ingest's store is full; an operator's delete (another connection) makes room: the
    ingest's next attempt succeeds (it would otherwise wait for ever)."""
    ingest_side = DeadLetterStore(tmp_path / "dl.db", max_bytes=100)
    ingest_side.add([DeadLetter(TOPIC, "first", b"x" * 80)])
    with pytest.raises(DeadLetterFullError):
        ingest_side.add([DeadLetter(TOPIC, "second", b"y" * 80)])
    operator = DeadLetterStore(tmp_path / "dl.db", max_bytes=100)
    operator.delete(operator.ids())
    operator.close()
    ingest_side.add([DeadLetter(TOPIC, "second", b"y" * 80)])
    assert [e.reason for e in ingest_side.entries()] == ["second"]
    ingest_side.close()


def test_list_keeps_one_entry_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9", "x")
    section = load(cfg).ingest
    assert section is not None
    store = DeadLetterStore(section.dead_letter_path)
    store.add([DeadLetter(TOPIC, "refused by InfluxDB: HTTP 400: unable to parse 'a\tb\nc': bad", b"p", "points", 1)])
    store.close()
    code, out, _ = cli(capsys, "ingest", "dead-letters", "list", "-c", str(cfg))
    assert code == 0 and out.count("\n") == 1 and out.count("\t") == 5
    assert out.rstrip("\n").split("\t")[5] == "refused by InfluxDB: HTTP 400: unable to parse 'a\\tb\\nc': bad"


def test_ingest_without_sub_command_still_runs_the_ingest() -> None:
    from gateway.cli import build_parser, cmd_dead_letters_list, cmd_ingest

    args = build_parser().parse_args(["ingest", "-c", "central.toml"])
    assert args.func is cmd_ingest and args.config == "central.toml" and args.ingest_command is None
    args = build_parser().parse_args(["ingest", "dead-letters", "list", "-c", "central.toml"])
    assert args.func is cmd_dead_letters_list and args.config == "central.toml"
