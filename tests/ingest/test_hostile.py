"""The ingest never dies on data: hostile messages of every kind, interleaved with good ones, run
through the whole ingest path (decode -> line protocol -> the real v1 writer into a real InfluxDB
1.x -> dead-letter store).  Every point ends written exactly as sent, or dead-lettered with its
message or on its own; every good point is written; nothing else appears in the database."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.codec import decode, points_payload
from gateway.config import IngestSection
from gateway.core.errors import CodecError
from gateway.core.point import Point, Quality
from gateway.deadletter import DeadLetterStore
from gateway.ingest import IngestCore
from hil.services import Influx1

SITE, GW = "site-h", "gw-h"
TOPIC = f"edgegw/{SITE}/{GW}/data"
_counter = itertools.count()
POISONS = ["none", "huge_int", "surrogate_tag", "surrogate_value", "nan", "wrong_shape", "forged_site", "garbage",
           "ts_overflow", "control_chars", "giant_string", "deep_nesting", "alarm_huge", "alarm_injection",
           "bad_topic", "msgpack"]


def _good_points(n: int, base_ts: int) -> list[Point]:
    return [Point(f"dev.p{i}", f"88.608.5288/H.{i}", base_ts + i, float(i) + 0.5, Quality.GOOD, None, "ppm", "dev",
                  "88.608.5288/H", (("asset", "face 1"), ("site", SITE))) for i in range(n)]


def _message(poison: str, n: int) -> tuple[str, bytes, list[Point]]:
    """(topic, payload, the points it carries when decoded as meant)."""
    base = 1_764_000_000_000_000_000 + next(_counter) * 1000
    pts = _good_points(n, base)
    doc = json.loads(points_payload(GW, SITE, pts))
    topic = TOPIC
    if poison == "huge_int":
        doc["val"][0] = 10**401
    elif poison == "surrogate_tag":
        doc["cat"][0][7]["asset"] = "\ud800"
    elif poison == "surrogate_value":
        doc["val"][0] = "\udcb2\udcbb"
    elif poison == "nan":
        doc["val"][0] = math.nan
    elif poison == "wrong_shape":
        doc["i"] = {"a": 1}
    elif poison == "forged_site":
        doc["site"] = "site-other"
    elif poison == "garbage":
        return topic, b"\x00\xff" * 7 + b"{not json", pts
    elif poison == "ts_overflow":
        doc["ts"][0] = 2**63 + 5
    elif poison == "control_chars":
        doc["val"][0] = "a\x00b\x01\x1f\"\\\nc"
    elif poison == "giant_string":
        doc["val"][0] = "x" * 300_000
    elif poison == "deep_nesting":
        return topic, b"[" * 100_000 + b"]" * 100_000, pts
    elif poison in ("alarm_huge", "alarm_injection"):
        alarm = {"v": 1, "kind": "alarm", "gw": GW, "site": SITE, "point": "dev.p0", "code": "88.608.5288/H.0",
                 "device": "dev", "device_code": "88.608.5288/H", "class": "ch4", "data_grade": "general",
                 "data_domain": "production", "unit": "%", "ts_ns": base, "level": "high", "active": True,
                 "previous": 'x"\ntelemetry,site=site-b,point=dev.p0 value=0.0 1', "value": 1.2, "threshold": 1.0,
                 "tags": {}}
        if poison == "alarm_huge":
            alarm["value"] = 10**400
        return f"edgegw/{SITE}/{GW}/alarm", json.dumps(alarm).encode(), []
    elif poison == "bad_topic":
        topic = f"edgegw/{SITE}/{GW}/extra/data"
    elif poison == "msgpack":
        return topic, msgpack.packb(doc), pts
    payload = json.dumps(doc).encode()
    with contextlib.suppress(CodecError):  # the points as the poisoned message carries them
        pts = decode(payload).points
    return topic, payload, pts


def _rows(influx1: Influx1, db: str, measurement: str) -> dict[tuple[str, int], dict[str, Any]]:
    res = influx1.query(f'SELECT * FROM "{measurement}"', db=db)
    out = {}
    for s in res["results"][0].get("series", []):  # type: ignore[index]
        for v in s["values"]:
            r = dict(zip(s["columns"], v, strict=True))
            out[(r.get("point") or "", r["time"])] = r
    return out


@pytest.mark.integration
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.sampled_from(POISONS), st.integers(1, 4)), min_size=1, max_size=8),
       batch_points=st.sampled_from([1, 3, 1000]))
async def test_hostile_messages_never_stop_the_ingest(influx1: Influx1, tmp_path: Path,
                                                      plan: list[tuple[str, int]], batch_points: int) -> None:
    db = "hostile"
    influx1.create_database(db)
    n = next(_counter)
    measurement, alarms = f"t{n}", f"a{n}"
    cfg = IngestSection.model_validate({
        "influx": {"api": "v1", "url": influx1.url, "database": db, "measurement": measurement,
                   "alarm_measurement": alarms},
        "batch_max_points": batch_points,
    })
    dlq = DeadLetterStore(tmp_path / f"dl{n}.db")
    core = IngestCore(cfg, dead_letters=dlq)
    messages = [_message(poison, k) for poison, k in plan]
    prepared = [core.prepare(topic, payload) for topic, payload, _ in messages]
    await core.settle(prepared)

    rows = _rows(influx1, db, measurement)
    letters = list(dlq.entries())
    dead_points = {(p.key, p.ts_ns) for d in letters if d.kind == "points" for p in decode(d.payload).points}
    dead_messages = [d for d in letters if d.kind == "message"]
    sent = {(p.key, p.ts_ns): p for _, _, pts in messages for p in pts}
    whole = {poison for poison, _ in plan} & {"nan", "wrong_shape", "forged_site", "garbage", "deep_nesting",
                                               "bad_topic"}
    assert len(dead_messages) == sum(1 for poison, _ in plan if poison in whole or poison == "alarm_huge")
    # nothing forged: every row is a point that was sent, with the value sent, on the topic's identity
    for key, r in rows.items():
        assert key in sent, r
        p = sent[key]
        assert (r["site"], r["gateway"], r["code"]) == (SITE, GW, p.code)
        assert r.get("value") == p.value or r.get("value_str") == p.value, (r, p)
    # nothing lost: every point is written or dead-lettered, never both
    for (poison, _), (_, _, pts) in zip(plan, messages, strict=True):
        for i, p in enumerate(pts):
            key = (p.key, p.ts_ns)
            if poison in whole:
                assert key not in rows and key not in dead_points
            elif poison in ("none", "msgpack") or (i > 0 and poison != "surrogate_tag"):
                assert key in rows and key not in dead_points, (poison, key)
            else:
                assert (key in rows) != (key in dead_points), (poison, key)
    # the injection in an alarm's string field stays in that field
    alarm_rows = influx1.query(f'SELECT * FROM "{alarms}"', db=db)["results"][0].get("series", [])  # type: ignore[index]
    n_alarm_rows = sum(len(s["values"]) for s in alarm_rows)
    assert n_alarm_rows == sum(1 for poison, _ in plan if poison == "alarm_injection")
    for s in alarm_rows:
        prev = s["columns"].index("previous")
        assert all(v[prev].startswith('x"\ntelemetry,site=site-b') for v in s["values"])
    assert core.stats.written_points == len(rows)
    core.close()
