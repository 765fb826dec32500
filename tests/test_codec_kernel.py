"""The v2 encoder's three ways to the same bytes: the pure-Python column code (no native build, or
EDGEGW_PURE_PYTHON=1), the per-sample kernel gateway/codec_kernel.py compiled by mypyc (the native
build), and the same kernel interpreted (its logic, on any machine).  Every batch, common or odd,
must encode to identical bytes all three ways, and decode back (the ingest's decoder)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.codec as codec
from gateway.bench import SyntheticSource, synthetic_catalog
from gateway.catalog import Catalog
from gateway.codec import Encoder, _one_float32, decode_columns
from gateway.core.point import Quality, SampleBatch, now_ns
from gateway.wire_mix import WireMix, mix_catalog
from pipelines.pipeline import Pipeline
from tests.native_kernels import interpreted, need_compiled
from tests.test_wire_v2_hints import CATALOG, floats

__all__: list[str] = []

Kernel = Callable[[SampleBatch, int, list[int]], tuple[int, bytes] | None]
KERNEL_SOURCE = Path(codec.__file__).with_name("codec_kernel.py")


def _interpreted_module() -> Any:
    """gateway/codec_kernel.py run by the interpreter (a module of its own, never the extension)."""
    return interpreted(KERNEL_SOURCE, "codec_kernel_interpreted")


def _interpreted() -> Kernel:
    return INTERPRETED_MODULE.columns_v2  # type: ignore[no-any-return]


def columns(result: tuple[int, bytes] | None) -> dict[str, Any]:
    """A kernel's result (its map entries, msgpack) as the dict they encode."""
    assert result is not None
    entries, packed = result
    cols = msgpack.unpackb(bytes((0x80 + entries,)) + packed)
    assert isinstance(cols, dict) and len(cols) == entries
    return cols


def compiled_kernel() -> Kernel | None:
    from gateway import codec_kernel

    return codec_kernel.columns_v2 if codec_kernel.COMPILED else None


def _need_compiled() -> Kernel:
    return need_compiled(compiled_kernel())


@contextmanager
def _with(kernel: Kernel | None) -> Iterator[None]:
    saved = codec._KERNEL
    codec._KERNEL = kernel
    try:
        yield
    finally:
        codec._KERNEL = saved


def encode_three_ways(enc: Encoder, samples: SampleBatch, flags: list[int] | None = None,
                      compiled: Kernel | None = None) -> bytes:
    """The batch's message, checked identical from the pure path, the interpreted and the compiled kernel."""
    outs = {}
    for name, kernel in (("pure", None), ("interpreted", INTERPRETED), ("compiled", compiled)):
        if name == "compiled" and kernel is None:
            continue
        with _with(kernel):
            outs[name] = enc.encode(list(samples), 7, 1_700_000_000_000_000_000, flags)
    assert len(set(outs.values())) == 1, {k: v.hex()[:80] for k, v in outs.items()}
    return outs["pure"]


INTERPRETED_MODULE = _interpreted_module()
INTERPRETED = _interpreted()


def test_the_gateway_uses_the_compiled_kernel_when_built() -> None:
    kernel = _need_compiled()
    assert codec._KERNEL is kernel or os.environ.get("EDGEGW_PURE_PYTHON", "") not in ("", "0")


def _bench_batch(n: int) -> tuple[Catalog, SampleBatch]:
    cat = synthetic_catalog(1000)
    src, pipe = SyntheticSource(1000), Pipeline(cat.specs)
    batch: SampleBatch = []
    while len(batch) < n:
        batch.extend(pipe(src.poll(), now_ns(), 0)[0])
    return cat, batch[:n]


@pytest.mark.parametrize("variant", ["interpreted", "compiled"])
def test_the_kernel_takes_the_common_batch(variant: str) -> None:
    """The bench's batch (scaled registers: decimals; raw ints) is the kernel's, not handed back."""
    kernel = INTERPRETED if variant == "interpreted" else _need_compiled()
    cat, batch = _bench_batch(5000)
    enc = Encoder(cat, version=2, compression="zstd")
    assert enc._hints is not None
    cols = columns(kernel(batch, len(cat.points), enc._hints.kind_f))
    assert list(cols) == ["i", "ts", "vd", "k", "vi"]
    payload = encode_three_ways(enc, batch, compiled=compiled_kernel())
    back = decode_columns(payload)
    assert back.idx == [s[0] for s in batch] and back.ts == [s[1] for s in batch]
    assert back.val == [s[2] for s in batch]
    assert [type(v) for v in back.val] == [type(s[2]) for s in batch]


