"""CSV tag lists -> Modbus point config (pure, no I/O): how plant engineers keep their point tables.

The header names the columns; ``name`` and ``address`` are required, every other column is a
:class:`~drivers.modbus.config.ModbusPoint` key (``table``, ``data_type``, ``byte_order``, ``bit``,
``length``, ``string_order``, ``scale``, ``offset``, ``unit``, ``min``, ``max``, ``code``...), or a key
of one of its sub-tables written with a dot (``scaling.raw_low``, ``scaling.eng_high``, ``tags.area``).
Empty cells mean "default".  Each row is validated as a point, so a bad row is reported as
``FILE:LINE: column: message`` and nothing is written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from drivers.modbus.config import ModbusPoint
from gateway.core.config_source import did_you_mean
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.models import ValidationError
from gateway.core.schema import error_message
from gateway.core.toml_writer import Table, render

__all__ = ["csv_to_points", "points_to_toml"]

_NUMBERS = {"scale", "offset", "min", "max"}
_INTEGERS = {"bit", "length"}


def csv_to_points(text: str, source: str = "tags.csv", lines: list[int] | None = None,
                  row_issues: list[ConfigIssue] | None = None) -> list[ModbusPoint]:
    """The rows as points; ``lines``, when given, receives each point's line in the file.

    ``row_issues``, when given, receives the problems of single rows and the good rows are returned,
    so that the caller can check those together in the same run (every problem at once); without
    it any problem raises :class:`ConfigError`.  A problem of the header always raises."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    issues = [ConfigIssue(f"{source}:1", f"missing column {c!r}") for c in ("name", "address") if c not in header]
    known = set(ModbusPoint.model_fields) | {"class"}
    for column in header:  # said once for the file, with the key it probably meant, not once per row
        if column and column.partition(".")[0] not in known:
            hint = did_you_mean(ModbusPoint, (column,))
            issues.append(ConfigIssue(f"{source}:1", f"column {column!r} is not a point key{hint}"))
    if issues:
        raise ConfigError(issues, source)
    points: list[ModbusPoint] = []
    for row in reader:
        line = reader.line_num
        data: dict[str, Any] = {}
        for key, cell in row.items():
            if key is None or cell is None or not cell.strip():
                continue
            value: Any = cell.strip()
            if key == "address" and value.isdigit() and not (len(value) >= 5 and value[0] in "0134"):
                value = int(value)
            elif key in _INTEGERS:
                value = _number(value, int)
            elif key in _NUMBERS:
                value = _number(value, float)
            if "." in key:  # a sub-table key: scaling.eng_high, alarm.high, deadband.absolute, tags.area...
                head, _, sub = key.partition(".")
                node = data.setdefault(head, {})
                if isinstance(node, dict):
                    node[sub] = value if head == "tags" else _scalar(value)
                continue
            data[key] = value
        try:
            points.append(ModbusPoint.model_validate(data))
            if lines is not None:
                lines.append(line)
        except ValidationError as err:
            for e in err.errors():
                col = ".".join(str(x) for x in e["loc"])
                msg = error_message(e, ModbusPoint, "column")
                issues.append(ConfigIssue(f"{source}:{line}" + (f": {col}" if col else ""), msg))
    names = [p.name for p in points]
    issues += [
        ConfigIssue(source, f"two rows are named {n!r}") for n in sorted({n for n in names if names.count(n) > 1})
    ]
    if row_issues is not None:
        row_issues += issues
    elif issues:
        raise ConfigError(issues, source)
    return points


def _scalar(text: str) -> Any:
    """A sub-table cell: an integer, a number, true / false, or the text (pydantic says what is wrong)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _number(text: str, kind: type[int] | type[float]) -> Any:
    """The number, or the text unchanged so pydantic reports it at its column."""
    try:
        return kind(text)
    except ValueError:
        return text


def points_to_toml(points: Sequence[ModbusPoint]) -> str:
    """``[[devices.points]]`` tables to paste under a ``[[devices]]`` entry; only non-default keys.

    The cells are a spreadsheet's text: written by :func:`gateway.core.toml_writer.render`, which quotes
    and escapes every string, so no cell can add a key or a table."""
    return render([
        Table(("devices", "points"), p.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True))
        for p in points
    ])
