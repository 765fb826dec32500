"""InfluxDB line protocol, correct by construction: the one encoder of telemetry and alarm rows.

Every row the ingest writes passes through :func:`telemetry_line` or :func:`alarm_line`, which
either return the exact bytes of one line or raise :class:`LineError` with the reason that row
cannot be stored as it was sent.  Nothing is silently altered: a string that a store would read
back differently is refused, never "cleaned".

The rules (measured on InfluxDB 1.6.7 and VictoriaMetrics 1.79.5, see ``shared/reference/ingest.md``):

- measurement: ``,`` and space escaped; tag keys, tag values: ``,``, ``=`` and space escaped.
  Backslashes are where the stores disagree.  InfluxDB only unescapes ``\\,`` ``\\=`` and ``\\ ``
  in tags, so a backslash is written as it is (``a\\b`` reads back ``a\\b``) and a tag ending in a
  backslash cannot be stored at all; VictoriaMetrics unescapes ``\\\\``, so there a backslash is
  doubled.  Hence a :data:`Dialect` per store.
- string fields: ``\\`` and ``"`` escaped, always double-quoted; a newline inside the quotes is
  stored by InfluxDB as it is.  VictoriaMetrics stores every field as a number (a string becomes
  ``0``), so in its dialect string fields are left out and a string *value* is refused.
- tag values cannot be empty (the tag is left out), carry no newline or carriage return, and must
  be valid Unicode (a lone surrogate cannot be UTF-8 encoded).
- the identity of a row (site, gateway) comes from the MQTT topic, never from the payload: a tag
  that would override ``code``, ``device``, ``point``, ``site``, ``gateway`` ... is refused, and so is
  a tag named like a field or ``time``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from gateway.core.point import Point

__all__ = [
    "ALARM_FIELDS",
    "CATALOG_TAGS",
    "IDENTITY_TAGS",
    "MAX_TIMESTAMP_NS",
    "NAME_TAGS",
    "RESERVED_TAG_KEYS",
    "TELEMETRY_FIELDS",
    "VM_MAX_FUTURE_NS",
    "Dialect",
    "LineError",
    "alarm_line",
    "check_timestamp",
    "config_tag_issue",
    "line",
    "series",
    "tag_value_issue",
    "telemetry_fields",
    "telemetry_line",
    "telemetry_series",
]

Dialect = Literal["influxdb", "victoriametrics"]

IDENTITY_TAGS = frozenset({"code", "device", "device_code", "point", "unit", "site", "gateway"})
TELEMETRY_FIELDS = frozenset({"value", "value_bool", "value_str", "quality", "reason", "historical"})
ALARM_FIELDS = frozenset({"previous", "active", "value", "threshold"})
# tags the gateway sets itself from the device and point config: a configured tag of that name would be overwritten
CATALOG_TAGS = frozenset({"asset", "line", "data_grade", "data_domain", "data_category", "personal_info", "class"})
# tags the ingest adds from the gateway's retained catalog of names (gateway.names); `display_name`
# may also be given as a configured tag (older configs), the others only by the config's name keys
NAME_TAGS = ("display_name", "description", "device_display_name", "device_description", "site_display_name",
             "site_description")
RESERVED_TAG_KEYS = IDENTITY_TAGS | TELEMETRY_FIELDS | ALARM_FIELDS | {"time", "level"}
MAX_TIMESTAMP_NS = 9_223_372_036_854_775_806  # InfluxDB: "time outside range" beyond +-this
_VM_MAX_LABEL_BYTES = 16_384  # -maxLabelValueLen: longer values are truncated (two series merge)
_VM_MAX_LABELS = 30  # -maxLabelsPerTimeseries: extra labels are dropped (the db label among them)
VM_MAX_FUTURE_NS = 2 * 86_400 * 10**9  # rows beyond now + 2 days are dropped silently
_INFLUX_MAX_KEY = 65_535  # series key (+ field key) length


class LineError(ValueError):
    """One row cannot be stored exactly as sent; ``str(err)`` is the reason for the dead letter."""


def config_tag_issue(key: str, value: str) -> str | None:
    """Why a configured tag would be refused at the ingest, or None (used by ``edgegw check``)."""
    if key in NAME_TAGS and key != "display_name":
        owner = "the gateway's site_" if key.startswith("site_") else "the device's " if key.startswith("device_") \
            else "the point's "
        return (f"tag name {key!r} is reserved: give {owner}{key.removeprefix('site_').removeprefix('device_')} "
                "instead (names travel in the gateway's catalog and become this tag at the ingest)")
    if key in RESERVED_TAG_KEYS or key in CATALOG_TAGS or key.startswith("_"):
        return (f"tag name {key!r} is reserved (built-in tags {', '.join(sorted(IDENTITY_TAGS | CATALOG_TAGS))}; "
                f"field names; 'time'; names starting with '_')")
    issue = tag_value_issue(value)
    return f"tag {key!r}: {issue}" if issue else None


def tag_value_issue(value: str) -> str | None:
    """Why a configured tag value cannot be stored by every supported store, or None."""
    return _value_issue(value, "influxdb")


def _value_issue(value: str, dialect: Dialect) -> str | None:
    if "\n" in value or "\r" in value:
        return "a tag value cannot hold a line break"
    if dialect == "influxdb" and value.endswith("\\"):
        return "a tag value cannot end with a backslash (InfluxDB refuses it)"
    return None


def _esc_tag(s: str, dialect: Dialect) -> str:
    if dialect == "victoriametrics":
        s = s.replace("\\", "\\\\")
    return s.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _esc_measurement(s: str) -> str:
    if not s:
        raise LineError("empty measurement name")
    return s.replace(",", "\\,").replace(" ", "\\ ")


def _esc_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(v: Any, name: str) -> str:
    try:
        f = float(v)
    except OverflowError:
        raise LineError(f"{name} {str(v)[:40]}... is too large for a float field") from None
    if not math.isfinite(f):
        raise LineError(f"{name} is not a finite number")
    return repr(f)


def _tag_part(tags: Mapping[str, str], dialect: Dialect) -> str:
    parts = []
    for k in sorted(tags):
        v = tags[k]
        if not v:
            continue  # an empty tag value cannot be written: the tag is left out
        if not k or "\n" in k or "\r" in k or k.endswith("\\") or k.startswith("_") or k == "time":
            raise LineError(f"tag name {k!r} cannot be stored")
        issue = _value_issue(v, dialect)
        if issue:
            raise LineError(f"tag {k}: {issue}")
        if dialect == "victoriametrics" and len(v.encode("utf-8", "surrogatepass")) > _VM_MAX_LABEL_BYTES:
            raise LineError(f"tag {k} is longer than VictoriaMetrics stores ({_VM_MAX_LABEL_BYTES} bytes)")
        parts.append(f"{_esc_tag(k, dialect)}={_esc_tag(v, dialect)}")
    if dialect == "victoriametrics" and len(parts) + 1 > _VM_MAX_LABELS:
        raise LineError(f"{len(parts)} tags: VictoriaMetrics keeps at most {_VM_MAX_LABELS - 1} (and db)")
    return ",".join(parts)


def _merge_tags(base: dict[str, str], extra: Iterable[tuple[str, str]], site: str) -> dict[str, str]:
    """Payload tags join the identity tags; none may replace them (a payload cannot move a row)."""
    for k, v in extra:
        if k in RESERVED_TAG_KEYS or k.startswith("_"):
            if k == "site" and v == site:
                continue  # the catalog repeats the site: harmless when it is the topic's
            raise LineError(f"tag {k!r} in the payload collides with a built-in tag or field")
        base[k] = v
    return base


def series(measurement: str, tags: Mapping[str, str], dialect: Dialect) -> str:
    """``measurement,tag=value,...``: the part of a line that is the same for every sample of a point
    (the ingest caches it per catalog row); checked for everything a store could not hold."""
    text = f"{_esc_measurement(measurement)},{_tag_part(tags, dialect)}"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as err:
        raise LineError(f"text is not valid Unicode ({err.reason} at {err.start})") from None
    if dialect == "influxdb" and size + 20 > _INFLUX_MAX_KEY:
        raise LineError(f"series key of {size} bytes: InfluxDB stores at most {_INFLUX_MAX_KEY}")
    return text


def telemetry_series(measurement: str, key: str, code: str, unit: str, device: str, device_code: str,
                     tags: Iterable[tuple[str, str]], site: str, gateway: str, dialect: Dialect,
                     names: Iterable[tuple[str, str]] = ()) -> str:
    """The series of a telemetry point; site and gateway are the topic's (the broker's ACL authenticates it).

    ``names``: the point's :data:`NAME_TAGS` from the gateway's catalog (any language); escaped here
    like every tag value, by the store's rules."""
    merged = _merge_tags({"code": code, "device": device, "device_code": device_code, "point": key, "unit": unit,
                          "site": site, "gateway": gateway}, tags, site)
    merged.update(names)
    return series(measurement, merged, dialect)


