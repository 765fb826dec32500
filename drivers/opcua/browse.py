"""Formatting of browse results (pure): a table for people and a point list for `--emit-config`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

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


def format_table(variables: Sequence[Variable]) -> str:
    rows = [("NODE ID", "BROWSE PATH", "DATA TYPE", "ACCESS")]
    rows += [(v.node_id, v.browse_path, v.data_type + ("[]" if v.array else ""), v.access or "-") for v in variables]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows
    )


def point_name(browse_path: str) -> str:
    """``Objects/Gasifier01/Reactor/Temperature`` -> ``Gasifier01.Reactor.Temperature`` (a valid Key)."""
    name = browse_path.removeprefix("Objects/").replace("/", ".")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._-") or "point"
    return name[:64]


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def emit_config(endpoint: str, variables: Sequence[Variable], device_name: str = "opcua-1") -> str:
    """A ready-to-paste [[devices]] block; readable variables only, arrays as JSON values."""
    lines = [
        "[[devices]]",
        'type = "opcua"',
        f"name = {_toml_str(device_name)}",
        f"endpoint = {_toml_str(endpoint)}",
        'security_policy = "Basic256Sha256"',
        'security_mode = "SignAndEncrypt"',
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
        if v.array:
            lines.append('  array_mode = "json"')
        lines.append(f"  # {v.data_type}")
        lines.append("")
    return "\n".join(lines)
