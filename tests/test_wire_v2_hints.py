"""The v2 value columns with the point table's decimal hints (codec._values_hinted): a float of a
point with a decimal scaling that is a decimal at its exponent goes as that decimal, the others as
the full search decides; the ingest's decoder gives back the same 64 bits as from the search's
columns: right mantissa and exponent, float32 / float64 choice, -0.0, huge and tiny floats,
integer-valued floats, values near 9e9 (the limit of decimals), ints beyond 2**53, mixed kinds,
NaN / inf turned bad."""

from __future__ import annotations

import math
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalog import Catalog, PointInfo, decimal_divisor
from gateway.codec import CatalogCache, DecimalHints, Encoder, _decode_values, _values_v2, decode_columns
from gateway.core.point import Quality, SampleBatch
from pipelines.spec import PointSpec

__all__: list[str] = []

# (scale, offset, conversion factor): the hint of each is what DecimalHints derives
SCALINGS = [(1.0, 0.0, 1.0), (0.1, 0.0, 1.0), (0.01, -40.0, 1.0), (0.001, 0.5, 1.0), (1e-6, 0.0, 1.0),
            (2.5, 1.0, 1.0), (0.1, 0.05, 1.0), (0.01, 0.0, 1.8), (1 / 3, 0.0, 1.0)]


def _catalog() -> Catalog:
    pts = []
    for i, (scale, offset, conv) in enumerate(SCALINGS):
        spec = PointSpec(scale=scale, divisor=decimal_divisor(scale), offset=offset, conv_factor=conv)
        pts.append(PointInfo(i, f"d.p{i}", f"88.608.5288/DEV.s.d.p{i}", "d", "88.608.5288/DEV.s.d", "", scale,
                             offset, None, None, "general", (), spec))
    return Catalog("gw", "s", tuple(pts), {})


CATALOG = _catalog()
HINTS = DecimalHints.of(CATALOG)


def test_the_hints_follow_the_scaling() -> None:
    # as read, a unit conversion, 1/3: no hint (NaN: never accepted)
    assert [None if math.isnan(p) else p for p in HINTS.pow_i] == [None, 10, 100, 1000, 10**6, 10, 100, None, None]


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


decimals = st.tuples(st.integers(-(10**12), 10**12), st.integers(0, 6)).map(lambda me: me[0] / 10 ** me[1])
floats = st.one_of(
    decimals,
    st.integers(0, 65535).map(lambda r: (r - 4000) / 100),  # what the stages make of a register
    st.integers(-(2**24), 2**24).map(float),  # integer-valued: float32
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(float),
    st.floats(min_value=2.0**33 - 10, max_value=2.0**33 + 10),  # the one-pass limit
    st.floats(min_value=9e9 - 10, max_value=9e9 + 10),  # the decimal limit
    st.integers(-(10**15), 10**15).map(lambda m: m / 10**6),  # 6 decimals up to 1e9
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e-300, 1.7976931348623157e308, -1e308, 2.0**53, 0.1, 0.5,
                     123456780.0, 8589934591.5, 8999999999.999999, 1e22, 3.4028234663852886e38, 3.5e38]),
)
ints = st.one_of(st.integers(-(2**63), 2**64 - 1), st.integers(-1000, 1000), st.just(2**53 + 1))
numbers = st.lists(st.tuples(st.integers(0, len(SCALINGS) - 1), st.one_of(floats, floats, ints)), max_size=80)


