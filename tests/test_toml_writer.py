"""gateway.core.toml_writer: outside text written into config reads back as exactly that text, never as TOML."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.toml_writer import Table, comment, render

HOSTILE = [
    'a"b',
    "line1\nscale = 1000.0",
    "x\r\nscale = 1000.0",
    "]\n[[devices]]\nname = \"pwn\"",
    "# not a comment",
    '"""',
    "'''",
    "\\u0022",
    "back\\slash",
    "tab\there",
    "nul\x00byte",
    "del\x7f",
    "sep\u2028scale = 1.0\u2029",
    "rtl\u202eoverride",
    "scale = 1000.0",
    "[devices.points]",
    "ns=2;s=T\"1\n]",
    "甲烷 °C",
]


def test_hostile_values_and_notes_read_back_exactly() -> None:
    tables = [
        Table(("devices",), {"type": "opcua", "name": "d", "endpoint": HOSTILE[1]}, notes=HOSTILE),
        *(
            Table(("devices", "points"), {"name": f"p{i}", "node_id": text, "unit": text},
                  commented={"min": 0.0, "note": text}, notes=[text, text + text], indent="  ")
            for i, text in enumerate(HOSTILE)
        ),
    ]
    text = render(tables, preamble=HOSTILE)
    doc = tomllib.loads(text)
    assert list(doc) == ["devices"]
    (dev,) = doc["devices"]
    assert set(dev) == {"type", "name", "endpoint", "points"}
    assert dev["endpoint"] == HOSTILE[1]
    assert [p["node_id"] for p in dev["points"]] == HOSTILE
    assert all(set(p) == {"name", "node_id", "unit"} for p in dev["points"])
    # the commented-out keys stay comments whatever their value holds
    assert "  # min = 0.0\n" in text


def test_comment_is_one_line_whatever_the_text() -> None:
    for text in HOSTILE:
        c = comment(text)
        assert c.startswith("# ") and len(c.splitlines()) == 1, repr(text)
        assert tomllib.loads(c + "\n") == {}
    assert comment("line1\nscale = 1000.0") == "# line1\\u000ascale = 1000.0"


def test_sub_tables_and_keys_are_placed_under_their_own_entry() -> None:
    tables = [
        Table(("devices", "points"), {"name": "a", "tags": {"odd key]": "v\n[x]"}, "alarm": {"high": 1.0}}),
        Table(("devices", "points"), {"name": "b", 'k"ey': 1}),
    ]
    doc = tomllib.loads(render(tables))
    assert doc == {"devices": {"points": [
        {"name": "a", "tags": {"odd key]": "v\n[x]"}, "alarm": {"high": 1.0}},
        {"name": "b", 'k"ey': 1},
    ]}}


def test_a_value_toml_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="does not read back"):
        render([Table(("devices", "points"), {"name": "a", "min": float("nan")})])


_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
_scalar = st.one_of(_text, st.integers(-(2**63), 2**63 - 1), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.dictionaries(_text, _scalar, min_size=1, max_size=5), st.lists(_text, max_size=3),
                  st.dictionaries(_text, _scalar, max_size=2)),
        min_size=1, max_size=4,
    ),
    st.lists(_text, max_size=2),
)
def test_any_text_reads_back_as_exactly_the_tables(
    rows: list[tuple[dict[str, Any], list[str], dict[str, Any]]], preamble: list[str]
) -> None:
    tables = [Table(("devices", "points"), values, notes=notes, commented=commented, indent="  ")
              for values, notes, commented in rows]
    assert tomllib.loads(render(tables, preamble)) == {"devices": {"points": [v for v, _n, _c in rows]}}
