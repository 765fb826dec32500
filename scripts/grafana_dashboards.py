"""Writes the Grafana dashboards in deploy/grafana/dashboards/ (run from the repository root).

    python3 scripts/grafana_dashboards.py           # (re)write the JSON files
    python3 scripts/grafana_dashboards.py --check   # exit 1 if a file differs from what this writes

One definition per panel, for two stores: InfluxDB 1.x (InfluxQL) and VictoriaMetrics (MetricsQL,
through Grafana's Prometheus data source). Panels that read the gateways' own /metrics use a third
data source, ``edgegw-metrics`` (a Prometheus-compatible store scraping the gateways).
tests/test_dashboards.py runs every query of the result against real stores loaded by the chain.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "deploy" / "grafana" / "dashboards"
SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x

INFLUX = {"type": "influxdb", "uid": "edgegw-influxdb"}
VM = {"type": "prometheus", "uid": "edgegw-victoriametrics"}
METRICS = {"type": "prometheus", "uid": "edgegw-metrics"}

QUALITY_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "good", "color": "green", "index": 0},
    "1": {"text": "uncertain", "color": "orange", "index": 1},
    "2": {"text": "bad", "color": "red", "index": 2},
}}]
QUALITY_THRESHOLDS = {"mode": "absolute", "steps": [
    {"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 2}]}
LEVEL_MAPPINGS = [{"type": "value", "options": {
    "normal": {"color": "green", "index": 0}, "low": {"color": "orange", "index": 1},
    "state": {"color": "orange", "index": 2}, "high": {"color": "orange", "index": 3},
    "power_off": {"color": "red", "index": 4}}}]
# Coal-mine preset defaults (docs/normalisation.md): CH4 at a T1 working face, CO, O2 in intake air.
CH4_THRESHOLDS = {"mode": "absolute", "steps": [
    {"color": "green", "value": None}, {"color": "orange", "value": 1.0}, {"color": "red", "value": 1.5}]}
CO_THRESHOLDS = {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 24}]}
O2_THRESHOLDS = {"mode": "absolute", "steps": [{"color": "red", "value": None}, {"color": "green", "value": 20}]}
METRICS_NOTE = ("Needs a Prometheus-compatible store (data source edgegw-metrics) scraping each gateway's /metrics, "
                "with the labels site and gateway set per target in the scrape config (docs/central.md). Metric "
                "names as documented in docs/operations.md of the /metrics work; not tested here.")

# (refId, name, code) of the three qualities, and the colour each is drawn in
_QUALITIES = (("A", "good", 0), ("B", "uncertain", 1), ("C", "bad", 2))
_QUALITY_COLORS = (("good", "green"), ("uncertain", "orange"), ("bad", "red"))

_F_INFLUX = '"site" =~ /^$site$/ AND "gateway" =~ /^$gateway$/'
_DEV_INFLUX = _F_INFLUX + ' AND "device" =~ /^$device$/'
_F_VM = 'site=~"$site", gateway=~"$gateway"'
_DEV_VM = _F_VM + ', device=~"$device"'


def _nested_last(group: str, where: str = _F_INFLUX) -> str:
    """Latest quality of every point in the range, grouped by ``group`` (InfluxQL subquery)."""
    return f'SELECT last("quality") AS "q" FROM "telemetry" WHERE $timeFilter AND {where} GROUP BY {group}'


def _worst_by_device() -> str:
    """Worst of the latest qualities of each device's points."""
    inner = _nested_last('"site", "gateway", "device", "point"')
    return f'SELECT max("q") AS "w" FROM ({inner}) GROUP BY "site", "gateway", "device"'


def influx_target(ref: str, query: str, alias: str = "", fmt: str = "time_series") -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": INFLUX, "rawQuery": True, "query": query, "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    return t


def prom_target(ref: str, expr: str, legend: str = "", instant: bool = False, fmt: str = "time_series",
                ds: dict[str, str] = VM) -> dict[str, Any]:
    return {"refId": ref, "datasource": ds, "expr": expr, "legendFormat": legend or "__auto",
            "range": not instant, "instant": instant, "format": fmt, "editorMode": "code"}


