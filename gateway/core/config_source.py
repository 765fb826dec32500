"""Where a config problem sits in the TOML file, and what an unknown key probably meant (pure, no I/O).

``tomllib`` gives values, not positions, so :func:`key_positions` scans the text for table headers,
``key =`` lines and the inline tables of multi-line arrays, and maps each to the location string
validation errors use (``devices[0].points[3].address``).  It is a best effort for the way configs
are written (one key per line); a location it cannot place is printed without a line.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any

from gateway.core.models import BaseModel

__all__ = ["did_you_mean", "key_positions", "position_of"]

_ARRAY_TABLE = re.compile(r"^\[\[\s*([^\]]+?)\s*\]\]")
_TABLE = re.compile(r"^\[\s*([^\]]+?)\s*\]")
_KEY = re.compile(r"""^((?:[A-Za-z0-9_-]+|"[^"]*")(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"))*)\s*=\s*(.*)$""")


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip('"') for p in dotted.split(".")]


def key_positions(text: str) -> dict[str, tuple[int, int]]:
    """Location (as in validation errors) -> (line, column), both 1-based."""
    positions: dict[str, tuple[int, int]] = {}
    counts: dict[str, int] = {}  # array-of-tables path -> index of its last table

    def resolve(parts: list[str]) -> str:
        cur = ""
        for p in parts:
            cur = f"{cur}.{p}" if cur else p
            if cur in counts:
                cur = f"{cur}[{counts[cur]}]"
        return cur

    table = ""
    array: str | None = None  # a multi-line array of inline tables being read: its location
    item = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        col = len(raw) - len(raw.lstrip()) + 1
        if not line or line.startswith("#"):
            continue
        if array is not None:
            if line.startswith("{"):
                positions.setdefault(f"{array}[{item}]", (n, col))
                item += 1
                continue
            if line.startswith("]"):
                array = None
                continue
            continue
        m = _ARRAY_TABLE.match(line)
        if m:
            parts = _parts(m.group(1))
            parent = resolve(parts[:-1])
            path = f"{parent}.{parts[-1]}" if parent else parts[-1]
            counts[path] = counts.get(path, -1) + 1
            table = f"{path}[{counts[path]}]"
            positions.setdefault(table, (n, col))
            continue
        m = _TABLE.match(line)
        if m:
            table = resolve(_parts(m.group(1)))
            positions.setdefault(table, (n, col))
            continue
        m = _KEY.match(line)
        if m:
            key = ".".join(_parts(m.group(1)))
            loc = f"{table}.{key}" if table else key
            positions.setdefault(loc, (n, col))
            rest = m.group(2).split("#", 1)[0].strip()
            if rest == "[":
                array, item = loc, 0
    return positions


def position_of(location: str, positions: dict[str, tuple[int, int]]) -> tuple[int, int] | None:
    """The position of ``location`` or of the nearest enclosing key or table that has one."""
    loc = location
    while loc:
        if loc in positions:
            return positions[loc]
        cut = max(loc.rfind("."), loc.rfind("["))
        if cut <= 0:
            break
        loc = loc[:cut]
    return None


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's annotation (``list[X]``, ``X | None``, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models(arg)
    return out


def did_you_mean(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """For an unknown key at ``loc`` (pydantic's error location): ``did you mean 'x'?`` or ''."""
    models: list[type[BaseModel]] = [root]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        tagged = [m for m in models if _tag(m) == part]
        if tagged:  # the discriminator pydantic puts after a union member's index
            models = tagged
            continue
        nxt: list[type[BaseModel]] = []
        for m in models:
            field = m.model_fields.get(part)
            if field is not None:
                nxt += _models(field.annotation)
        models = nxt
    key = str(loc[-1])
    known = sorted({name for m in models for name in m.model_fields})
    synonym = _SYNONYMS.get(key.lower().replace("-", "_"))
    if synonym in known:
        return f"; did you mean {synonym!r}?"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# what other tools and vendors call our keys: not close in spelling, so difflib would not find them
_SYNONYMS = {
    "serial_port": "port", "device": "port", "tty": "port", "com_port": "port",
    "slave": "unit_id", "slave_id": "unit_id", "device_id": "unit_id", "unit": "unit_id", "station": "unit_id",
    "node": "unit_id", "baud": "baudrate", "baud_rate": "baudrate", "ip": "host", "address_ip": "host",
    "register": "address", "reg": "address", "offset_address": "address", "datatype": "data_type",
    "type_": "data_type", "dtype": "data_type", "byteorder": "byte_order", "endian": "byte_order",
    "endianness": "byte_order", "word_order": "byte_order", "swap": "byte_order", "function": "table",
    "register_type": "table", "area": "table", "multiplier": "scale", "gain": "scale", "factor": "scale",
    "units": "unit", "eng_unit": "unit", "engineering_unit": "unit", "label": "display_name",
    "alias": "display_name", "title": "display_name", "comment": "description", "desc": "description",
    "interval_ms": "poll_interval_ms", "scan_rate_ms": "poll_interval_ms", "poll_ms": "poll_interval_ms",
    "timeout": "timeout_ms", "retry": "retries", "url": "endpoint", "nodeid": "node_id",
}


def _tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None
