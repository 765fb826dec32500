"""The lean PublishResponse decoder against asyncua's own encoder and decoder (property-based)."""

from __future__ import annotations

import datetime as dt
import math
import struct
import uuid
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary
from asyncua.ua.uatypes import win_epoch_to_datetime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.opcua.decode import datetime_ns
from drivers.opcua.driver import _dv_parts, asyncua_variant, decode_publish, frame_of
from drivers.opcua.wire import (
    PublishFrame,
    Unsupported,
    decode_publish_response,
    decode_read_response,
    filetime_ns,
    timestamp_ns,
)

VT = ua.VariantType
UTC = dt.UTC

_INT_RANGES = {
    VT.SByte: (-(2**7), 2**7 - 1),
    VT.Byte: (0, 2**8 - 1),
    VT.Int16: (-(2**15), 2**15 - 1),
    VT.UInt16: (0, 2**16 - 1),
    VT.Int32: (-(2**31), 2**31 - 1),
    VT.UInt32: (0, 2**32 - 1),
    VT.Int64: (-(2**63), 2**63 - 1),
    VT.UInt64: (0, 2**64 - 1),
}
_text = st.text(max_size=12)
_times = st.datetimes(min_value=dt.datetime(1601, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(UTC))


def _scalars(vt: ua.VariantType) -> st.SearchStrategy[Any]:
    if vt in _INT_RANGES:
        lo, hi = _INT_RANGES[vt]
        return st.integers(lo, hi)
    return {
        VT.Boolean: st.booleans(),
        VT.Float: st.floats(width=32),
        VT.Double: st.floats(),
        VT.String: st.one_of(st.none(), _text),
        VT.ByteString: st.one_of(st.none(), st.binary(max_size=12)),
    }[vt]


_FAST_TYPES = [*_INT_RANGES, VT.Boolean, VT.Float, VT.Double, VT.String, VT.ByteString]


@st.composite
def fast_variants(draw: st.DrawFn) -> ua.Variant:
    """Variants the lean decoder reads itself: scalars and 1-D arrays of the plain built-in types."""
    vt = draw(st.sampled_from(_FAST_TYPES))
    if draw(st.booleans()):
        return ua.Variant(draw(st.lists(_scalars(vt), max_size=5)), vt, is_array=True)
    return ua.Variant(draw(_scalars(vt)), vt)


@st.composite
def other_variants(draw: st.DrawFn) -> ua.Variant:
    """Variants left to asyncua's decoder: DateTime, Guid, LocalizedText, StatusCode, matrices, Null."""
    kind = draw(st.sampled_from(["datetime", "guid", "text", "status", "matrix", "null", "datetimes"]))
    if kind == "datetime":
        return ua.Variant(draw(_times), VT.DateTime)
    if kind == "datetimes":
        return ua.Variant(draw(st.lists(_times, max_size=3)), VT.DateTime, is_array=True)
    if kind == "guid":
        return ua.Variant(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))), VT.Guid)
    if kind == "text":
        return ua.Variant(ua.LocalizedText(draw(_text), draw(st.sampled_from(["en", "zh-CN", None]))), VT.LocalizedText)
    if kind == "status":
        return ua.Variant(ua.StatusCode(draw(st.integers(0, 2**32 - 1))), VT.StatusCode)
    if kind == "matrix":
        rows = draw(st.integers(1, 3))
        cols = draw(st.integers(1, 3))
        flat = draw(st.lists(st.integers(-100, 100), min_size=rows * cols, max_size=rows * cols))
        return ua.Variant([flat[r * cols : (r + 1) * cols] for r in range(rows)], VT.Int32, [rows, cols], is_array=True)
    return ua.Variant(None, VT.Null)


@st.composite
def data_values(draw: st.DrawFn, variants: st.SearchStrategy[ua.Variant]) -> ua.DataValue:
    dv = ua.DataValue(
        Value=draw(st.one_of(st.none(), variants)),
        StatusCode=draw(st.one_of(st.none(), st.integers(0, 2**32 - 1).map(ua.StatusCode))),
        SourceTimestamp=draw(st.one_of(st.none(), _times)),
        ServerTimestamp=draw(st.one_of(st.none(), _times)),
        ServerPicoseconds=draw(st.one_of(st.none(), st.integers(0, 9999))),
    )
    # asyncua writes SourcePicoseconds after ServerTimestamp (Part 6 puts it before): only where the
    # two orders coincide can asyncua's image be the oracle; test_spec_field_order covers the rest
    if dv.ServerTimestamp is None:
        dv.SourcePicoseconds = draw(st.one_of(st.none(), st.integers(0, 9999)))
    return dv


