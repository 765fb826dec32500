"""TIA Portal PLC tag tables (CSV or XLSX export) -> S7 point config (pure, no I/O but the bytes given).

TIA Portal exports a tag table ("Export" in the PLC tags editor) as an XLSX sheet ``PLC Tags``
with the columns ``Name``, ``Path``, ``Data Type``, ``Logical Address``, ``Comment`` and some HMI
flags; saved as CSV it keeps the same header.  Each row becomes one point:

- ``Name`` -> ``name`` when it is a valid key (letters, digits, ``_ . -``); otherwise a key is made
  from its ASCII letters and digits (or ``tag_<line>``) and the name is kept as ``display_name``;
- ``Logical Address`` (``%DB10.DBD4``, ``%M0.1``, ``%IW64``) -> ``address`` (parsed, located errors);
- ``Data Type`` (``Real``, ``Bool``, ``String[20]``...) -> ``data_type`` (and ``length`` of a string);
- ``Comment`` -> ``description``.

Rows whose data type the driver does not read (Timer, Counter, Time, DTL, UDTs, arrays) are listed
as warnings and left out; every other problem is an error located as ``FILE:LINE: column`` and
nothing is written.  Extra columns this driver knows (``unit``, ``scale``, ``min``...) are taken
as in the Modbus tag list.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from typing import Any
from xml.etree import ElementTree

from drivers.s7.config import DataType, S7Point
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.models import ValidationError
from gateway.core.schema import KEY_PATTERN
from gateway.core.toml_writer import Table, render

__all__ = ["import_device", "points_to_toml", "read_table", "rows_to_points"]

_KEY = re.compile(KEY_PATTERN)
_COLUMNS = {"name": "Name", "data type": "Data Type", "logical address": "Logical Address"}
_OWN = {"name", "path", "data type", "logical address", "comment", "hmi visible", "hmi accessible",
        "hmi writeable", "typeobject id", "version id", "accessible from hmi/opc ua", "writable from hmi/opc ua",
        "visible in hmi engineering", "retain"}
_NUMBERS = {"scale", "offset", "min", "max"}
_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def read_table(data: bytes, source: str) -> list[tuple[int, dict[str, str]]]:
    """(line, {column: cell}) per row of a CSV (UTF-8, with or without BOM) or XLSX tag table."""
    if data[:2] == b"PK":
        return _xlsx(data, source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        why = f"neither XLSX nor UTF-8 CSV ({err.reason} at byte {err.start}): export again, or save as CSV UTF-8"
        raise ConfigError([ConfigIssue(source, why)], source) from None
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","  # German-locale Excel writes ';'
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    rows = []
    for row in reader:
        rows.append((reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}))
    if reader.fieldnames is None:
        raise ConfigError([ConfigIssue(source, "empty tag table")], source)
    _check_header(list(reader.fieldnames), source)
    return rows


def _check_header(header: list[str], source: str) -> None:
    have = {h.strip().lower() for h in header}
    missing = [shown for key, shown in _COLUMNS.items() if key not in have]
    if missing:
        raise ConfigError([ConfigIssue(f"{source}:1", f"missing column {', '.join(map(repr, missing))} (a TIA Portal "
                                                       "PLC tag table has Name, Data Type, Logical Address)")], source)


def _xlsx(data: bytes, source: str) -> list[tuple[int, dict[str, str]]]:
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = set(z.namelist())
        shared: list[str] = []
        if "xl/sharedStrings.xml" in names:
            root = ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t")) for si in root.findall("m:si", _NS)]
        sheet = _sheet_path(z, names)
        root = ElementTree.fromstring(z.read(sheet))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError) as err:
        raise ConfigError([ConfigIssue(source, f"not a readable XLSX workbook: {err}")], source) from None
    table: list[tuple[int, list[str]]] = []
    for row in root.iter(f"{{{_NS['m']}}}row"):
        line = int(row.get("r", len(table) + 1))
        cells: list[str] = []
        for c in row.findall("m:c", _NS):
            col = _column(c.get("r", ""))
            while len(cells) < col:
                cells.append("")
            kind = c.get("t")
            if kind == "inlineStr":
                value = "".join(t.text or "" for t in c.iter(f"{{{_NS['m']}}}t"))
            else:
                v = c.find("m:v", _NS)
                value = "" if v is None or v.text is None else v.text
                if kind == "s" and value.isdigit() and int(value) < len(shared):
                    value = shared[int(value)]
            if col < len(cells):
                cells[col] = value
            else:
                cells.append(value)
        table.append((line, cells))
    if not table:
        raise ConfigError([ConfigIssue(source, "the first sheet is empty")], source)
    header = [h.strip() for h in table[0][1]]
    _check_header(header, source)
    return [(line, {h: (cells[i] if i < len(cells) else "") for i, h in enumerate(header) if h})
            for line, cells in table[1:] if any(x.strip() for x in cells)]


def _sheet_path(z: zipfile.ZipFile, names: set[str]) -> str:
    """The sheet named "PLC Tags" if there is one, else the first."""
    wb = ElementTree.fromstring(z.read("xl/workbook.xml"))
    sheets = wb.findall("m:sheets/m:sheet", _NS)
    rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target", "") for r in rels}
    chosen = next((s for s in sheets if s.get("name") == "PLC Tags"), sheets[0] if sheets else None)
    if chosen is None:
        raise KeyError("no sheet")
    target = targets.get(chosen.get(_REL), "")
    path = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    if path not in names:
        raise KeyError(path)
    return path


def _column(ref: str) -> int:
    n = 0
    for ch in ref:
        if not ch.isalpha():
            break
        n = n * 26 + ord(ch.upper()) - 64
    return max(n - 1, 0)


def _key(name: str, line: int) -> str:
    if _KEY.match(name):
        return name
    ascii_key = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_.-]", "_", name)).strip("_.-")[:64]
    return ascii_key if ascii_key and _KEY.match(ascii_key) else f"tag_{line}"


def rows_to_points(rows: list[tuple[int, dict[str, str]]], source: str = "tags.csv",
                   lines: list[int] | None = None, warnings: list[ConfigIssue] | None = None) -> list[S7Point]:
    """The rows as points; ``lines`` receives each point's line, ``warnings`` the rows left out."""
    issues: list[ConfigIssue] = []
    points: list[S7Point] = []
    for line, row in rows:
        cells = {k.strip().lower(): v.strip() for k, v in row.items()}
        name, type_text, address = cells.get("name", ""), cells.get("data type", ""), cells.get("logical address", "")
        if not (name or type_text or address):
            continue
        kind = DataType._missing_(type_text) if type_text else None
        if type_text and kind is None:
            if warnings is not None:
                warnings.append(ConfigIssue(f"{source}:{line}", f"{name!r} is a {type_text}, which the S7 driver does "
                                                                 "not read: left out"))
            continue
        data: dict[str, Any] = {"name": _key(name, line), "address": address.removeprefix("%")}
        if data["name"] != name and name:
            data["display_name"] = name
        if kind is not None:
            data["data_type"] = kind.value
            m = re.search(r"\[(\d+)\]", type_text)
            if m and kind in (DataType.STRING, DataType.WSTRING):
                data["length"] = int(m.group(1))
        if cells.get("comment"):
            data["description"] = cells["comment"]
        for key, cell in cells.items():
            if key in _OWN or not cell:
                continue
            data[key] = _number(cell) if key in _NUMBERS else cell
        try:
            points.append(S7Point.model_validate(data))
            if lines is not None:
                lines.append(line)
        except ValidationError as err:
            for e in err.errors():
                col = ".".join(str(x) for x in e["loc"])
                col = {"address": "Logical Address", "data_type": "Data Type", "name": "Name"}.get(col, col)
                msg = str(e["msg"]).removeprefix("Value error, ")
                if e["type"] == "extra_forbidden":
                    msg = "unknown column (not a point key)"
                issues.append(ConfigIssue(f"{source}:{line}" + (f": {col}" if col else ""), msg))
    names = [p.name for p in points]
    twice = sorted({n for n in names if names.count(n) > 1})
    issues += [ConfigIssue(source, f"two rows are named {n!r}") for n in twice]
    if issues:
        raise ConfigError(issues, source)
    return points


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def points_to_toml(points: list[S7Point]) -> str:
    """``[[devices.points]]`` tables to paste under an S7 ``[[devices]]`` entry; only non-default keys
    (every cell quoted by :func:`gateway.toml_writer.render`, so no cell can add a key or table)."""
    return render([
        Table(("devices", "points"), p.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True))
        for p in points
    ])


def import_device(points: list[S7Point]) -> dict[str, Any]:
    """A minimal S7 ``[[devices]]`` entry holding imported points, for the check `edgegw check` would make
    (their poll groups are the device's business)."""
    return {
        "type": "s7", "name": "import", "host": "127.0.0.1", "family": "s7-1500",
        "poll_groups": {p.group: 1000 for p in points if p.group},
        "points": [p.model_dump(mode="json", exclude_defaults=True, exclude_none=True, by_alias=True) for p in points],
    }