def panel(kind: str, title: str, targets: list[dict[str, Any]], w: int, h: int, *, description: str = "",
          unit: str = "", thresholds: dict[str, Any] | None = None, mappings: list[Any] | None = None,
          threshold_lines: bool = False, stacked_bars: bool = False, decimals: int | None = None,
          options: dict[str, Any] | None = None, overrides: list[Any] | None = None,
          transformations: list[Any] | None = None, repeat: str = "") -> dict[str, Any]:
    ds = targets[0]["datasource"]
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds:
        defaults["thresholds"] = thresholds
    if mappings:
        defaults["mappings"] = mappings
    custom: dict[str, Any] = {}
    if kind == "timeseries":
        custom = {"drawStyle": "bars" if stacked_bars else "line", "lineWidth": 1, "fillOpacity": 60 if stacked_bars
                  else 0, "showPoints": "auto", "spanNulls": False,
                  "stacking": {"mode": "normal" if stacked_bars else "none", "group": "A"},
                  "thresholdsStyle": {"mode": "line+area" if threshold_lines else "off"}}
        if threshold_lines:
            defaults.setdefault("color", {"mode": "palette-classic"})
    if kind == "table":
        custom = {"align": "auto", "cellOptions": {"type": "color-text"} if mappings else {"type": "auto"}}
    if custom:
        defaults["custom"] = custom
    p: dict[str, Any] = {
        "type": kind, "title": title, "datasource": ds, "targets": targets,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if description:
        p["description"] = description
    if transformations:
        p["transformations"] = transformations
    if repeat:
        p.update(repeat=repeat, repeatDirection="h", maxPerRow=2)
    return p


def _layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids 1.. and a left-to-right, top-to-bottom flow on Grafana's 24-column grid."""
    x = y = row_h = 0
    for i, p in enumerate(panels, 1):
        g = p["gridPos"]
        if x + g["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        g["x"], g["y"] = x, y
        x += g["w"]
        row_h = max(row_h, g["h"])
        p["id"] = i
    return panels


def _query_var(ds: dict[str, str], name: str, label: str, query: str, hide: int) -> dict[str, Any]:
    """A multi-value template variable (All by default) filled by ``query`` on data source ``ds``."""
    return {"name": name, "label": label, "type": "query", "datasource": ds,
            "query": query,  # a string: Grafana 10/11 migrate it to the data source's query object
            "definition": query, "refresh": 2, "multi": True, "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1, "hide": hide,
            "options": [], "regex": ""}


def influx_var(name: str, label: str, query: str, *, hide: int = 0) -> dict[str, Any]:
    return _query_var(INFLUX, name, label, query, hide)


def vm_var(name: str, label: str, query: str, *, hide: int = 0) -> dict[str, Any]:
    return _query_var(VM, name, label, query, hide)


def influx_vars(*names: str) -> list[dict[str, Any]]:
    tv = 'SHOW TAG VALUES FROM "telemetry" WITH KEY = '
    all_vars = {
        "site": influx_var("site", "Site", tv + '"site"'),
        "gateway": influx_var("gateway", "Gateway", tv + '"gateway" WHERE "site" =~ /^$site$/'),
        "device": influx_var("device", "Device", tv + '"device" WHERE ' + _F_INFLUX),
        "unit": influx_var("unit", "Unit", tv + '"unit" WHERE ' + _DEV_INFLUX, hide=2),
    }
    return [all_vars[n] for n in names]


def vm_vars(*names: str) -> list[dict[str, Any]]:
    all_vars = {
        "site": vm_var("site", "Site", "label_values(telemetry_quality, site)"),
        "gateway": vm_var("gateway", "Gateway", 'label_values(telemetry_quality{site=~"$site"}, gateway)'),
        "device": vm_var("device", "Device", "label_values(telemetry_quality{" + _F_VM + "}, device)"),
        "unit": vm_var("unit", "Unit", "label_values(telemetry_value{" + _DEV_VM + "}, unit)", hide=2),
    }
    return [all_vars[n] for n in names]


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]], variables: list[Any],
              tags: list[str], annotations: list[Any] | None = None) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["edgegw", *tags],
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "timezone": "browser",
        "templating": {"list": variables},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}, *(annotations or [])]},
        "links": [{"type": "dashboards", "tags": ["edgegw"], "asDropdown": True, "title": "edgegw dashboards",
                   "includeVars": True, "keepTime": True}],
        "panels": _layout(panels),
    }


