"""S7 device config: located errors (`edgegw check` lines), TSAPs per PLC family, and the wiring into
the config union (the type is known, its errors located at the point)."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.s7.config import S7Device, parse_tsap
from gateway.config import parse
from gateway.core.errors import ConfigError


def config(device: dict[str, Any]) -> dict[str, Any]:
    base = {"type": "s7", "name": "hoist", "host": "127.0.0.1", "family": "s7-1200",
            "points": [{"name": "speed", "address": "DB10.DBD4", "data_type": "real"}]}
    return {"gateway": {"id": "gw", "site": "baotou", "enterprise_prefix": "88.608.5288"},
            "devices": [{**base, **device}]}


def issues(device: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(config(device))
    return [str(i) for i in err.value.issues]


def test_a_valid_device() -> None:
    dev = parse(config({})).devices[0]
    assert isinstance(dev, S7Device)
    assert dev.port == 102 and dev.tsaps() == (0x0100, 0x0301)  # S7 basic connection, rack 0, slot 1


@pytest.mark.parametrize(("device", "tsaps"), [
    ({"family": "s7-300"}, (0x0100, 0x0302)),
    ({"family": "s7-400", "rack": 0, "slot": 3}, (0x0100, 0x0303)),
    ({"family": "s7-400", "rack": 1, "slot": 4}, (0x0100, 0x0324)),
    ({"family": "s7-1500"}, (0x0100, 0x0301)),
    ({"family": "s7-1500", "connection_type": "op"}, (0x0100, 0x0201)),
    ({"family": "s7-300", "connection_type": "pg"}, (0x0100, 0x0102)),
    ({"family": "s7-1200", "slot": 0}, (0x0100, 0x0300)),
    ({"family": "s7-200-smart"}, (0x0100, 0x0301)),
    ({"family": "s7-200-smart", "connection_type": "pg"}, (0x0100, 0x0101)),
    ({"family": "s7-200-smart", "local_tsap": "10.00", "remote_tsap": "03.00"}, (0x1000, 0x0300)),
    ({"family": "s7-300", "remote_tsap": "0x0103"}, (0x0100, 0x0103)),
])
def test_tsaps_per_family(device: dict[str, Any], tsaps: tuple[int, int]) -> None:
    dev = parse(config(device)).devices[0]
    assert isinstance(dev, S7Device)
    assert dev.tsaps() == tsaps


def test_parse_tsap() -> None:
    assert parse_tsap("01.02") == parse_tsap("0x0102") == parse_tsap("0102") == parse_tsap(0x0102) == 0x0102
    for bad in ("zz.01", "1.2.3", "0x10000", True, 1.5):
        with pytest.raises(ValueError, match="TSAP"):
            parse_tsap(bad)


@pytest.mark.parametrize(("device", "want"), [
    ({"points": [{"name": "s", "address": "DB10.DBQ4"}]},
     "devices[0].points[0].address: S7 address 'DB10.DBQ4': 'Q' at position 8: expected a size letter"),
    ({"points": [{"name": "s", "address": "DB10.DBD8", "data_type": "lreal"}]},
     "devices[0].points[0]: LREAL values are addressed by their first byte: write 'DB10.DBB8', not 'DB10.DBD8'"),
    ({"points": [{"name": "s", "address": "MD4", "data_type": "int"}]},
     "address 'MD4' is a dword (32 bit), but data_type 'int' needs 2 bytes: write 'MW4'"),
    ({"points": [{"name": "s", "address": "MW4", "data_type": "bool"}]}, "needs a bit: write 'MX4.0'"),
    ({"points": [{"name": "s", "address": "DB1.DBB0", "data_type": "timer"}]}, "devices[0].points[0].data_type: Input"),
    ({"points": [{"name": "s", "address": "DB1.DBW0", "length": 4}]}, "`length` is only for data_type 'string'"),
    ({"points": [{"name": "s", "address": "DB1.DBB65500", "data_type": "string", "length": 100}]},
     "a string of 102 bytes at byte 65500 runs past 65535"),
    ({"points": [{"name": "s", "address": 4}]}, "devices[0].points[0].address: S7 address must be text"),
    ({"family": "s7-200"}, "devices[0].family: Input should be 's7-200-smart', 's7-300'"),
    ({"family": "s7-200-smart", "slot": 1}, "an S7-200 SMART has no rack / slot"),
    ({"slot": 1, "remote_tsap": "03.01"}, "give either rack / slot or remote_tsap, not both"),
    ({"remote_tsap": "x"}, "devices[0].remote_tsap: TSAP 'x' is not hex"),
    ({"pdu_size": 100}, "devices[0].pdu_size: Input should be greater than or equal to 240"),
    ({"points": [{"name": "a", "address": "MW0"}, {"name": "a", "address": "MW2"}]}, "two points are named 'a'"),
    ({"port": 0}, "devices[0].port:"),
    ({"points": [{"name": "a", "address": "MW0", "group": "fast"}]}, "points[0].group = 'fast' is not in poll_groups"),
    ({"poll_groups": {"fast": 5}}, "poll_groups.fast = 5: a poll interval must be 10..86400000 ms"),
])
def test_located_errors(device: dict[str, Any], want: str) -> None:
    got = issues(device)
    assert any(want in line for line in got), got


def test_unknown_type_lists_s7() -> None:
    got = issues({"type": "s7x"})
    assert any("unknown device type 's7x'; known: " in i and ", s7" in i for i in got), got


def test_every_sample_address_notation_is_accepted() -> None:
    points = [{"name": f"p{i}", "address": a} for i, a in enumerate(
        ["DB10.DBD4", "DB10.DBX2.3", "DB1.DBW0", "M0.1", "MW10", "IW64", "QX0.0", "%I0.0", "MB1", "QD4"])]
    dev = parse(config({"points": points})).devices[0]
    assert isinstance(dev, S7Device)
    assert [p.type.value for p in dev.points] == ["dword", "bool", "word", "bool", "word", "word", "bool", "bool",
                                                 "byte", "dword"]


def test_the_sample_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main
    from tests.gateway_process import REPO

    sample = REPO / "drivers" / "s7" / "sample.toml"
    assert main(["check", "-c", str(sample)]) == 0, capsys.readouterr()
    assert "ok (3 devices, 16 points" in capsys.readouterr().out
