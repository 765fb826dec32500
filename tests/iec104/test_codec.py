"""The 104 codec without an event loop: table-driven frames from the standard, CP56Time2a, and
hypothesis properties (round trips, streams cut anywhere, garbage never crashes or loops)."""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.iec104.codec import (
    FLAG_BL,
    FLAG_CA,
    FLAG_CY,
    FLAG_IV,
    FLAG_NT,
    FLAG_OV,
    FLAG_SB,
    MAX_ASDU,
    TYPES,
    Asdu,
    AsduError,
    Cot,
    Cp56,
    Deframer,
    Frame,
    FrameError,
    IFrame,
    SFrame,
    TypeId,
    UFrame,
    UFunc,
    UnknownTypeError,
    decode_asdu,
    encode_asdu,
    encode_frame,
    max_objects,
)

# ---------------------------------------------------------------- frames from the standard's examples
FRAMES: list[tuple[str, Frame]] = [
    ("68 04 07 00 00 00", UFrame(UFunc.STARTDT_ACT)),
    ("68 04 0B 00 00 00", UFrame(UFunc.STARTDT_CON)),
    ("68 04 13 00 00 00", UFrame(UFunc.STOPDT_ACT)),
    ("68 04 23 00 00 00", UFrame(UFunc.STOPDT_CON)),
    ("68 04 43 00 00 00", UFrame(UFunc.TESTFR_ACT)),
    ("68 04 83 00 00 00", UFrame(UFunc.TESTFR_CON)),
    ("68 04 01 00 0A 00", SFrame(5)),
    ("68 04 01 00 FE FF", SFrame(32767)),
    # C_IC_NA_1 act, CA 1, QOI 20, N(S) 0, N(R) 0
    ("68 0E 00 00 00 00 64 01 06 00 01 00 00 00 00 14",
     IFrame(0, 0, bytes.fromhex("64 01 06 00 01 00 00 00 00 14"))),
    ("68 0E 02 00 04 00 64 01 06 00 01 00 00 00 00 14",
     IFrame(1, 2, bytes.fromhex("64 01 06 00 01 00 00 00 00 14"))),
]


@pytest.mark.parametrize(("hexa", "frame"), FRAMES)
def test_frames_of_the_standard(hexa: str, frame: Frame) -> None:
    raw = bytes.fromhex(hexa)
    assert encode_frame(frame) == raw
    assert Deframer().feed(raw) == [frame]


GARBAGE = [
    ("69 04 07 00 00 00", "start octet"),
    ("68 03 07 00 00", "length 3"),
    ("68 FE" + " 00" * 254, "length 254"),
    ("68 04 0F 00 00 00", "U-format"),  # STARTDT act and con at once: not a U function
    ("68 04 07 00 00 01", "U-format"),
    ("68 04 01 01 00 00", "S-format with reserved"),
    ("68 05 01 00 00 00 00", "S-format APDU of length 5"),
    ("68 04 00 00 00 00", "without an ASDU"),
    ("68 05 00 00 01 00 64", "third control octet"),
]


@pytest.mark.parametrize(("hexa", "why"), GARBAGE)
def test_garbage_is_refused_with_a_reason(hexa: str, why: str) -> None:
    d = Deframer()
    with pytest.raises(FrameError, match=why):
        d.feed(bytes.fromhex(hexa))
    with pytest.raises(FrameError):  # a broken stream stays broken: the connection must go
        d.feed(encode_frame(UFrame(UFunc.TESTFR_ACT)))


def test_truncated_apdu_waits_for_the_rest() -> None:
    raw = encode_frame(IFrame(3, 4, bytes.fromhex("0D 01 03 00 01 00 01 40 00 00 00 20 41 00")))
    d = Deframer()
    assert d.feed(raw[:7]) == []
    assert d.pending == 7
    assert d.feed(raw[7:]) == [IFrame(3, 4, raw[6:])]
    assert d.pending == 0


