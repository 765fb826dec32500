"""The Grafana dashboards in deploy/grafana/: offline schema checks, and every panel's query run
against real stores loaded by the chain (tests/dashboard_data.py), as Grafana would send it.

Grafana itself cannot run here, so the test does Grafana's part: it reads each panel's targets from
the JSON, substitutes the macros (``$timeFilter``, ``$__interval``, ``$__range``) and the template
variables (values from the variables' own queries, multi-value as Grafana's ``(a|b)`` regex), sends
the query to InfluxDB 1.x ``/query`` or VictoriaMetrics ``/api/v1/query_range`` (``/api/v1/query``
for instant targets), and checks the answer against what the chain put in: non-empty, numbers where
numbers are drawn, the units of the configured points, the alarm events of the CH4 excursion.
Panels on the ``edgegw-metrics`` data source (the gateways' /metrics) are not run: nothing scrapes
them here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.services import Influx1, Mosquitto, VictoriaMetrics
from tests.conftest import _start
from tests.dashboard_data import DISPLAY_NAMES, GATEWAY, SITE, Loaded, load

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").rglob("*.json"))
INTERVAL_S = 1
MARGIN_NS = 60 * 10**9
UNITS = {"ch4": "%CH4", "co": "ppm", "o2": "%", "wind": "m/s", "temp": "degC", "ch4_alarm": "%CH4", "seq": "",
         "status": "", "pressure": "kPa"}
POINTS = {f"{d}.{p}" for d in ("gas-sub-01", "gas-sub-02") for p in UNITS if p != "pressure"} | {"fan-01.pressure"}
GRAFANA_UNITS = {"percent": {"%CH4", "%"}, "ppm": {"ppm"}}  # panel unit -> unit tags it may draw
BUILTIN_VARS = {"timeFilter", "__interval", "__range", "__rate_interval", "__interval_ms", "__range_s"}
PANEL_TYPES = {"stat", "timeseries", "table", "piechart", "state-timeline", "bargauge"}

Row = dict[str, Any]


def dashboards() -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(GRAFANA / "dashboards")): json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS}


def provisioned() -> dict[str, str]:
    """uid -> type of the provisioned data sources (the YAML's own words, read line by line)."""
    text = (GRAFANA / "provisioning" / "datasources" / "edgegw.yaml").read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for block in text.split("\n  - name:")[1:]:
        uid = re.search(r"^\s+uid: (\S+)", block, re.M)
        kind = re.search(r"^\s+type: (\S+)", block, re.M)
        assert uid and kind, block
        found[uid.group(1)] = kind.group(1)
    return found


def all_panels() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for name, dash in dashboards().items():
        for p in dash["panels"]:
            yield name, dash, p


# ------------------------------------------------------------------------------------------------
# offline: the files


def test_every_dashboard_is_generated_and_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("grafana_dashboards", ROOT / "scripts" / "grafana_dashboards.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rendered = mod.render()
    assert set(rendered) == {str(p.relative_to(GRAFANA / "dashboards")) for p in DASHBOARDS}
    for name, text in rendered.items():
        assert (GRAFANA / "dashboards" / name).read_text(encoding="utf-8") == text, name
    assert len(DASHBOARDS) == 8


def test_provisioning_names_the_three_data_sources_and_the_dashboard_folder() -> None:
    assert provisioned() == {"edgegw-influxdb": "influxdb", "edgegw-victoriametrics": "prometheus",
                             "edgegw-metrics": "prometheus"}
    provider = (GRAFANA / "provisioning" / "dashboards" / "edgegw.yaml").read_text(encoding="utf-8")
    assert "apiVersion: 1" in provider and "type: file" in provider and "foldersFromFilesStructure: true" in provider


def _refs(text: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)", text))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: str(p.relative_to(GRAFANA / "dashboards")))
def test_dashboard_schema(path: Path) -> None:
    dash = json.loads(path.read_text(encoding="utf-8"))
    sources = provisioned()
    assert dash["schemaVersion"] == 39  # Grafana 10.4+: datasource refs as {type, uid} objects
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dash["uid"]) and dash["title"]
    uids = [json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS]
    assert uids.count(dash["uid"]) == 1
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert len(variables) == len(dash["templating"]["list"])
    for v in variables.values():  # a variable may only use variables defined before it
        assert sources[v["datasource"]["uid"]] == v["datasource"]["type"]
        earlier = [n for n in variables if n != v["name"]][: list(variables).index(v["name"])]
        assert _refs(json.dumps(v["query"])) <= set(earlier), v["name"]
    ids = [p["id"] for p in dash["panels"]]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        assert p["type"] in PANEL_TYPES and p["title"], p
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "xywh"), g
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] >= 1 and g["h"] >= 1 and g["x"] + g["w"] <= 24, (p["title"], g)
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        assert sources[p["datasource"]["uid"]] == p["datasource"]["type"]
        refids = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(set(refids)) == len(refids)
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"]
            query = t.get("query") or t["expr"]
            assert _refs(query) <= set(variables) | BUILTIN_VARS, (p["title"], query)
            if t["datasource"]["uid"] == "edgegw-influxdb":
                assert t["rawQuery"] is True and "$timeFilter" in query, p["title"]
        if "repeat" in p:
            assert variables[p["repeat"]]["multi"] and p["repeat"] in _refs(p["title"])
        for matcher in p["fieldConfig"]["overrides"]:
            assert matcher["matcher"]["id"] in ("byName", "byRegexp")
        if p["datasource"]["uid"] == "edgegw-metrics":
            assert "[needs /metrics scrape]" in p["title"] and "not tested" in p["description"]
        unit = p["fieldConfig"]["defaults"].get("unit")
        assert unit is None or re.fullmatch(r"[a-zA-Z]+", unit), unit
    for a in dash["annotations"]["list"][1:]:
        assert sources[a["datasource"]["uid"]] == a["datasource"]["type"]
        assert _refs(a.get("query") or a["expr"]) <= set(variables) | BUILTIN_VARS