ENC = Encoder(CATALOG, version=2, compression="zstd")
N = len(CATALOG.points)
qualities = st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, 0, 1, 2])
values = st.one_of(floats, st.integers(-(2**63), 2**64 - 1), floats.map(lambda f: -f),
                   st.sampled_from([0.0, -0.0, 1e-310, -1e-310, 3.4028234663852886e38, 1e39]))
# what a plant sends besides numbers: gaps, coils and alarms, operating states (the kernel's too)
plain_values = st.one_of(values, st.none(), st.booleans(), st.text(max_size=3),
                         st.sampled_from(["RUNNING", "", "é", 1.7e308, -1.7e308, 2.5e307, 9e9, -9e9]))
odd_values = st.one_of(plain_values, st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")))
times = st.one_of(st.integers(1_600_000_000_000_000_000, 1_800_000_000_000_000_000), st.integers(0, 2**62 - 1))


INDICES = st.integers(0, N - 1)


def _samples(vals: st.SearchStrategy[Any], idx: st.SearchStrategy[int] = INDICES,
             ts: st.SearchStrategy[int] = times) -> st.SearchStrategy[list[Any]]:
    sample = st.tuples(idx, ts, vals, qualities, st.one_of(st.none(), st.sampled_from(["spike", "stuck", "é"])))
    return st.lists(sample, min_size=1, max_size=40)


@settings(max_examples=400, deadline=None)
@given(_samples(values))
def test_common_batches_encode_identically_and_round_trip(samples: SampleBatch) -> None:
    payload = encode_three_ways(ENC, samples, compiled=compiled_kernel())
    back = decode_columns(payload)
    assert back.idx == [s[0] for s in samples] and back.ts == [s[1] for s in samples]
    assert list(map(repr, back.val)) == [repr(s[2]) for s in samples]  # -0.0 stays -0.0, 20 stays an int
    assert back.q == [int(s[3]) for s in samples] and back.rsn == [s[4] for s in samples]


@settings(max_examples=300, deadline=None)
@given(_samples(odd_values, idx=st.one_of(st.integers(0, N - 1), st.integers(-2, N + 1)),
                ts=st.one_of(times, st.integers(-(2**63), 2**63 - 1))),  # (beyond: admit stamps it now)
       st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=0, max_size=40)))
def test_odd_batches_encode_identically(samples: SampleBatch, flags: list[int] | None) -> None:
    """Gaps, bools, strings, NaN, out-of-range indices and times, wrong flag counts: the kernel
    hands the batch back and the pure path decides, so the bytes (or the error) are the same."""
    errors = set()
    outs = set()
    for kernel in (None, INTERPRETED, compiled_kernel()):
        with _with(kernel):
            try:
                outs.add(ENC.encode(list(samples), 1, 5, flags))
            except Exception as err:  # noqa: BLE001  # the same exception type all ways
                errors.add(type(err))
    assert len(outs) + len(errors) == 1


def test_flags_and_qualities_in_the_kernel() -> None:
    samples: SampleBatch = [(0, 10, 1.5, Quality.GOOD, None), (1, 11, 20.9, Quality.UNCERTAIN, "spike"),
                            (2, 11, 7, Quality.GOOD, None), (8, 12, 1 / 3, Quality.GOOD, None)]
    assert INTERPRETED(samples, N, ENC._hints.kind_f if ENC._hints else []) is not None
    payload = encode_three_ways(ENC, samples, flags=[0, 1, 0, 1], compiled=compiled_kernel())
    back = decode_columns(payload)
    assert back.flags == [0, 1, 0, 1] and back.q == [0, 1, 0, 0] and back.rsn == [None, "spike", None, None]
    assert back.val == [1.5, 20.9, 7, 1 / 3]