def telemetry_fields(v: Any, quality: int, reason: str | None, historical: bool, dialect: Dialect) -> str:
    """``value=...,quality=...i[,reason="..."][,historical=true]`` of one sample."""
    t = type(v)
    if t is float:
        if v != v or v in (math.inf, -math.inf):
            raise LineError("value is not a finite number")
        head = f"value={v!r},"
    elif t is bool:
        head = "value_bool=true," if v else "value_bool=false,"
    elif t is int:
        head = f"value={_number(v, 'value')},"
    elif t is str:
        if dialect == "victoriametrics":
            raise LineError("VictoriaMetrics cannot store a string value (it would store 0)")
        head = f"value_str={_esc_str(v)},"
    elif v is None:
        head = ""
    else:
        raise LineError(f"value of type {t.__name__} cannot be stored")
    tail = ""
    if reason and dialect != "victoriametrics":
        tail = f",reason={_esc_str(reason)}"
    if historical:  # a field, not a tag: a replay must land on the same series as the live point
        tail += ",historical=true"
    return f"{head}quality={quality}i{tail}"


def check_timestamp(ts_ns: Any, dialect: Dialect, now_ns: int) -> None:
    if type(ts_ns) is not int or not -MAX_TIMESTAMP_NS <= ts_ns <= MAX_TIMESTAMP_NS:
        raise LineError(f"timestamp {str(ts_ns)[:30]} is outside what InfluxDB stores")
    if dialect == "victoriametrics" and ts_ns > now_ns + VM_MAX_FUTURE_NS:
        raise LineError("timestamp more than 2 days ahead: VictoriaMetrics drops it")