def test_every_panel_has_an_expectation() -> None:
    titles = {p["title"] for _n, _d, p in all_panels() if p["datasource"]["uid"] != "edgegw-metrics"}
    assert titles == set(EXPECT), (titles ^ set(EXPECT))


# ------------------------------------------------------------------------------------------------
# the chain's data, and Grafana's substitutions


@pytest.fixture(scope="module")
def victoria(services_dir: Path) -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics of this module's own: other tests read every telemetry series of the shared one
    (tests/test_e2e.py), so the gateways and devices loaded here must not appear there."""
    service = VictoriaMetrics(workdir=services_dir / "victoria-metrics-dashboards")
    _start(service)  # skips (fails under CI) like the shared one when VictoriaMetrics is missing
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto, influx1: Influx1,
           victoria: VictoriaMetrics) -> Loaded:
    influx1.create_database("dashboards")
    return asyncio.run(load(tmp_path_factory.mktemp("dashboards"), mosquitto.port, influx1.url, "dashboards",
                            victoria.url))


def _influx_regex(v: str) -> str:  # Grafana's InfluxDB data source escapes these in regex variables
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", v)


def _prom_regex(v: str) -> str:  # Grafana's Prometheus data source: regex escaping inside a "..." string
    return re.sub(r"([\\^$*+?.()|\[\]{}])", r"\\\\\1", v)


def substitute(text: str, values: dict[str, list[str]], store: str, lo_ns: int, hi_ns: int) -> str:
    """What Grafana sends: macros, then variables (multi-value as ``(a|b)``, regex-escaped)."""
    text = text.replace("$timeFilter", f"time >= {lo_ns // 10**6}ms and time <= {hi_ns // 10**6}ms")
    text = text.replace("$__rate_interval", f"{4 * INTERVAL_S}s").replace("$__interval", f"{INTERVAL_S}s")
    text = text.replace("$__range", f"{(hi_ns - lo_ns) // 10**9}s")
    esc = _influx_regex if store == "influx" else _prom_regex

    def var(m: re.Match[str]) -> str:
        vals = values[m.group(1) or m.group(2)]
        return esc(vals[0]) if len(vals) == 1 else "(" + "|".join(esc(v) for v in vals) + ")"

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", var, text)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=20) as r:
        return json.loads(r.read())


def influx_rows(base: str, db: str, q: str) -> list[Row]:
    res = _get(f"{base}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"}))["results"][0]
    assert "error" not in res, (q, res["error"])
    rows = []
    for s in res.get("series", []):
        for v in s["values"]:
            rows.append({**s.get("tags", {}), **dict(zip(s["columns"], v, strict=True))})
    return rows


def vm_rows(base: str, expr: str, instant: bool, lo_ns: int, hi_ns: int) -> list[Row]:
    if instant:
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": hi_ns / 1e9})
    else:
        url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": expr, "start": lo_ns / 1e9, "end": hi_ns / 1e9, "step": f"{INTERVAL_S}s"})
    body = _get(url)
    assert body["status"] == "success", (expr, body)
    rows = []
    for s in body["data"]["result"]:
        samples = [s["value"]] if "value" in s else s["values"]
        for t, v in samples:
            rows.append({**s["metric"], "time": float(t), "value": float(v)})
    return rows


class Stores:
    def __init__(self, loaded: Loaded, influx: Influx1, vm: VictoriaMetrics) -> None:
        self.loaded, self.influx, self.vm = loaded, influx, vm
        self.lo, self.hi = loaded.start_ns - MARGIN_NS, loaded.end_ns + MARGIN_NS
        with urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=10) as r:
            r.read()

    def variable_values(self, store: str, dash: dict[str, Any], upto: str = "") -> dict[str, list[str]]:
        """Each variable's options from its own query (earlier variables at All), as Grafana fills them."""
        values: dict[str, list[str]] = {}
        for v in dash["templating"]["list"]:
            if upto and v["name"] == upto:
                break
            if store == "influx":
                q = substitute(v["query"], values, store, self.lo, self.hi)
                found = sorted(str(r["value"]) for r in influx_rows(self.influx.url, self.loaded.influx_db, q))
            else:
                m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"])
                assert m, v["query"]
                match = substitute(m.group(1), values, store, self.lo, self.hi)
                found = sorted(_get(f"{self.vm.url}/api/v1/label/{m.group(2)}/values?" + urllib.parse.urlencode(
                    {"match[]": match, "start": self.lo / 1e9, "end": self.hi / 1e9}))["data"])
            assert found, f"variable {v['name']} has no values"
            values[v["name"]] = found
        return values

    def run(self, store: str, target: dict[str, Any], values: dict[str, list[str]]) -> list[Row]:
        if store == "influx":
            return influx_rows(self.influx.url, self.loaded.influx_db,
                               substitute(target["query"], values, store, self.lo, self.hi))
        return vm_rows(self.vm.url, substitute(target["expr"], values, store, self.lo, self.hi), target["instant"],
                       self.lo, self.hi)


