"""Line protocol correct by construction: hostile strings written through the real writers into
InfluxDB 1.x and VictoriaMetrics read back exactly as sent; what a store cannot hold exactly is
refused with a reason (then dead-lettered by the ingest), never altered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import InfluxConfig
from gateway.core.lineproto import LineError, telemetry_line
from gateway.core.point import Point, Quality
from gateway.sinks.influx import make_writer
from hil.services import Influx1, VictoriaMetrics
from tests.conftest import eventually

HOSTILE = [
    "plain", "a b", "a,b", "a=b", "a\\b", "a\\\\b", "\\a", "a\\ b", "a\\,b", "a\\=b", '"q"', "a\"b", "#x", "é😀甲烷",
    "a\tb", "C:\\plant\\x", "x=1 y=2", "m,t=v v=1", "k\\", " lead", "trail ", "=", ",", "\\\\",
]
STRINGS = [*HOSTILE, "line1\nline2", 'a"\nalarm,site=b v=0 1', "end\\", "\\", "\r\n", ""]
T0 = 1_764_000_000_000_000_000


def _point(i: int, tag: str, text: str | None) -> Point:
    value: Any = text if text is not None else float(i)
    return Point(f"dev.p{i}", f"88.608.5288/X.{i}", T0 + i, value, Quality.GOOD if i % 2 else Quality.UNCERTAIN,
                 None if i % 2 else (text or "r"), "ppm", "dev", "88.608.5288/X", (("asset", tag), ("x y,z=w", tag)))


def _influx_rows(influx1: Influx1, db: str) -> dict[int, dict[str, Any]]:
    res = influx1.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0].get("series", [])  # type: ignore[index]
    out = {}
    for s in series:
        for v in s["values"]:
            r = dict(zip(s["columns"], v, strict=True))
            out[r["time"] - T0] = r
    return out


@pytest.mark.integration
async def test_hostile_strings_round_trip_influxdb_v1(influx1: Influx1) -> None:
    db = "lp_hostile"
    influx1.create_database(db)
    writer = make_writer(InfluxConfig(api="v1", url=influx1.url, database=db))
    points: dict[int, Point] = {}
    lines = []
    for i, tag in enumerate(HOSTILE):
        for j, text in enumerate((None, STRINGS[(i * 3) % len(STRINGS)])):
            k = 2 * i + j
            p = _point(k, tag, text)
            try:
                lines.append(telemetry_line(p, "telemetry", "site-a", "gw-a"))
                points[k] = p
            except LineError as err:
                assert tag.endswith("\\"), (tag, err)  # the only refusal here: InfluxDB cannot store it
    assert len(points) >= 2 * len(HOSTILE) - 4
    await writer.write(b"\n".join(lines) + b"\n")  # one body: no line may bleed into another
    rows = _influx_rows(influx1, db)
    assert set(rows) == set(points)
    for k, p in points.items():
        r = rows[k]
        tag = dict(p.tags)["asset"]
        want_tag = tag if tag else None
        assert (r["asset"], r["x y,z=w"]) == (want_tag, want_tag), (k, r)
        assert (r["site"], r["gateway"], r["point"], r["code"]) == ("site-a", "gw-a", p.key, p.code)
        if isinstance(p.value, str):
            assert r["value_str"] == p.value and r["value"] is None
        else:
            assert r["value"] == p.value
        assert r["reason"] == p.reason and r["quality"] == int(p.quality)


@pytest.mark.integration
async def test_hostile_strings_round_trip_victoriametrics(victoria: VictoriaMetrics) -> None:
    writer = make_writer(InfluxConfig(api="v2", url=victoria.url, dialect="victoriametrics"))
    now = time.time_ns() // 1_000_000 * 1_000_000
    sent = {}
    lines = []
    for i, tag in enumerate([*HOSTILE, "end\\", "\\"]):
        p = Point(f"dev.vm{i}", "88.608.5288/V", now + i * 1_000_000, float(i), Quality.GOOD, None, "", "dev", "",
                  (("asset", tag),))
        lines.append(telemetry_line(p, "lpvm", "site-v", "gw-v", "victoriametrics", time.time_ns()))
        sent[p.key] = tag
    await writer.write(b"\n".join(lines) + b"\n")
    got: dict[str, str | None] = {}

    def exported() -> bool:
        for s in victoria.export('{__name__="lpvm_value"}'):
            m: dict[str, str] = s["metric"]  # type: ignore[assignment]
            got[m["point"]] = m.get("asset")
            assert (m["site"], m["gateway"]) == ("site-v", "gw-v")
        return len(got) >= len(sent)

    await eventually(exported, timeout=15, interval=0.3, what="VictoriaMetrics rows")
    assert got == {k: (v or None) for k, v in sent.items()}


_tag_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), max_size=30).filter(
    lambda s: not s.endswith("\\"))
_str_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
_key_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), min_size=1,
                    max_size=12).filter(lambda s: not s.endswith("\\") and not s.startswith("_") and s != "time"
                                        and s not in ("code", "device", "device_code", "point", "unit", "site",
                                                      "gateway", "value", "value_str", "value_bool", "quality",
                                                      "reason", "historical", "previous", "active", "threshold",
                                                      "level", "asset"))


@pytest.mark.integration
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=_key_text, tag=_tag_text, text=_str_text)
async def test_any_text_round_trips_influxdb_v1(influx1: Influx1, tmp_path: Path, key: str, tag: str,
                                                text: str) -> None:
    db = "lp_prop"
    influx1.create_database(db)
    writer = make_writer(InfluxConfig(api="v1", url=influx1.url, database=db))
    ts = time.time_ns()
    p = Point("dev.prop", "88.608.5288/P", ts, text, Quality.GOOD, None, "", "dev", "", ((key, tag),))
    await writer.write(telemetry_line(p, "prop", "s", "g") + b"\n")
    res = influx1.query(f'SELECT * FROM "prop" WHERE time = {ts}', db=db)
    rows = res["results"][0]["series"][0]  # type: ignore[index]
    (row,) = [dict(zip(rows["columns"], v, strict=True)) for v in rows["values"]]
    assert row["value_str"] == text
    stored_key = key if key not in ("value_str", "quality") else f"{key}_1"
    assert row.get(stored_key) == (tag or None)


@pytest.mark.parametrize(
    ("tags", "value", "dialect", "why"),
    [
        ((("asset", "C:\\plant\\"),), 1.0, "influxdb", "cannot end with a backslash"),
        ((("asset", "a\nb"),), 1.0, "influxdb", "line break"),
        ((("asset", "a\ud800"),), 1.0, "influxdb", "not valid Unicode"),
        ((), "\udcb2\udcbb", "influxdb", "not valid Unicode"),
        ((), 10**400, "influxdb", "too large"),
        ((("site", "site-b"),), 1.0, "influxdb", "collides"),
        ((("code", "88.1/forged"),), 1.0, "influxdb", "collides"),
        ((("value", "x"),), 1.0, "influxdb", "collides"),
        ((("time", "x"),), 1.0, "influxdb", "collides"),
        ((("_m", "x"),), 1.0, "influxdb", "collides"),
        ((("asset", "x" * 70_000),), 1.0, "influxdb", "series key"),
        ((("asset", "x" * 17_000),), 1.0, "victoriametrics", "longer than VictoriaMetrics"),
        (tuple((f"t{i}", "v") for i in range(30)), 1.0, "victoriametrics", "tags"),
        ((), "text", "victoriametrics", "cannot store a string"),
    ],
)
def test_what_a_store_cannot_hold_is_refused(tags: tuple[tuple[str, str], ...], value: Any, dialect: Any,
                                             why: str) -> None:
    p = Point("d.p", "88.1/x", T0, value, Quality.GOOD, None, "", "d", "", tags)
    with pytest.raises(LineError, match=why):
        telemetry_line(p, "telemetry", "site-a", "gw-a", dialect, T0)


def test_site_tag_equal_to_the_topic_is_kept_and_timestamps_checked() -> None:
    p = Point("d.p", "88.1/x", T0, 1.0, tags=(("site", "site-a"),))
    assert b",site=site-a " in telemetry_line(p, "telemetry", "site-a", "gw-a")
    with pytest.raises(LineError, match="timestamp"):
        telemetry_line(Point("d.p", "88.1/x", 2**63, 1.0), "telemetry", "s", "g")
    with pytest.raises(LineError, match="2 days ahead"):
        telemetry_line(Point("d.p", "88.1/x", T0 + 3 * 86_400 * 10**9, 1.0), "t", "s", "g", "victoriametrics", T0)