@st.composite
def publish_responses(draw: st.DrawFn, variants: st.SearchStrategy[ua.Variant]) -> bytes:
    data: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.integers(0, 3)) == 0:
            data.append(ua.StatusChangeNotification(Status=ua.StatusCode(draw(st.integers(0, 2**32 - 1)))))
        else:
            items = draw(st.lists(data_values(variants), max_size=6))
            data.append(
                ua.DataChangeNotification(
                    MonitoredItems=[
                        ua.MonitoredItemNotification(ClientHandle=draw(st.integers(0, 2**32 - 1)), Value=dv)
                        for dv in items
                    ]
                )
            )
    resp = ua.PublishResponse()
    resp.ResponseHeader.StringTable = draw(st.lists(_text, max_size=2))
    resp.Parameters = ua.PublishResult(
        SubscriptionId=draw(st.integers(0, 2**32 - 1)),
        AvailableSequenceNumbers=draw(st.lists(st.integers(0, 2**32 - 1), max_size=3)),
        MoreNotifications=draw(st.booleans()),
        NotificationMessage=ua.NotificationMessage(
            SequenceNumber=draw(st.integers(0, 2**32 - 1)), PublishTime=draw(_times), NotificationData=data
        ),
        Results=[ua.StatusCode(0)] * draw(st.integers(0, 2)),
    )
    return bytes(struct_to_binary(resp))


def _canon(v: Any) -> Any:
    """NaN-proof equality: floats by their bits, containers element-wise."""
    if isinstance(v, float):
        return ("float", struct.pack("<d", v)) if not math.isnan(v) else ("nan",)
    if isinstance(v, list | tuple):
        return [_canon(x) for x in v]
    if isinstance(v, PublishFrame):
        return [v.subscription_id, v.sequence_number, v.more_notifications, v.notification_count,
                _canon(v.items), v.status_changes]
    return v


def _asyncua_frame(raw: bytes) -> PublishFrame:
    return frame_of(struct_from_binary(ua.PublishResponse, Buffer(raw)).Parameters)


def _no_fallback(b: bytes, pos: int) -> tuple[Any, int]:
    raise AssertionError(f"fell back to asyncua for Variant type {b[pos]:#x}")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(publish_responses(fast_variants()))
def test_plain_types_decode_as_asyncua_does_without_fallback(raw: bytes) -> None:
    assert _canon(decode_publish_response(raw, _no_fallback)) == _canon(_asyncua_frame(raw))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(publish_responses(st.one_of(fast_variants(), other_variants())))
def test_other_types_go_through_asyncua_and_agree(raw: bytes) -> None:
    assert _canon(decode_publish_response(raw, asyncua_variant)) == _canon(_asyncua_frame(raw))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(data_values(st.one_of(fast_variants(), other_variants())), max_size=8), st.integers(0, 2**32 - 1))
def test_read_responses_decode_as_asyncua_does(values: list[ua.DataValue], service_result: int) -> None:
    resp = ua.ReadResponse()
    resp.ResponseHeader.ServiceResult = ua.StatusCode(service_result)
    resp.Results = values
    raw = struct_to_binary(resp)
    decoded = struct_from_binary(ua.ReadResponse, Buffer(raw))
    expected = (decoded.ResponseHeader.ServiceResult.value, [_dv_parts(dv) for dv in decoded.Results])
    assert _canon(decode_read_response(raw, asyncua_variant)) == _canon(expected)


@given(st.integers(-(2**63), 2**63 - 1))
def test_filetime_clamps_and_truncates_like_asyncua(ticks: int) -> None:
    assert filetime_ns(ticks) == datetime_ns(win_epoch_to_datetime(ticks))


@pytest.mark.parametrize("ticks", [-1, 0, 9, 10, 116444736000000000, 2650467743990000000, 2**63 - 1])
def test_filetime_edges(ticks: int) -> None:
    assert filetime_ns(ticks) == datetime_ns(win_epoch_to_datetime(ticks))


def _data_change_response(items: bytes, count: int) -> bytes:
    body = struct.pack("<i", count) + items + struct.pack("<i", 0)  # MonitoredItems, DiagnosticInfos
    return (
        bytes.fromhex("01003d03")  # PublishResponse
        + struct.pack("<qII", 0, 7, 0) + b"\x00" + struct.pack("<i", 0) + b"\x00\x00\x00"  # ResponseHeader
        + struct.pack("<Ii", 5, 0) + b"\x00" + struct.pack("<Iq", 42, 0)  # SubscriptionId .. PublishTime
        + struct.pack("<i", 1) + bytes.fromhex("01002b03") + b"\x01" + struct.pack("<i", len(body)) + body
        + struct.pack("<ii", 0, 0)  # Results, DiagnosticInfos
    )


def test_spec_field_order_with_picoseconds() -> None:
    """What node-opcua sends for TimestampsToReturn=Both: mask 0x3D, picoseconds after each timestamp."""
    source = 133_000_000_000_000_000  # ticks: 2022-06-14
    server = source + 12_345_670
    item = (
        struct.pack("<IB", 3, 0x3D)
        + b"\x0b" + struct.pack("<d", 21.5)
        + struct.pack("<qH", source, 477)  # SourceTimestamp, SourcePicoseconds
        + struct.pack("<qH", server, 3600)  # ServerTimestamp, ServerPicoseconds
    )
    frame = decode_publish_response(_data_change_response(item, 1), _no_fallback)
    assert frame.items == [(3, 21.5, 0, filetime_ns(source), filetime_ns(server))]
    assert (frame.subscription_id, frame.sequence_number, frame.notification_count) == (5, 42, 1)


