"""Names in any language, end to end on real servers: config -> gateway -> the retained wire format
v2 catalog on mosquitto -> ingest -> InfluxDB 1.x tags and VictoriaMetrics labels, read back exactly.

Names are chosen to need every escape of a tag value (space, comma, equals sign, a backslash inside,
a double quote) next to Chinese, so that a wrong escaping rule for either store shows up as a
changed or missing name.  Batches do not carry the names: that is checked on the data topic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.codec import CatalogCache, Encoder, encode_alarm
from gateway.config import parse
from gateway.core.errors import ConfigError
from gateway.ingest import IngestCore
from gateway.names import Names
from hil.modbus_server import SimulatedPlc
from hil.services import Influx1, Mosquitto, VictoriaMetrics
from tests.conftest import eventually
from tests.test_e2e import SITE, config_dict, drive_chain

SITE_NAME = "包头某煤矿 一号井"
DEVICE_NAME = "1201工作面 瓦斯监测分站"
DEVICE_TEXT = "回风巷, 距工作面 10 m"
POINT_NAMES = {
    "ch4": "回风巷甲烷 T1",
    "co": "一氧化碳,CO=ppm",
    "o2": '氧气 "O2"',
    "temp": "温度\\传感器",  # a backslash inside: InfluxDB keeps it, VictoriaMetrics needs it doubled
}
POINT_TEXT = {"ch4": "激光甲烷传感器；报警 1.0 %，断电 1.5 %"}


def named(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["gateway"].update(site_display_name=SITE_NAME, site_description="内蒙古 包头", display_name="网关一")
    dev = cfg["devices"][0]
    dev.update(display_name=DEVICE_NAME, description=DEVICE_TEXT)
    for p in dev["points"]:
        if p["name"] in POINT_NAMES:
            p["display_name"] = POINT_NAMES[p["name"]]
        if p["name"] in POINT_TEXT:
            p["description"] = POINT_TEXT[p["name"]]
    return cfg


def expected(point: str) -> dict[str, str]:
    want = {"site_display_name": SITE_NAME, "site_description": "内蒙古 包头", "device_display_name": DEVICE_NAME,
            "device_description": DEVICE_TEXT}
    if point in POINT_NAMES:
        want["display_name"] = POINT_NAMES[point]
    if point in POINT_TEXT:
        want["description"] = POINT_TEXT[point]
    return want


@pytest.mark.integration
async def test_chinese_names_into_influxdb_v1(tmp_path: Path, mosquitto: Mosquitto, influx1: Influx1) -> None:
    db = "names_v1"
    influx1.create_database(db)
    async with SimulatedPlc(tick_s=0, seed=3) as plc:
        cfg = parse(named(config_dict(plc.port, mosquitto.port, tmp_path, {"api": "v1", "url": influx1.url,
                                                                            "database": db}, "names-v1", "names-v1")))
        gw, ingest = await drive_chain(cfg, plc, ticks=2)
    # the names travelled once, in the retained catalog the ingest took from the broker (batches
    # refer to it by id: wire format v2)
    names = ingest.names[(SITE, "gw-e2e")]
    assert names.id == gw.encoder.catalog_id
    assert names.devices == {"gas-sub-01": (("device_description", DEVICE_TEXT), ("device_display_name", DEVICE_NAME))}
    res = influx1.query('SELECT * FROM "telemetry" GROUP BY * LIMIT 1', db=db)
    series = res["results"][0]["series"]  # type: ignore[index]
    seen = {}
    for s in series:
        tags = s["tags"]
        point = tags["point"].split(".", 1)[1]
        got = {k: v for k, v in tags.items() if k.endswith(("display_name", "description")) and v}
        seen[point] = got
    assert set(seen) == {"seq", "ch4", "co", "o2", "wind", "temp", "status", "ch4_alarm"}, seen
    for point, got in seen.items():
        assert got == expected(point), (point, got)
    # every row of the run has its names: none was written before the catalog was known
    res = influx1.query('SELECT count(value) FROM "telemetry" WHERE "device_display_name" = \'\'', db=db)
    assert "series" not in res["results"][0], res  # type: ignore[index]
    assert gw.buffer_counters["accepted_points"] > 0


@pytest.mark.integration
async def test_chinese_names_into_victoriametrics(tmp_path: Path, mosquitto: Mosquitto,
                                                  victoria: VictoriaMetrics) -> None:
    async with SimulatedPlc(tick_s=0, seed=5) as plc:
        cfg = parse(named(config_dict(plc.port, mosquitto.port, tmp_path,
                                      {"api": "v2", "url": victoria.url, "org": "plant", "bucket": "edgegw",
                                       "dialect": "victoriametrics"}, "names-vm", "names-vm")))
        gw, _ = await drive_chain(cfg, plc, ticks=2)

    def labels() -> dict[str, dict[str, str]]:
        out = {}
        for s in victoria.export('{__name__="telemetry_value",gateway="gw-e2e",site="' + SITE + '"}'):
            m: dict[str, str] = s["metric"]  # type: ignore[assignment]
            if "site_display_name" in m:
                out[m["point"].split(".", 1)[1]] = {k: v for k, v in m.items()
                                                    if k.endswith(("display_name", "description"))}
        return out

    await eventually(lambda: len(labels()) >= 8, timeout=15, interval=0.5, what="VictoriaMetrics series")
    for point, got in labels().items():
        assert got == expected(point), (point, got)
    assert gw.buffer_counters["accepted_points"] > 0


def _names_of(cfg_dict: dict[str, Any]) -> tuple[str, Names]:
    encoder = Encoder(parse(cfg_dict).catalog(), version=2)
    cache = CatalogCache()
    cid = cache.learn(encoder.catalog_message)[2]
    return cid, cache.names(cid)


def test_names_change_the_catalog_id_and_keep_on_site_points_stay_unnamed() -> None:
    base = named(config_dict(1, 1, Path("x"), {"api": "v1", "url": "http://127.0.0.1:1"}, "n", "n"))
    base["data_policy"] = {"important": "keep_on_site"}
    base["devices"][0]["points"][2]["data_grade"] = "important"  # co
    cid, names = _names_of(base)
    assert "gas-sub-01.co" not in names.points and names.points["gas-sub-01.ch4"] == (
        ("description", POINT_TEXT["ch4"]), ("display_name", POINT_NAMES["ch4"]))
    assert names.tags("gas-sub-01.ch4", "gas-sub-01")[0] == ("site_description", "内蒙古 包头")
    base["devices"][0]["points"][1]["display_name"] = "甲烷"
    assert _names_of(base)[0] != cid  # a rename is a new catalog: the ingest takes the new names


def test_a_catalog_without_names_keeps_its_id() -> None:
    """Catalogs of configs without names are what they were before names existed (same id)."""
    from gateway.codec import catalog_message

    cfg = parse(config_dict(1, 1, Path("x"), {"api": "v1", "url": "http://127.0.0.1:1"}, "n", "n"))
    encoder = Encoder(cfg.catalog(), version=2)
    rows = [[p.index, p.key, p.code, p.unit, p.device, p.device_code, p.data_grade, dict(p.tags)]
            for p in cfg.catalog().points]
    assert encoder.catalog_id == catalog_message("gw-e2e", SITE, rows)[0]


@pytest.mark.parametrize(("where", "value", "message"), [
    ("point", "甲烷\n浓度", "a name or description cannot hold a line break"),
    ("device", "分站\\", "a name or description cannot end with a backslash"),
    ("site", "x\r", "a name or description cannot hold a line break"),
])
def test_names_a_store_cannot_hold_are_config_errors(where: str, value: str, message: str) -> None:
    cfg = named(config_dict(1, 1, Path("x"), {"api": "v1", "url": "http://127.0.0.1:1"}, "n", "n"))
    if where == "point":
        cfg["devices"][0]["points"][0]["display_name"] = value
    elif where == "device":
        cfg["devices"][0]["description"] = value
    else:
        cfg["gateway"]["site_display_name"] = value
    with pytest.raises(ConfigError, match=message):
        parse(cfg)


def test_a_name_tag_is_given_by_its_key_not_as_a_tag() -> None:
    cfg = named(config_dict(1, 1, Path("x"), {"api": "v1", "url": "http://127.0.0.1:1"}, "n", "n"))
    cfg["devices"][0]["tags"] = {"site_display_name": "矿"}
    with pytest.raises(ConfigError, match="give the gateway's site_display_name instead"):
        parse(cfg)


def test_alarm_rows_carry_the_names_too(tmp_path: Path) -> None:
    """An alarm event of a named point is written with the same name tags as its telemetry (the
    dashboards' alarm tables show the display name)."""
    from pipelines.alarms import AlarmEvent, Level

    cfg = parse(named(config_dict(1, 1, tmp_path, {"api": "file", "path": str(tmp_path / "out.lp")}, "n", "n")))
    assert cfg.ingest is not None
    core = IngestCore(cfg.ingest)
    catalog = cfg.catalog()
    ch4 = next(p.index for p in catalog.points if p.key == "gas-sub-01.ch4")
    payload = encode_alarm(catalog, AlarmEvent(ch4, 1_764_500_000_000_000_000, Level.HIGH, Level.NORMAL, 1.2, 1.0))
    before = core.prepare(f"n/{SITE}/gw-e2e/alarm", payload).rows[0].decode()
    assert "display_name" not in before  # no catalog yet: the row is written without names
    encoder = Encoder(catalog, version=2)
    assert core.learn_catalog(f"n/{SITE}/gw-e2e/catalog/{encoder.catalog_id}", encoder.catalog_message)
    row = core.prepare(f"n/{SITE}/gw-e2e/alarm", payload).rows[0].decode()
    assert "display_name=回风巷甲烷\\ T1" in row
    assert "device_display_name=" + DEVICE_NAME.replace(" ", "\\ ") in row
    assert "site_display_name=包头某煤矿\\ 一号井" in row
    core.close()
