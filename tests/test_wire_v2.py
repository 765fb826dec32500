"""Wire format v2: batches refer to the retained catalog; what the edge encodes, the ingest decodes
exactly (every compression, live / historical, flags, every value type incl. -0.0, float32 and
decimal floats); a catalog is checked against its id and its topic; garbage is a CodecError; the
default settings meet the bytes-per-point targets on the realistic mix (gateway.wire_mix)."""

from __future__ import annotations

import contextlib
import math
import random
import struct
import typing

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codec import (
    FLAG_HISTORICAL,
    WIRE_V2,
    CatalogCache,
    CatalogMissingError,
    Compression,
    Encoder,
    decode,
    decode_columns,
    mark_historical,
)
from gateway.core.errors import CodecError
from gateway.core.point import Quality, Sample, SampleBatch
from gateway.wire_bench import bytes_per_point
from tests.test_wire import catalog

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.integers(-(10**9), 10**9).map(lambda m: m / 100),  # a scaled register
    st.sampled_from([0.0, -0.0, 1e300, -1e-300, 2.0**53, 2.0**53 + 2, 9007199254740993.0]),
    st.text(max_size=40),
)
samples = st.lists(
    st.tuples(st.integers(0, 9), st.integers(-(2**63), 2**63 - 1), values, st.sampled_from(list(Quality)),
              st.one_of(st.none(), st.text(max_size=20))),
    max_size=60,
)


def _cache(enc: Encoder) -> CatalogCache:
    c = CatalogCache()
    c.learn(enc.catalog_message)
    return c


@pytest.mark.parametrize("compression", ["none", "zlib", "zstd"])
@given(batch=samples, seq=st.integers(0, 2**63 - 1), marked=st.booleans(), flag_bits=st.lists(st.booleans()))
def test_round_trip_every_variant(compression: Compression, batch: list[Sample], seq: int, marked: bool,
                                  flag_bits: list[bool]) -> None:
    cat = catalog(10)
    flags = [FLAG_HISTORICAL if b else 0 for b in (flag_bits + [False] * len(batch))[: len(batch)]]
    enc = Encoder(cat, compression=compression, version=WIRE_V2)
    payload = enc.encode(batch, seq, 123, flags)
    if marked:
        payload = mark_historical(payload)
    decoded = decode(payload, _cache(enc))  # the ingest's own catalogs, not this process's
    assert (decoded.gateway, decoded.site, decoded.seq, decoded.created_ns) == ("gw", "s", seq, 123)
    assert decoded.historical is marked
    assert len(decoded.points) == len(batch)
    for p, (idx, ts, value, quality, reason), f in zip(decoded.points, batch, flags, strict=True):
        info = cat.points[idx]
        assert (p.key, p.code, p.unit, p.device, p.device_code) == (
            info.key, info.code, info.unit, info.device, info.device_code)
        assert (p.ts_ns, p.quality, p.reason) == (ts, quality, reason)
        assert type(p.value) is type(value)
        assert p.value == value
        if isinstance(value, float):  # bit-exact, the sign of zero too
            assert struct.pack("<d", p.value) == struct.pack("<d", value)
        assert dict(p.tags) == {"site": "s", "asset": f"a{idx}", "data_grade": "general"}
        assert p.historical is (marked or bool(f))


def test_layout_refers_to_the_catalog_by_index_with_typed_delta_columns() -> None:
    enc = Encoder(catalog(5), compression="none", version=WIRE_V2)
    b: SampleBatch = [
        (2, 1000, 20.9, Quality.GOOD, None), (3, 1000, True, Quality.GOOD, None),
        (4, 1005, 7, Quality.GOOD, None), (0, 1005, None, Quality.BAD, "timeout"),
        (1, 1010, struct.unpack("<f", struct.pack("<f", 0.1))[0], Quality.GOOD, None),
        (1, 1020, "RUN", Quality.UNCERTAIN, None), (2, 1030, math.pi, Quality.GOOD, None),
    ]
    doc = msgpack.unpackb(enc.encode(b, 5, 99))
    assert doc["v"] == WIRE_V2 and doc["c"] == enc.catalog_id and "cat" not in doc and "gw" not in doc
    assert doc["i"] == [2, 1, 1, -4, 1, 0, 1]
    assert doc["ts"] == [1000, 0, 5, 0, 5, 10, 10]
    assert doc["k"] == bytes([16 + 1, 2, 3, 0, 6, 4, 5])  # decimal e1, true, int, none, f32, str, f64
    assert doc["vd"] == [209] and doc["vi"] == [7] and doc["vs"] == ["RUN"]
    assert len(doc["vg"]) == 4 and len(doc["vf"]) == 8
    assert doc["q"] == [3, 2, 5, 1] and doc["r"] == [3, "timeout"] and "f" not in doc


