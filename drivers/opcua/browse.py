"""Formatting of browse results (pure): a table for people and a point list for `--emit-config`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from drivers.opcua.config import SecurityMode, SecurityPolicy, TrustPolicy

__all__ = ["emit_config", "format_table", "point_name"]


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
            f"{_num(v.eu_range[0])}..{_num(v.eu_range[1])}" if v.eu_range else "-",
            v.access or "-",
        )
        for v in variables
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(f"{c:<{w}}" for c, w in zip(r[:5], widths, strict=True)) + f"  {r[5]}" for r in rows)


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
    arrays as JSON values, units from the servers' EngineeringUnits, min/max from their EURange.

    EURange is the range of *normal operation* (OPC UA Part 8), not the instrument's limits: as a
    range check it would turn a real excursion (a temperature overshoot, a gas peak) into a bad
    sample without its value.  So min/max are written as comments for the engineer to confirm,
    unless ``range_check`` (``--range-check``) asks for them active."""
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
        if v.array:
            lines.append('  array_mode = "json"')
        elif v.eu_range is not None:  # an array's JSON value is never range-checked
            lo, hi = (float(x) for x in v.eu_range)  # repr: exact, and always a TOML float
            mark = "" if range_check else "# "
            lines += [f"  {mark}min = {lo!r}", f"  {mark}max = {hi!r}"]
        ranged = v.eu_range is not None and not v.array
        lines.append(f"  # {v.data_type}" + (
            ("; min/max: EURange, outside it a sample is bad (out_of_range)" if range_check
             else "; min/max from EURange (normal operation): uncomment to mark samples outside it bad")
            if ranged else ""))
        lines.append("")
    return "\n".join(lines)
