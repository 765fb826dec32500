"""A 104 point list (CSV) -> IEC 104 device config (pure, no I/O): how substation engineers keep them.

The header names the columns: ``name``, ``ioa`` and ``type`` are required; ``ca``, ``unit`` and
``scale`` are usual; every other column is a point key (``offset``, ``min``, ``max``, ``code``,
``display_name``, ``description``...) or a sub-table key with a dot (``tags.bay``).  ``type`` is the
type identification as written in the standard (``M_ME_NC_1``) or its number (``13``); ``ioa``
may be written in decimal or as ``0x4001``.  A bad row is reported as ``FILE:LINE: column: message``
and nothing is written.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from typing import Any

from drivers.iec104.codec import TypeId
from drivers.iec104.config import Iec104Point, PointType
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.models import ValidationError
from gateway.core.toml_writer import Table, render

__all__ = ["csv_to_points", "points_to_toml"]

_ALIASES = {"type_id": "type", "typeid": "type", "common_address": "ca", "asdu_address": "ca",
            "information_object_address": "ioa", "address": "ioa"}
_NUMBERS = {"scale", "offset", "min", "max"}
_TYPES = {str(int(TypeId[t.value])): t.value for t in PointType}


def _int(text: str) -> Any:
    try:
        return int(text, 0)
    except ValueError:
        return text  # pydantic says what is wrong, at its column


def _float(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def csv_to_points(text: str, source: str = "points.csv", lines: list[int] | None = None,
                  row_issues: list[ConfigIssue] | None = None) -> list[Iec104Point]:
    """The rows as points; ``lines``, when given, receives each point's line in the file;
    ``row_issues``, when given, receives the problems of rows (the good rows are returned, to be
    checked together in the same run), else they raise ConfigError."""
    reader = csv.DictReader(io.StringIO(text))
    header = [_ALIASES.get(h.strip().lower(), h.strip()) for h in reader.fieldnames or []]
    reader.fieldnames = header
    issues = [ConfigIssue(f"{source}:1", f"missing column {c!r}") for c in ("name", "ioa", "type") if c not in header]
    if issues:
        raise ConfigError(issues, source)
    points: list[Iec104Point] = []
    seen: dict[tuple[int | None, int], int] = {}
    for row in reader:
        line = reader.line_num
        if row.get(None):
            issues.append(ConfigIssue(f"{source}:{line}", "more cells than columns (a comma inside a cell? quote it)"))
            continue
        data: dict[str, Any] = {}
        for key, cell in row.items():
            if key is None or cell is None or not cell.strip():
                continue
            value: Any = cell.strip()
            if key == "type":
                key, value = "type_id", _TYPES.get(value, value.upper())
            elif key in ("ca", "ioa"):
                value = _int(value)
            elif key in _NUMBERS:
                value = _float(value)
            if "." in key:
                head, _, sub = key.partition(".")
                node = data.setdefault(head, {})
                if isinstance(node, dict):
                    node[sub] = value
                continue
            data[key] = value
        try:
            point = Iec104Point.model_validate(data)
        except ValidationError as err:
            for e in err.errors():
                col = ".".join(str(x) for x in e["loc"])
                col = "type" if col == "type_id" else col
                msg = str(e["msg"]).removeprefix("Value error, ")
                if e["type"] == "extra_forbidden":
                    msg = "unknown column (not a point key)"
                elif col == "type" and e["type"] == "enum":
                    msg = f"{data.get('type_id')!r} is not a monitored type this driver reads: " + ", ".join(
                        t.value for t in PointType)
                issues.append(ConfigIssue(f"{source}:{line}" + (f": {col}" if col else ""), msg))
            continue
        key = (point.ca, point.ioa)
        if key in seen:
            issues.append(ConfigIssue(f"{source}:{line}: ioa", f"CA {point.ca or 'default'} IOA {point.ioa} is also "
                                                               f"on line {seen[key]}"))
        seen[key] = line
        points.append(point)
        if lines is not None:
            lines.append(line)
    names = Counter(p.name for p in points)
    issues += [ConfigIssue(source, f"two rows are named {n!r}") for n, c in sorted(names.items()) if c > 1]
    if not points and not issues:
        issues.append(ConfigIssue(source, "no points in the list"))
    if row_issues is not None and points:
        row_issues += issues
    elif issues:
        raise ConfigError(issues, source)
    return points


def points_to_toml(points: Sequence[Iec104Point]) -> str:
    """``[[devices.points]]`` tables to paste under the station's ``[[devices]]`` entry; only non-default
    keys, every point keeping the CA its row gave (so the device's ``common_address`` does not matter)."""
    return render([
        Table(("devices", "points"), p.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True))
        for p in points
    ])