@pytest.fixture(scope="module")
def stores(loaded: Loaded, influx1: Influx1, victoria: VictoriaMetrics) -> Stores:
    return Stores(loaded, influx1, victoria)


# ------------------------------------------------------------------------------------------------
# what each panel must show


def _num(r: Row, *skip: str) -> float:
    """The one numeric column of an aggregate row (InfluxDB names it, VictoriaMetrics calls it value)."""
    cols = [k for k, v in r.items() if k not in ("time", *skip) and isinstance(v, int | float)
            and not isinstance(v, bool)]
    assert len(cols) == 1, r
    return float(r[cols[0]])


def _is_number(v: Any) -> bool:  # JSON writes a float field's 7.0 as 7
    return isinstance(v, int | float) and not isinstance(v, bool)


def _single(rows: list[Row]) -> float:
    assert len(rows) == 1, rows
    return _num(rows[0])


def counts(want: dict[str, int]) -> Callable[[str, dict[str, list[Row]], Stores], None]:
    def check(_store: str, res: dict[str, list[Row]], _s: Stores) -> None:
        got = [_single(res[r]) for r in sorted(res)]
        assert got == list(want.values()), (got, want)
    return check


def stat_exact(n: int) -> Callable[[str, dict[str, list[Row]], Stores], None]:
    def check(_store: str, res: dict[str, list[Row]], _s: Stores) -> None:
        assert _single(res["A"]) == n
    return check