def _kernels() -> list[Kernel]:
    compiled = compiled_kernel()
    return [INTERPRETED] if compiled is None else [INTERPRETED, compiled]


def _check_round_trip(payload: bytes, samples: SampleBatch) -> None:
    back = decode_columns(payload)
    assert back.idx == [s[0] for s in samples] and back.ts == [s[1] for s in samples]
    assert list(map(repr, back.val)) == [repr(s[2]) for s in samples]  # True stays True, 1 stays 1
    assert back.q == [int(s[3]) for s in samples] and back.rsn == [s[4] for s in samples]


@settings(max_examples=500, deadline=None)
@given(_samples(plain_values), st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=40, max_size=40)))
def test_mixed_batches_are_the_kernels_and_encode_identically(samples: SampleBatch, flags: list[int] | None) -> None:
    """Bools, gaps, strings and floats of any finite size among the numbers: the kernel encodes the
    batch itself (no None) to the pure path's bytes, and the ingest decodes it back."""
    assert ENC._hints is not None
    for kernel in _kernels():
        assert kernel(list(samples), N, ENC._hints.kind_f) is not None
    flags = None if flags is None else flags[:len(samples)]
    payload = encode_three_ways(ENC, samples, flags, compiled=compiled_kernel())
    _check_round_trip(payload, samples)


def test_a_batch_turns_plain_after_its_hinted_floats() -> None:
    """The pure path decides the floats of a batch with a bool, gap or string without hints (20.0 of a
    0.1 point: float32, not 200 e1), and so when a float times its hint overflows: so must the
    kernel, also for the floats before the first such sample."""
    assert ENC._hints is not None
    kind_f = ENC._hints.kind_f
    hinted: SampleBatch = [(1, 10, 20.0, Quality.GOOD, None), (1, 11, 20.9, Quality.GOOD, None),
                           (4, 12, 0.000123, Quality.GOOD, None)]
    cols = columns(INTERPRETED(hinted, N, kind_f))
    assert cols["k"] == bytes([17, 17, 22]) and cols["vd"] == [200, 209, 123]  # by the hints
    for tail in ((2, 13, True, Quality.GOOD, None), (2, 13, None, Quality.BAD, "timeout"),
                 (2, 13, "STOPPED", Quality.GOOD, None), (1, 13, 1.7e308, Quality.GOOD, None)):
        batch = [*hinted, tail]
        for kernel in _kernels():
            cols = columns(kernel(batch, N, kind_f))
            assert cols["vd"] == [209, 123] and cols["k"][:3] == bytes([6, 17, 22])  # float32, then the search
        _check_round_trip(encode_three_ways(ENC, batch, compiled=compiled_kernel()), batch)
    # beyond 9e9 at a point without a hint, or with one that does not overflow: still hinted
    for big in ((0, 13, 1.7e308, Quality.GOOD, None), (1, 13, 2.5e300, Quality.GOOD, None)):
        cols = columns(INTERPRETED([*hinted, big], N, kind_f))
        assert cols["vd"] == [200, 209, 123] and "vf" in cols
        encode_three_ways(ENC, [*hinted, big], compiled=compiled_kernel())


@pytest.mark.parametrize("size", [10, 100, 1000])
def test_the_wire_mix_is_the_kernels(size: int) -> None:
    """`edgegw bench wire`'s plant (bools, strings, a bad gap now and then; after the deadband about 1
    sample in 500 is one of these, so most 1000-sample batches have one): every batch by the kernel,
    byte for byte the pure path's."""
    cat = mix_catalog()
    enc = Encoder(cat, version=2, compression="zstd", zstd_dict=True)
    assert enc._hints is not None
    batches = WireMix().batches(size, 30_000 // size if size < 1000 else 40)  # the bench's batches
    kinds_seen: set[type] = set()
    for batch in batches:
        for kernel in _kernels():
            assert kernel(list(batch), len(cat.points), enc._hints.kind_f) is not None
        kinds_seen.update(type(s[2]) for s in batch)
        _check_round_trip(encode_three_ways(enc, batch, compiled=compiled_kernel()), batch)
    assert {bool, str, float, int} <= kinds_seen


F32_EDGES = [0.0, -0.0, 2.0**-149, -(2.0**-149), 2.0**-150, 3 * 2.0**-150, 2.0**-126, 2.0**-126 - 2.0**-149,
             2.0**-126 + 2.0**-149, 2.0**-126 + 2.0**-150, 3.4028234663852886e38, 3.4028235677973366e38, 2.0**128,
             -(2.0**128), 1 + 2.0**-23, 1 + 2.0**-24, 16777217.0, 16777216.0, 5e-324, 1.7976931348623157e308,
             0.1, 20.9]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                 st.floats(width=32, allow_nan=False, allow_infinity=False).map(float), st.sampled_from(F32_EDGES),
                 st.floats(width=32, allow_nan=False, allow_infinity=False).map(lambda f: float(f) * (1 + 2.0**-30)),
                 st.floats(min_value=-(2.0**-120), max_value=2.0**-120)))  # float32's subnormals and near
