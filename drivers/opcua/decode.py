"""From an OPC UA DataValue's parts to a sample (pure: plain Python types in, sample fields out).

Policy: the status code's severity bits decide the quality (Part 4 §7.34: 00 good, 01 uncertain,
10/11 bad); the status name is kept as the reason.  A bad status never carries a value, even when
the server sent one: a fake number is worse than a gap.

Strings: OPC UA says UTF-8, but older servers send their code page (GBK in Chinese plants).  Both
decoders keep undecodable bytes as lone surrogates (``surrogateescape``), so the bytes can be read
again in the device's ``string_encoding`` (:func:`gateway.core.values.redecode`); text that is not valid
in it gives the point bad quality with reason ``encoding_error``, never a crash.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

from gateway.core.point import Quality, Value
from gateway.core.values import ENCODING_ERROR, StringEncoding, redecode

__all__ = ["convert_value", "datetime_ns", "quality_of"]

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def quality_of(status: int) -> Quality:
    severity = (status >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def datetime_ns(value: dt.datetime) -> int:
    """UTC nanoseconds of an OPC UA DateTime (naive values are UTC, as asyncua decodes them)."""
    if value.tzinfo is None:
        return ((value - _EPOCH) // _US) * 1000
    return ((value - _EPOCH_UTC) // _US) * 1000  # aware arithmetic: no astimezone() per sample


def _json_default(o: Any) -> Any:
    if isinstance(o, dt.datetime):
        return o.isoformat()
    if isinstance(o, bytes):
        return o.hex()
    return str(o)


def _texts(raw: Any, encoding: StringEncoding) -> Any:
    """An array (nested for a matrix) with every string, LocalizedText included, read in ``encoding``;
    raises ``ValueError`` when one is not text in it."""
    if isinstance(raw, list):
        return [_texts(x, encoding) for x in raw]
    if isinstance(raw, str):
        return redecode(str(raw), encoding)
    text = getattr(raw, "Text", None)
    if isinstance(text, str):
        return redecode(text, encoding)
    return raw


def convert_value(
    raw: Any, array_index: int, as_json: bool, encoding: StringEncoding = StringEncoding.UTF_8
) -> tuple[Value | None, str | None]:
    """``(value, None)`` or ``(None, reason)``.

    Booleans, integers and floats pass through; strings are read in ``encoding``; a DateTime
    becomes UTC ns (int); a ByteString its hex text; a Guid its text; LocalizedText its text.
    Arrays: ``array_index`` >= 0 takes one element, otherwise ``as_json`` encodes the whole array as
    one JSON string.  Never raises: what cannot be converted is the reason.
    """
    if isinstance(raw, list):
        if array_index >= 0:
            if array_index >= len(raw):
                return None, "array_index_out_of_range"
            raw = raw[array_index]
        elif as_json:
            try:
                return json.dumps(_texts(raw, encoding), default=_json_default, separators=(",", ":")), None
            except (ValueError, TypeError, RecursionError):  # a string not in the encoding, an odd element
                return None, ENCODING_ERROR
        else:
            return None, "array_value_needs_array_index"
    elif array_index >= 0:
        return None, "not_an_array"
    return _scalar(raw, encoding)


def _scalar(raw: Any, encoding: StringEncoding) -> tuple[Value | None, str | None]:
    if type(raw) is str:
        return _text(raw, encoding)
    conv = _CONVERTERS.get(type(raw))
    if conv is not None:
        return conv(raw), None
    if raw is None:
        return None, "no_value"
    if isinstance(raw, dt.datetime):
        return datetime_ns(raw), None
    text = getattr(raw, "Text", None)  # LocalizedText
    if isinstance(text, str):
        return _text(text, encoding)
    if isinstance(raw, bool):  # subclasses (IntEnum, asyncua's String / ByteString aliases, ...)
        return bool(raw), None
    if isinstance(raw, int):
        return int(raw), None
    if isinstance(raw, float):
        return float(raw), None
    if isinstance(raw, str):
        return _text(str(raw), encoding)
    if isinstance(raw, bytes):
        return bytes(raw).hex(), None
    return None, f"unsupported_type_{type(raw).__name__}"


def _text(s: str, encoding: StringEncoding) -> tuple[str | None, str | None]:
    try:
        return redecode(s, encoding), None
    except ValueError:  # UnicodeError: bytes that are not text in the device's string_encoding
        return None, ENCODING_ERROR


def _float(v: float) -> float:
    return v  # NaN / Inf are left to pipelines.normalise, which marks them bad with a reason


_CONVERTERS: dict[type, Callable[[Any], Value]] = {
    bool: bool,
    int: int,
    float: _float,
    bytes: bytes.hex,
    bytearray: bytearray.hex,
    uuid.UUID: str,
    dt.datetime: datetime_ns,
}
