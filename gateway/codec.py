"""Wire format v1: one batch per MQTT message, msgpack (default) or JSON, optionally zlib-compressed.

A batch is columnar and self-contained: it carries the catalog rows of the points it mentions
(index, key, code, unit, device, device code, grade, tags) once, then one array per column
(point index, source time, value, quality, reason, flags).  A receiver that missed every earlier
message can still decode it, and the encoder does no per-point work beyond ``zip``: every static
fact comes from rows built once per catalog (:class:`Encoder`).

Replayed backlog is marked at publish time by :func:`mark_historical`, which adds ``"h": true``
to the top-level map without decoding it, so the stored batch never changes.  The exact layout is
specified in ``docs/wire-format.md``.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from gateway.catalog import Catalog
from gateway.errors import CodecError
from gateway.point import Point, Quality, SampleBatch
from gateway.values import INT_MAX, INT_MIN, TS_MAX, TS_MIN, admit

__all__ = [
    "FLAG_HISTORICAL",
    "SCHEMA_VERSION",
    "Batch",
    "Compression",
    "Encoder",
    "PayloadFormat",
    "decode",
    "encode",
    "mark_historical",
]

SCHEMA_VERSION = 1
FLAG_HISTORICAL = 0x01  # per-point flag bit: the sample was replayed from a store, not acquired live
_MAX_SAMPLES = 1_000_000
_MAX_INFLATED = 256 << 20  # a compressed message never inflates beyond this (zip-bomb guard)

PayloadFormat = Literal["msgpack", "json"]
Compression = Literal["none", "zlib"]

log = logging.getLogger("edgegw.codec")

_WIRE_TYPES: frozenset[type] = frozenset({float, int, bool, str, type(None)})
_NUMBERS: frozenset[type] = frozenset({float, int, bool})

_CatRow = tuple[str, str, str, str, str, tuple[tuple[str, str], ...]]  # key, code, unit, device, device code, tags


@dataclass(frozen=True, slots=True)
class Batch:
    gateway: str
    site: str
    seq: int
    created_ns: int
    points: list[Point]
    historical: bool = False


class Encoder:
    """Encodes sample batches of one catalog; the catalog rows are built once, not per batch."""

    def __init__(
        self, catalog: Catalog, payload_format: PayloadFormat = "msgpack", compression: Compression = "none",
        compression_level: int = 6,
    ) -> None:
        self.catalog = catalog
        self.payload_format = payload_format
        self.compression = compression
        self.level = compression_level
        self._rows = [
            [p.index, p.key, p.code, p.unit, p.device, p.device_code, p.data_grade, dict(p.tags)]
            for p in catalog.points
        ]
        self._packer = msgpack.Packer(use_bin_type=True)
        self._packed_rows = [self._packer.pack(r) for r in self._rows]  # msgpack: catalog rows packed once
        self.spoiled_samples = 0  # turned bad here because they did not encode (see encode)
        self.unknown_samples = 0  # dropped: their point index is not in the catalog
        self.spoiled_reported = False

    def encode(self, samples: SampleBatch, seq: int, created_ns: int, flags: list[int] | None = None) -> bytes:
        """The batch's message.  Total over the samples' contents: a sample no format can carry (a
        string with lone surrogates, an integer beyond 64 bits, a time beyond the int64 nanosecond
        range, a value of no wire type) turns bad with reason ``encoding_error`` and the rest of
        the batch encodes unchanged (:func:`gateway.values.admit`).  The pipeline's first stage
        already admits values; this is the backstop, free while every batch encodes."""
        try:
            return self._encode(samples, seq, created_ns, flags, check=True)
        except (TypeError, ValueError, OverflowError, IndexError, KeyError) as err:
            cause = err
        samples, flags = self._admit(samples, flags)
        if not self.spoiled_reported:
            self.spoiled_reported = True
            log.warning(
                "A batch did not encode (%s); its unencodable samples were turned bad (encoding_error) "
                "and the rest sent unchanged. Further occurrences are only counted.", cause,
            )
        return self._encode(samples, seq, created_ns, flags, check=False)

    def _admit(self, samples: SampleBatch, flags: list[int] | None) -> tuple[SampleBatch, list[int] | None]:
        n = len(self._rows)
        out: SampleBatch = []
        out_flags: list[int] | None = None if flags is None else []
        for k, s in enumerate(samples):
            i = s[0] if isinstance(s, tuple) and len(s) == 5 else None
            if type(i) is not int or not 0 <= i < n:  # no point to attribute it to: counted, not sent
                self.unknown_samples += 1
                continue
            fixed = admit(s)
            if fixed[3] is not s[3] or fixed[4] is not s[4] or fixed[2] is not s[2]:
                self.spoiled_samples += 1
            out.append(fixed)
            if out_flags is not None and flags is not None:
                out_flags.append(flags[k] if k < len(flags) and type(flags[k]) is int else 0)
        return out, out_flags

    def _encode(self, samples: SampleBatch, seq: int, created_ns: int, flags: list[int] | None, check: bool) -> bytes:
        if samples:
            idx, ts, val, q, rsn = zip(*samples, strict=False)  # samples are 5-tuples by type; strict costs 25%
        else:
            idx = ts = val = q = rsn = ()
        if check and samples:
            # column checks at C speed (~30 ns a sample), for what the packers would send but no
            # decoder accepts; lone surrogates and out-of-range ints make the packers raise themselves
            if max(ts) > TS_MAX or (self.payload_format == "json" and min(ts) < TS_MIN):  # msgpack raises below
                raise OverflowError("a source time is beyond the signed 64-bit nanosecond range")
            types = set(map(type, val))
            if not types <= _WIRE_TYPES:
                raise TypeError(f"values of no wire type: {sorted(t.__name__ for t in types - _WIRE_TYPES)}")
            if float in types:
                total = sum(val) if types <= _NUMBERS else sum([v for v in val if type(v) is float])
                if not math.isfinite(total):  # a NaN or an infinity (or finite floats summing past 1e308)
                    raise ValueError("a NaN or infinite value")
            if int in types and self.payload_format == "json":  # msgpack raises for these itself
                ints = [v for v in val if type(v) is int]
                if min(ints) < INT_MIN or max(ints) > INT_MAX:
                    raise OverflowError("an integer beyond 64 bits")
        used = sorted(set(idx))
        if used and (used[0] < 0 or used[-1] >= len(self._rows)):
            raise IndexError("a sample's point index is not in the catalog")
        doc: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "gw": self.catalog.gateway_id,
            "site": self.catalog.site,
            "seq": seq,
            "t": created_ns,
            "i": idx,
            "ts": ts,
            "val": val,
            "q": q,
        }
        if rsn.count(None) != len(rsn):
            doc["r"] = rsn
        if flags is not None and any(flags):
            if len(flags) != len(idx):
                raise ValueError("flags must have one entry per sample")
            doc["f"] = flags
        if self.payload_format == "json":
            rows = self._rows
            doc["cat"] = [rows[i] for i in used]
            body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        else:
            # the catalog rows were packed once: splice them in as the map's last entry
            packed = self._packer.pack(doc)
            rows_b = self._packed_rows
            body = b"".join((bytes((packed[0] + 1,)), memoryview(packed)[1:], b"\xa3cat", _array_header(len(used)),
                             *[rows_b[i] for i in used]))
        if self.compression == "zlib":
            body = self._packer.pack({"v": SCHEMA_VERSION, "z": "zlib", "d": zlib.compress(body, self.level)})
        return bytes(body)


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode(catalog: Catalog, samples: SampleBatch, seq: int, created_ns: int) -> bytes:
    """One msgpack batch (convenience for tests and tools; the hot path keeps an :class:`Encoder`)."""
    return Encoder(catalog).encode(samples, seq, created_ns)


def mark_historical(payload: bytes) -> bytes:
    """Add ``"h": true`` to the message's top-level map, without decoding it.

    Works on every message this module writes: a msgpack map (batch or compression envelope) gets
    one more entry, a JSON object one more member.  The stored batch is left as it was.
    """
    if not payload:
        raise CodecError("empty payload")
    first = payload[0]
    if first == 0x7B:  # "{": a JSON object; the encoder writes no trailing whitespace
        body = payload.rstrip()
        if not body.endswith(b"}"):
            raise CodecError("JSON batch does not end with '}'")
        return body[:-1] + b',"h":true}'
    if 0x80 <= first <= 0x8E:  # fixmap with room for one more entry
        return bytes((first + 1,)) + payload[1:] + b"\xa1h\xc3"
    if first == 0x8F:  # fixmap full: becomes a map16
        return b"\xde\x00\x10" + payload[1:] + b"\xa1h\xc3"
    if first == 0xDE and len(payload) >= 3:
        n = int.from_bytes(payload[1:3], "big")
        if n < 0xFFFF:
            return b"\xde" + (n + 1).to_bytes(2, "big") + payload[3:] + b"\xa1h\xc3"
    raise CodecError("payload is not a map this codec can mark")


def decode(payload: bytes) -> Batch:
    """Decode and validate any v1 message (msgpack or JSON, compressed or not).

    Anything malformed raises :class:`CodecError`, never another type.
    """
    outer = _load(payload)
    historical = outer.get("h", False)
    if "z" in outer:
        if outer.get("v") != SCHEMA_VERSION:
            raise CodecError(f"unsupported wire format version {outer.get('v')!r} (this build reads {SCHEMA_VERSION})")
        if outer["z"] != "zlib" or not isinstance(outer.get("d"), bytes):
            raise CodecError(f"unsupported compression {outer['z']!r} or missing data")
        inflater = zlib.decompressobj()
        try:
            inner = inflater.decompress(outer["d"], _MAX_INFLATED)
        except zlib.error as err:
            raise CodecError(f"compressed data is corrupt: {err}") from None
        if inflater.unconsumed_tail:
            raise CodecError(f"compressed batch inflates beyond {_MAX_INFLATED} bytes")
        doc = _load(inner)
        if "z" in doc:
            raise CodecError("nested compression envelopes are not allowed")
    else:
        doc = outer
    if not isinstance(historical, bool) or not isinstance(doc.get("h", False), bool):
        raise CodecError("h must be a boolean")
    return _batch(doc, historical or doc.get("h", False))


def _load(payload: bytes) -> dict[str, Any]:
    if payload[:1] == b"{":
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError) as err:
            raise CodecError(f"not a JSON batch: {err}") from None
    else:
        try:
            doc = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_array_len=_MAX_SAMPLES)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as err:
            raise CodecError(f"not a msgpack batch: {err}") from None
    if not isinstance(doc, dict):
        raise CodecError("batch is not a map")
    return doc


def _batch(doc: dict[str, Any], historical: bool) -> Batch:
    version = doc.get("v")
    if version != SCHEMA_VERSION:
        raise CodecError(f"unsupported wire format version {version!r} (this build reads {SCHEMA_VERSION})")
    try:
        gw, site, seq, created = doc["gw"], doc["site"], doc["seq"], doc["t"]
        cat, idx, ts, val, q = doc["cat"], doc["i"], doc["ts"], doc["val"], doc["q"]
    except KeyError as err:
        raise CodecError(f"batch lacks field {err.args[0]!r}") from None
    if not (isinstance(gw, str) and isinstance(site, str) and _is_int(seq) and _is_int(created)):
        raise CodecError("batch header has wrong types")
    n = len(idx) if isinstance(idx, list) else -1
    rsn = doc.get("r", [None] * max(n, 0))
    flags = doc.get("f", [0] * max(n, 0))
    columns = (cat, idx, ts, val, q, rsn, flags)
    if not all(isinstance(c, list) for c in columns):
        raise CodecError("cat, i, ts, val, q, r and f must be arrays")
    if not all(len(c) == n for c in columns[1:]):
        raise CodecError("columns i, ts, val, q, r and f must have the same length")
    try:
        infos = dict(_cat_row(r) for r in cat)
        points = [
            _point(infos, i, t, v, qq, r, f, historical)
            for i, t, v, qq, r, f in zip(idx, ts, val, q, rsn, flags, strict=True)
        ]
    except (TypeError, ValueError, KeyError) as err:
        raise CodecError(f"malformed batch content: {err}") from None
    return Batch(gw, site, seq, created, points, historical)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _cat_row(r: Any) -> tuple[int, _CatRow]:
    index, key, code, unit, device, device_code, grade, tags = r
    fields = (key, code, unit, device, device_code, grade)
    if not _is_int(index) or not all(isinstance(f, str) for f in fields) or not isinstance(tags, dict):
        raise TypeError("catalog row has wrong types")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise TypeError("tags must map strings to strings")
    tag_items = dict(tags)
    if grade:
        tag_items["data_grade"] = grade
    return index, (key, code, unit, device, device_code, tuple(sorted(tag_items.items())))


def _point(infos: dict[int, _CatRow], i: Any, ts: Any, value: Any, q: Any, reason: Any, flags: Any,
           historical: bool) -> Point:
    if not (_is_int(i) and _is_int(ts) and _is_int(q) and _is_int(flags)):
        raise TypeError("sample has wrong types")
    key, code, unit, device, device_code, tags = infos[i]
    quality = Quality(q)
    if value is not None and not isinstance(value, float | int | bool | str):
        raise TypeError(f"value of {key} has unsupported type {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"value of {key} is {value}: non-finite numbers are never sent")
    if reason is not None and not isinstance(reason, str):
        raise TypeError("reason must be a string")
    return Point(key, code, ts, value, quality, reason, unit, device, device_code, tags,
                 historical or bool(flags & FLAG_HISTORICAL))
