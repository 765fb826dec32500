"""Lean decoding of PublishResponse and ReadResponse messages (OPC UA Part 6 binary; pure, no asyncua).

Why: asyncua decodes a PublishResponse through its generic dataclass machinery, building a
MonitoredItemNotification, a DataValue, a Variant, a StatusCode and two datetimes per notification.
At 10,000 notifications/s that was nearly all of the gateway's CPU.  This module reads the same
bytes with ``struct.unpack_from`` straight into one tuple per notification::

    (client handle, value, status code, source time in UTC ns | None, server time in UTC ns | None)

Plain scalars and one-dimensional arrays of Boolean, integers, Float, Double, String and
ByteString are decoded here; any other Variant (DateTime, Guid, LocalizedText, matrices, structures)
is handed to the ``variant`` callback, which the driver backs with asyncua's own decoder, so the
values are exactly those asyncua would give.  Anything that is not a PublishResponse raises
:class:`Unsupported` and the caller falls back to asyncua for the whole message.

DataValue fields are read in the order of Part 6 §5.2.2.17 (SourceTimestamp, SourcePicoseconds,
ServerTimestamp, ServerPicoseconds).  asyncua 2.1 reads both timestamps before both picosecond
fields, which garbles the ServerTimestamp of a server that sends picoseconds (node-opcua does);
that is why polling reads (:func:`decode_read_response`) come through here too.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DATA_CHANGE_NOTIFICATION",
    "PUBLISH_RESPONSE",
    "READ_RESPONSE",
    "STATUS_CHANGE_NOTIFICATION",
    "ItemChange",
    "PublishFrame",
    "ReadResult",
    "Unsupported",
    "VariantDecoder",
    "decode_publish_response",
    "decode_read_response",
    "filetime_ns",
    "timestamp_ns",
]

# binary encoding node ids (namespace 0)
PUBLISH_RESPONSE = 829
READ_RESPONSE = 634
DATA_CHANGE_NOTIFICATION = 811
STATUS_CHANGE_NOTIFICATION = 820

ItemChange = tuple[int, Any, int, int | None, int | None]
VariantDecoder = Callable[[bytes, int], tuple[Any, int]]
"""``(message, offset of the Variant) -> (value, offset after it)``."""


class Unsupported(ValueError):
    """Not a message this decoder reads; the caller uses the generic decoder instead."""


@dataclass(slots=True)
class PublishFrame:
    """What the driver needs from one PublishResponse."""

    subscription_id: int
    sequence_number: int
    more_notifications: bool
    notification_count: int  # NotificationData entries; 0 = keep-alive (nothing to acknowledge)
    items: list[ItemChange] = field(default_factory=list)  # every DataChangeNotification, in order
    status_changes: list[int] = field(default_factory=list)  # StatusChangeNotification codes


_U8 = struct.Struct("<B").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I64 = struct.Struct("<q").unpack_from

# DateTime: 100 ns ticks since 1601-01-01, clamped and truncated to µs as asyncua does (so both
# decoders agree to the nanosecond): below 0 is 1601, from year 9999-12-31 23:59:59 on is that.
_FILETIME_EPOCH = dt.datetime(1601, 1, 1)
_UNIX_EPOCH = dt.datetime(1970, 1, 1)
_MAX_DATETIME = dt.datetime(9999, 12, 31, 23, 59, 59)
_MAX_TICKS = int((_MAX_DATETIME - _FILETIME_EPOCH).total_seconds()) * 10_000_000
_EPOCH_US = (_UNIX_EPOCH - _FILETIME_EPOCH) // dt.timedelta(microseconds=1)
_MAX_NS = (_MAX_DATETIME - _UNIX_EPOCH) // dt.timedelta(microseconds=1) * 1000


def filetime_ns(ticks: int) -> int:
    """OPC UA DateTime ticks -> UTC ns since 1970, with asyncua's clamping and µs truncation."""
    if ticks >= _MAX_TICKS:
        return _MAX_NS
    if ticks < 0:
        ticks = 0
    return (ticks // 10 - _EPOCH_US) * 1000


def timestamp_ns(ticks: int) -> int | None:
    """A DataValue's Source / ServerTimestamp; None for the null DateTime (0 or less: 1601) and for
    MaxDateTime (9999 and on), which Part 6 §5.2.2.5 makes "no time" / "no end", not a time the
    sample was taken (and neither fits the int64 nanoseconds the wire format carries)."""
    if ticks <= 0 or ticks >= _MAX_TICKS:
        return None
    return (ticks // 10 - _EPOCH_US) * 1000


# Variant built-in types read here: id -> (struct code, size)
_NUMERIC: dict[int, tuple[str, int]] = {
    1: ("?", 1),  # Boolean
    2: ("b", 1),  # SByte
    3: ("B", 1),  # Byte
    4: ("h", 2),  # Int16
    5: ("H", 2),  # UInt16
    6: ("i", 4),  # Int32
    7: ("I", 4),  # UInt32
    8: ("q", 8),  # Int64
    9: ("Q", 8),  # UInt64
    10: ("f", 4),  # Float
    11: ("d", 8),  # Double
}
_SCALAR = {t: (struct.Struct("<" + code).unpack_from, size) for t, (code, size) in _NUMERIC.items()}
_STRING, _BYTESTRING = 12, 15


def _string(b: bytes, pos: int, as_text: bool) -> tuple[Any, int]:
    (n,) = _I32(b, pos)
    pos += 4
    if n < 0:
        return None, pos
    end = pos + n
    if end > len(b):
        raise struct.error("string runs past the end of the message")
    raw = b[pos:end]
    return (raw.decode("utf-8", errors="surrogateescape") if as_text else raw), end


# sizes of the fixed-size built-in types the walker below skips (DateTime 13, Guid 14, StatusCode 19)
_FIXED = {t: size for t, (_code, size) in _NUMERIC.items()} | {13: 8, 14: 16, 19: 4}
_MAX_NESTING = 8


def _checked(fallback: VariantDecoder, b: bytes, pos: int) -> tuple[Any, int]:
    """Hand a Variant to the generic decoder only once it is known to be well-formed: asyncua
    believes array lengths, and a Null array (0 bytes per element) or an array nested in a Variant,
    DataValue or ExtensionObject with a corrupt length of 2^31 - 1 made it build a list of billions
    of elements (found by fuzzing: 24 GB before the kernel killed the process)."""
    _skip_variant(b, pos, 0)
    try:
        return fallback(b, pos)
    except (TypeError, AttributeError, KeyError, OverflowError) as err:  # asyncua on odd input: malformed
        raise struct.error(f"the generic decoder failed on a Variant: {err!r}") from None


def _skip_variant(b: bytes, pos: int, depth: int) -> int:
    """Offset after one Variant, checking every length against the bytes that are left, without
    building anything.  Raises struct.error on anything malformed (the publish loop skips it)."""
    if depth > _MAX_NESTING:
        raise struct.error("Variants nested too deep")
    enc = b[pos]
    vtype = enc & 0x3F
    pos += 1
    if enc & 0x40 and not enc & 0x80:
        raise struct.error("ArrayDimensions on a Variant that is not an array")
    if enc & 0x80:
        (n,) = _I32(b, pos)
        pos += 4
        n = max(n, 0)
        if vtype == 0 and n:
            raise struct.error("an array of Null")
        if n > len(b) - pos:  # every other element takes at least one byte
            raise struct.error(f"an array of {n} elements runs past the end of the message")
        for _ in range(n):
            pos = _skip_value(b, pos, vtype, depth)
        if enc & 0x40:  # ArrayDimensions
            (m,) = _I32(b, pos)
            pos += 4
            if max(m, 0) > (len(b) - pos) // 4:
                raise struct.error("ArrayDimensions run past the end of the message")
            pos += 4 * max(m, 0)
    else:
        pos = _skip_value(b, pos, vtype, depth)
    if pos > len(b):
        raise struct.error("Variant runs past the end of the message")
    return pos


def _skip_value(b: bytes, pos: int, vtype: int, depth: int) -> int:
    size = _FIXED.get(vtype)
    if size is not None:
        pos += size
    elif vtype in (_STRING, _BYTESTRING, 16):  # String, ByteString, XmlElement
        pos = _skip_string(b, pos)
    elif vtype in (17, 18):  # NodeId, ExpandedNodeId
        try:
            pos = _node_id(b, pos)[2]
        except Unsupported as err:  # not a reason to re-decode the whole message with asyncua
            raise struct.error(str(err)) from None
    elif vtype == 20:  # QualifiedName
        pos = _skip_string(b, pos + 2)
    elif vtype == 21:  # LocalizedText
        mask = b[pos]
        pos += 1
        if mask & 0x01:
            pos = _skip_string(b, pos)
        if mask & 0x02:
            pos = _skip_string(b, pos)
    elif vtype == 22:  # ExtensionObject
        try:
            pos = _extension_object(b, pos)[3]
        except Unsupported as err:
            raise struct.error(str(err)) from None
    elif vtype == 23:  # DataValue
        mask = b[pos]
        pos += 1
        if mask & 0x01:
            pos = _skip_variant(b, pos, depth + 1)
        pos += sum(n for bit, n in ((0x02, 4), (0x04, 8), (0x10, 2), (0x08, 8), (0x20, 2)) if mask & bit)
    elif vtype == 24:  # Variant
        pos = _skip_variant(b, pos, depth + 1)
    elif vtype == 25:  # DiagnosticInfo
        pos = _skip_diagnostic_info(b, pos)
    elif vtype != 0:  # Null takes no bytes
        raise struct.error(f"Variant type {vtype} does not exist")
    if pos > len(b):
        raise struct.error("Variant runs past the end of the message")
    return pos


def _variant(b: bytes, pos: int, fallback: VariantDecoder) -> tuple[Any, int]:
    enc = b[pos]
    vtype = enc & 0x3F
    if enc & 0x40:  # ArrayDimensions (a matrix): rare, leave it to the generic decoder
        return _checked(fallback, b, pos)
    if enc & 0x80:
        (n,) = _I32(b, pos + 1)
        p = pos + 5
        if n < 0:
            return None, p
        num = _NUMERIC.get(vtype)
        if num is not None:
            code, size = num
            if n * size > len(b) - p:
                raise struct.error(f"an array of {n} elements runs past the end of the message")
            values = list(struct.unpack_from(f"<{n}{code}", b, p))
            return values, p + n * size
        if vtype in (_STRING, _BYTESTRING):
            if n > (len(b) - p) // 4:
                raise struct.error(f"an array of {n} strings runs past the end of the message")
            out: list[Any] = []
            for _ in range(n):
                v, p = _string(b, p, vtype == _STRING)
                out.append(v)
            return out, p
        return _checked(fallback, b, pos)
    scalar = _SCALAR.get(vtype)
    if scalar is not None:
        unpack, size = scalar
        return unpack(b, pos + 1)[0], pos + 1 + size
    if vtype in (_STRING, _BYTESTRING):
        return _string(b, pos + 1, vtype == _STRING)
    if vtype == 0:  # Null
        return None, pos + 1
    return _checked(fallback, b, pos)


def _skip_string(b: bytes, pos: int) -> int:
    n: int = _I32(b, pos)[0]
    return pos + 4 + max(n, 0)


def _node_id(b: bytes, pos: int) -> tuple[int, int | None, int]:
    """``(namespace, numeric id or None, offset after)`` of a NodeId / ExpandedNodeId."""
    enc = b[pos]
    kind = enc & 0x3F
    pos += 1
    ns: int
    ident: int | None = None
    if kind == 0:
        ns, ident, pos = 0, b[pos], pos + 1
    elif kind == 1:
        ns, ident = b[pos], int.from_bytes(b[pos + 1 : pos + 3], "little")
        pos += 3
    elif kind == 2:
        ns, ident = int.from_bytes(b[pos : pos + 2], "little"), _U32(b, pos + 2)[0]
        pos += 6
    elif kind in (3, 5):  # String, ByteString
        ns = int.from_bytes(b[pos : pos + 2], "little")
        pos = _skip_string(b, pos + 2)
    elif kind == 4:  # Guid
        ns = int.from_bytes(b[pos : pos + 2], "little")
        pos += 18
    else:
        raise Unsupported(f"NodeId encoding {kind}")
    if enc & 0x80:  # NamespaceUri
        pos = _skip_string(b, pos)
    if enc & 0x40:  # ServerIndex
        pos += 4
    return ns, ident, pos


def _skip_diagnostic_info(b: bytes, pos: int) -> int:
    while True:
        mask = b[pos]
        pos += 1
        for bit in (0x01, 0x02, 0x04, 0x08):  # SymbolicId, NamespaceUri, LocalizedText, Locale
            if mask & bit:
                pos += 4
        if mask & 0x10:  # AdditionalInfo
            pos = _skip_string(b, pos)
        if mask & 0x20:  # InnerStatusCode
            pos += 4
        if not mask & 0x40:  # InnerDiagnosticInfo
            return pos


def _extension_object(b: bytes, pos: int) -> tuple[int | None, int, int, int]:
    """``(numeric type id in namespace 0 or None, body start, body end, offset after)``."""
    ns, ident, pos = _node_id(b, pos)
    enc = b[pos]
    pos += 1
    if enc & 0x03:  # binary or XML body with a length
        (n,) = _I32(b, pos)
        pos += 4
        n = max(n, 0)
        if pos + n > len(b):
            raise struct.error("ExtensionObject body runs past the end of the message")
        return (ident if ns == 0 else None), pos, pos + n, pos + n
    return (ident if ns == 0 else None), pos, pos, pos


def _data_value(b: bytes, pos: int, variant: VariantDecoder) -> tuple[Any, int, int | None, int | None, int]:
    """``(value, status, source ns, server ns, offset after)`` of one DataValue."""
    mask = b[pos]
    pos += 1
    value: Any = None
    status = 0
    source: int | None = None
    server: int | None = None
    if mask & 0x01:
        value, pos = _variant(b, pos, variant)
    if mask & 0x02:
        status = _U32(b, pos)[0]
        pos += 4
    if mask & 0x04:
        source = timestamp_ns(_I64(b, pos)[0])
        pos += 8
    if mask & 0x10:  # SourcePicoseconds: below the gateway's ns resolution of a 100 ns tick
        pos += 2
    if mask & 0x08:
        server = timestamp_ns(_I64(b, pos)[0])
        pos += 8
    if mask & 0x20:
        pos += 2
    return value, status, source, server, pos


def _data_changes(b: bytes, pos: int, end: int, out: list[ItemChange], variant: VariantDecoder) -> None:
    (n,) = _I32(b, pos)
    pos += 4
    append = out.append
    for _ in range(max(n, 0)):
        (handle,) = _U32(b, pos)
        value, status, source, server, pos = _data_value(b, pos + 4, variant)
        append((handle, value, status, source, server))
    if pos > end:
        raise struct.error("DataChangeNotification runs past its ExtensionObject body")


def _response_body(b: bytes, type_id: int) -> tuple[int, int]:
    """``(offset after the ResponseHeader, its ServiceResult)`` of a ``type_id`` response, else :class:`Unsupported`."""
    ns, ident, pos = _node_id(b, 0)
    if ns != 0 or ident != type_id:
        raise Unsupported(f"not the expected response {type_id}: ns={ns} id={ident}")
    # ResponseHeader: Timestamp, RequestHandle, ServiceResult, ServiceDiagnostics, StringTable, AdditionalHeader
    (service_result,) = _U32(b, pos + 12)
    pos = _skip_diagnostic_info(b, pos + 16)
    (n,) = _I32(b, pos)
    pos += 4
    for _ in range(max(n, 0)):
        pos = _skip_string(b, pos)
    return _extension_object(b, pos)[3], service_result


ReadResult = tuple[Any, int, int | None, int | None]
"""``(value, status code, source time in UTC ns | None, server time in UTC ns | None)``."""


def decode_read_response(b: bytes, variant: VariantDecoder) -> tuple[int, list[ReadResult]]:
    """``(ServiceResult, one ReadResult per node)`` of a ReadResponse (TypeId first)."""
    pos, service_result = _response_body(b, READ_RESPONSE)
    (n,) = _I32(b, pos)
    pos += 4
    out: list[ReadResult] = []
    for _ in range(max(n, 0)):
        value, status, source, server, pos = _data_value(b, pos, variant)
        out.append((value, status, source, server))
    return service_result, out


def decode_publish_response(b: bytes, variant: VariantDecoder) -> PublishFrame:
    """Decode a PublishResponse (starting at its TypeId); :class:`Unsupported` if it is not one.

    Results and DiagnosticInfos (acknowledgement results) after the NotificationMessage are not
    read: nothing in the gateway acts on them.  A truncated message raises ``struct.error`` or
    ``IndexError``.
    """
    pos = _response_body(b, PUBLISH_RESPONSE)[0]  # its ServiceResult is Good or it is a ServiceFault
    # PublishResult
    subscription_id, n = struct.unpack_from("<Ii", b, pos)
    pos += 8 + 4 * max(n, 0)  # AvailableSequenceNumbers
    more = b[pos] != 0
    (sequence,) = _U32(b, pos + 1)
    pos += 1 + 4 + 8  # MoreNotifications, SequenceNumber, PublishTime
    (n,) = _I32(b, pos)
    pos += 4
    frame = PublishFrame(subscription_id, sequence, more, max(n, 0))
    for _ in range(frame.notification_count):
        type_id, start, end, pos = _extension_object(b, pos)
        if type_id == DATA_CHANGE_NOTIFICATION:
            _data_changes(b, start, end, frame.items, variant)
        elif type_id == STATUS_CHANGE_NOTIFICATION:
            frame.status_changes.append(_U32(b, start)[0])
        # EventNotificationList and others: not used by the gateway, skipped by length
    return frame