def line(series_text: str, fields: str, ts_ns: int) -> bytes:
    try:
        return f"{series_text} {fields} {ts_ns}".encode()
    except UnicodeEncodeError as err:
        raise LineError(f"text is not valid Unicode ({err.reason} at {err.start})") from None


def telemetry_line(p: Point, measurement: str, site: str, gateway: str, dialect: Dialect = "influxdb",
                   now_ns: int = 0) -> bytes:
    """One telemetry row (the ingest builds the same bytes from a cached series and the columns)."""
    check_timestamp(p.ts_ns, dialect, now_ns)
    text = telemetry_series(measurement, p.key, p.code, p.unit, p.device, p.device_code, p.tags, site, gateway,
                            dialect)
    return line(text, telemetry_fields(p.value, int(p.quality), p.reason, p.historical, dialect), p.ts_ns)


_ALARM_TAGS = ("code", "device", "device_code", "point", "class", "data_grade", "data_domain", "unit", "level")


def alarm_line(doc: Mapping[str, Any], measurement: str, site: str, gateway: str, dialect: Dialect = "influxdb",
               now_ns: int = 0, names: Iterable[tuple[str, str]] = ()) -> bytes:
    """One alarm row of a decoded event (:func:`gateway.codec.decode_alarm`); ``names`` as for
    :func:`telemetry_series`."""
    tags = {k: str(doc[k]) for k in _ALARM_TAGS}
    tags.update(site=site, gateway=gateway)
    tags = _merge_tags(tags, dict(doc.get("tags", {})).items(), site)
    tags.update(names)
    fields = []
    if dialect != "victoriametrics":
        fields.append(f"previous={_esc_str(str(doc['previous']))}")
    fields.append(f"active={'true' if doc['active'] else 'false'}")
    for k in ("value", "threshold"):
        v = doc.get(k)
        if v is not None:
            fields.append(f"{k}={_number(v, k)}")
    check_timestamp(doc["ts_ns"], dialect, now_ns)
    return line(series(measurement, tags, dialect), ",".join(fields), doc["ts_ns"])
