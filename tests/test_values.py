"""The value domain (gateway.core.values), the encoder's backstop, and string_encoding in config and decoders."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import pytest

from drivers.modbus.config import DataType
from drivers.modbus.decode import Decoder, Field
from drivers.opcua.config import OpcUaDevice
from drivers.opcua.decode import convert_value
from gateway.catalog import build_catalog
from gateway.codec import Encoder, decode
from gateway.config import parse
from gateway.core.errors import ConfigError
from gateway.core.point import Quality, Sample
from gateway.core.values import ENCODING_ERROR, INT_MAX, INT_MIN, StringEncoding, admit, redecode

METHANE_GBK = "甲烷".encode("gbk")  # b"\xbc\xd7\xcd\xe9"
AS_ASYNCUA = METHANE_GBK.decode("utf-8", "surrogateescape")  # what asyncua and the wire decoder hand over


class Level(enum.IntEnum):
    HIGH = 3


class Text(str):
    pass


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (True, (True, Quality.GOOD, None)),
        (INT_MAX, (INT_MAX, Quality.GOOD, None)),
        (INT_MIN, (INT_MIN, Quality.GOOD, None)),
        (INT_MAX + 1, (None, Quality.BAD, ENCODING_ERROR)),
        (INT_MIN - 1, (None, Quality.BAD, ENCODING_ERROR)),
        (1.5, (1.5, Quality.GOOD, None)),
        (float("nan"), (None, Quality.BAD, "nan")),
        (float("-inf"), (None, Quality.BAD, "inf")),
        ("甲烷", ("甲烷", Quality.GOOD, None)),
        (AS_ASYNCUA, (None, Quality.BAD, ENCODING_ERROR)),
        ("\ud800", (None, Quality.BAD, ENCODING_ERROR)),
        (Level.HIGH, (3, Quality.GOOD, None)),
        (Text("x"), ("x", Quality.GOOD, None)),
        (b"\x00\x01", (None, Quality.BAD, ENCODING_ERROR)),
        ([1, [2, 3]], (None, Quality.BAD, ENCODING_ERROR)),
        ({"a": 1}, (None, Quality.BAD, ENCODING_ERROR)),
        (1 + 2j, (None, Quality.BAD, ENCODING_ERROR)),
        (None, (None, Quality.GOOD, None)),  # a gap encodes as it is
    ],
)
def test_admit_keeps_what_encodes_and_spoils_only_the_rest(value: Any, want: tuple[Any, Quality, Any]) -> None:
    idx, ts, v, q, r = admit((3, 1_700_000_000_000_000_000, value, Quality.GOOD, None))
    assert (idx, ts) == (3, 1_700_000_000_000_000_000)
    assert (v, q, r) == want
    assert type(v) in (type(want[0]), type(None)) if want[0] is not None else v is None


def test_admit_checks_time_quality_and_reason() -> None:
    assert admit((0, 2**63, 1.0, Quality.GOOD, None))[2:] == (None, Quality.BAD, ENCODING_ERROR)
    assert admit((0, 1.5, 1.0, Quality.GOOD, None))[2:] == (None, Quality.BAD, ENCODING_ERROR)
    assert admit((0, 5, 1.0, 1, "spike")) == (0, 5, 1.0, Quality.UNCERTAIN, "spike")
    assert admit((0, 5, 1.0, 7, None))[2:] == (None, Quality.BAD, ENCODING_ERROR)
    assert admit((0, 5, 1.0, Quality.UNCERTAIN, AS_ASYNCUA))[2:] == (None, Quality.BAD, ENCODING_ERROR)
    assert admit((0, 5, AS_ASYNCUA, Quality.BAD, "BadSensorFailure")) == (0, 5, None, Quality.BAD, "BadSensorFailure")
    assert admit((0, 5, 1.0, Quality.BAD, "BadSensorFailure")) == (0, 5, 1.0, Quality.BAD, "BadSensorFailure")


@pytest.mark.parametrize(
    ("enc", "want"),
    [(StringEncoding.GBK, "甲烷"), (StringEncoding.GB18030, "甲烷"), (StringEncoding.LATIN_1, "¼×Íé")],
)
def test_redecode_reads_the_original_bytes_in_the_device_encoding(enc: StringEncoding, want: str) -> None:
    assert redecode(AS_ASYNCUA, enc) == want
    assert redecode("ascii only", enc) == "ascii only"


def test_redecode_refuses_bytes_that_are_not_text_in_the_encoding() -> None:
    with pytest.raises(UnicodeError):
        redecode(AS_ASYNCUA, StringEncoding.UTF_8)
    with pytest.raises(UnicodeError):
        redecode(b"\xbc".decode("utf-8", "surrogateescape"), StringEncoding.GBK)  # half a character
    assert redecode("甲烷", StringEncoding.UTF_8) == "甲烷"


def test_string_encoding_spellings() -> None:
    assert StringEncoding("UTF8") is StringEncoding.UTF_8
    assert StringEncoding("latin1") is StringEncoding.LATIN_1
    assert StringEncoding("GBK") is StringEncoding.GBK
    with pytest.raises(ValueError, match="big5"):
        StringEncoding("big5")


# ------------------------------------------------------------------ config
def _opcua(**kw: Any) -> dict[str, Any]:
    point = {"name": "gas", "node_id": "ns=2;s=Gas"}
    point.update(kw.pop("point", {}))
    return {"type": "opcua", "name": "opc", "endpoint": "opc.tcp://127.0.0.1:4840", "security_policy": "None",
            "security_mode": "None", "allow_no_security": True, "points": [point], **kw}


_GW = {"id": "gw1", "site": "ordos-01", "enterprise_prefix": "88.608.5288"}


def test_string_encoding_is_validated_at_load_with_its_location() -> None:
    cfg = parse({"gateway": _GW, "devices": [_opcua(string_encoding="gbk", point={"string_encoding": "utf-8"})]})
    dev = cfg.devices[0]
    assert isinstance(dev, OpcUaDevice)
    assert dev.string_encoding is StringEncoding.GBK
    with pytest.raises(ConfigError) as err:
        parse({"gateway": _GW, "devices": [_opcua(string_encoding="gkb")]})
    assert [i.location for i in err.value.issues] == ["devices[0].string_encoding"]
    assert "'gbk'" in err.value.issues[0].message
    with pytest.raises(ConfigError) as err:
        parse({"gateway": _GW, "devices": [_opcua(point={"string_encoding": "big5"})]})
    assert [i.location for i in err.value.issues] == ["devices[0].points[0].string_encoding"]
    modbus = {"type": "modbus_tcp", "name": "mb", "host": "127.0.0.1", "string_encoding": "gb18030",
              "points": [{"name": "n", "address": 0, "data_type": "string", "length": 2, "string_encoding": "gbk"},
                         {"name": "u", "address": 2, "string_encoding": "gbk"}]}
    with pytest.raises(ConfigError) as err:
        parse({"gateway": _GW, "devices": [modbus]})
    assert [i.location for i in err.value.issues] == ["devices[0].points[1]"]
    assert "only for data_type 'string'" in err.value.issues[0].message


# ------------------------------------------------------------------ decoders
@pytest.mark.parametrize(
    ("enc", "raw", "want"),
    [
        (StringEncoding.GBK, METHANE_GBK, ("甲烷", None)),
        (StringEncoding.GB18030, METHANE_GBK, ("甲烷", None)),
        (StringEncoding.UTF_8, METHANE_GBK, (None, ENCODING_ERROR)),
        (StringEncoding.UTF_8, "甲烷".encode(), ("甲烷", None)),
        (StringEncoding.LATIN_1, b"Temp\xb0C", ("Temp°C", None)),
        (StringEncoding.GBK, b"\xbc\xd7\xcd", (None, ENCODING_ERROR)),  # a character cut by the register count
        (StringEncoding.UTF_8, b"PUMP", ("PUMP", None)),
    ],
)
def test_modbus_strings_in_each_encoding(enc: StringEncoding, raw: bytes, want: tuple[Any, Any]) -> None:
    data = raw.ljust(8, b"\x00")
    (got,) = Decoder([Field(0, 0, DataType.STRING, length=4, encoding=enc)]).decode(data)
    assert got[1:] == want


@pytest.mark.parametrize(
    ("raw", "arr", "as_json", "enc", "want"),
    [
        (AS_ASYNCUA, -1, False, StringEncoding.GBK, ("甲烷", None)),
        (AS_ASYNCUA, -1, False, StringEncoding.UTF_8, (None, ENCODING_ERROR)),
        ([AS_ASYNCUA, "a"], 0, False, StringEncoding.GBK, ("甲烷", None)),
        ([AS_ASYNCUA, "a"], -1, True, StringEncoding.GBK, ('["\\u7532\\u70f7","a"]', None)),
        ([[AS_ASYNCUA]], -1, True, StringEncoding.UTF_8, (None, ENCODING_ERROR)),
        (bytearray(b"\x01\xff"), -1, False, StringEncoding.UTF_8, ("01ff", None)),
        (dt.datetime(2026, 1, 1), -1, False, StringEncoding.UTF_8, (1_767_225_600_000_000_000, None)),
    ],
)
def test_opcua_values_in_the_device_encoding(
    raw: Any, arr: int, as_json: bool, enc: StringEncoding, want: tuple[Any, Any]
) -> None:
    assert convert_value(raw, arr, as_json, enc) == want


def test_opcua_localized_text_in_the_device_encoding() -> None:
    from asyncua import ua

    assert convert_value(ua.LocalizedText(AS_ASYNCUA, "zh-CN"), -1, False, StringEncoding.GBK) == ("甲烷", None)
    assert convert_value(ua.LocalizedText(AS_ASYNCUA, "zh-CN"), -1, False, StringEncoding.UTF_8) == (
        None, ENCODING_ERROR
    )


# ------------------------------------------------------------------ the encoder's backstop
@pytest.fixture(scope="module")
def catalog() -> Any:
    devices = [_opcua(points=[{"name": f"p{i}", "node_id": f"ns=2;s=P{i}"} for i in range(4)])]
    return build_catalog(parse({"gateway": _GW, "devices": devices}))


HOSTILE: list[Any] = [AS_ASYNCUA, 2**64, -(2**63) - 1, float("nan"), b"\x00", [1.0], object(), dt.date(2026, 1, 1)]


@pytest.mark.parametrize("fmt", [("msgpack", "none"), ("json", "none"), ("json", "zlib")])
@pytest.mark.parametrize("hostile", HOSTILE, ids=repr)
def test_encoder_turns_only_the_unencodable_sample_bad(catalog: Any, fmt: tuple[Any, Any], hostile: Any) -> None:
    t = 1_700_000_000_000_000_000
    samples: list[Sample] = [
        (0, t, 1.25, Quality.GOOD, None),
        (1, t, hostile, Quality.GOOD, None),
        (2, t, "甲烷", Quality.UNCERTAIN, "spike"),
        (3, t, 2**64 - 1, Quality.GOOD, None),  # a UInt64 at its maximum still encodes, losslessly
    ]
    enc = Encoder(catalog, *fmt)
    batch = decode(enc.encode(samples, 1, t, flags=[0, 0, 1, 0]))
    got = [(p.value, p.quality, p.reason, p.historical) for p in batch.points]
    assert got[0] == (1.25, Quality.GOOD, None, False)
    assert got[1][:3] == (None, Quality.BAD, "nan" if hostile != hostile else ENCODING_ERROR)
    assert got[2] == ("甲烷", Quality.UNCERTAIN, "spike", True)
    assert got[3] == (2**64 - 1, Quality.GOOD, None, False)
    assert enc.spoiled_samples == 1


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
@pytest.mark.parametrize("bad_ts", [253_402_300_799_000_000_000, -11_644_473_600_000_000_000, 2**63])
def test_encoder_backstop_for_times_and_unknown_points(catalog: Any, fmt: Any, bad_ts: int) -> None:
    t = 1_700_000_000_000_000_000
    enc = Encoder(catalog, fmt)
    samples: list[Sample] = [
        (0, bad_ts, 1.0, Quality.GOOD, None),  # years 9999 and 1601 (OPC UA's limits), 2262: beyond int64 ns
        (1, t, 2.0, Quality.GOOD, None),
        (99, t, 3.0, Quality.GOOD, None),  # no such point: dropped and counted
    ]
    points = decode(enc.encode(samples, 1, t)).points
    assert [(p.key, p.value, p.quality, p.reason) for p in points] == [
        ("opc.p0", None, Quality.BAD, ENCODING_ERROR), ("opc.p1", 2.0, Quality.GOOD, None)
    ]
    assert points[0].ts_ns < 2**63 and points[1].ts_ns == t
    assert (enc.spoiled_samples, enc.unknown_samples) == (1, 1)
    # the packer is left clean: the next batch encodes as if nothing happened
    assert [p.value for p in decode(enc.encode([(2, t, 4.0, Quality.GOOD, None)], 2, t)).points] == [4.0]
