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

import itertools
import json
import logging
import math
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from gateway.catalog import Catalog
from gateway.core.errors import CodecError
from gateway.core.point import Point, Quality, SampleBatch
from gateway.core.values import INT_MAX, INT_MIN, TS_MAX, TS_MIN, admit
from pipelines.alarms import AlarmEvent

__all__ = [
    "ALARM_SCHEMA_VERSION",
    "FLAG_HISTORICAL",
    "SCHEMA_VERSION",
    "Batch",
    "CatRow",
    "CatalogCache",
    "Columns",
    "Compression",
    "Encoder",
    "PayloadFormat",
    "decode",
    "decode_alarm",
    "decode_columns",
    "encode",
    "encode_alarm",
    "mark_historical",
    "points_payload",
    "row_tags",
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

# key, code, unit, device, device code, grade, tags: a catalog row as the wire carries it (validated)
CatRow = tuple[str, str, str, str, str, str, dict[str, str]]


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
        the batch encodes unchanged (:func:`gateway.core.values.admit`).  The pipeline's first stage
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


def points_payload(gateway: str, site: str, points: list[Point]) -> bytes:
    """Decoded points back into a wire-format v1 JSON batch (the ingest's dead letters of refused points).

    ASCII-only JSON, so whatever text the points hold (lone surrogates too) survives and decodes
    to the same points; grade and flags are kept.
    """
    rows: dict[tuple[Any, ...], int] = {}
    cat: list[list[Any]] = []
    idx: list[int] = []
    for p in points:
        tags = dict(p.tags)
        grade = tags.pop("data_grade", "")
        row = (p.key, p.code, p.unit, p.device, p.device_code, grade, tuple(sorted(tags.items())))
        if row not in rows:
            rows[row] = len(cat)
            cat.append([len(cat), p.key, p.code, p.unit, p.device, p.device_code, grade, tags])
        idx.append(rows[row])
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION, "gw": gateway, "site": site, "seq": 0, "t": 0, "cat": cat, "i": idx,
        "ts": [p.ts_ns for p in points], "val": [p.value for p in points], "q": [int(p.quality) for p in points],
        "r": [p.reason for p in points], "f": [FLAG_HISTORICAL if p.historical else 0 for p in points],
    }
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode()


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
    c = decode_columns(payload)
    return Batch(c.gateway, c.site, c.seq, c.created_ns, c.points(), c.historical)


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


@dataclass(frozen=True, slots=True)
class Columns:
    """A validated batch in its columnar form (what the ingest turns into line protocol without
    building a :class:`Point` per sample).  ``cat`` maps a point index to its catalog row."""

    gateway: str
    site: str
    seq: int
    created_ns: int
    historical: bool
    cat: dict[int, CatRow]
    idx: list[int]
    ts: list[int]
    val: list[Any]
    q: list[int]
    rsn: list[str | None]
    flags: list[int]

    def point(self, k: int) -> Point:
        key, code, unit, device, device_code, _grade, _tags = row = self.cat[self.idx[k]]
        return Point(key, code, self.ts[k], self.val[k], Quality(self.q[k]), self.rsn[k], unit, device, device_code,
                     row_tags(row), self.historical or bool(self.flags[k] & FLAG_HISTORICAL))

    def points(self) -> list[Point]:
        return [self.point(k) for k in range(len(self.idx))]


_VALUE_TYPES = frozenset({type(None), float, int, bool, str})


class CatalogCache:
    """Validated catalogs of recent batches.  A gateway sends the same catalog rows with every batch
    of the same points; a batch whose rows equal a cached catalog (one C-level comparison) reuses its
    validation instead of checking every row again.  Bounded: cleared, never grown, beyond ``slots``."""

    def __init__(self, slots: int = 4096) -> None:
        self.slots = slots
        self._entries: dict[tuple[Any, ...], tuple[list[Any], dict[int, CatRow]]] = {}

    def validated(self, gw: str, site: str, cat: list[Any]) -> dict[int, CatRow]:
        try:
            key: tuple[Any, ...] | None = (gw, site, len(cat), cat[0][0], cat[-1][0]) if cat else None
            hit = self._entries.get(key) if key is not None else None
        except (TypeError, IndexError, KeyError):
            key = hit = None  # not rows at all: _catalog says why
        if hit is not None and hit[0] == cat:
            return hit[1]
        infos = _catalog(cat)
        if key is not None:
            if len(self._entries) >= self.slots:
                self._entries.clear()
            self._entries[key] = (cat, infos)
        return infos


def decode_columns(payload: bytes, catalogs: CatalogCache | None = None) -> Columns:
    """:func:`decode` without the per-sample objects; the same validation, column by column.
    ``catalogs``: reuse the validation of catalogs seen before (the ingest keeps one)."""
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
    return _columns(doc, historical or doc.get("h", False), catalogs)