# ---------------------------------------------------------------------------------------------
# plant overview

_HEALTH_STAT = {"colorMode": "background", "textMode": "value_and_name", "graphMode": "none"}


def _donut() -> dict[str, Any]:
    return {"pieType": "donut", "legend": {"displayMode": "table", "placement": "right", "values": ["value"]},
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}


def plant_overview_influx() -> dict[str, Any]:
    def reporting(group: str) -> str:
        return f'SELECT count("q") AS "count" FROM ({_nested_last(group)})'

    worst = _worst_by_device()
    points = _nested_last('"site", "gateway", "device", "point"')
    q0 = 'SELECT count("quality") AS "{0}" FROM "telemetry" WHERE $timeFilter AND ' + _F_INFLUX + \
        ' AND "quality" = {1} GROUP BY time($__interval) fill(0)'
    panels = [
        panel("stat", "Sites reporting", [influx_target("A", reporting('"site"'))], 6, 4,
              description="Sites with at least one sample in the time range."),
        panel("stat", "Gateways reporting", [influx_target("A", reporting('"site", "gateway"'))], 6, 4),
        panel("stat", "Devices reporting", [influx_target("A", reporting('"site", "gateway", "device"'))], 6, 4),
        panel("stat", "Points reporting", [influx_target("A", reporting('"site", "gateway", "device", "point"'))],
              6, 4),
        panel("stat", "Devices by health", [
            influx_target(r, f'SELECT count("w") AS "{name}" FROM ({worst}) WHERE "w" = {q}', name)
            for r, name, q in _QUALITIES], 12, 5,
              description="A device's health is the worst quality among the latest samples of its points: "
                          "bad = at least one point bad (unreachable device, failed sensor), uncertain = a point "
                          "spiking, stuck or with a doubtful clock.",
              options=_HEALTH_STAT,
              overrides=_quality_colors()),
        panel("piechart", "Points by quality (latest sample)", [
            influx_target(r, f'SELECT count("q") AS "{name}" FROM ({points}) WHERE "q" = {q}', name)
            for r, name, q in _QUALITIES], 12, 5,
              options=_donut(),
              overrides=_quality_colors()),
        panel("table", "Devices by health", [influx_target(
            "A", f'SELECT max("q") AS "worst quality", count("q") AS "points" FROM ({points}) '
                 'GROUP BY "site", "gateway", "device"', fmt="table")], 12, 9,
              mappings=QUALITY_MAPPINGS, thresholds=QUALITY_THRESHOLDS,
              description="Time: the newest sample of the device. Worst quality among its points' latest samples.",
              overrides=[_by_name("points", ("mappings", []), ("custom.cellOptions", {"type": "auto"}))]),
        panel("timeseries", "Samples by quality", [
            influx_target(r, q0.format(name, q), name) for r, name, q in _QUALITIES], 12, 9,
              stacked_bars=True, unit="short",
              overrides=_quality_colors()),
    ]
    return dashboard("edgegw-plant-overview", "edgegw: plant overview",
                     "Sites, gateways, devices by health and points by quality (InfluxDB 1.x).",
                     panels, influx_vars("site", "gateway"), ["influxdb"])