# ---------------------------------------------------------------- ASDUs
def test_short_float_with_time_tag_decodes_to_the_fields() -> None:
    # M_ME_TF_1, 1 object, spontaneous, CA 1, IOA 16385, 112.25 kV, quality 0,
    # 2026-12-05 14:03:07.250 (weekday 6)
    tag = Cp56(7250, 3, 14, 5, 12, 26, 6)
    raw = bytes([36, 1, 3, 0, 1, 0, 0x01, 0x40, 0x00]) + struct.pack("<f", 112.25) + b"\x00" + tag.encode()
    a = decode_asdu(raw)
    assert a == Asdu(36, Cot.SPONTANEOUS, 1, ((16385, 112.25, 0, tag),))
    assert tag.to_ns() == int(dt.datetime(2026, 12, 5, 14, 3, 7, tzinfo=dt.UTC).timestamp()) * 10**9 + 250_000_000
    assert encode_asdu(a) == raw


def test_quality_bits_land_in_one_mask() -> None:
    siq = decode_asdu(bytes([1, 1, 20, 0, 1, 0, 101, 0, 0, 0xF1])).objects[0]
    assert siq[1] is True and siq[2] == FLAG_IV | FLAG_NT | FLAG_SB | FLAG_BL
    qds = decode_asdu(bytes([11, 1, 3, 0, 1, 0, 1, 0x40, 0, 0x10, 0x01, 0x81])).objects[0]
    assert qds[1] == 0x0110 and qds[2] == FLAG_IV | FLAG_OV
    bcr = decode_asdu(bytes([15, 1, 37, 0, 1, 0, 1, 0x64, 0, 1, 0, 0, 0, 0xE3])).objects[0]
    assert bcr[1] == 1 and bcr[2] & 0xFFFF == FLAG_IV | FLAG_CY | FLAG_CA and bcr[2] >> 16 == 3
    dpi = decode_asdu(bytes([3, 1, 20, 0, 1, 0, 3, 0, 0, 0x03])).objects[0]
    assert dpi[1] == 3


def test_sequence_of_elements_numbers_the_addresses() -> None:
    raw = bytes([9, 0x83, 20, 0, 1, 0, 0x21, 0x40, 0]) + bytes([0, 0x40, 0, 0, 0xC0, 0, 0xFF, 0x7F, 0x40])
    a = decode_asdu(raw)
    assert a.sq
    assert [o[:3] for o in a.objects] == [(16417, 0.5, 0), (16418, -0.5, 0), (16419, 32767 / 32768, FLAG_NT)]
    assert encode_asdu(a) == raw


BAD_ASDUS = [
    (b"", AsduError, "shorter"),
    (bytes([13, 1, 3, 0, 1]), AsduError, "shorter"),
    (bytes([13, 1, 3, 0, 1, 0, 1, 0, 0, 0, 0, 0]), AsduError, "needs 14 octets, got 12"),  # truncated
    (bytes([13, 1, 3, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]), AsduError, "needs 14 octets, got 15"),  # trailing
    (bytes([13, 0, 3, 0, 1, 0]), AsduError, "0 information objects"),
    (bytes([200, 1, 3, 0, 1, 0, 1, 0, 0, 0]), UnknownTypeError, "unknown type identification 200"),
    (bytes([7, 1, 3, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]), UnknownTypeError, "7"),  # M_BO_NA_1: not read
]


@pytest.mark.parametrize(("raw", "err", "why"), BAD_ASDUS)
def test_bad_asdus_say_why(raw: bytes, err: type[Exception], why: str) -> None:
    with pytest.raises(err, match=why):
        decode_asdu(raw)


def test_encoding_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="outside -1"):
        encode_asdu(Asdu(TypeId.M_ME_NA_1, 3, 1, ((1, 1.0, 0, None),)))
    with pytest.raises(ValueError, match="consecutive"):
        encode_asdu(Asdu(TypeId.M_SP_NA_1, 3, 1, ((1, True, 0, None), (3, True, 0, None)), sq=True))
    with pytest.raises(ValueError, match=r"1\.\.127"):
        encode_asdu(Asdu(TypeId.M_SP_NA_1, 3, 1, ()))
    with pytest.raises(ValueError, match="exceeds"):
        encode_asdu(Asdu(TypeId.M_ME_TF_1, 3, 1, tuple((i, 1.0, 0, None) for i in range(30))))
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(IFrame(0, 0, bytes(MAX_ASDU + 1)))