def samples_by_quality(_store: str, res: dict[str, list[Row]], s: Stores) -> None:
    totals = [sum(_num(r) for r in res[ref]) for ref in ("A", "B", "C")]
    assert all(t > 0 for t in totals), totals  # good, uncertain and bad samples all drawn
    assert sum(totals) == s.loaded.written_points


def devices_table(_store: str, res: dict[str, list[Row]], _s: Stores) -> None:
    rows = res["A"]
    worst = {r["device"]: r.get("worst quality", r.get("value")) for r in rows}
    assert worst == {"gas-sub-01": 0, "gas-sub-02": 1, "fan-01": 2}
    assert all(r["site"] == SITE and r["gateway"] == GATEWAY for r in rows)


def latest_table(store: str, res: dict[str, list[Row]], _s: Stores) -> None:
    quality = res["A"] if store == "influx" else res["B"]
    assert {r["point"] for r in quality} == POINTS
    for r in quality:
        assert (r.get("unit") or "") == UNITS[r["point"].split(".", 1)[1]], r
        assert (r.get("display_name") or None) == DISPLAY_NAMES.get(r["point"]), r
    values = quality if store == "influx" else res["A"]
    for r in values:
        q = r["quality"] if store == "influx" else None
        if r["point"] == "fan-01.pressure":
            assert store == "influx" and q == 2 and r["value"] is None and r["reason"] == "unreachable", r
        else:
            assert _is_number(r["value"]), r
    if store == "vm":  # the bad point's stale value is hidden
        assert {r["point"] for r in values} == POINTS - {"fan-01.pressure"}


def values_by_unit(store: str, res: dict[str, list[Row]], s: Stores, unit: str = "") -> None:
    rows = res["A"]
    if unit == "kPa":  # only fan-01, unreachable: bad samples carry no value
        assert rows == []
        return
    assert rows, unit
    assert {r.get("unit", "") for r in rows} == {unit}
    drawn = [r.get("mean", r.get("value")) for r in rows]
    assert all(_is_number(v) for v in drawn if v is not None) and any(v is not None for v in drawn)
    for r in rows:
        assert UNITS[r["point"].split(".", 1)[1]] == unit


def quality_timeline(_store: str, res: dict[str, list[Row]], _s: Stores) -> None:
    assert {_num(r) for r in res["A"] if r.get("max", r.get("value")) is not None} == {0, 1, 2}


def not_good(store: str, res: dict[str, list[Row]], _s: Stores) -> None:
    rows = res["A"]
    if store == "influx":
        assert {r["reason"] for r in rows} >= {"nan", "unreachable", "stuck", "spike"}
        assert all(r["value"] is None for r in rows if r["quality"] == 2)
        assert {r["quality"] for r in rows} == {1, 2}
    else:
        assert {r["value"] for r in rows} == {1.0, 2.0}
    assert {r["point"] for r in rows} >= {"gas-sub-01.ch4", "gas-sub-02.ch4_alarm", "fan-01.pressure"}


def last_seen(store: str, res: dict[str, list[Row]], s: Stores) -> None:
    (r,) = res["A"]
    assert (r["site"], r["gateway"]) == (SITE, GATEWAY)
    seen_ns = r["time"] if store == "influx" else int(r["value"] * 10**6)
    assert s.loaded.start_ns <= seen_ns <= s.loaded.end_ns


def per_gateway_total(_store: str, res: dict[str, list[Row]], s: Stores) -> None:
    assert {r["gateway"] for r in res["A"]} == {GATEWAY}
    assert sum(_num(r) for r in res["A"]) == s.loaded.written_points


def not_good_per_gateway(_store: str, res: dict[str, list[Row]], s: Stores) -> None:
    total = sum(_num(r) for r in res["A"])
    assert 0 < total < s.loaded.written_points