def test_the_kernels_float32_check_is_structs(f: float) -> None:
    """The kernel tells a float32 by arithmetic (no struct round trip): the same answer for every finite
    float (the only ones it sees), float32's subnormals, its limits and the floats just off one included."""
    want = _one_float32(f)
    assert INTERPRETED_MODULE._is_float32(f) is want
    compiled = compiled_kernel()
    if compiled is not None:
        from gateway import codec_kernel

        assert codec_kernel._is_float32(f) is want


# msgpack's int forms change at these: fixint / uint8 / 16 / 32 / 64, negative fixint / int8 / 16 / 32 / 64
INT_EDGES = sorted({x + d for x in (0, 127, 128, 255, 256, 65535, 65536, 2**31, 2**32, 2**63, 2**64,
                                    -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63))
                    for d in (-1, 0, 1)})


def _writers() -> list[Any]:
    """The kernel modules: interpreted, and compiled where built."""
    from gateway import codec_kernel

    return [INTERPRETED_MODULE, codec_kernel] if codec_kernel.COMPILED else [INTERPRETED_MODULE]


def _put_int(mod: Any, v: int) -> bytes | None:
    from librt.strings import BytesWriter

    w = BytesWriter()
    return w.getvalue() if mod._put_int(w, v) else None


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.sampled_from(INT_EDGES), st.integers(-(2**64), 2**65),
                 st.integers(-(2**16), 2**17), st.integers(-(2**33), 2**33)))
def test_the_kernels_ints_are_msgpacks(v: int) -> None:
    """Every int in the form msgpack-python packs it (the smallest, unsigned when not negative), both
    ways the kernel runs; beyond 64 bits nothing is written (msgpack raises: the pure path decides)."""
    try:
        want: bytes | None = msgpack.packb(v)
    except OverflowError:
        want = None
    for mod in _writers():
        assert _put_int(mod, v) == want, (mod.__name__, v)