def plant_overview_vm() -> dict[str, Any]:
    last_q = "last_over_time(telemetry_quality{" + _F_VM + "}[$__range])"
    worst = f"max by (site, gateway, device) ({last_q})"
    panels = [
        panel("stat", "Sites reporting", [prom_target("A", f"count(count by (site) ({last_q}))", "sites", True)], 6,
              4, description="Sites with at least one sample in the time range."),
        panel("stat", "Gateways reporting", [prom_target("A", f"count(count by (site, gateway) ({last_q}))",
                                                         "gateways", True)], 6, 4),
        panel("stat", "Devices reporting", [prom_target("A", f"count({worst})", "devices", True)], 6, 4),
        panel("stat", "Points reporting", [prom_target("A", f"count({last_q})", "points", True)], 6, 4),
        panel("stat", "Devices by health", [
            prom_target(r, f"count(({worst}) == {q})", name, True)
            for r, name, q in _QUALITIES], 12, 5,
              description="A device's health is the worst quality among the latest samples of its points.",
              options=_HEALTH_STAT,
              overrides=_quality_colors()),
        panel("piechart", "Points by quality (latest sample)", [
            prom_target(r, f"count(({last_q}) == {q})", name, True)
            for r, name, q in _QUALITIES], 12, 5,
              options=_donut(),
              overrides=_quality_colors()),
        panel("table", "Devices by health", [prom_target("A", worst, "", True, "table")], 12, 9,
              mappings=QUALITY_MAPPINGS, thresholds=QUALITY_THRESHOLDS,
              description="Worst quality among the latest samples of the device's points."),
        panel("timeseries", "Samples by quality", [
            prom_target(r, "sum(count_eq_over_time(telemetry_quality{" + _F_VM + "}[$__interval], " + str(q) + "))",
                        name) for r, name, q in _QUALITIES], 12, 9,
              stacked_bars=True, unit="short",
              overrides=_quality_colors()),
    ]
    return dashboard("edgegw-plant-overview-vm", "edgegw: plant overview (VictoriaMetrics)",
                     "Sites, gateways, devices by health and points by quality (VictoriaMetrics).",
                     panels, vm_vars("site", "gateway"), ["victoriametrics"])


def _color_override(name: str, color: str) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}


def _quality_colors() -> list[dict[str, Any]]:
    """Series named good / uncertain / bad in green / orange / red."""
    return [_color_override(n, c) for n, c in _QUALITY_COLORS]


def _by_name(column: str, *properties: tuple[str, Any]) -> dict[str, Any]:
    """A field override: ``properties`` (id, value) on the column named ``column``."""
    return {"matcher": {"id": "byName", "options": column},
            "properties": [{"id": key, "value": value} for key, value in properties]}


def _quality_column(cell: str) -> dict[str, Any]:
    """The quality column shown as good / uncertain / bad, coloured (``cell``: color-text, color-background)."""
    return _by_name("quality", ("mappings", QUALITY_MAPPINGS), ("thresholds", QUALITY_THRESHOLDS),
                    ("custom.cellOptions", {"type": cell}))


def _level_column() -> dict[str, Any]:
    """The alarm level column with its colour as the cell's background."""
    return _by_name("level", ("mappings", LEVEL_MAPPINGS), ("custom.cellOptions", {"type": "color-background"}))


# ---------------------------------------------------------------------------------------------
# device detail

_DISPLAY_NOTE = ("Names: the point tag display_name (set `tags = { display_name = \"1201工作面甲烷\" }` on a point "
                 "in the gateway's config), else the point key.")


def device_detail_influx() -> dict[str, Any]:
    values = ('SELECT mean("value") FROM "telemetry" WHERE $timeFilter AND ' + _DEV_INFLUX + ' AND {unit} '
              'GROUP BY time($__interval), "point", "display_name", "unit" fill(null)')
    panels = [
        panel("table", "Latest sample of each point", [influx_target(
            "A", 'SELECT "value", "value_bool", "value_str", "quality", "reason", "historical" FROM "telemetry" '
                 'WHERE $timeFilter AND ' + _DEV_INFLUX + ' GROUP BY "device", "point", "display_name", "unit" '
                 'ORDER BY time DESC LIMIT 1', fmt="table")], 24, 9,
              description="The newest sample of every point, with its unit and quality. A bad sample carries no "
                          "value, only its reason. " + _DISPLAY_NOTE,
              overrides=[_quality_column("color-background")]),
        panel("timeseries", "Values in $unit", [influx_target(
            "A", values.format(unit='"unit" =~ /^$unit$/'), "$tag_point $tag_display_name [$tag_unit]")], 12, 8,
              repeat="unit", description="One panel per unit; mean per interval, good and uncertain samples "
                                         "(bad ones carry no value). " + _DISPLAY_NOTE),
        panel("timeseries", "Values without a unit", [influx_target(
            "A", values.format(unit="\"unit\" = ''"), "$tag_point $tag_display_name")], 12, 8),
        panel("state-timeline", "Quality of each point", [influx_target(
            "A", 'SELECT max("quality") FROM "telemetry" WHERE $timeFilter AND ' + _DEV_INFLUX +
                 ' GROUP BY time($__interval), "point", "display_name" fill(null)',
            "$tag_point $tag_display_name")], 12, 8,
              mappings=QUALITY_MAPPINGS, thresholds=QUALITY_THRESHOLDS,
              options={"showValue": "never", "mergeValues": True, "alignValue": "left"}),
        panel("table", "Samples that were not good", [influx_target(
            "A", 'SELECT "point", "display_name", "unit", "quality", "reason", "value" FROM "telemetry" '
                 'WHERE $timeFilter AND ' + _DEV_INFLUX + ' AND "quality" > 0 ORDER BY time DESC LIMIT 200',
            fmt="table")], 12, 8,
              overrides=[_quality_column("color-text")]),
    ]
    return dashboard("edgegw-device-detail", "edgegw: device detail",
                     "Values with units and quality per point of the selected devices (InfluxDB 1.x).",
                     panels, influx_vars("site", "gateway", "device", "unit"), ["influxdb"])


