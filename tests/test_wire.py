"""Wire format v1: what the edge encodes, the ingest decodes exactly; garbage is a CodecError."""

from __future__ import annotations

import contextlib
import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.catalog import Catalog, PointInfo
from gateway.codec import SCHEMA_VERSION, decode, encode
from gateway.errors import CodecError
from gateway.point import Quality, Sample


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


@given(samples, st.integers(0, 2**63 - 1))
def test_round_trip(batch: list[Sample], seq: int) -> None:
    cat = catalog(10)
    decoded = decode(encode(cat, batch, seq, 123))
    assert (decoded.gateway, decoded.site, decoded.seq, decoded.created_ns) == ("gw", "s", seq, 123)
    assert len(decoded.points) == len(batch)
    for p, (idx, ts, value, quality, reason) in zip(decoded.points, batch, strict=True):
        info = cat.points[idx]
        assert (p.key, p.code, p.unit, p.device, p.device_code) == (
            info.key, info.code, info.unit, info.device, info.device_code)
        assert (p.ts_ns, p.value, p.quality, p.reason) == (ts, value, quality, reason)
        assert type(p.value) is type(value)
        assert dict(p.tags) == {"site": "s", "asset": f"a{idx}", "data_grade": "general"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not a msgpack batch"),
        (b"\xc1garbage", "not a msgpack batch"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"v": 99}), "unsupported wire format version 99"),
        (msgpack.packb({"v": SCHEMA_VERSION, "gw": "g"}), "lacks field"),
        (msgpack.packb({"v": 1, "gw": "g", "site": "s", "seq": 1, "t": 1, "cat": [], "pts": [[0, 1, 2.0, 0, None]]}),
         "malformed batch content"),
        (msgpack.packb({"v": 1, "gw": "g", "site": "s", "seq": 1, "t": 1,
                        "cat": [["k", "c", "", "d", "", "general", {}]], "pts": [[0, 1, math.nan, 0, None]]}),
         "non-finite"),
        (msgpack.packb({"v": 1, "gw": "g", "site": "s", "seq": 1, "t": 1,
                        "cat": [["k", "c", "", "d", "", "general", {}]], "pts": [[0, 1, 1.0, 7, None]]}),
         "malformed batch content"),
    ],
)
def test_garbage_is_a_codec_error(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(payload)


@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_another_exception(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)