def test_truncated_message_raises() -> None:
    item = struct.pack("<IB", 3, 0x01) + b"\x0b" + struct.pack("<d", 1.0)
    raw = _data_change_response(item, 1)
    with pytest.raises((struct.error, IndexError)):
        decode_publish_response(raw[:60], _no_fallback)


def test_other_messages_fall_back_to_asyncua() -> None:
    resp = ua.ReadResponse()
    with pytest.raises(Unsupported):
        decode_publish_response(struct_to_binary(resp), _no_fallback)
    keepalive = ua.PublishResponse()
    keepalive.Parameters.SubscriptionId = 9
    assert decode_publish(struct_to_binary(keepalive)).notification_count == 0


@st.composite
def _mutated_publish_responses(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(publish_responses(st.one_of(fast_variants(), other_variants()))))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(raw) - 1))
        if draw(st.booleans()):
            raw[pos] = draw(st.integers(0, 255))
        else:  # a length or count field turned huge or negative
            raw[pos : pos + 4] = struct.pack("<i", draw(st.sampled_from([-2, -1, 2**31 - 1, 2**20, 65535])))
    return bytes(raw[: draw(st.integers(len(raw) // 2, len(raw)))] if draw(st.booleans()) else raw)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_publish_responses())
def test_corrupt_publish_responses_fail_with_the_errors_the_driver_handles(raw: bytes) -> None:
    """Fuzzing the lean decoder (reliability scenario 23, short version): a corrupted or truncated
    PublishResponse decodes, or raises one of the errors the driver's publish loop catches (it then
    skips that message and keeps publishing); never anything else, never a huge allocation."""
    from asyncua.ua.uaerrors import UaError

    try:
        got: object = decode_publish_response(raw, asyncua_variant)
    except Exception as err:  # noqa: BLE001 - sorted below
        got = err
    assert isinstance(got, PublishFrame | struct.error | IndexError | ValueError | UaError), repr(got)


@pytest.mark.parametrize("variant", [
    bytes([0x80]) + struct.pack("<i", 2**31 - 1),  # an array of Null: 0 bytes per element
    bytes([0x98]) + struct.pack("<i", 1) + bytes([0x80]) + struct.pack("<i", 2**31 - 1),  # nested in a Variant array
    bytes([0x97]) + struct.pack("<i", 1) + b"\x01" + bytes([0x80]) + struct.pack("<i", 2**31 - 1),  # in a DataValue
    bytes([0x8D]) + struct.pack("<i", 2**31 - 1),  # DateTime array longer than the message
    bytes([0xC6]) + struct.pack("<ii", 1, 7) + struct.pack("<i", 2**31 - 1),  # matrix with absurd dimensions
    bytes([0x46]) + struct.pack("<iii", 7, 1, 1),  # dimensions on a scalar: asyncua raised TypeError
])
def test_a_corrupt_array_length_is_refused_before_anything_is_built(variant: bytes) -> None:
    """Regression (found by the fuzz test above: 24 GB, then the OOM killer): asyncua believes array
    lengths, so a Variant it would decode is walked first, and a length the message cannot hold is
    refused as malformed (the publish loop skips the message)."""
    raw = _data_change_response(struct.pack("<I", 7) + b"\x01" + variant, 1)
    with pytest.raises(struct.error):
        decode_publish_response(raw, asyncua_variant)


def test_null_and_max_datetime_timestamps_are_no_timestamp() -> None:
    """Part 6 §5.2.2.5: 0 (1601) is the null DateTime and 9999 is MaxDateTime, neither a sample time (nor
    within the int64 nanoseconds of the wire format): both decoders hand over None, so the driver
    falls back to the other timestamp or the gateway's receive time, and the sample stays good."""
    good = 133_000_000_000_000_000
    for ticks in (0, -5, 2_650_467_743_990_000_000, (1 << 63) - 1):
        assert timestamp_ns(ticks) is None
        dv = ua.DataValue(ua.Variant(1.5), SourceTimestamp=win_epoch_to_datetime(ticks),
                          ServerTimestamp=win_epoch_to_datetime(good))
        assert _dv_parts(dv)[2:] == (None, filetime_ns(good))
    assert timestamp_ns(good) == filetime_ns(good)
    item = struct.pack("<IB", 3, 0x0D) + b"\x0b" + struct.pack("<d", 21.5) + struct.pack("<qq", 0, good)
    frame = decode_publish_response(_data_change_response(item, 1), _no_fallback)
    assert frame.items == [(3, 21.5, 0, None, filetime_ns(good))]
