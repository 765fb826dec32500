"""Wire format v1: what the edge encodes, the ingest decodes exactly, in every variant
(msgpack / JSON, plain / zlib, live / marked historical, per-point flags); garbage is a CodecError."""

from __future__ import annotations

import contextlib
import json
import math
import zlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.catalog import Catalog, PointInfo
from gateway.codec import FLAG_HISTORICAL, SCHEMA_VERSION, Encoder, decode, encode, mark_historical
from gateway.core.errors import CodecError
from gateway.core.point import Quality, Sample, SampleBatch


def catalog(n: int) -> Catalog:
    pts = tuple(
        PointInfo(i, f"dev.p{i}", f"88.608.5288/DEV.s.dev.p{i}", "dev", "88.608.5288/DEV.s.dev", "ppm" if i % 2 else "",
                  1.0, 0.0, None, None, "general", (("site", "s"), ("asset", f"a{i}")))
        for i in range(n)
    )
    return Catalog("gw", "s", pts, {"dev": range(n)})


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
samples = st.lists(
    st.tuples(st.integers(0, 9), st.integers(0, 2**63 - 1), values, st.sampled_from(list(Quality)),
              st.one_of(st.none(), st.text(max_size=20))),
    max_size=50,
)
VARIANTS = [(f, c) for f in ("msgpack", "json") for c in ("none", "zlib")]


@pytest.mark.parametrize(("fmt", "compression"), VARIANTS)
@given(batch=samples, seq=st.integers(0, 2**63 - 1), marked=st.booleans(), flag_bits=st.lists(st.booleans()))
def test_round_trip_every_variant(
    fmt: str, compression: str, batch: list[Sample], seq: int, marked: bool, flag_bits: list[bool]
) -> None:
    cat = catalog(10)
    flags = [FLAG_HISTORICAL if b else 0 for b in (flag_bits + [False] * len(batch))[: len(batch)]]
    enc = Encoder(cat, fmt, compression)  # type: ignore[arg-type]
    payload = enc.encode(batch, seq, 123, flags)
    if marked:
        payload = mark_historical(payload)
    decoded = decode(payload)
    assert (decoded.gateway, decoded.site, decoded.seq, decoded.created_ns) == ("gw", "s", seq, 123)
    assert decoded.historical is marked
    assert len(decoded.points) == len(batch)
    for p, (idx, ts, value, quality, reason), f in zip(decoded.points, batch, flags, strict=True):
        info = cat.points[idx]
        assert (p.key, p.code, p.unit, p.device, p.device_code) == (
            info.key, info.code, info.unit, info.device, info.device_code)
        assert (p.ts_ns, p.value, p.quality, p.reason) == (ts, value, quality, reason)
        assert type(p.value) is type(value)
        assert dict(p.tags) == {"site": "s", "asset": f"a{idx}", "data_grade": "general"}
        assert p.historical is (marked or bool(f))


def test_layout_is_columnar_and_the_catalog_is_sent_once() -> None:
    cat = catalog(3)
    b: SampleBatch = [
        (2, 10, 1.5, Quality.GOOD, None), (0, 11, None, Quality.BAD, "timeout"), (2, 12, 7, Quality.GOOD, None)]
    doc = msgpack.unpackb(encode(cat, b, 5, 99))
    assert doc["v"] == SCHEMA_VERSION
    assert [r[0] for r in doc["cat"]] == [0, 2]
    assert (doc["i"], doc["ts"], doc["val"], doc["q"], doc["r"]) == (
        [2, 0, 2], [10, 11, 12], [1.5, None, 7], [0, 2, 0], [None, "timeout", None])
    assert "f" not in doc and "h" not in doc
    # no reasons at all: the column is left out
    assert "r" not in msgpack.unpackb(encode(cat, [b[0]], 6, 99))


def test_json_and_compression_envelope_are_what_the_docs_say() -> None:
    cat = catalog(2)
    b: SampleBatch = [(1, 10, 2.0, Quality.GOOD, None)]
    doc = json.loads(Encoder(cat, "json").encode(b, 1, 2))
    assert doc["i"] == [1] and doc["val"] == [2.0] and doc["q"] == [0]
    env = msgpack.unpackb(Encoder(cat, "msgpack", "zlib").encode(b, 1, 2))
    assert set(env) == {"v", "z", "d"} and env["z"] == "zlib"
    assert msgpack.unpackb(zlib.decompress(env["d"]))["seq"] == 1
    marked = msgpack.unpackb(mark_historical(Encoder(cat, "json", "zlib").encode(b, 1, 2)))
    assert marked["h"] is True
    assert json.loads(zlib.decompress(marked["d"]))["gw"] == "gw"


def test_mark_historical_grows_full_and_large_maps() -> None:
    for n in (15, 16, 300):
        doc = {f"k{i}": i for i in range(n)}
        assert msgpack.unpackb(mark_historical(msgpack.packb(doc))) == {**doc, "h": True}


def _batch(**over: object) -> bytes:
    doc = {"v": 1, "gw": "g", "site": "s", "seq": 1, "t": 1, "cat": [[0, "k", "c", "", "d", "", "general", {}]],
           "i": [0], "ts": [1], "val": [1.0], "q": [0]}
    doc.update(over)
    return msgpack.packb(doc)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not a msgpack batch"),
        (b"\xc1garbage", "not a msgpack batch"),
        (b"{nope", "not a JSON batch"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"v": 99}), "unsupported wire format version 99"),
        (msgpack.packb({"v": SCHEMA_VERSION, "gw": "g"}), "lacks field"),
        (_batch(cat=[]), "malformed batch content"),
        (_batch(val=[math.nan]), "non-finite"),
        (_batch(q=[7]), "malformed batch content"),
        (_batch(ts=[1, 2]), "same length"),
        (_batch(h=1), "h must be a boolean"),
        (msgpack.packb({"v": 1, "z": "lz4", "d": b"x"}), "unsupported compression"),
        (msgpack.packb({"v": 1, "z": "zlib", "d": b"not zlib"}), "corrupt"),
        (msgpack.packb({"v": 1, "z": "zlib", "d": zlib.compress(msgpack.packb({"v": 1, "z": "zlib"}))}), "nested"),
    ],
)
def test_garbage_is_a_codec_error(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(payload)


@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_another_exception(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


@given(st.binary(max_size=200))
def test_random_compressed_bytes_never_escape_as_another_exception(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(msgpack.packb({"v": 1, "z": "zlib", "d": zlib.compress(data)}))


def test_the_documented_example_decodes() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "wire-format.md").read_text(encoding="utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0].replace("\n", "").encode()
    batch = decode(example)
    assert (batch.gateway, batch.seq, len(batch.points), batch.historical) == ("gw-01", 42, 2, False)
    assert batch.points[1].reason == "timeout" and batch.points[1].value is None
    assert decode(mark_historical(example)).historical
