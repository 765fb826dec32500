"""Formatting of browse results (pure): a table for people and a point list for `--emit-config`."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

from drivers.opcua.config import SecurityMode, SecurityPolicy, TrustPolicy

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
            v.node_id,
            v.browse_path,
            v.data_type + ("[]" if v.array else ""),
            v.unit or "-",
            _range_cell(v),
            v.access or "-",
        )
        for v in variables
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(f"{c:<{w}}" for c, w in zip(r[:5], widths, strict=True)) + f"  {r[5]}" for r in rows)


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


def _toml_str(s: str) -> str:
    """A TOML basic string; control characters (a server's text can hold anything) as \\uXXXX."""
    body = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", body) + '"'


def _security_lines(s: Security | None) -> list[str]:
    if s is None or s.policy is SecurityPolicy.NONE:
        return [
            'security_policy = "None"',
            'security_mode = "None"',
            "allow_no_security = true                  # browsed with security None: everything in clear",
        ]
    lines = [
        f"security_policy = {_toml_str(s.policy.value)}",
        f"security_mode = {_toml_str(s.mode.value)}",
        f"pki_dir = {_toml_str(s.pki_dir)}",
        f"trust = {_toml_str(s.trust.value)}",
    ]
    if s.certificate is not None:
        lines += [
            f"# browsed with --cert {s.certificate} --key {s.private_key or '?'}; a device has no such keys:",
            "# it presents <pki_dir>/own/cert.der (DER) and <pki_dir>/own/private/key.pem, so put that pair there",
        ]
    return lines


def emit_config(
    endpoint: str,
    variables: Sequence[Variable],
    device_name: str = "opcua-1",
    security: Security | None = None,
    range_check: bool = False,
) -> str:
    """A ready-to-paste [[devices]] block with the security browse used; readable variables only,
    arrays as JSON values, units from the servers' EngineeringUnits, min/max from their ranges.

    InstrumentRange is the instrument's physical limits (OPC UA Part 8): a value outside it is a
    sensor or wiring fault, so where a variable has one it is written as active min/max, and its
    EURange (if any) only as a comment.  EURange is the range of *normal operation*, not the
    instrument's limits: as a range check it would turn a real excursion (a temperature overshoot,
    a gas peak) into a bad sample without its value.  So without an InstrumentRange min/max are
    written as comments for the engineer to confirm, unless ``range_check`` (``--range-check``)
    asks for them active."""
    lines = [
        "[[devices]]",
        'type = "opcua"',
        f"name = {_toml_str(device_name)}",
        f"endpoint = {_toml_str(endpoint)}",
        *_security_lines(security),
        "",
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
        lines += ["  [[devices.points]]", f"  name = {_toml_str(name)}", f"  node_id = {_toml_str(v.node_id)}"]
        if v.unit:
            lines.append(f"  unit = {_toml_str(v.unit)}")
        comment = ""
        eu, ir = usable_range(v.eu_range), usable_range(v.instrument_range)
        if v.array:  # an array's JSON value is never range-checked
            lines.append('  array_mode = "json"')
        elif ir is not None:
            lines += [f"  min = {ir[0]!r}", f"  max = {ir[1]!r}"]  # repr: exact, and always a TOML float
            if eu is not None:
                lines.append(f"  # EURange (normal operation, for information): {eu[0]!r} .. {eu[1]!r}")
            comment = "; min/max: InstrumentRange (instrument limits): outside is bad (out_of_range)"
        elif eu is not None:
            mark = "" if range_check else "# "
            lines += [f"  {mark}min = {eu[0]!r}", f"  {mark}max = {eu[1]!r}"]
            comment = ("; min/max: EURange, outside it a sample is bad (out_of_range)" if range_check
                       else "; min/max from EURange (normal operation): uncomment to mark samples outside it bad")
        lines.append(f"  # {v.data_type}{comment}")
        lines.append("")
    return "\n".join(lines)
