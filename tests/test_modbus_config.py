"""Modbus config: 1-based notation converted, mistakes reported at their location."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from drivers.modbus.config import ModbusDeviceBase, ModbusPoint, Table, parse_address
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
    assert isinstance(pt, ModbusPoint)
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
    ],
)
def test_mistakes_are_located(points: list[dict[str, Any]], expected: str) -> None:
    found = issues_of(with_points(*points))
    assert any(expected in f for f in found), found


def test_any_views_of_one_register_may_overlap() -> None:
    """A status word and its bits, signed and unsigned, a float and its halves: real tag lists have them."""
    parse(
        with_points(
            {"name": "b0", "address": 0, "data_type": "bool", "bit": 0},
            {"name": "b1", "address": 0, "data_type": "bool", "bit": 1},
            {"name": "word", "address": 0, "data_type": "uint16"},
            {"name": "signed", "address": 0, "data_type": "int16"},
            {"name": "f", "address": 4, "data_type": "float32"},
            {"name": "f_again", "address": 4, "data_type": "float32", "scale": 2.0},
            {"name": "f_low", "address": 5, "data_type": "uint16"},
            {"name": "label", "address": 3, "data_type": "string", "length": 2},
        )
    )


def _line_device(name: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "modbus_rtu", "name": name, "port": "/dev/ttyS1", "unit_id": 1,
                            "points": [{"name": "a", "address": 0}]}
    return {**base, **kw}


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        (
            [_line_device("p1"), _line_device("p2", unit_id=2, baudrate=19200)],
            "devices[1].baudrate: 19200 differs from 9600 of devices[0] ('p1') on the same line /dev/ttyS1",
        ),
        (
            [_line_device("p1"), _line_device("p2", unit_id=2, parity="N")],
            "devices[1].parity: 'N' differs from 'E' of devices[0] ('p1')",
        ),
        (
            [_line_device("p1", unit_id=3), _line_device("p2", unit_id=3)],
            "devices[1].unit_id: unit id 3 is already used on line /dev/ttyS1 by devices[0]",
        ),
        (
            [{"type": "modbus_rtu_tcp", "name": "a", "host": "127.0.0.1", "port": 4001,
              "points": [{"name": "x", "address": 0}]},
             {"type": "modbus_rtu_tcp", "name": "b", "host": "127.0.0.1", "port": 4001, "frame_gap_ms": 9,
              "unit_id": 2, "points": [{"name": "x", "address": 0}]}],
            "devices[1].frame_gap_ms: 9.0 differs from 2.0 of devices[0] ('a') on the same line 127.0.0.1 4001",
        ),
        ([_line_device("p1", unit_id=0)], "devices[0].unit_id: Input should be greater than or equal to 1"),
        ([_line_device("p1", unit_id=248)], "devices[0].unit_id: Input should be less than or equal to 247"),
        ([_line_device("p1", parity="X")], "devices[0].parity: Input should be 'N', 'E' or 'O'"),
        ([_line_device("p1", stopbits=3)], "devices[0].stopbits"),
        ([_line_device("p1", bytesize=7)], "devices[0]: Modbus RTU needs bytesize = 8"),
        ([_line_device("p1", baudrate=50)], "devices[0].baudrate: Input should be greater than or equal to 300"),
        ([_line_device("p1", port="")], "devices[0].port"),
        (
            [_line_device("p1", points=[{"name": "a", "address": 0, "group": "fast"}])],
            "devices[0]: points[0].group = 'fast' is not in poll_groups (none defined)",
        ),
        (
            [_line_device("p1", poll_groups={"fast": 5})],
            "devices[0]: poll_groups.fast = 5: a poll interval must be 10..86400000 ms",
        ),
        ([_line_device("p1", retries=11)], "devices[0].retries: Input should be less than or equal to 10"),
    ],
)
def test_line_and_schedule_mistakes_are_located(devices: list[dict[str, Any]], expected: str) -> None:
    data = copy.deepcopy(GOOD)
    data["devices"] = devices
    found = issues_of(data)
    assert any(expected in f for f in found), found


def test_devices_on_one_line_may_differ_in_unit_and_points_and_disabled_ones_are_not_checked() -> None:
    data = copy.deepcopy(GOOD)
    data["devices"] = [
        _line_device("p1", baudrate=19200, poll_groups={"fast": 200, "slow": 5000},
                     points=[{"name": "a", "address": 0, "group": "fast"}, {"name": "b", "address": 9, "group": "slow"},
                             {"name": "c", "address": 20}]),
        _line_device("p2", unit_id=2, baudrate=19200),
        _line_device("p3", unit_id=2, enabled=False),
    ]
    cfg = parse(data)
    dev = cfg.devices[0]
    assert isinstance(dev, ModbusDeviceBase)
    assert dev.group_intervals_ms() == {"": 1000, "fast": 200, "slow": 5000}