def device_detail_vm() -> dict[str, Any]:
    last_v = "last_over_time(telemetry_value{" + _DEV_VM + "}[$__range])"
    last_q = "last_over_time(telemetry_quality{" + _DEV_VM + "}[$__range])"
    panels = [
        panel("table", "Latest sample of each point", [
            prom_target("A", f"{last_v} and ({last_q} < 2)", "", True, "table"),
            prom_target("B", last_q, "", True, "table")], 24, 9,
              description="The newest value (hidden when the newest sample is bad) and quality of every point. "
                          "VictoriaMetrics stores no strings: the reason of a bad sample is in InfluxDB only. "
                          + _DISPLAY_NOTE,
              transformations=[{"id": "merge", "options": {}},
                               {"id": "organize", "options": {"renameByName": {"Value #A": "value",
                                                                                "Value #B": "quality"}}}],
              overrides=[_quality_column("color-background")]),
        panel("timeseries", "Values in $unit", [prom_target(
            "A", "telemetry_value{" + _DEV_VM + ', unit=~"$unit"}', "{{point}} {{display_name}} [{{unit}}]")], 12, 8,
              repeat="unit", description="One panel per unit. " + _DISPLAY_NOTE),
        panel("timeseries", "Values without a unit", [prom_target(
            "A", "telemetry_value{" + _DEV_VM + ', unit=""}', "{{point}} {{display_name}}")], 12, 8),
        panel("state-timeline", "Quality of each point", [prom_target(
            "A", "max_over_time(telemetry_quality{" + _DEV_VM + "}[$__interval])", "{{point}} {{display_name}}")],
              12, 8, mappings=QUALITY_MAPPINGS, thresholds=QUALITY_THRESHOLDS,
              options={"showValue": "never", "mergeValues": True, "alignValue": "left"}),
        panel("table", "Samples that were not good", [prom_target(
            "A", "max_over_time(telemetry_quality{" + _DEV_VM + "}[$__interval]) > 0", "", False, "table")], 12, 8,
              mappings=QUALITY_MAPPINGS, thresholds=QUALITY_THRESHOLDS),
    ]
    return dashboard("edgegw-device-detail-vm", "edgegw: device detail (VictoriaMetrics)",
                     "Values with units and quality per point of the selected devices (VictoriaMetrics).",
                     panels, vm_vars("site", "gateway", "device", "unit"), ["victoriametrics"])


# ---------------------------------------------------------------------------------------------
# gateway health