def historical_share(_store: str, res: dict[str, list[Row]], _s: Stores) -> None:
    shares = [_num(r) for r in res["A"] if r.get("count_count", r.get("value")) is not None]
    assert shares and all(0 <= x <= 1 for x in shares) and any(x > 0 for x in shares), shares


def gas(cls: str, lo: float, hi: float) -> Callable[[str, dict[str, list[Row]], Stores], None]:
    def check(store: str, res: dict[str, list[Row]], _s: Stores) -> None:
        rows = [r for r in res["A"] if r.get("max", r.get("min", r.get("last", r.get("value")))) is not None]
        assert {r["asset"] for r in rows} == {"face-T1-1201", "return-T2-1201"}
        for r in rows:
            assert r["display_name"] == DISPLAY_NAMES[r["point"]], r
            assert r["point"].endswith("." + cls)
            assert lo <= _num(r) <= hi, r
        if cls == "ch4" and "B" in res:  # the excursion: its peak and its alarm events
            assert max(_num(r) for r in rows) == pytest.approx(1.6)
            events = sorted((r["level"], round(_num(r), 6)) for r in res["B"])  # VM: events 0.2 s apart share a step
            assert events == [("high", 1.2), ("normal", 0.9), ("power_off", 1.6)]
    return check


def alarm_state(store: str, res: dict[str, list[Row]], s: Stores) -> None:
    (r,) = res["A"]
    assert (r["point"], r["level"], r["asset"]) == ("gas-sub-01.ch4", "normal", "face-T1-1201")
    if store == "influx":
        assert r["active"] is False and r["unit"] == "%CH4" and r["threshold"] == 1.5
    else:
        assert s.loaded.start_ns <= int(r["value"] * 10**6) <= s.loaded.end_ns


def alarm_events(store: str, res: dict[str, list[Row]], _s: Stores) -> None:
    rows = sorted(res["A"], key=lambda r: r["time"])
    assert sorted(r["level"] for r in rows) == ["high", "normal", "power_off"]
    assert all(r["display_name"] == DISPLAY_NAMES["gas-sub-01.ch4"] and r["unit"] == "%CH4" for r in rows)
    if store == "influx":
        assert [r["level"] for r in rows] == ["high", "power_off", "normal"]
        assert [r["previous"] for r in rows] == ["normal", "high", "power_off"]
        assert [r["threshold"] for r in rows] == [1.0, 1.5, 1.5]
        assert [r["active"] for r in rows] == [True, True, False]
        assert [r["value"] for r in rows] == pytest.approx([1.2, 1.6, 0.9])
    else:  # VictoriaMetrics: events at step resolution (two in one step share its time), no strings
        assert sorted((r["level"], round(r["value"], 6)) for r in rows) == [("high", 1.2), ("normal", 0.9),
                                                                             ("power_off", 1.6)]
        assert sorted((r["level"], r["value"]) for r in res["B"]) == [("high", 1.0), ("normal", 1.5),
                                                                       ("power_off", 1.5)]


EXPECT: dict[str, Callable[..., None]] = {
    "Sites reporting": stat_exact(1),
    "Gateways reporting": stat_exact(1),
    "Devices reporting": stat_exact(3),
    "Points reporting": stat_exact(len(POINTS)),
    "Devices by health": lambda st, res, s: (counts({"good": 1, "uncertain": 1, "bad": 1}) if len(res) == 3
                                             else devices_table)(st, res, s),
    "Points by quality (latest sample)": counts({"good": len(POINTS) - 2, "uncertain": 1, "bad": 1}),
    "Samples by quality": samples_by_quality,
    "Latest sample of each point": latest_table,
    "Values in $unit": values_by_unit,
    "Values without a unit": lambda st, res, s: values_by_unit(st, res, s, ""),
    "Quality of each point": quality_timeline,
    "Samples that were not good": not_good,
    "Last seen per gateway": last_seen,
    "Samples per gateway": per_gateway_total,
    "Samples not good per gateway": not_good_per_gateway,
    "Historical share (replayed from the gateway's buffer)": historical_share,
    "CH4 by sensor location": gas("ch4", 0.0, 1.7),
    "CO by sensor location": gas("co", 0, 24),
    "O2 by sensor location": gas("o2", 20.0, 21.5),
    "CH4 now": gas("ch4", 0.0, 1.0),
    "CO now": gas("co", 0, 24),
    "O2 now": gas("o2", 20.0, 21.5),
    "Alarm state per point (latest event)": alarm_state,
    "Alarm events": alarm_events,
}


