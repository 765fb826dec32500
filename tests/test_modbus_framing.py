"""Modbus framing without I/O (drivers/modbus/framing.py): requests as bytes, bytes in -> frames out.

No event loop, no socket: the framers are fed bytes as a transport would deliver them (in arbitrary
pieces, with noise in front) and must cut out exactly the frames that were sent.
"""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.framing import (
    ExceptionResponse,
    FrameError,
    MbapFrame,
    MbapFramer,
    RtuFrame,
    RtuFramer,
    crc16,
    mbap_request,
    read_data_bytes,
    read_response_data,
    rtu_frame,
    rtu_request,
)

__all__: list[str] = []


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (as a TCP stream or a serial port may deliver it)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# ------------------------------------------------------------------------------ requests, CRC
def test_crc16_matches_the_spec_check_value_and_a_known_request() -> None:
    assert crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value
    # read 10 holding registers from 0 on unit 1: the frame every Modbus tutorial shows
    assert rtu_request(1, 3, 0, 10) == bytes.fromhex("01030000000AC5CD")


def test_mbap_request_bytes() -> None:
    assert mbap_request(0x1234, 9, 4, 100, 2) == bytes.fromhex("123400000006" "09" "04" "0064" "0002")
    assert mbap_request(0x1_0001, 1, 3, 0, 1)[:2] == b"\x00\x01"  # the transaction id wraps at 16 bits


@pytest.mark.parametrize(("unit", "function", "address", "count"), [
    (1, 5, 0, 1),  # not a read
    (1, 3, 0, 0),
    (1, 3, 0, 126),  # more registers than one request may carry
    (1, 1, 0, 2001),
    (256, 3, 0, 1),
    (1, 3, 65536, 1),
])
def test_requests_outside_the_spec_are_refused(unit: int, function: int, address: int, count: int) -> None:
    for build in (rtu_request, lambda *a: mbap_request(1, *a)):
        with pytest.raises(ValueError, match="not a valid read request"):
            build(unit, function, address, count)


def test_response_data_is_checked_against_the_request() -> None:
    assert read_response_data(b"\x03\x04\x00\x01\x00\x02", 3, 4) == b"\x00\x01\x00\x02"
    with pytest.raises(ExceptionResponse) as exc:
        read_response_data(b"\x83\x02", 3, 4)
    assert exc.value.code == 2
    for pdu, why in [
        (b"\x04\x04\x00\x01\x00\x02", "function code 4"),
        (b"\x03\x02\x00\x01", "byte count 2"),
        (b"\x03\x04\x00\x01", "byte count 4 / 2 bytes"),
        (b"\x83", "malformed exception"),
        (b"", "function code -1"),
    ]:
        with pytest.raises(FrameError, match=why):
            read_response_data(pdu, 3, 4)
    assert read_data_bytes(3, 10) == 20 and read_data_bytes(1, 9) == 2 and read_data_bytes(2, 8) == 1


# ------------------------------------------------------------------------------ MBAP
def _mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