def test_catalog_id_follows_the_content() -> None:
    a, b = Encoder(catalog(5), version=WIRE_V2), Encoder(catalog(5), version=WIRE_V2)
    assert a.catalog_id == b.catalog_id and a.catalog_message == b.catalog_message
    assert Encoder(catalog(6), version=WIRE_V2).catalog_id != a.catalog_id


def test_a_catalog_must_match_its_id_and_its_topic() -> None:
    enc = Encoder(catalog(3), version=WIRE_V2)
    cache = CatalogCache()
    with pytest.raises(CodecError, match="forged origin"):
        cache.learn(enc.catalog_message, ("other-site", "gw"))
    doc = msgpack.unpackb(__import__("zlib").decompress(msgpack.unpackb(enc.catalog_message)["d"]))
    doc["cat"][0][2] = "88.608.5288/DEV.s.dev.forged"
    with pytest.raises(CodecError, match="does not match its content"):
        cache.learn(msgpack.packb(doc))
    assert cache.learn(enc.catalog_message, ("s", "gw")) == ("gw", "s", enc.catalog_id)


def test_a_batch_of_an_unknown_or_foreign_catalog_is_missing_not_misread() -> None:
    enc = Encoder(catalog(3), version=WIRE_V2)
    payload = enc.encode([(0, 1, 1.5, Quality.GOOD, None)], 1, 2)
    with pytest.raises(CatalogMissingError):
        decode_columns(payload, CatalogCache())
    with pytest.raises(CatalogMissingError):  # known, but of another gateway than the topic's
        decode_columns(payload, _cache(enc), ("s", "another-gw"))
    assert decode_columns(payload, _cache(enc), ("s", "gw")).val == [1.5]


def test_the_oldest_catalog_is_forgotten_beyond_the_bound() -> None:
    cache = CatalogCache(catalog_slots=2)
    encs = [Encoder(catalog(n), version=WIRE_V2) for n in (1, 2, 3)]
    for e in encs:
        cache.learn(e.catalog_message)
    assert cache.catalog(encs[0].catalog_id) is None and cache.catalog(encs[2].catalog_id) is not None


def test_garbage_is_a_codec_error() -> None:
    enc = Encoder(catalog(10), compression="none", version=WIRE_V2)
    cache = _cache(enc)
    rng = random.Random(7)
    batch: SampleBatch = [(i % 10, 10**18 + i, v, Quality.GOOD, None)
                          for i, v in enumerate([1.5, 2, True, None, "x", 0.1, math.e] * 3)]
    good = enc.encode(batch, 1, 2)
    doc = msgpack.unpackb(good)
    for key, bad in [("k", b"\x63" * len(batch)), ("k", b"\x00"), ("vd", [1]), ("vi", ["x"]), ("i", [99]),
                     ("q", [0, 7]), ("q", [999, 1]), ("r", [0]), ("vf", b"\x00\x00\xf8\x7f" * 6), ("c", 5),
                     ("vd", [2**60] * 9), ("ts", [])]:
        with pytest.raises(CodecError):
            decode(msgpack.packb({**doc, key: bad}), cache)
    for _ in range(300):
        b = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        with contextlib.suppress(CodecError):
            decode(bytes(b), cache)
    for compression in typing.get_args(Compression)[1:]:
        z = Encoder(catalog(10), compression=compression, version=WIRE_V2).encode(batch, 1, 2)
        env = msgpack.unpackb(z)
        with pytest.raises(CodecError):
            decode(msgpack.packb({**env, "d": env["d"][:-3]}), cache)
        if compression == "zstd":
            with pytest.raises(CodecError):
                decode(msgpack.packb({**env, "zd": 99}), cache)
    with pytest.raises(CodecError):  # zstd is not part of v1
        decode(msgpack.packb({"v": 1, "z": "zstd", "d": b""}), cache)


def test_v1_is_still_read() -> None:
    enc = Encoder(catalog(3))
    assert decode(enc.encode([(1, 5, 2.5, Quality.GOOD, None)], 1, 2), CatalogCache()).points[0].value == 2.5


@pytest.mark.parametrize(("batch_points", "target"), [(1000, 6.0), (10, 20.0)])
def test_default_settings_meet_the_bytes_per_point_targets(batch_points: int, target: float) -> None:
    """Deterministic (no timing): the realistic deadband mix at the default settings."""
    got = bytes_per_point(batch_points)
    print(f"{batch_points}-point batches: {got:.2f} B/point (target {target})")
    assert got <= target
    assert bytes_per_point(batch_points, "v1 msgpack (old default)") > 10 * got  # what it was