def _same(a: Any, b: Any) -> bool:
    """Same type and the same bits (-0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return bool(a == b)


def _decoded(cols: dict[str, Any], n: int) -> list[Any]:
    k = cols["k"]
    kinds = bytes((k,)) * n if isinstance(k, int) else k
    return _decode_values(kinds, n, cols.get("vi", []), cols.get("vd", []), cols.get("vg", b""),
                          cols.get("vf", b""), cols.get("vs", []))


@settings(max_examples=400)
@given(numbers)
def test_hinted_columns_decode_to_the_searchs_values(batch: list[tuple[int, Any]]) -> None:
    idx = tuple(i for i, _ in batch)
    val = tuple(v for _, v in batch)
    hinted, searched = _values_v2(val, idx, HINTS), _values_v2(val)
    got = _decoded(hinted, len(val))
    assert all(_same(a, b) for a, b in zip(got, _decoded(searched, len(val)), strict=True))
    assert all(_same(a, b) for a, b in zip(got, val, strict=True))
    # a point without a hint: the search's kind
    kh, ks = (bytes((c["k"],)) * len(val) if isinstance(c["k"], int) else c["k"] for c in (hinted, searched))
    assert [a for a, i in zip(kh, idx, strict=True) if math.isnan(HINTS.pow_i[i])] == \
        [b for b, i in zip(ks, idx, strict=True) if math.isnan(HINTS.pow_i[i])]


@settings(max_examples=200)
@given(numbers, st.sampled_from(["none", "zstd"]))
def test_what_is_encoded_decodes_bit_for_bit(batch: list[tuple[int, Any]], compression: str) -> None:
    enc = Encoder(CATALOG, version=2, compression=compression)  # type: ignore[arg-type]
    samples: SampleBatch = [(i, 1_700_000_000_000_000_000 + k, v, Quality.GOOD, None)
                            for k, (i, v) in enumerate(batch)]
    cache = CatalogCache()
    cache.learn(enc.catalog_message)
    cols = decode_columns(enc.encode(samples, 1, 0), cache)
    carried = [(v if type(v) is float or -(2**63) <= v < 2**64 else None) for _, v in batch]
    assert all(_same(a, b) for a, b in zip(cols.val, carried, strict=True)), (cols.val, carried)
    # an int beyond 64 bits is the one thing no format carries: that sample turns bad, the rest unchanged
    assert [q for q, v in zip(cols.q, carried, strict=True) if v is None] == [2] * carried.count(None)


def test_scaled_registers_go_as_decimals_at_their_exponent() -> None:
    val = (20.9, 2.09, 412.0, 0.5, 1.23, 1.2299999999999969, 8589934591.5, 1e10 + 0.5, -0.0, 20.95, 3)
    idx = (1, 2, 1, 1, 2, 2, 1, 1, 2, 6, 0)
    got = _values_v2(val, idx, HINTS)
    # 20.9 = 209 e1; 2.09 = 209 e2; 412.0 = 4120 e1 and 0.5 = 5 e1 (the search: float32); 1.23 = 123 e2;
    # the noisy one f64; 8589934591.5 = 85899345915 e1; 1e10 + 0.5: beyond the decimals, f64;
    # -0.0 f32 (never a decimal: it would come back +0.0); 20.95 on a 0.1 + 0.05 point = 2095 e2; 3 an int
    assert list(got["k"]) == [17, 18, 17, 17, 18, 5, 17, 5, 6, 18, 3]
    assert got["vd"] == [209, 209, 4120, 5, 123, 85899345915, 2095]
    assert got["vi"] == [3]
    assert struct.unpack("<1f", got["vg"]) == (-0.0,) and math.copysign(1, struct.unpack("<f", got["vg"])[0]) == -1
    assert struct.unpack("<2d", got["vf"]) == (1.2299999999999969, 1e10 + 0.5)
    assert all(_same(a, b) for a, b in zip(_decoded(got, len(val)), val, strict=True))


def test_a_point_without_a_decimal_scaling_keeps_the_search() -> None:
    # as read (0), a unit conversion (7), 1/3 (8): float32 first, then the smallest exponent
    val = (20.9, 412.0, 20.9, 0.5, -0.0)
    idx = (0, 0, 7, 8, 8)
    got = _values_v2(val, idx, HINTS)
    assert got == _values_v2(val) and list(got["k"]) == [17, 6, 17, 6, 6]
    # the same value on a 0.01 point: at its exponent, 2090 e2
    assert _values_v2((20.9, 20.0 + 2**30), (2, 2), HINTS)["vd"] == [2090, (2**30 + 20) * 100]


def test_nan_and_infinity_turn_bad_and_the_rest_encodes() -> None:
    enc = Encoder(CATALOG, version=2, compression="zstd")
    samples: SampleBatch = [(1, 1, 20.9, Quality.GOOD, None), (1, 2, math.nan, Quality.GOOD, None),
                            (2, 3, math.inf, Quality.GOOD, None), (0, 4, 7, Quality.GOOD, None)]
    cache = CatalogCache()
    cache.learn(enc.catalog_message)
    cols = decode_columns(enc.encode(samples, 1, 0), cache)
    assert cols.val == [20.9, None, None, 7]
    assert cols.q == [0, 2, 2, 0]
    assert enc.spoiled_samples == 2


def test_huge_products_fall_back_to_the_search() -> None:
    # 1.7e308 * 10**6 overflows: the hinted pass raises OverflowError, the search decides (f64)
    val = (1.7e308, 20.9)
    got = _values_v2(val, (4, 1), HINTS)
    assert got == _values_v2(val) and list(got["k"]) == [5, 17]


def test_the_hints_hold_no_object_per_point() -> None:
    """Four pointers a point (#17, memory per configured point): the floats and tuples are shared."""
    from gateway.bench import synthetic_catalog

    hints = DecimalHints.of(synthetic_catalog(1000))
    for column in (hints.pow_f, hints.pow_i, hints.kind_f, hints.kind_row):
        assert len(column) == 1000 and len({id(x) for x in column}) <= 8