_pdus = st.binary(min_size=1, max_size=253)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255), _pdus), min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 2000), max_size=30))
def test_mbap_frames_split_anywhere_come_out_whole_and_in_order(
    frames: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    framer = MbapFramer()
    out: list[MbapFrame] = []
    for piece in _pieces(b"".join(_mbap(*f) for f in frames), cuts):
        framer.feed(piece)
        while (frame := framer.next_frame()) is not None:
            out.append(frame)
    assert out == [MbapFrame(tid, 0, unit, pdu) for tid, unit, pdu in frames]
    assert framer.buffered == 0


@pytest.mark.parametrize("length", [0, 1, 255, 0xFFFF])
def test_an_mbap_length_outside_the_spec_is_a_frame_error_and_empties_the_buffer(length: int) -> None:
    framer = MbapFramer()
    framer.feed(struct.pack(">HHHB", 1, 0, length, 1) + b"\x03\x02\x00\x00")
    with pytest.raises(FrameError, match=f"MBAP length {length}"):
        framer.next_frame()
    assert framer.buffered == 0
    framer.feed(_mbap(2, 1, b"\x03\x02\x00\x07"))  # the next frame is read normally
    assert framer.next_frame() == MbapFrame(2, 0, 1, b"\x03\x02\x00\x07")


def test_a_partial_mbap_frame_waits_for_its_bytes() -> None:
    framer = MbapFramer()
    whole = _mbap(7, 1, b"\x03\x04\x00\x01\x00\x02")
    framer.feed(whole[:6])
    assert framer.next_frame() is None
    framer.feed(whole[6:-1])
    assert framer.next_frame() is None
    framer.feed(whole[-1:])
    assert framer.next_frame() == MbapFrame(7, 0, 1, b"\x03\x04\x00\x01\x00\x02")


# ------------------------------------------------------------------------------ RTU
def _response_pdu(kind: int, data: bytes, code: int) -> bytes:
    """A response PDU of each shape: a read (fc 1-4, byte count), an exception, a write echo."""
    if kind < 4:
        return bytes((kind + 1, len(data))) + data
    if kind == 4:
        return bytes((0x83, code))
    return bytes((16,)) + data[:4].ljust(4, b"\x00")


_responses = st.tuples(st.integers(0, 247), st.integers(0, 5), st.binary(max_size=250), st.integers(1, 11))


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(_responses, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 2000), max_size=30))
def test_rtu_responses_split_anywhere_come_out_whole_and_in_order(
    frames: list[tuple[int, int, bytes, int]], cuts: list[int]
) -> None:
    """The frame length follows from the function code (and a read's byte count)."""
    sent = [RtuFrame(unit, _response_pdu(kind, data, code)) for unit, kind, data, code in frames]
    framer = RtuFramer()
    out: list[RtuFrame] = []
    for piece in _pieces(b"".join(rtu_frame(f.unit, f.pdu) for f in sent), cuts):
        framer.feed(piece)
        while (frame := framer.next_frame()) is not None:
            out.append(frame)
    assert out == sent
    assert framer.skipped == 0 and framer.buffered == 0


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=300), response=_responses, cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_rtu_resynchronises_on_garbage_and_finds_the_awaited_answer(
    garbage: bytes, response: tuple[int, int, bytes, int], cuts: list[int]
) -> None:
    """Noise on the line, or the tail of a frame from before a reconnect, in front of the answer:
    every garbage byte is skipped and counted, and the answer comes out whole, even when the noise
    looks like the start of a long frame (the caller says which unit and function it waits for)."""
    unit, kind, data, code = response
    pdu = _response_pdu(kind, data, code)
    framer = RtuFramer(accept=lambda u, fc: u == unit and fc == pdu[0] & 0x7F)
    out: list[RtuFrame] = []
    for piece in _pieces(garbage + rtu_frame(unit, pdu), cuts):
        framer.feed(piece)
        while (frame := framer.next_frame()) is not None:
            out.append(frame)
    assert out[-1:] == [RtuFrame(unit, pdu)]
    if len(out) == 1:  # (unless the noise happened to hold a CRC-valid frame of its own)
        assert framer.skipped == len(garbage)


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=200))
def test_rtu_garbage_alone_yields_no_frame_and_the_buffer_stays_bounded(garbage: bytes) -> None:
    framer = RtuFramer(accept=lambda u, fc: True)
    framer.feed(garbage)
    frames = []
    while (frame := framer.next_frame()) is not None:
        frames.append(frame)
    for f in frames:  # whatever came out carries a correct CRC
        assert rtu_frame(f.unit, f.pdu) in garbage
    # what stays buffered is at most the beginning of one frame (unit, fc, byte count, 255 data, CRC)
    assert framer.buffered <= 260


def test_a_bad_crc_skips_the_frame_byte_by_byte_and_the_next_one_is_read() -> None:
    good = rtu_frame(1, b"\x03\x02\x00\x2a")
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    framer = RtuFramer()
    framer.feed(bytes(bad) + good)
    assert framer.next_frame() == RtuFrame(1, b"\x03\x02\x00\x2a")
    assert framer.skipped == len(bad) and framer.buffered == 0


def test_without_accept_a_frame_that_looks_long_is_waited_for() -> None:
    """Without knowing what it waits for, the framer cannot tell a long frame from noise: it waits."""
    framer = RtuFramer()
    framer.feed(b"\x01\x03\xc8" + rtu_frame(1, b"\x03\x02\x00\x2a"))  # "200 data bytes follow"
    assert framer.next_frame() is None
    framer = RtuFramer(accept=lambda u, fc: (u, fc) == (1, 3))
    framer.feed(b"\x01\x03\xc8" + rtu_frame(1, b"\x03\x02\x00\x2a"))
    assert framer.next_frame() == RtuFrame(1, b"\x03\x02\x00\x2a")
    assert framer.skipped == 3


@settings(max_examples=150, deadline=None)
@given(requests=st.lists(st.tuples(st.integers(0, 247), st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16]),
                                   st.integers(0, 0xFFFF), st.binary(min_size=1, max_size=246)),
                         min_size=1, max_size=5),
       cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_rtu_requests_are_framed_by_their_function_code(
    requests: list[tuple[int, int, int, bytes]], cuts: list[int]
) -> None:
    """What a server or a line monitor reads: fixed 8-byte requests, and writes of multiple values
    whose length follows from their byte count."""
    sent = []
    for unit, fc, address, data in requests:
        if fc in (15, 16):
            pdu = struct.pack(">BHHB", fc, address, len(data) // 2 or 1, len(data)) + data
        else:
            pdu = struct.pack(">BHH", fc, address, len(data))
        sent.append(RtuFrame(unit, pdu))
    framer = RtuFramer("request")
    out = []
    for piece in _pieces(b"".join(rtu_frame(f.unit, f.pdu) for f in sent), cuts):
        framer.feed(piece)
        while (frame := framer.next_frame()) is not None:
            out.append(frame)
    assert out == sent
