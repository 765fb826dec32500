"""The one writer of generated config: TOML made from outside input (an OPC UA server's address
space, a plant engineer's CSV tag list) is data, never code.

Every key and value goes through tomli-w, which quotes and escapes strings (a server's text can hold
quotes, newlines, ``]``, ``#`` or a whole ``scale = 1000.0`` line); comments go through
:func:`comment`, which keeps them on one line (a newline in a comment ends the comment and starts
a line of TOML).  :func:`render` parses what it wrote and refuses to return a text that does not
read back as exactly the tables it was given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from gateway.core import tomlread

__all__ = ["Table", "comment", "render"]


@dataclass(frozen=True, slots=True)
class Table:
    """One ``[[path]]`` (``array``) or ``[path]`` table: its keys, keys written commented out for
    the engineer to confirm (``# min = 0.0``), and comment lines after them."""

    path: tuple[str, ...]
    values: Mapping[str, Any]
    array: bool = True
    commented: Mapping[str, Any] = field(default_factory=dict)
    notes: Sequence[str] = ()
    indent: str = ""


def comment(text: str) -> str:
    """``# text`` on one line: every character that is not printable (newline, CR, other control
    characters, line and paragraph separators, bidirectional overrides) becomes a visible ``\\uXXXX``."""
    return "# " + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _key(k: str) -> str:
    """A key as TOML writes it: bare where it may be, quoted and escaped otherwise."""
    return tomli_w.dumps({k: 0})[: -len(" = 0\n")]


def _body(path: tuple[str, ...], values: Mapping[str, Any], indent: str) -> list[str]:
    """Key/value lines, then each sub-table (a dict, or a list of dicts) under its full path: tomli-w
    on its own would head them relative to the document root."""
    plain = {k: v for k, v in values.items() if not _is_table(v)}
    # split on "\n" only: str.splitlines() also breaks at U+0085 and U+2028, which a TOML string may hold
    lines = [indent + line for line in tomli_w.dumps(plain).split("\n") if line]
    for k, v in values.items():
        if isinstance(v, Mapping):
            sub = (*path, k)
            lines += [f"{indent}[{'.'.join(map(_key, sub))}]", *_body(sub, v, indent)]
        elif _is_table(v):
            sub = (*path, k)
            for item in v:
                lines += [f"{indent}[[{'.'.join(map(_key, sub))}]]", *_body(sub, item, indent)]
    return lines


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping) or (
        isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)
    )


def _place(doc: dict[str, Any], t: Table) -> None:
    """Put a table where TOML puts it: a header's path goes through the last entry of every array."""
    node: Any = doc
    for k in t.path[:-1]:
        node = node.setdefault(k, {})
        if isinstance(node, list):
            node = node[-1]
    if t.array:
        node.setdefault(t.path[-1], []).append(dict(t.values))
    else:
        node[t.path[-1]] = dict(t.values)


def render(tables: Sequence[Table], preamble: Sequence[str] = ()) -> str:
    """The tables as TOML, blank-line separated, after ``preamble`` comment lines.

    Raises ValueError if the text would not parse back to exactly these tables (a value TOML cannot
    hold, such as NaN, which is not equal to itself)."""
    lines = [comment(p) for p in preamble]
    if lines:
        lines.append("")
    expected: dict[str, Any] = {}
    for t in tables:
        head = ".".join(map(_key, t.path))
        lines.append(f"{t.indent}[[{head}]]" if t.array else f"{t.indent}[{head}]")
        lines += _body(t.path, t.values, t.indent)
        for k, v in t.commented.items():
            lines += [t.indent + comment(line) for line in tomli_w.dumps({k: v}).split("\n") if line]
        lines += [t.indent + comment(n) for n in t.notes]
        lines.append("")
        _place(expected, t)
    text = "\n".join(lines)
    if tomlread.loads(text) != expected:
        raise ValueError("generated TOML does not read back as the tables it was made from")
    return text