@pytest.mark.parametrize("tid", sorted(TYPES))
@pytest.mark.parametrize("sq", [False, True])
def test_max_objects_fill_an_asdu(tid: int, sq: bool) -> None:
    n = max_objects(tid, sq)
    size, timed = TYPES[tid]
    length = 6 + (3 + n * (size + 7 * timed) if sq else n * (3 + size + 7 * timed))
    assert length <= MAX_ASDU and (n == 127 or length + size + 7 * timed + (0 if sq else 3) > MAX_ASDU)


# ---------------------------------------------------------------- CP56Time2a
def test_cp56_reads_the_station_zone() -> None:
    tag = Cp56(0, 0, 8, 1, 7, 26)  # 08:00 in Beijing = 00:00 UTC
    assert tag.to_ns(zoneinfo.ZoneInfo("Asia/Shanghai")) == tag.to_ns() - 8 * 3600 * 10**9


def test_summer_time_bit_picks_the_repeated_hour() -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")  # 2026-10-25 02:30 happens twice
    summer = Cp56(0, 30, 2, 25, 10, 26, summer=True).to_ns(berlin)
    winter = Cp56(0, 30, 2, 25, 10, 26).to_ns(berlin)
    assert winter - summer == 3600 * 10**9
    assert Cp56.from_ns(summer, berlin).summer and not Cp56.from_ns(winter, berlin).summer


@pytest.mark.parametrize("tag", [Cp56(60000, 0, 0, 1, 1, 26), Cp56(0, 61, 0, 1, 1, 26), Cp56(0, 0, 0, 30, 2, 26),
                                 Cp56(0, 0, 0, 0, 1, 26), Cp56(0, 0, 0, 1, 13, 26)])
def test_impossible_times_are_value_errors(tag: Cp56) -> None:
    with pytest.raises(ValueError):
        tag.to_ns()


@given(st.integers(946_684_800_000, 4_102_444_799_999))  # 2000-01-01 .. 2099-12-31, in ms
def test_cp56_round_trips_instants(ms: int) -> None:
    ns = ms * 1_000_000
    tag = Cp56.from_ns(ns)
    assert Cp56.decode(tag.encode()) == tag
    assert tag.to_ns() == ns


cp56s = st.builds(Cp56, st.integers(0, 0xFFFF), st.integers(0, 63), st.integers(0, 31), st.integers(0, 31),
                  st.integers(0, 15), st.integers(0, 127), st.integers(0, 7), st.booleans(), st.booleans(),
                  st.booleans())


@given(cp56s)
def test_cp56_fields_round_trip(tag: Cp56) -> None:
    assert Cp56.decode(tag.encode()) == tag


# ---------------------------------------------------------------- properties over all types
def _objects(tid: int) -> st.SearchStrategy[tuple[int, object, int, Cp56 | None]]:
    timed = TYPES[tid][1]
    tag = cp56s if timed else st.none()
    ioa = st.integers(0, 0xFFFFFF)
    q5 = st.sampled_from([0, FLAG_IV, FLAG_NT, FLAG_SB, FLAG_BL, FLAG_OV, FLAG_IV | FLAG_OV | FLAG_NT])
    q4 = st.sampled_from([0, FLAG_IV, FLAG_NT, FLAG_SB, FLAG_BL, FLAG_IV | FLAG_BL])
    if tid in (TypeId.M_SP_NA_1, TypeId.M_SP_TB_1):
        return st.tuples(ioa, st.booleans(), q4, tag)
    if tid in (TypeId.M_DP_NA_1, TypeId.M_DP_TB_1):
        return st.tuples(ioa, st.integers(0, 3), q4, tag)
    if tid in (TypeId.M_ME_NA_1, TypeId.M_ME_TD_1):
        return st.tuples(ioa, st.integers(-32768, 32767).map(lambda n: n / 32768), q5, tag)
    if tid == TypeId.M_ME_ND_1:
        return st.tuples(ioa, st.integers(-32768, 32767).map(lambda n: n / 32768), st.just(0), tag)
    if tid in (TypeId.M_ME_NB_1, TypeId.M_ME_TE_1):
        return st.tuples(ioa, st.integers(-32768, 32767), q5, tag)
    if tid in (TypeId.M_ME_NC_1, TypeId.M_ME_TF_1):
        f32 = st.floats(width=32, allow_nan=False)
        return st.tuples(ioa, f32, q5, tag)
    if tid in (TypeId.M_IT_NA_1, TypeId.M_IT_TB_1):
        fl = st.tuples(st.sampled_from([0, FLAG_IV, FLAG_CY, FLAG_CA, FLAG_IV | FLAG_CY]), st.integers(0, 31))
        return st.tuples(ioa, st.integers(-(2**31), 2**31 - 1), fl.map(lambda f: f[0] | f[1] << 16), tag)
    if tid == TypeId.C_CS_NA_1:
        return st.tuples(ioa, cp56s, st.just(0), st.none())
    return st.tuples(ioa, st.integers(0, 255), st.just(0), st.none())