def pinned(values: dict[str, list[str]]) -> dict[str, list[str]]:
    """The chain's site and gateway, as an operator picks them (VictoriaMetrics is shared with other
    tests of the session, whose gateways have other ids)."""
    assert SITE in values["site"] and GATEWAY in values["gateway"], values
    return {**values, "site": [SITE], "gateway": [GATEWAY]}


def _cases() -> list[Any]:
    out = []
    for name, _dash, p in all_panels():
        if p["datasource"]["uid"] == "edgegw-metrics":
            continue
        out.append(pytest.param(name, p["id"], id=f"{name}:{p['title']}"))
    return out


@pytest.mark.integration
@pytest.mark.parametrize(("name", "panel_id"), _cases())
def test_panel_queries_on_real_data(stores: Stores, name: str, panel_id: int) -> None:
    dash = dashboards()[name]
    (p,) = [p for p in dash["panels"] if p["id"] == panel_id]
    store = "influx" if p["datasource"]["uid"] == "edgegw-influxdb" else "vm"
    values = pinned(stores.variable_values(store, dash))
    check = EXPECT[p["title"]]
    if "repeat" in p:  # one copy of the panel per value of the variable, as Grafana repeats it
        units = values[p["repeat"]]
        assert set(units) >= {"%CH4", "ppm", "%", "m/s", "degC"}
        for unit in units:
            res = {t["refId"]: stores.run(store, t, {**values, p["repeat"]: [unit]}) for t in p["targets"]}
            check(store, res, stores, unit)
        return
    res = {t["refId"]: stores.run(store, t, values) for t in p["targets"]}
    for ref, rows in res.items():
        if p["title"] != "Values in $unit":
            assert rows, f"{name}: {p['title']} target {ref} returned nothing"
    grafana_unit = p["fieldConfig"]["defaults"].get("unit")
    if grafana_unit in GRAFANA_UNITS:  # the panel's unit matches the unit tags of what it draws
        assert {r["unit"] for r in res["A"]} <= GRAFANA_UNITS[grafana_unit], (p["title"], grafana_unit)
    check(store, res, stores)


@pytest.mark.integration
@pytest.mark.parametrize("name", [n for n in dashboards() if dashboards()[n]["annotations"]["list"][1:]])
def test_annotation_queries_on_real_data(stores: Stores, name: str) -> None:
    dash = dashboards()[name]
    store = "influx" if "influxdb" in name else "vm"
    values = pinned(stores.variable_values(store, dash))
    for a in dash["annotations"]["list"][1:]:
        target = {"query": a.get("query"), "expr": a.get("expr"), "instant": False}
        rows = stores.run(store, target, values)
        assert sorted(r["level"] for r in rows) == ["high", "power_off"]
        assert {r["point"] for r in rows} == {"gas-sub-01.ch4"}


@pytest.mark.parametrize("name", [n for n in dashboards() if n.endswith("mine-safety.json")])
def test_drawn_thresholds_are_the_presets(name: str) -> None:
    """The lines on the gas panels are the coal-mine preset's defaults (gateway/core/mine.py)."""
    from gateway.core.mine import PRESETS, PointClass

    want = {
        "CH4": [PRESETS[PointClass.CH4].alarm["high"], PRESETS[PointClass.CH4].alarm["power_off"]],
        "CO": [PRESETS[PointClass.CO].alarm["high"]],
        "O2": [PRESETS[PointClass.O2].alarm["low"]],
    }
    for p in dashboards()[name]["panels"]:
        gas_name = p["title"].split(" ", 1)[0]
        if gas_name not in want or p["type"] not in ("timeseries", "bargauge"):
            continue
        steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["value"] for s in steps[1:]] == want[gas_name], p["title"]
        if p["type"] == "timeseries":
            assert p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line+area"
