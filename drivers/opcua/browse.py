"""Formatting of browse results (pure): a table for people and a point list for `--emit-config`."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

from drivers.opcua.config import SecurityMode, SecurityPolicy, TrustPolicy
from gateway.core.toml_writer import Table, render

__all__ = ["emit_config", "format_table", "point_name", "usable_range"]


class Variable(Protocol):
    @property
    def node_id(self) -> str: ...
    @property
    def browse_path(self) -> str: ...
    @property
    def data_type(self) -> str: ...
    @property
    def access(self) -> str: ...
    @property
    def array(self) -> bool: ...
    @property
    def unit(self) -> str: ...
    @property
    def eu_range(self) -> tuple[float, float] | None: ...
    @property
    def instrument_range(self) -> tuple[float, float] | None: ...


class Security(Protocol):
    """The security `edgegw browse` used (driver.SecuritySettings), so the emitted device connects the same way."""

    @property
    def policy(self) -> SecurityPolicy: ...
    @property
    def mode(self) -> SecurityMode: ...
    @property
    def pki_dir(self) -> str: ...
    @property
    def trust(self) -> TrustPolicy: ...
    @property
    def certificate(self) -> str | None: ...  # --cert / --key: a device config has no keys for them
    @property
    def private_key(self) -> str | None: ...


def format_table(variables: Sequence[Variable]) -> str:
    rows = [("NODE ID", "BROWSE PATH", "DATA TYPE", "UNIT", "RANGE", "ACCESS")]
    rows += [
        (
            _printable(v.node_id),
            _printable(v.browse_path),
            _printable(v.data_type) + ("[]" if v.array else ""),
            _printable(v.unit) or "-",
            _range_cell(v),
            v.access or "-",
        )
        for v in variables
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(f"{c:<{w}}" for c, w in zip(r[:5], widths, strict=True)) + f"  {r[5]}" for r in rows)


def _printable(text: str) -> str:
    """Server text for a terminal: control characters (escape sequences, newlines) as \\uXXXX, so a
    server can neither add table rows nor drive the operator's terminal."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _range_cell(v: Variable) -> str:
    """``0..1600`` (EURange); ``instr:0..1800`` when the InstrumentRange gives the (active) limits."""
    if (ir := usable_range(v.instrument_range)) is not None:
        return f"instr:{_num(ir[0])}..{_num(ir[1])}"
    if (eu := usable_range(v.eu_range)) is not None:
        return f"{_num(eu[0])}..{_num(eu[1])}"
    return "-"


def usable_range(r: tuple[float, float] | None) -> tuple[float, float] | None:
    """A range as limits: both ends finite and Low < High, else None (browse already drops the others)."""
    if r is None:
        return None
    lo, hi = float(r[0]), float(r[1])
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and lo < hi else None


def _num(x: float) -> str:
    """0.0 -> "0", 1600.0 -> "1600", 6.5 -> "6.5": short for the table, exact (repr) otherwise."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def point_name(browse_path: str) -> str:
    """``Objects/Gasifier01/Reactor/Temperature`` -> ``Gasifier01.Reactor.Temperature`` (a valid Key)."""
    name = browse_path.removeprefix("Objects/").replace("/", ".")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._-") or "point"
    return name[:64]


def _security_table(s: Security | None) -> tuple[dict[str, Any], list[str]]:
    """The device's security keys and the comments that go with them."""
    if s is None or s.policy is SecurityPolicy.NONE:
        keys: dict[str, Any] = {"security_policy": "None", "security_mode": "None", "allow_no_security": True}
        return keys, ["browsed with security None: everything travels in clear (see docs/opcua.md, Security)"]
    keys = {
        "security_policy": s.policy.value,
        "security_mode": s.mode.value,
        "pki_dir": s.pki_dir,
        "trust": s.trust.value,
    }
    notes = []
    if s.certificate is not None:
        notes = [
            f"browsed with --cert {s.certificate} --key {s.private_key or '?'}; a device has no such keys:",
            "it presents <pki_dir>/own/cert.der (DER) and <pki_dir>/own/private/key.pem, so put that pair there",
        ]
    return keys, notes


def emit_config(
    endpoint: str,
    variables: Sequence[Variable],
    device_name: str = "opcua-1",
    security: Security | None = None,
    range_check: bool = False,
) -> str:
    """A ready-to-paste [[devices]] block with the security browse used; readable variables only,
    arrays as JSON values, units from the servers' EngineeringUnits, min/max from their ranges.

    Everything the server supplied (node ids, units, data-type names) is data: the block is written
    by :func:`gateway.core.toml_writer.render`, which quotes every string and keeps comments on one line.

    InstrumentRange is the instrument's physical limits (OPC UA Part 8): a value outside it is a
    sensor or wiring fault, so where a variable has one it is written as active min/max, and its
    EURange (if any) only as a comment.  EURange is the range of *normal operation*, not the
    instrument's limits: as a range check it would turn a real excursion (a temperature overshoot,
    a gas peak) into a bad sample without its value.  So without an InstrumentRange min/max are
    written as comments for the engineer to confirm, unless ``range_check`` (``--range-check``)
    asks for them active."""
    sec, sec_notes = _security_table(security)
    tables = [
        Table(("devices",), {"type": "opcua", "name": device_name, "endpoint": endpoint, **sec}, notes=sec_notes)
    ]
    used: set[str] = set()
    for v in variables:
        if "r" not in v.access:
            continue
        name = point_name(v.browse_path)
        base, n = name, 2
        while name in used:
            name = f"{base[:60]}_{n}"
            n += 1
        used.add(name)
        keys: dict[str, Any] = {"name": name, "node_id": v.node_id}
        shown = v.browse_path.removeprefix("Objects/").replace("/", ".")
        if not shown.isascii() and shown.isprintable():
            # a name in another script (气化炉.温度) cannot be a key, which stays ASCII (topics, codes):
            # it becomes the point's display name, shown on the status page and written as a tag
            keys["display_name"] = shown[:200]
        commented: dict[str, Any] = {}
        notes: list[str] = []
        if v.unit:
            keys["unit"] = v.unit
        comment = ""
        eu, ir = usable_range(v.eu_range), usable_range(v.instrument_range)
        if v.array:  # an array's JSON value is never range-checked
            keys["array_mode"] = "json"
        elif ir is not None:
            keys |= {"min": ir[0], "max": ir[1]}
            if eu is not None:
                notes.append(f"EURange (normal operation, for information): {eu[0]!r} .. {eu[1]!r}")
            comment = "; min/max: InstrumentRange (instrument limits): outside is bad (out_of_range)"
        elif eu is not None:
            (keys if range_check else commented).update({"min": eu[0], "max": eu[1]})
            comment = ("; min/max: EURange, outside it a sample is bad (out_of_range)" if range_check
                       else "; min/max from EURange (normal operation): uncomment to mark samples outside it bad")
        notes.append(f"{v.data_type}{comment}")
        tables.append(Table(("devices", "points"), keys, commented=commented, notes=notes, indent="  "))
    return render(tables)
