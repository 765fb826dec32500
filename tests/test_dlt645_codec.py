"""DL/T 645-2007 codec: frames, wake-up preamble, +0x33 offset, checksum, addresses, DIs, BCD values.

Pure: no event loop.  Table-driven cases come from the spec's worked examples; hypothesis covers
round trips, arbitrary splits of the byte stream, garbage before a frame and corrupted checksums.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.dlt645.codec import (
    Control,
    Deframer,
    Frame,
    ValueFormat,
    checksum,
    decode_bcd,
    encode_bcd,
    encode_frame,
    error_reason,
    format_address,
    format_di,
    parse_address,
    parse_di,
    read_request,
)
from drivers.dlt645.dataids import describe, lookup

ADDR = parse_address("000012345678")


def test_read_request_bytes_as_in_the_spec() -> None:
    """Read forward active energy total of meter 000012345678: DI 00 01 00 00, each byte +0x33."""
    frame = read_request(ADDR, 0x00010000)
    assert frame.hex(" ") == "fe fe fe fe 68 78 56 34 12 00 00 68 11 04 33 33 34 33 " + \
        f"{checksum(frame[4:-2]):02x} 16"
    assert checksum(bytes.fromhex("68 78 56 34 12 00 00 68 11 04 33 33 34 33")) == frame[-2]


def test_preamble_count_is_configurable() -> None:
    assert read_request(ADDR, 0x02010100, preamble=0)[0] == 0x68
    assert read_request(ADDR, 0x02010100, preamble=2)[:3] == b"\xfe\xfe\x68"


def test_address_nameplate_round_trip_and_wire_order() -> None:
    assert parse_address("000012345678") == bytes.fromhex("78 56 34 12 00 00")
    assert parse_address("0000 1234-5678") == parse_address("12345678")  # separators, leading zeros
    assert format_address(parse_address("210100000001")) == "210100000001"


@pytest.mark.parametrize(("text", "words"), [
    ("999999999999", "broadcast"),
    ("99 99 99 99 99 99", "broadcast"),
    ("AAAAAAAAAAAA", "wildcard"),
    ("0000123456AA", "wildcard"),
    ("12345678901X", "12 decimal digits"),
    ("1234567890123", "12 decimal digits"),
    ("", "12 decimal digits"),
])
def test_broadcast_wildcard_and_malformed_addresses_are_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_address(text)


@pytest.mark.parametrize(("text", "value"), [
    ("02 01 01 00", 0x02010100), ("02010100", 0x02010100), ("0x00010000", 0x00010000), ("02-80-00-02", 0x02800002),
])
def test_data_identifier_notations(text: str, value: int) -> None:
    assert parse_di(text) == value
    assert parse_di(format_di(value)) == value


@pytest.mark.parametrize("text", ["0201010", "02 01 01 00 00", "GG010100", "voltage"])
def test_bad_data_identifiers(text: str) -> None:
    with pytest.raises(ValueError, match="DI3 first"):
        parse_di(text)


@pytest.mark.parametrize(("raw", "fmt", "value"), [
    (bytes.fromhex("34 12 00 00"), ValueFormat(4, 2), 12.34),  # XXXXXX.XX energy
    (bytes.fromhex("78 56 34 12"), ValueFormat(4, 2), 123456.78),
    (bytes.fromhex("05 22"), ValueFormat(2, 1), 220.5),  # XXX.X voltage
    (bytes.fromhex("56 34 12"), ValueFormat(3, 3, True), 123.456),  # XXX.XXX current
    (bytes.fromhex("56 34 92"), ValueFormat(3, 3, True), -123.456),  # sign in the top bit
    (bytes.fromhex("50 89"), ValueFormat(2, 3, True), -0.950),  # X.XXX power factor, reverse
    (bytes.fromhex("01 50"), ValueFormat(2, 2), 50.01),  # XX.XX frequency
])
def test_bcd_values(raw: bytes, fmt: ValueFormat, value: float) -> None:
    assert decode_bcd(raw, fmt) == pytest.approx(value, abs=1e-9)
    assert encode_bcd(value, fmt) == raw


@pytest.mark.parametrize("raw", [bytes.fromhex("ff ff"), bytes.fromhex("0a 00"), bytes.fromhex("00 a0")])
def test_bytes_that_are_not_bcd_raise(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not BCD"):
        decode_bcd(raw, ValueFormat(2, 1))


def test_format_notation() -> None:
    assert ValueFormat.parse("XXXXXX.XX") == ValueFormat(4, 2)
    assert ValueFormat.parse("X.XXX", signed=True) == ValueFormat(2, 3, True)
    assert str(ValueFormat(3, 3)) == "XXX.XXX"
    for bad in ("XXX.XX", "99.9", ""):
        with pytest.raises(ValueError):
            ValueFormat.parse(bad)


def test_table_has_the_spec_formats() -> None:
    assert lookup(0x00000000) is not None and lookup(0x00000000).fmt == ValueFormat(4, 2, True)  # type: ignore[union-attr]
    assert lookup(0x00010000).fmt == ValueFormat(4, 2) and lookup(0x00010000).unit == "kWh"  # type: ignore[union-attr]
    assert lookup(0x02010200).fmt == ValueFormat(2, 1) and lookup(0x02010200).unit == "V"  # type: ignore[union-attr]
    assert lookup(0x02020300).fmt == ValueFormat(3, 3, True)  # type: ignore[union-attr]
    assert lookup(0x02030000).fmt == ValueFormat(3, 4, True)  # type: ignore[union-attr]
    assert lookup(0x02060100).fmt == ValueFormat(2, 3, True)  # type: ignore[union-attr]
    assert lookup(0x02800002).fmt == ValueFormat(2, 2)  # type: ignore[union-attr]
    assert lookup(0x02010000) is None  # no "total" voltage
    assert lookup(0x05060100) is None
    assert len(describe()) > 20


@pytest.mark.parametrize(("err", "reason"), [
    (0x02, "dlt645_no_such_data"), (0x04, "dlt645_unauthorised"), (0x01, "dlt645_other_error"),
    (0x03, "dlt645_no_such_data"), (0x80, "dlt645_error_0x80"),
])
def test_error_byte_reasons(err: int, reason: str) -> None:
    assert error_reason(err) == reason


# -- property tests ---------------------------------------------------------------------------------

addresses = st.binary(min_size=6, max_size=6)
controls = st.sampled_from([c.value for c in Control])
payloads = st.binary(max_size=200)
frames = st.tuples(addresses, controls, payloads, st.integers(0, 8))


@given(frames)
def test_frame_round_trip(f: tuple[bytes, int, bytes, int]) -> None:
    address, control, data, preamble = f
    assert Deframer().feed(encode_frame(address, control, data, preamble)) == [Frame(address, control, data)]


@given(st.lists(frames, min_size=1, max_size=5), st.data())
def test_any_split_of_a_stream_gives_the_same_frames(
    fs: list[tuple[bytes, int, bytes, int]], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(*f) for f in fs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    d = Deframer()
    got: list[Frame] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += d.feed(stream[a:b])
    assert got == [Frame(a, c, p) for a, c, p, _ in fs]
    assert d.pending == 0


@given(frames, st.binary(max_size=300).map(lambda b: b.replace(b"\x68", b"")))
def test_garbage_before_a_frame_is_skipped(f: tuple[bytes, int, bytes, int], garbage: bytes) -> None:
    """Noise before the answer (no start byte in it) is skipped and counted; the frame is found."""
    d = Deframer()
    assert d.feed(garbage + encode_frame(*f)) == [Frame(f[0], f[1], f[2])]
    assert d.skipped == len(garbage) + f[3]


@given(frames, st.binary(max_size=300))
def test_after_any_garbage_a_cleared_deframer_finds_the_frame(f: tuple[bytes, int, bytes, int], garbage: bytes) -> None:
    """Garbage may hold a start byte and a header that promises a long frame (the deframer then waits
    for its bytes): the driver clears the deframer before each request, after which the answer is found."""
    d = Deframer()
    d.feed(garbage)
    d.clear()
    assert d.feed(encode_frame(*f)) == [Frame(f[0], f[1], f[2])]


@given(frames, st.integers(1, 255))
def test_a_corrupted_checksum_is_never_a_frame(f: tuple[bytes, int, bytes, int], delta: int) -> None:
    wire = bytearray(encode_frame(*f))
    wire[-2] = (wire[-2] + delta) & 0xFF
    d = Deframer()
    assert d.feed(bytes(wire)) == []
    assert d.bad_checksums == 1


@given(frames, st.data())
def test_a_corrupted_byte_is_never_a_wrong_frame(f: tuple[bytes, int, bytes, int], data: st.DataObject) -> None:
    """One byte changed anywhere in the frame: either no frame, or (a change in the preamble, which
    is not part of the frame) the same frame; never a frame with other contents."""
    wire = bytearray(encode_frame(*f))
    i = data.draw(st.integers(0, len(wire) - 1))
    wire[i] = (wire[i] + data.draw(st.integers(1, 255))) & 0xFF
    for frame in Deframer().feed(bytes(wire)):
        assert frame == Frame(f[0], f[1], f[2])


@given(st.integers(0, 10**8 - 1), st.integers(0, 4), st.booleans())
def test_bcd_round_trip(n: int, decimals: int, negative: bool) -> None:
    fmt = ValueFormat(4, decimals, signed=True)
    n = n % (8 * 10**7)
    value = (-n if negative else n) / 10**decimals
    assert decode_bcd(encode_bcd(value, fmt), fmt) == pytest.approx(value, abs=10**-decimals / 2)
