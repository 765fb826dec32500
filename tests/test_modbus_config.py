"""Modbus config: 1-based notation converted, mistakes reported at their location."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from drivers.modbus.config import Table, parse_address
from gateway.config import parse
from tests.test_config import GOOD, issues_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("40001", (Table.HOLDING_REGISTER, 0)),
        ("400001", (Table.HOLDING_REGISTER, 0)),
        ("4x0010", (Table.HOLDING_REGISTER, 9)),
        ("30003", (Table.INPUT_REGISTER, 2)),
        ("465536", (Table.HOLDING_REGISTER, 65535)),
        ("00001", (Table.COIL, 0)),
        ("10017", (Table.DISCRETE_INPUT, 16)),
    ],
)
def test_one_based_notation(text: str, expected: tuple[Table, int]) -> None:
    assert parse_address(text) == expected


def with_points(*points: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    data["devices"][0]["points"] = list(points)
    return data


def test_notation_sets_the_table() -> None:
    cfg = parse(with_points({"name": "t", "address": "30008", "data_type": "int16"}))
    (pt,) = cfg.devices[0].points
    assert (pt.table, pt.address) == (Table.INPUT_REGISTER, 7)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (
            [{"name": "a", "address": "30001", "table": "holding_register"}],
            "devices[0].points[0]: address '30001' is a input_register, but table = 'holding_register'",
        ),
        ([{"name": "a", "address": "400000"}], "register number 0 is outside 1..65536"),
        ([{"name": "a", "address": 65535, "data_type": "float32"}], "runs past 65535"),
        (
            [{"name": "s", "address": 65530, "data_type": "string", "length": 10}],
            "devices[0].points[0]: a string of 10 registers at address 65530 runs past 65535",
        ),
        ([{"name": "s", "address": 0, "data_type": "string"}], "a string needs `length`"),
        ([{"name": "a", "address": 0, "byte_order": "ADBC"}], "devices[0].points[0].byte_order: Input should be"),
        ([{"name": "c", "table": "coil", "address": 0, "data_type": "int16"}], "data_type must be 'bool'"),
        ([{"name": "b", "address": 0, "data_type": "bool"}], "needs `bit`"),
        ([{"name": "b", "address": 0, "data_type": "bool", "bit": 16}], "devices[0].points[0].bit: Input should be"),
        ([{"name": "f", "address": 0, "data_type": "float32", "enum": {"1": "on"}}], "enum map needs an integer"),
        (
            [{"name": "f", "address": 0, "data_type": "float32"}, {"name": "g", "address": 1, "data_type": "uint16"}],
            "devices[0]: points 'f' (float32 at 0) and 'g' (uint16 at 1) overlap",
        ),
    ],
)
def test_mistakes_are_located(points: list[dict[str, Any]], expected: str) -> None:
    found = issues_of(with_points(*points))
    assert any(expected in f for f in found), found


def test_bits_of_one_word_and_identical_aliases_may_overlap() -> None:
    parse(
        with_points(
            {"name": "b0", "address": 0, "data_type": "bool", "bit": 0},
            {"name": "b1", "address": 0, "data_type": "bool", "bit": 1},
            {"name": "f", "address": 4, "data_type": "float32"},
            {"name": "f_again", "address": 4, "data_type": "float32", "scale": 2.0},
        )
    )