def test_ints_at_every_msgpack_width_encode_identically() -> None:
    """Values, index deltas (negative too), time deltas (up to 2**62) and qualities at msgpack's width
    boundaries, in batches the kernel takes: the pure path's bytes; beyond 64 bits the same outcome."""
    assert ENC._hints is not None
    t0 = 1_700_000_000_000_000_000
    in_range = [v for v in INT_EDGES if -(2**63) <= v < 2**64]
    batch: SampleBatch = [(k % N, t0 + k, v, Quality.GOOD, None) for k, v in enumerate(in_range)]
    payload = encode_three_ways(ENC, batch, compiled=compiled_kernel())
    _check_round_trip(payload, batch)
    # index deltas from -(N-1) to N-1, time deltas of every width (0 .. 2**62 - 1, and back down)
    deltas = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**40, 2**62 - 1]
    times = [0]
    for d in deltas[1:]:
        times.append(min(times[-1] + d, 2**62 - 1))
    times += [2**62 - 1, 0, 2**62 - 1, 5, 5]
    idx = [0, N - 1, 0, 1, N - 1, N // 2, 0]
    batch = [(idx[k % len(idx)], t, 1.5, Quality.GOOD, None) for k, t in enumerate(times)]
    for kernel in _kernels():
        assert kernel(list(batch), N, ENC._hints.kind_f) is not None
    _check_round_trip(encode_three_ways(ENC, batch, compiled=compiled_kernel()), batch)
    # qualities as ints of any width (a quality int, as the pure path sends it), reasons of str8/16/32
    quals = [3, 127, 128, 65536, 2**32, 2**63, -1, -129, -(2**63)]
    odd_q: list[Any] = [(k % N, t0, 20.5, q, "x" * (k * 40)) for k, q in enumerate(quals)]
    encode_three_ways(ENC, odd_q, compiled=compiled_kernel())
    # beyond 64 bits (a value, a quality): the kernel hands the batch back, the pure path decides
    odds: list[Any] = [(0, t0, 2**64, Quality.GOOD, None), (0, t0, -(2**63) - 1, Quality.GOOD, None),
                       (0, t0, 1.5, 2**64, None)]
    for odd in odds:
        for kernel in _kernels():
            assert kernel([odd], N, ENC._hints.kind_f) is None
        outs = set()
        for way in (None, INTERPRETED, compiled_kernel()):
            with _with(way):
                outs.add(ENC.encode([odd], 1, 5))
        assert len(outs) == 1


@pytest.mark.parametrize("n", [1, 15, 16, 255, 256, 65535, 65536, 70_000])
def test_column_headers_at_every_msgpack_size(n: int) -> None:
    """Array and bin headers (fix / 16 / 32) at their boundaries: batches of n samples, kinds one byte
    each (bin8..32), strings of str8 / str16 / str32 size; the assembled body is msgpack's own: unpacked
    and packed again it gives the same bytes."""
    enc = Encoder(CATALOG, version=2, compression="none")
    assert enc._hints is not None
    t0 = 1_700_000_000_000_000_000
    vals: list[Any] = [20.5, 7, 1 / 3, 3.0, -0.0, 2.0**-149]
    batch: SampleBatch = [(k % N, t0 + k // 3, vals[k % len(vals)], Quality.GOOD if k % 7 else Quality.BAD,
                           None if k % 5 else "spike") for k in range(n)]
    body = encode_three_ways(enc, batch, compiled=compiled_kernel())
    assert msgpack.packb(msgpack.unpackb(body)) == body
    _check_round_trip(body, batch)
    if n <= 256:  # strings in a plain batch: fixstr, str8, str16, str32
        strs = ["", "a" * 31, "b" * 32, "é" * 128, "c" * 255, "d" * 256, "e" * 65535, "f" * 65536]
        plain: SampleBatch = [(k % N, t0, strs[k % len(strs)] if k % 2 else k * 1.25, Quality.GOOD,
                               strs[(k + 3) % len(strs)] or None) for k in range(n)]
        for kernel in _kernels():
            assert kernel(list(plain), N, enc._hints.kind_f) is not None
        body = encode_three_ways(enc, plain, compiled=compiled_kernel())
        assert msgpack.packb(msgpack.unpackb(body)) == body
        _check_round_trip(body, plain)


def test_a_string_that_does_not_encode_is_spoiled_the_same_way() -> None:
    """A lone surrogate (a value or a reason) does not encode in UTF-8: the kernel raises what msgpack
    raises, so the encoder turns that sample bad and sends the rest, byte for byte as the pure path."""
    batch: SampleBatch = [(0, 10, "ok", Quality.GOOD, None), (1, 11, "\udc80", Quality.GOOD, None),
                          (2, 12, 1.5, Quality.BAD, "\ud800x")]
    encode_three_ways(ENC, batch, compiled=compiled_kernel())


@settings(max_examples=300, deadline=None)
@given(_samples(plain_values), st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=40, max_size=40)))
def test_the_assembled_body_is_msgpacks_own(samples: SampleBatch, flags: list[int] | None) -> None:
    """The body the codec assembles from the kernel's bytes (uncompressed) unpacks to the pure path's
    document, and msgpack packs that document back to the same bytes."""
    enc = Encoder(CATALOG, version=2, compression="none")
    flags = None if flags is None else flags[:len(samples)]
    body = encode_three_ways(enc, samples, flags, compiled=compiled_kernel())
    doc = msgpack.unpackb(body)
    assert list(doc)[:4] == ["v", "c", "seq", "t"] and doc["v"] == 2
    assert msgpack.packb(doc) == body
