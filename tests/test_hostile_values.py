"""One sample can only ever spoil itself (DESIGN §5, issue #11): the whole edge path, fed hostile values.

Every type the drivers can hand over (each OPC UA built-in type as asyncua and the wire decoder
produce it, arrays and matrices, strings with undecodable bytes kept as lone surrogates, DateTimes
beyond the int64 nanosecond range, integers beyond 64 bits, NaN / Inf, structures; Modbus strings
in every string_encoding over random register bytes) goes through the real driver decode, the real
pipeline stages, the real encoder (msgpack, JSON, zlib) and the real SQLite buffer.  Nothing may
raise, every stored batch must decode as the ingest decodes it, and the control points of the same
batch must arrive exactly as sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import math
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.modbus.config import DataType
from drivers.modbus.decode import Decoder, Field
from drivers.opcua.driver import OpcUaDriver
from gateway.app import Batcher
from gateway.buffer import SqliteBuffer
from gateway.catalog import Catalog, build_catalog
from gateway.codec import Encoder, decode
from gateway.config import Config, parse
from gateway.core.point import Point, Quality, SampleBatch, now_ns
from gateway.core.values import ENCODING_ERROR, StringEncoding

_OPC = "opc"
_MB = "mb"
# hostile OPC UA points: (name, extra config); every one may receive any value
_HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("plain", {}),
    ("gbk", {"string_encoding": "gbk"}),
    ("gb18030", {"string_encoding": "gb18030"}),
    ("latin1", {"string_encoding": "latin-1"}),
    ("json", {"array_mode": "json"}),
    ("json_gbk", {"array_mode": "json", "string_encoding": "gbk"}),
    ("element", {"array_index": 1}),
    ("scaled", {"scale": 0.1, "offset": -40.0, "min": -1e6, "max": 1e6}),
    ("deadband", {"deadband": {"absolute": 1.0}}),
    ("alarm", {"alarm": {"high": 10.0, "low": -10.0}}),
    ("plausible", {"spike_delta": 5.0, "stuck_after_s": 1.0}),
]
# control points: what they carry must arrive unchanged whatever their neighbours carry
_CONTROL: list[tuple[str, Any]] = [("c_float", 21.5), ("c_int", -7), ("c_bool", True), ("c_text", "正常 ok")]
# Modbus string points over random registers, one per encoding, and numbers of every width
_MB_STRINGS = [e for e in StringEncoding]
_MB_NUMBERS = [DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64,
               DataType.FLOAT32, DataType.FLOAT64]
_MB_CONTROL = "mb_control"


def _config(buffer: Path) -> Config:
    opc_points = [{"name": n, "node_id": f"ns=2;s={n}", **extra} for n, extra in _HOSTILE]
    opc_points += [{"name": n, "node_id": f"ns=2;s={n}"} for n, _v in _CONTROL]
    mb_points: list[dict[str, Any]] = [
        {"name": f"s_{e.name.lower()}", "address": 10 * k, "data_type": "string", "length": 4,
         "string_encoding": e.value}
        for k, e in enumerate(_MB_STRINGS)
    ]
    mb_points += [
        {"name": f"n_{t.value}", "address": 100 + 4 * k, "data_type": t.value} for k, t in enumerate(_MB_NUMBERS)
    ]
    mb_points.append({"name": _MB_CONTROL, "address": 200, "data_type": "uint16"})
    return parse({
        "gateway": {"id": "gw-hostile", "site": "ordos-01", "enterprise_prefix": "88.608.5288"},
        "devices": [
            {"type": "opcua", "name": _OPC, "endpoint": "opc.tcp://127.0.0.1:4840", "security_policy": "None",
             "security_mode": "None", "allow_no_security": True, "points": opc_points},
            {"type": "modbus_tcp", "name": _MB, "host": "127.0.0.1", "points": mb_points},
        ],
        "buffer": {"path": str(buffer), "durability": "interval"},
    })


# ---------------------------------------------------------------- what the drivers can hand over
_surrogate_text = st.binary(max_size=12).map(lambda b: b.decode("utf-8", "surrogateescape"))
_gbk_text = st.text(alphabet="甲烷瓦斯浓度一氧化碳ABC 0", max_size=6).map(
    lambda s: s.encode("gbk").decode("utf-8", "surrogateescape")
)
_texts = st.one_of(
    st.text(max_size=8),
    _surrogate_text,  # what asyncua / the wire decoder make of any bytes
    _gbk_text,
    st.integers(0xD800, 0xDFFF).map(chr),  # a lone surrogate no decoder would produce
    st.characters(codec="utf-8").map(lambda c: c * 3),
)
_datetimes = st.one_of(
    st.datetimes(min_value=dt.datetime(1601, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59)),
    st.datetimes(timezones=st.just(dt.UTC)),
)
_odd = st.sampled_from([
    ua.NodeId(5, 2), ua.ExpandedNodeId(5, 2), ua.QualifiedName("Name", 3), ua.StatusCode(0x80340000),
    ua.ExtensionObject(), ua.DiagnosticInfo(), ua.DataValue(ua.Variant(1)), ua.Variant(1.0), ua.XmlElement("<a/>"),
    ua.LocalizedText(None), ua.NodeClass.Variable, ua.VariantType.Double,  # IntEnums
    object(), 1 + 2j, decimal.Decimal("1.5"), {"a": 1}, (1, 2), Ellipsis, float("nan"),
])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),  # every OPC UA integer width and beyond
    st.integers(-(2**1100), 2**1100),  # beyond a float's range: scaling raises OverflowError
    st.floats(allow_nan=True, allow_infinity=True),
    _texts,
    st.binary(max_size=8),  # ByteString
    st.builds(bytearray, st.binary(max_size=4)),
    _datetimes,
    st.uuids(),  # Guid
    _texts.map(lambda t: ua.LocalizedText(t, "zh-CN")),
    _odd,
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
_status = st.one_of(st.just(0), st.sampled_from([0x40000000, 0x80000000, 0x80340000, 0x00A80000]),
                    st.integers(0, 2**32 - 1))
_time = st.one_of(st.none(), st.integers(-(2**70), 2**70), st.just(now_ns()))
_item = st.tuples(st.integers(0, len(_HOSTILE) - 1), _values, _status, _time, _time)
_registers = st.binary(min_size=210 * 2, max_size=210 * 2)


@pytest.fixture(scope="module")
def workdir() -> Any:
    with tempfile.TemporaryDirectory(prefix="edgegw-hostile-") as d:
        yield Path(d)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(_item, max_size=len(_HOSTILE) * 2),
    registers=_registers,
    fmt=st.sampled_from([("msgpack", "none"), ("json", "none"), ("msgpack", "zlib"), ("json", "zlib")]),
)
def test_hostile_values_spoil_only_their_own_point(
    workdir: Path, items: list[tuple[int, Any, int, int | None, int | None]], registers: bytes,
    fmt: tuple[str, str],
) -> None:
    buffer_path = workdir / f"buf-{uuid.uuid4().hex}.db"
    cfg = _config(buffer_path)
    catalog = build_catalog(cfg)
    opc_dev = cfg.devices[0]
    opc_first, mb_first = catalog.by_device[_OPC].start, catalog.by_device[_MB].start
    driver = OpcUaDriver(opc_dev, opc_first)  # type: ignore[arg-type]

    # driver decode: the OPC UA notifications as the wire decoder hands them over, hostile and control
    control_ts = now_ns() - 1_000_000_000
    n_hostile = len(_HOSTILE)
    changes = [(h, v, s, src, srv) for h, v, s, src, srv in items]
    changes += [(n_hostile + k, v, 0, control_ts, control_ts) for k, (_n, v) in enumerate(_CONTROL)]
    batch: SampleBatch = driver._samples(changes)
    # the Modbus driver's decode of one register block (random bytes) with strings in each encoding
    fields = [
        Field(mb_first + k, 20 * k, DataType.STRING, length=4, encoding=e) for k, e in enumerate(_MB_STRINGS)
    ]
    fields += [Field(mb_first + len(_MB_STRINGS) + k, 200 + 8 * k, t) for k, t in enumerate(_MB_NUMBERS)]
    mb_control = mb_first + len(_MB_STRINGS) + len(_MB_NUMBERS)
    block = registers[:400] + (4711).to_bytes(2, "big") + registers[402:]
    fields.append(Field(mb_control, 400, DataType.UINT16))
    batch += Decoder(fields).samples(block, control_ts)

    # stages -> encoder -> buffer, by the composition root's own batcher
    buf = SqliteBuffer(buffer_path, durability="interval")
    try:
        encoder = Encoder(catalog, fmt[0], fmt[1])  # type: ignore[arg-type]
        batcher = _batcher(catalog, buf, cfg, encoder)
        out = batcher.process(batch)
        batcher.pending.extend(out)
        asyncio.run(batcher._commit_all())  # on the buffer's writer thread, as in the gateway
        tx = buf.begin(1000)
        points = [p for payload in tx.payloads for p in decode(payload).points]  # as the ingest decodes
    finally:
        buf.close()
    assert len(points) == len(out)

    by_key: dict[str, list[Point]] = {}
    for p in points:
        by_key.setdefault(p.key, []).append(p)
        assert (p.value is None) == (p.quality is Quality.BAD), p
        assert p.quality is Quality.BAD or type(p.value) in (bool, int, float, str)
        if isinstance(p.value, float):
            assert math.isfinite(p.value)
        if p.quality is Quality.BAD:
            assert p.reason
    for name, value in _CONTROL:
        (got,) = by_key[f"{_OPC}.{name}"]
        assert (got.value, type(got.value), got.quality, got.reason, got.ts_ns) == (
            value, type(value), Quality.GOOD, None, control_ts
        )
    (got,) = by_key[f"{_MB}.{_MB_CONTROL}"]
    assert (got.value, got.quality, got.ts_ns) == (4711, Quality.GOOD, control_ts)

    # lossless where it encodes: a plain good string arrives as the text it stands for
    for handle, value, status, src, srv in items:
        name, extra = _HOSTILE[handle]
        t = src if src is not None else srv
        if status or type(value) is not str or set(extra) - {"string_encoding"} or not _in_int64(t):
            continue
        enc = StringEncoding(extra.get("string_encoding", "utf-8"))
        try:
            want: str | None = value.encode("utf-8", "surrogateescape").decode(enc.value)
        except UnicodeError:
            want = None
        arrived = [p for p in by_key.get(f"{_OPC}.{name}", [])]
        if want is None:
            assert any(p.reason == ENCODING_ERROR for p in arrived), (value, arrived)
        else:
            assert any(p.value == want and p.quality is not Quality.BAD for p in arrived), (value, want, arrived)


def _in_int64(t: int | None) -> bool:
    return t is None or -(2**63) <= t < 2**63


def _batcher(catalog: Catalog, buf: SqliteBuffer, cfg: Config, encoder: Encoder) -> Batcher:
    import asyncio

    return Batcher(catalog, buf, cfg.buffer, asyncio.Event(), encoder=encoder)
