"""A meter point list (CSV) -> DL/T 645 device config (pure, no I/O): how energy managers keep them.

The header names the columns; ``address`` (the meter's 12 digits), ``name`` and ``di`` (the data
identifier, DI3 first: ``02 01 01 00``) are required; ``meter_address`` and ``data_identifier`` are
accepted for them.  Every other column is a point key (``unit``, ``format``, ``signed``, ``scale``,
``min``, ``max``, ``code``, ``display_name``...) or a sub-table key with a dot (``tags.area``).
Rows of one address become one meter.  A bad row is reported as ``FILE:LINE: column: message``
and nothing is written.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from drivers.dlt645.codec import format_address, parse_address
from drivers.dlt645.config import Dlt645Point
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.models import ValidationError
from gateway.core.toml_writer import Table, render

__all__ = ["csv_to_meters", "meters_to_toml"]

_ALIASES = {"meter_address": "address", "meter": "address", "data_identifier": "di"}
_NUMBERS = {"scale", "offset", "min", "max"}


def csv_to_meters(
    text: str, source: str = "meters.csv", lines: dict[str, list[int]] | None = None
) -> dict[str, list[Dlt645Point]]:
    """Meter address (12 digits) -> its points, in the order of the list; ``lines``, when given,
    receives each meter's points' lines in the file."""
    reader = csv.DictReader(io.StringIO(text))
    header = [_ALIASES.get(h.strip().lower(), h.strip()) for h in reader.fieldnames or []]
    reader.fieldnames = header
    issues = [ConfigIssue(f"{source}:1", f"missing column {c!r}") for c in ("address", "name", "di") if c not in header]
    if issues:
        raise ConfigError(issues, source)
    meters: dict[str, list[Dlt645Point]] = {}
    where: dict[tuple[str, str], int] = {}
    for row in reader:
        line = reader.line_num
        if row.get(None):
            issues.append(ConfigIssue(f"{source}:{line}", "more cells than columns (a comma inside a cell? quote it)"))
            continue
        try:
            address = format_address(parse_address(row.get("address") or ""))
        except ValueError as err:
            issues.append(ConfigIssue(f"{source}:{line}: address", str(err)))
            continue
        data: dict[str, Any] = {}
        for key, cell in row.items():
            if key in (None, "address") or cell is None or not cell.strip():
                continue
            value: Any = cell.strip()
            if key in _NUMBERS:
                value = _number(value)
            elif key == "signed":
                value = {"true": True, "false": False, "1": True, "0": False}.get(value.lower(), value)
            if "." in key:
                head, _, sub = key.partition(".")
                node = data.setdefault(head, {})
                if isinstance(node, dict):
                    node[sub] = value
                continue
            data[key] = value
        try:
            point = Dlt645Point.model_validate(data)
        except ValidationError as err:
            for e in err.errors():
                col = ".".join(str(x) for x in e["loc"])
                msg = str(e["msg"]).removeprefix("Value error, ")
                if e["type"] == "extra_forbidden":
                    msg = "unknown column (not a point key)"
                issues.append(ConfigIssue(f"{source}:{line}" + (f": {col}" if col else ""), msg))
            continue
        for key, what in ((point.name, "name"), (point.di, "data identifier")):
            if (address, key) in where:
                issues.append(ConfigIssue(f"{source}:{line}: {'name' if what == 'name' else 'di'}",
                                          f"meter {address} already has {what} {key!r} (line {where[address, key]})"))
        where[address, point.name] = where[address, point.di] = line
        meters.setdefault(address, []).append(point)
        if lines is not None:
            lines.setdefault(address, []).append(line)
    if issues:
        raise ConfigError(issues, source)
    if not meters:
        raise ConfigError([ConfigIssue(source, "no rows: the list has a header only")], source)
    return meters


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text  # pydantic reports it at its column


def meters_to_toml(meters: dict[str, list[Dlt645Point]], line: dict[str, Any]) -> str:
    """One ``[[devices]]`` per meter on ``line`` (``type`` and ``port``, or ``host`` and ``port``),
    named ``meter-<address>``; points with only their non-default keys."""
    tables: list[Table] = []
    for address, points in meters.items():
        tables.append(Table(("devices",), {**line, "name": f"meter-{address}", "address": address}))
        tables += [
            Table(("devices", "points"),
                  p.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True))
            for p in points
        ]
    note = "generated by `edgegw import-tags dlt645`: check the line settings (port, baudrate, parity)"
    return render(tables, preamble=[note])