@st.composite
def asdus(draw: st.DrawFn) -> Asdu:
    tid = draw(st.sampled_from(sorted(TYPES)))
    sq = draw(st.booleans())
    n = draw(st.integers(1, max_objects(tid, sq)))
    objs = draw(st.lists(_objects(tid), min_size=n, max_size=n))
    if sq:
        first = draw(st.integers(0, 0xFFFFFF - n))
        objs = [(first + i, *o[1:]) for i, o in enumerate(objs)]
    return Asdu(tid, draw(st.integers(0, 63)), draw(st.integers(0, 0xFFFF)), tuple(objs), sq,  # type: ignore[arg-type]
                draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 255)))


@given(asdus())
@settings(max_examples=300, deadline=None)
def test_asdu_round_trip(a: Asdu) -> None:
    raw = encode_asdu(a)
    assert decode_asdu(raw) == a
    assert encode_asdu(decode_asdu(raw)) == raw


frames = st.one_of(
    st.builds(IFrame, st.integers(0, 32767), st.integers(0, 32767), asdus().map(encode_asdu)),
    st.builds(SFrame, st.integers(0, 32767)),
    st.builds(UFrame, st.sampled_from(list(UFunc))),
)


@given(st.lists(frames, max_size=20), st.lists(st.integers(0, 4000), max_size=30))
@settings(max_examples=200, deadline=None)
def test_a_stream_cut_anywhere_gives_the_same_frames(sent: list[Frame], cuts: list[int]) -> None:
    raw = b"".join(encode_frame(f) for f in sent)
    points = sorted({c % (len(raw) + 1) for c in cuts})
    d = Deframer()
    got: list[Frame] = []
    for a, b in zip([0, *points], [*points, len(raw)], strict=True):
        got += d.feed(raw[a:b])
    assert got == sent
    assert d.pending == 0


@given(st.binary(max_size=600))
@settings(max_examples=500, deadline=None)
def test_garbage_never_crashes_the_deframer(data: bytes) -> None:
    d = Deframer()
    try:
        frames = d.feed(data)
    except FrameError:
        return
    assert len(frames) <= len(data) // 6
    assert d.pending < 255  # at most one partial APDU is held
    for f in frames:
        if isinstance(f, IFrame):
            with contextlib.suppress(AsduError):
                decode_asdu(f.asdu)


@given(st.binary(max_size=260))
@settings(max_examples=500, deadline=None)
def test_garbage_asdus_raise_only_asdu_errors(data: bytes) -> None:
    try:
        a = decode_asdu(data)
    except AsduError:
        return
    # reserved bits are dropped, otherwise what was read is what is written: a normal form
    assert decode_asdu(encode_asdu(a)) == a


@given(st.lists(frames, min_size=1, max_size=10), st.integers(0, 255).filter(lambda b: b != 0x68),
       st.binary(max_size=20))
@settings(max_examples=200, deadline=None)
def test_frames_before_garbage_are_kept_and_the_stream_then_fails(sent: list[Frame], bad: int, tail: bytes) -> None:
    raw = b"".join(encode_frame(f) for f in sent) + bytes([bad]) + tail
    d = Deframer()
    assert d.feed(raw) == sent
    assert d.error is not None and "start octet" in str(d.error)
    with pytest.raises(FrameError):
        d.feed(encode_frame(UFrame(UFunc.TESTFR_ACT)))