def _metrics_panels() -> list[dict[str, Any]]:
    sel = "{" + _F_VM + "}"
    return [
        panel("timeseries", "Buffer depth (pending points) [needs /metrics scrape]", [prom_target(
            "A", f"sum by (site, gateway, buffer) (edgegw_buffer_points{sel})", "{{site}} {{gateway}} {{buffer}}",
            ds=METRICS)], 12, 8, unit="short", description=METRICS_NOTE),
        panel("timeseries", "Oldest pending batch age [needs /metrics scrape]", [prom_target(
            "A", f"max by (site, gateway, buffer) (edgegw_buffer_oldest_age_seconds{sel})",
            "{{site}} {{gateway}} {{buffer}}",
            ds=METRICS)], 12, 8, unit="s", description=METRICS_NOTE),
        panel("timeseries", "Points dropped by the buffer [needs /metrics scrape]", [prom_target(
            "A", "sum by (site, gateway, policy) "
                 f"(increase(edgegw_buffer_dropped_points_total{sel}[$__rate_interval]))",
            "{{site}} {{gateway}} {{policy}}", ds=METRICS)], 12, 8, unit="short",
              description="Lost by the buffer, by policy (drop_oldest, drop_newest, max_age, quarantine, "
                          "corrupt_file). Must stay 0. " + METRICS_NOTE),
        panel("state-timeline", "Uplink state [needs /metrics scrape]", [prom_target(
            "A", f"min by (site, gateway, uplink) (edgegw_uplink_connected{sel})", "{{site}} {{gateway}} {{uplink}}",
            ds=METRICS)],
              12, 8, description=METRICS_NOTE,
              mappings=[{"type": "value", "options": {"0": {"text": "down", "color": "red", "index": 0},
                                                      "1": {"text": "connected", "color": "green", "index": 1}}}],
              options={"showValue": "never", "mergeValues": True}),
    ]


def gateway_health_influx() -> dict[str, Any]:
    base = 'FROM "telemetry" WHERE $timeFilter AND ' + _F_INFLUX
    panels = [
        panel("table", "Last seen per gateway", [influx_target(
            "A", f'SELECT last("quality") AS "latest quality" {base} GROUP BY "site", "gateway"', fmt="table")],
              12, 8, mappings=QUALITY_MAPPINGS, thresholds=QUALITY_THRESHOLDS,
              description="Time: the source time of the gateway's newest sample in InfluxDB. A gateway whose "
                          "uplink is down stops here and catches up with historical samples later.",
              overrides=[_by_name("Time", ("displayName", "last seen"))]),
        panel("timeseries", "Samples per gateway", [influx_target(
            "A", f'SELECT count("quality") {base} GROUP BY time($__interval), "site", "gateway" fill(0)',
            "$tag_site $tag_gateway")], 12, 8, unit="short"),
        panel("timeseries", "Samples not good per gateway", [influx_target(
            "A", f'SELECT count("quality") {base} AND "quality" > 0 GROUP BY time($__interval), "site", "gateway" '
                 "fill(0)", "$tag_site $tag_gateway")], 12, 8, unit="short"),
        panel("timeseries", "Historical share (replayed from the gateway's buffer)", [influx_target(
            "A", f'SELECT count("historical") / count("quality") {base} GROUP BY time($__interval), "site", '
                 '"gateway" fill(none)', "$tag_site $tag_gateway")], 12, 8, unit="percentunit",
              description="Share of the samples (by source time) that reached the store from the gateway's "
                          "backlog after an uplink outage rather than live. Empty where all were live."),
        *_metrics_panels(),
    ]
    return dashboard("edgegw-gateway-health", "edgegw: gateway health",
                     "Last seen, quality and historical share from the data (InfluxDB 1.x); buffer and uplink "
                     "from the gateways' /metrics.",
                     panels, influx_vars("site", "gateway"), ["influxdb"])


def gateway_health_vm() -> dict[str, Any]:
    sel = "telemetry_quality{" + _F_VM + "}"
    panels = [
        panel("table", "Last seen per gateway", [prom_target(
            "A", f"max by (site, gateway) (tlast_over_time({sel}[$__range])) * 1000", "", True, "table")], 12, 8,
              unit="dateTimeAsIso",
              description="Source time of the gateway's newest sample in VictoriaMetrics."),
        panel("timeseries", "Samples per gateway", [prom_target(
            "A", f"sum by (site, gateway) (count_over_time({sel}[$__interval]))", "{{site}} {{gateway}}")], 12, 8,
              unit="short"),
        panel("timeseries", "Samples not good per gateway", [prom_target(
            "A", f"sum by (site, gateway) (count_gt_over_time({sel}[$__interval], 0))", "{{site}} {{gateway}}")],
              12, 8, unit="short"),
        panel("timeseries", "Historical share (replayed from the gateway's buffer)", [prom_target(
            "A", "sum by (site, gateway) (count_over_time(telemetry_historical{" + _F_VM + "}[$__interval])) / "
                 f"sum by (site, gateway) (count_over_time({sel}[$__interval]))", "{{site}} {{gateway}}")], 12, 8,
              unit="percentunit"),
        *_metrics_panels(),
    ]
    return dashboard("edgegw-gateway-health-vm", "edgegw: gateway health (VictoriaMetrics)",
                     "Last seen, quality and historical share from the data (VictoriaMetrics); buffer and uplink "
                     "from the gateways' /metrics.",
                     panels, vm_vars("site", "gateway"), ["victoriametrics"])


