"""`edgegw check` says every mistake at once, each with the TOML line and column, suggests the key an
unknown one was probably meant to be, and explains why names stay ASCII."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.core.config_source import key_positions, position_of

CONFIG = """\
[gateway]
id = "gw1"
site = "baotou-mine-01"
enterprise_prefix = "88.608.5288"

[[devices]]
type = "modbus_tcp"
name = "gas-sub-01"
host = "127.0.0.1"
pol_interval_ms = 1000

  [[devices.points]]
  name = "ch4"
  address = 0

  [[devices.points]]
  name = "甲烷"
  address = 1
  scael = 0.01

[[devices]]
type = "modbus_tcp"
name = "gas-sub-02"
host = "127.0.0.1"
points = [
  { name = "co", address = 0 },
  { name = "o2", address = -1 },
]
"""


def test_every_mistake_with_line_column_and_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG, encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration (4 problem(s))" in err, err
    assert f"  {path}:10:1: devices[0].pol_interval_ms: unknown key; did you mean 'poll_interval_ms'?" in err
    assert f"  {path}:17:3: devices[0].points[1].name: '甲烷' is not a valid key" in err
    assert "which stay ASCII; put the name people use in display_name, e.g. display_name = '甲烷'" in err
    assert f"  {path}:19:3: devices[0].points[1].scael: unknown key; did you mean 'scale'?" in err
    assert f"  {path}:27:3: devices[1].points[1].address: Input should be greater than or equal to 0" in err


def test_positions_of_tables_keys_and_inline_tables() -> None:
    pos = key_positions(CONFIG)
    assert pos["gateway.site"] == (3, 1)
    assert pos["devices[1]"] == (21, 1)
    assert pos["devices[0].points[1]"] == (16, 3)
    assert position_of("devices[1].points[0].name", pos) == (26, 3)
    assert position_of("devices[5].name", pos) is None


def test_an_integer_address_that_reads_like_notation_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.split("[[devices]]")[0] + """[[devices]]
type = "modbus_tcp"
name = "gas-sub-01"
host = "127.0.0.1"
points = [
  { name = "ch4", address = 30003 },
  { name = "co", address = 30004, table = "input_register" },
  { name = "o2", address = "30005" },
  { name = "raw", address = 30006, table = "coil", data_type = "bool" },
  { name = "low", address = 9999 },
]
""", encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert ("warning: devices[0].points[0].address: 30003 is read as the 0-based protocol address 30003 of a"
            " holding_register; in the vendors' 1-based notation (and in a CSV tag list) 30003 is input_register 2:"
            ' write address = "30003" for that') in err
    assert "warning: devices[0].points[1].address: 30004 is read as the 0-based protocol address 30004;" in err
    assert "points[2]" not in err and "points[3]" not in err and "points[4]" not in err


@pytest.mark.parametrize("written", ["address = 0x7533", "address = 30_003", '"address" = +30003',
                                     "address\t=\t0o72463", "address=0b111010100110011"])
def test_every_way_of_writing_the_integer_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str
) -> None:
    """`check` parses the file a second time only where an address could be flagged (a 100,000-point
    config saves 2 s): the filter must let through every TOML spelling of such an integer."""
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.split("[[devices]]")[0] + f"""[[devices]]
type = "modbus_tcp"
name = "gas-sub-01"
host = "127.0.0.1"
points = [
  {{ name = "ch4", {written} }},
]
""", encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 0
    assert "warning: devices[0].points[0].address: 30003 is read as the 0-based" in capsys.readouterr().err


CROSS_TREE = """\
[gateway]
id = "gw1"
site = "baotou-mine-01"

[uplink]
host = "127.0.0.1"

[[devices]]
type = "modbus_tcp"
name = "gas-sub-01"
host = "127.0.0.1"

  [[devices.points]]
  name = "ch4"
  address = 0
  code = "88.608.5288/DEV.x.ch4"
  data_grade = "core"

  [[devices.points]]
  name = "co"
  address = 1
  scael = 0.01

[[devices]]
type = "modbus_tcp"
name = "gas-sub-01"
host = "127.0.0.1"
pol_interval_ms = 5
points = [
  { name = "co", address = -1, code = "88.608.5288/DEV.x.co" },
  { name = "o2", address = 2, code = "88.608.5288/DEV.x.ch4" },
]
"""


def test_field_errors_and_checks_across_the_tree_in_one_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A field error (unknown key, bad address) no longer hides the checks across the tree: the
    duplicate device name, the duplicate identifier code, the missing code and the forwarding policy
    of a core point are all said in the same run, in the order of the file, each with line:column."""
    path = tmp_path / "gateway.toml"
    path.write_text(CROSS_TREE, encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [ln.strip() for ln in err.splitlines()[1:]]
    expected = [
        f"{path}:17:3: devices[0].points[0].data_grade: core data may only leave the site over TLS",
        f"{path}:19:3: devices[0].points[1].code: missing: give a code or set gateway.enterprise_prefix",
        f"{path}:22:3: devices[0].points[1].scael: unknown key; did you mean 'scale'?",
        f"{path}:26:1: devices[1].name: device name 'gas-sub-01' is already used by devices[0]",
        f"{path}:28:1: devices[1].pol_interval_ms: unknown key; did you mean 'poll_interval_ms'?",
        f"{path}:30:3: devices[1].points[0].address: Input should be greater than or equal to 0",
        f"{path}:31:3: devices[1].points[1].code: identifier '88.608.5288/DEV.x.ch4' is already used by "
        "devices[0].points[0].code",
    ]
    assert len(lines) == len(expected), err
    for got, want in zip(lines, expected, strict=True):
        assert got.startswith(want), (got, want)
    assert f"invalid configuration ({len(expected)} problem(s))" in err


@pytest.mark.parametrize(("device_key", "point_key", "want_device", "want_point"), [
    ("serial_port", "register", "port", "address"),
    ("slave", "datatype", "unit_id", "data_type"),
    ("baud", "multiplier", "baudrate", "scale"),
])
def test_unknown_keys_other_tools_use_get_our_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], device_key: str, point_key: str, want_device: str,
    want_point: str,
) -> None:
    """Vendor words (Kepware, pymodbus, spreadsheets) are not close in spelling to ours: a table of
    synonyms answers them, where spelling distance alone says nothing."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[gateway]\nid = "gw1"\nsite = "s1"\nenterprise_prefix = "88.608.5288"\n\n'
        f'[[devices]]\ntype = "modbus_rtu"\nname = "d1"\nport = "/dev/ttyS1"\n{device_key} = 1\n'
        f'points = [ {{ name = "p", address = 0, {point_key} = 1 }} ]\n', encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"devices[0].{device_key}: unknown key; did you mean '{want_device}'?" in err, err
    assert f"devices[0].points[0].{point_key}: unknown key; did you mean '{want_point}'?" in err, err
