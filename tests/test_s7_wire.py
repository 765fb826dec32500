"""S7comm framing without I/O: the frames we send byte for byte, and every way an answer can be wrong."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.s7.wire import (
    FrameError,
    ReadItem,
    S7HeaderError,
    cotp_connect_request,
    cotp_data_payload,
    parse_connect_confirm,
    parse_read_response,
    parse_setup_response,
    read_request,
    read_request_size,
    read_response_size,
    return_code_reason,
    setup_request,
    tpkt_length,
)


def ack(ref: int, params: bytes, data: bytes = b"", eclass: int = 0, ecode: int = 0) -> bytes:
    return struct.pack(">BBHHHHBB", 0x32, 3, 0, ref, len(params), len(data), eclass, ecode) + params + data


def test_connect_request_bytes() -> None:
    # what snap7 sends for rack 0, slot 2 (remote TSAP 0x0102), local TSAP 0x0100, TPDU size 1024
    assert cotp_connect_request(0x0100, 0x0102).hex() == "0300001611e00000000100c1020100c2020102c0010a"


def test_setup_and_read_request_bytes() -> None:
    assert setup_request(1, 480).hex() == "0300001902f08032010000000100080000f0000001000101e0"
    req = read_request(2, [ReadItem(0x84, 10, 4, 8), ReadItem(0x83, 0, 1, 1)])
    # S7ANY items: 12 0A 10, transport BYTE, count, DB, area, bit address (byte * 8)
    assert req[7:].hex() == ("3201000000020" "01a" "0000" "0402"  # header: ref 2, 26 parameter bytes, no data
                             "120a10020008000a84000020"  # DB10, 8 bytes from byte 4 (bit address 0x20)
                             "120a1002000100008300000" "8")  # M, 1 byte from byte 1
    assert len(req) - 7 == read_request_size(2)


def test_tpkt_length() -> None:
    assert tpkt_length(b"\x03\x00\x00\x1b") == 27
    for bad, what in ((b"\x16\x03\x01\x00", "not a TPKT"), (b"\x03\x00\x00\x02", "outside 7.."),
                      (b"\x03\x00\xff\xff", "outside 7.."), (b"\x03\x00", "need 4")):
        with pytest.raises(FrameError, match=what):
            tpkt_length(bad)


def test_connect_confirm() -> None:
    parse_connect_confirm(b"\x03\x00\x00\x0b" + bytes((6, 0xD0, 0, 1, 0, 1, 0)))
    with pytest.raises(FrameError, match=r"refused the connection .* rack / slot or TSAP"):
        parse_connect_confirm(b"\x03\x00\x00\x0b" + bytes((6, 0x80, 0, 1, 0, 1, 0)))
    with pytest.raises(FrameError, match="truncated"):
        parse_connect_confirm(b"\x03\x00\x00\x05" + bytes((6,)))


def test_cotp_data() -> None:
    assert cotp_data_payload(b"\x03\x00\x00\x09\x02\xf0\x80ab") == (b"ab", True)
    assert cotp_data_payload(b"\x03\x00\x00\x09\x02\xf0\x00ab") == (b"ab", False)
    with pytest.raises(FrameError, match="data TPDU"):
        cotp_data_payload(b"\x03\x00\x00\x09\x02\xe0\x80ab")
    with pytest.raises(FrameError, match="truncated COTP"):
        cotp_data_payload(b"\x03\x00\x00\x06\x02\xf0")
    with pytest.raises(FrameError, match="does not fit"):
        cotp_data_payload(b"\x03\x00\x00\x08\x09\xf0\x80a")


def test_setup_response() -> None:
    r = parse_setup_response(ack(1, struct.pack(">BBHHH", 0xF0, 0, 1, 3, 240)), 1)
    assert (r.pdu_size, r.max_jobs_called) == (240, 3)
    with pytest.raises(FrameError, match="expected 1"):
        parse_setup_response(ack(5, struct.pack(">BBHHH", 0xF0, 0, 1, 3, 240)), 1)
    with pytest.raises(FrameError, match="PDU size of 0"):
        parse_setup_response(ack(1, struct.pack(">BBHHH", 0xF0, 0, 1, 3, 0)), 1)
    with pytest.raises(S7HeaderError, match=r"error class 0x81 \(application relationship\), code 0x04") as err:
        parse_setup_response(ack(1, b"", eclass=0x81, ecode=0x04), 1)
    assert err.value.reason == "s7_error_8104"


def test_read_response_items_and_fill_bytes() -> None:
    data = (struct.pack(">BBH", 0xFF, 4, 8) + b"\x07" + b"\x00"  # 1 byte, fill byte
            + struct.pack(">BBH", 0x0A, 0, 0)  # no such DB
            + struct.pack(">BBH", 0xFF, 4, 16) + b"\x01\x02")
    items = parse_read_response(ack(9, b"\x04\x03", data), 9, [1, 4, 2])
    assert [(i.code, i.data) for i in items] == [(0xFF, b"\x07"), (0x0A, b""), (0xFF, b"\x01\x02")]
    assert return_code_reason(0x0A) == "s7_object_does_not_exist"
    assert return_code_reason(0x05) == "s7_address_out_of_range"
    assert return_code_reason(0x03) == "s7_access_denied"
    assert return_code_reason(0x42) == "s7_item_error_0x42"
    # transport size 0x09 (octet string) counts bytes, not bits
    items = parse_read_response(ack(1, b"\x04\x01", struct.pack(">BBH", 0xFF, 9, 3) + b"abc"), 1, [3])
    assert items[0].data == b"abc"


def test_a_failed_item_is_its_header_alone_whatever_its_length_says() -> None:
    """Snap7's C++ server answers a failed item with length 4 and no data (found by the interop test);
    CPUs send length 0.  Either way the next item starts right after the 4-byte header."""
    for failed_length in (0, 4, 0xFFFF):
        data = struct.pack(">BBH", 0x05, 0, failed_length) + struct.pack(">BBH", 0xFF, 4, 16) + b"\x01\x02"
        items = parse_read_response(ack(3, b"\x04\x02", data), 3, [8, 2])
        assert [(i.code, i.data) for i in items] == [(0x05, b""), (0xFF, b"\x01\x02")]


@pytest.mark.parametrize(("pdu", "counts", "what"), [
    (ack(1, b"\x04\x02", struct.pack(">BBH", 0xFF, 4, 16) + b"\x01\x02"), [2, 2], "item 2 of 2 is missing"),
    (ack(1, b"\x04\x01", struct.pack(">BBH", 0xFF, 4, 32) + b"\x01\x02"), [2], "4 bytes, 2 were asked for"),
    (ack(1, b"\x04\x01", struct.pack(">BBH", 0xFF, 4, 16) + b"\x01"), [2], "announced, 1 present"),
    (ack(1, b"\x04\x03", b""), [2], "carries 3 items, 1 were asked"),
    (ack(1, b"\x05\x01", b""), [2], "expected function 0x04"),
    (ack(1, b"\x04\x01", b"")[:10], [2], "truncated S7 header"),
    (b"\x33" + ack(1, b"\x04\x01", b"")[1:], [2], "not S7comm"),
    (ack(1, b"\x04\x01", b"") + b"junk", [2], "do not match"),
    (ack(2, b"\x04\x01", b""), [2], "answer to request 2, expected 1"),
])
def test_bad_read_responses(pdu: bytes, counts: list[int], what: str) -> None:
    with pytest.raises(FrameError, match=what):
        parse_read_response(pdu, 1, counts)


@given(st.binary(max_size=64), st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_garbage_raises_frame_error_or_header_error_only(junk: bytes, counts: list[int]) -> None:
    for pdu in (junk, ack(1, b"\x04" + bytes((len(counts),)), junk)):
        with contextlib.suppress(FrameError, S7HeaderError):
            parse_read_response(pdu, 1, counts)


def test_response_size_counts_fill_bytes() -> None:
    assert read_response_size([]) == 14
    assert read_response_size([1, 1]) == 14 + 4 + 1 + 1 + 4 + 1  # fill byte after the first only
    assert read_response_size([2, 3]) == 14 + 6 + 7