# ---------------------------------------------------------------------------------------------
# mine safety

_GASES = (
    # class, title, aggregate (the dangerous direction), Grafana unit, thresholds, what the lines mean
    ("ch4", "CH4", "max", "percent", CH4_THRESHOLDS,
     "Highest CH4 per interval by sensor location (asset). Lines: alarm 1.0 %, power-off 1.5 % (working face T1; "
     "other locations differ: T3 0.5 %, T7 2.5 %, see docs/normalisation.md). Dots: alarm events."),
    ("co", "CO", "max", "ppm", CO_THRESHOLDS, "Highest CO per interval by sensor location. Line: alarm 24 ppm."),
    ("o2", "O2", "min", "percent", O2_THRESHOLDS,
     "Lowest O2 per interval by sensor location. Line: alarm below 20 % (working-face intake air)."),
)
_EVENT_OVERRIDE = {"matcher": {"id": "byRegexp", "options": "^alarm event.*"},
                   "properties": [{"id": "custom.drawStyle", "value": "points"},
                                  {"id": "custom.pointSize", "value": 10},
                                  {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}


def _gas_panel(cls: str, name: str, unit: str, thresholds: dict[str, Any], description: str,
               targets: list[dict[str, Any]]) -> dict[str, Any]:
    """A gas over time by sensor location with its alarm lines; CH4 full width, with its alarm events."""
    return panel("timeseries", f"{name} by sensor location", targets, 8 if cls != "ch4" else 24, 9, unit=unit,
                 thresholds=thresholds, threshold_lines=True, description=description,
                 overrides=[_EVENT_OVERRIDE] if cls == "ch4" else None)


def _gauge_now() -> dict[str, Any]:
    """The newest value of each sensor as a horizontal LCD bar."""
    return {"displayMode": "lcd", "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}


def mine_safety_influx() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    for cls, name, agg, unit, thresholds, desc in _GASES:
        targets = [influx_target(
            "A", f'SELECT {agg}("value") FROM "telemetry" WHERE $timeFilter AND {_F_INFLUX} AND "class" = \'{cls}\' '
                 'GROUP BY time($__interval), "asset", "point", "display_name", "unit" fill(null)',
            "$tag_asset $tag_display_name")]
        if cls == "ch4":
            targets.append(influx_target(
                "B", f'SELECT "value" FROM "alarm" WHERE $timeFilter AND {_F_INFLUX} AND "class" = \'{cls}\' '
                     'GROUP BY "point", "level"', "alarm event $tag_point $tag_level"))
        panels.append(_gas_panel(cls, name, unit, thresholds, desc, targets))
    for cls, name, _agg, unit, thresholds, _desc in _GASES:
        panels.append(panel("bargauge", f"{name} now", [influx_target(
            "A", f'SELECT last("value") FROM "telemetry" WHERE $timeFilter AND {_F_INFLUX} AND "class" = \'{cls}\' '
                 'GROUP BY "asset", "point", "display_name", "unit"', "$tag_asset $tag_display_name")], 8, 6, unit=unit,
            thresholds=thresholds, options=_gauge_now()))
    panels.append(panel("table", "Alarm state per point (latest event)", [influx_target(
        "A", f'SELECT "level", "active", "value", "threshold", "unit" FROM "alarm" WHERE $timeFilter AND {_F_INFLUX} '
             'GROUP BY "site", "gateway", "asset", "point", "display_name" ORDER BY time DESC LIMIT 1', fmt="table")],
        24, 6, description="The newest alarm event of every point that had one in the time range.",
        overrides=[_level_column()]))
    panels.append(panel("table", "Alarm events", [influx_target(
        "A", 'SELECT "site", "gateway", "asset", "point", "display_name", "class", "level", "previous", "value", '
             f'"threshold", "unit", "active" FROM "alarm" WHERE $timeFilter AND {_F_INFLUX} '
             'ORDER BY time DESC LIMIT 500', fmt="table")], 24, 10,
        description="Every change of alarm level, at the source time of the sample that caused it. The KJ safety "
                    "monitoring system stays authoritative for power-off.",
        overrides=[_level_column()]))
    annotation = {"name": "Alarm events", "datasource": INFLUX, "enable": True, "iconColor": "red",
                  "query": 'SELECT "value", "point", "level" FROM "alarm" WHERE $timeFilter AND "site" =~ /^$site$/ '
                           "AND \"level\" != 'normal'",
                  "textColumn": "point", "tagsColumn": "level"}
    return dashboard("edgegw-mine-safety", "edgegw: mine safety",
                     "CH4 / CO / O2 by sensor location with alarm thresholds, and alarm events (InfluxDB 1.x).",
                     panels, influx_vars("site", "gateway"), ["influxdb", "mine"], [annotation])


def mine_safety_vm() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    for cls, name, agg, unit, thresholds, desc in _GASES:
        targets = [prom_target("A", f"{agg}_over_time(telemetry_value{{{_F_VM}, class=\"{cls}\"}}[$__interval])",
                               "{{asset}} {{display_name}}")]
        if cls == "ch4":
            targets.append(prom_target("B", f"last_over_time(alarm_value{{{_F_VM}, class=\"{cls}\"}}[$__interval])",
                                       "alarm event {{point}} {{level}}"))
        panels.append(_gas_panel(cls, name, unit, thresholds, desc, targets))
    for cls, name, _agg, unit, thresholds, _desc in _GASES:
        panels.append(panel("bargauge", f"{name} now", [prom_target(
            "A", f"last_over_time(telemetry_value{{{_F_VM}, class=\"{cls}\"}}[$__range])", "{{asset}} {{display_name}}",
            True)], 8, 6, unit=unit, thresholds=thresholds, options=_gauge_now()))
    panels.append(panel("table", "Alarm state per point (latest event)", [prom_target(
        "A", f"topk by (site, gateway, point) (1, tlast_over_time(alarm_value{{{_F_VM}}}[$__range])) * 1000", "", True,
        "table")], 24, 6, unit="dateTimeAsIso",
        description="The newest alarm event of every point (its level label) and when it happened.",
        overrides=[_level_column()]))
    panels.append(panel("table", "Alarm events", [
        prom_target("A", f"last_over_time(alarm_value{{{_F_VM}}}[$__interval])", "", False, "table"),
        prom_target("B", f"last_over_time(alarm_threshold{{{_F_VM}}}[$__interval])", "", False, "table")], 24, 10,
        description="Every change of alarm level (value and threshold), at the step of the sample that caused it. "
                    "VictoriaMetrics stores no strings: the previous level is in InfluxDB only.",
        transformations=[{"id": "merge", "options": {}},
                         {"id": "organize", "options": {"renameByName": {"Value #A": "value",
                                                                          "Value #B": "threshold"}}}],
        overrides=[_level_column()]))
    annotation = {"name": "Alarm events", "datasource": VM, "enable": True, "iconColor": "red",
                  "expr": 'last_over_time(alarm_value{site=~"$site", level!="normal"}[$__interval])',
                  "step": "", "titleFormat": "{{point}} {{level}}", "tagKeys": "level,class",
                  "useValueForTime": False}
    return dashboard("edgegw-mine-safety-vm", "edgegw: mine safety (VictoriaMetrics)",
                     "CH4 / CO / O2 by sensor location with alarm thresholds, and alarm events (VictoriaMetrics).",
                     panels, vm_vars("site", "gateway"), ["victoriametrics", "mine"], [annotation])


DASHBOARDS = {
    "influxdb/plant-overview.json": plant_overview_influx,
    "influxdb/device-detail.json": device_detail_influx,
    "influxdb/gateway-health.json": gateway_health_influx,
    "influxdb/mine-safety.json": mine_safety_influx,
    "victoriametrics/plant-overview.json": plant_overview_vm,
    "victoriametrics/device-detail.json": device_detail_vm,
    "victoriametrics/gateway-health.json": gateway_health_vm,
    "victoriametrics/mine-safety.json": mine_safety_vm,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    stale = []
    for name, text in render().items():
        path = OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python3 scripts/grafana_dashboards.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