def _columns(doc: dict[str, Any], historical: bool, catalogs: CatalogCache | None = None) -> Columns:
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
    infos = catalogs.validated(gw, site, cat) if catalogs is not None else _catalog(cat)
    # whole columns at a time: type sets and set inclusions run in C, not per sample in Python
    if n and not set(map(type, itertools.chain(idx, ts, q, flags))) <= {int}:
        raise CodecError("malformed batch content: sample has wrong types")
    if not set(idx) <= infos.keys():
        raise CodecError("malformed batch content: a sample names a point the batch's catalog lacks")
    if not set(q) <= {0, 1, 2}:
        raise CodecError("malformed batch content: quality must be 0, 1 or 2")
    vtypes = set(map(type, val))
    if not vtypes <= _VALUE_TYPES:
        odd = next(v for v in val if type(v) not in _VALUE_TYPES)
        raise CodecError(f"malformed batch content: a value has unsupported type {type(odd).__name__}")
    if float in vtypes and not _all_finite(val if vtypes == {float} else [v for v in val if type(v) is float]):
        raise CodecError("malformed batch content: a value is NaN or infinite: non-finite numbers are never sent")
    if not set(map(type, rsn)) <= {type(None), str}:
        raise CodecError("malformed batch content: reason must be a string")
    return Columns(gw, site, seq, created, historical, infos, idx, ts, val, q, rsn, flags)


def _all_finite(floats: list[float]) -> bool:
    try:
        if math.isfinite(math.fsum(floats)):
            return True
    except OverflowError:
        pass
    return all(map(math.isfinite, floats))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def row_tags(row: CatRow) -> tuple[tuple[str, str], ...]:
    """A catalog row's tags as a point carries them: sorted, the grade as tag ``data_grade``."""
    grade, tags = row[5], row[6]
    if grade:
        tags = {**tags, "data_grade": grade}
    return tuple(sorted(tags.items()))


def _catalog(cat: list[Any]) -> dict[int, CatRow]:
    """Validate the catalog rows column by column (a batch carries one row per point it names)."""
    if not cat:
        return {}
    try:
        if set(map(len, cat)) != {8}:
            raise CodecError("malformed batch content: a catalog row is not 8 fields")
        index, key, code, unit, device, device_code, grade, tags = zip(*cat, strict=True)
    except TypeError:
        raise CodecError("malformed batch content: a catalog row is not an array") from None
    if not set(map(type, index)) <= {int}:
        raise CodecError("malformed batch content: catalog row has wrong types")
    if not set(map(type, itertools.chain(key, code, unit, device, device_code, grade))) <= {str}:
        raise CodecError("malformed batch content: catalog row has wrong types")
    if not set(map(type, tags)) <= {dict}:
        raise CodecError("malformed batch content: catalog row has wrong types")
    if not set(map(type, itertools.chain(itertools.chain.from_iterable(tags),
                                         itertools.chain.from_iterable(map(dict.values, tags))))) <= {str}:
        raise CodecError("malformed batch content: tags must map strings to strings")
    return dict(zip(index, zip(key, code, unit, device, device_code, grade, tags, strict=True), strict=True))


# ---------------------------------------------------------------- alarm events (their own topic)
ALARM_SCHEMA_VERSION = 1  # the "v" of an alarm event (JSON, one event per message)
_TAG_FIELDS = ("code", "device", "device_code", "point", "site", "gw", "class", "data_grade", "data_domain", "unit")


def encode_alarm(catalog: Catalog, ev: AlarmEvent) -> bytes:
    info = catalog.points[ev.index]
    doc = {
        "v": ALARM_SCHEMA_VERSION,
        "kind": "alarm",
        "gw": catalog.gateway_id,
        "site": catalog.site,
        "point": info.key,
        "code": info.code,
        "device": info.device,
        "device_code": info.device_code,
        "class": info.point_class,
        "data_grade": info.data_grade,
        "data_domain": info.data_domain,
        "unit": info.unit,
        "ts_ns": ev.ts_ns,
        "level": ev.level.label,
        "previous": ev.previous.label,
        "active": ev.active,
        "value": ev.value,
        "threshold": ev.threshold,
        "tags": dict(info.tags),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def decode_alarm(payload: bytes) -> dict[str, Any]:
    """Validate an alarm message; anything malformed raises :class:`CodecError`."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise CodecError(f"alarm is not JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "alarm":
        raise CodecError("not an alarm event")
    if doc.get("v") != ALARM_SCHEMA_VERSION:
        raise CodecError(f"unsupported alarm format version {doc.get('v')!r}")
    for k in (*_TAG_FIELDS, "level", "previous"):
        if not isinstance(doc.get(k), str):
            raise CodecError(f"alarm field {k!r} missing or not a string")
    if not isinstance(doc.get("ts_ns"), int) or not isinstance(doc.get("active"), bool):
        raise CodecError("alarm ts_ns / active have wrong types")
    for k in ("value", "threshold"):
        v = doc.get(k)
        if v is not None and not isinstance(v, int | float | bool):
            raise CodecError(f"alarm {k} is not a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise CodecError(f"alarm {k} is not finite")
    tags = doc.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise CodecError("alarm tags must map strings to strings")
    return doc
