"""Wire formats v1 and v2: one batch per MQTT message.

**v2** (the default): a batch refers to the point indices of the gateway's *catalog*, a separate
retained message per catalog version (:class:`Encoder` ``catalog_message``, topic
``<prefix>/<site>/<gateway>/catalog/<id>``); the columns are typed and delta-coded (index and
time deltas, values split by type with decimals as integers, quality / reason / flags listed only
where not default) and the message is zstd-compressed with a dictionary shipped with the code.
The decoder needs the catalog: :class:`CatalogCache` holds the catalogs seen (:meth:`CatalogCache.learn`),
a batch of an unknown catalog raises :class:`CatalogMissingError`.

**v1**: msgpack (default) or JSON, optionally zlib-compressed, self-contained (below).

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

import hashlib
import itertools
import json
import logging
import math
import operator
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import msgpack

from gateway.catalog import Catalog
from gateway.core.errors import CodecError
from gateway.core.native import load_kernel
from gateway.core.point import Point, Quality, SampleBatch
from gateway.core.values import INT_MAX, INT_MIN, TS_MAX, TS_MIN, admit
from gateway.names import NO_NAMES, Names, names_doc
from pipelines.alarms import AlarmEvent

__all__ = [
    "ALARM_SCHEMA_VERSION",
    "FLAG_HISTORICAL",
    "KNOWN_CATALOGS",
    "SCHEMA_VERSION",
    "WIRE_V2",
    "Batch",
    "CatRow",
    "CatalogCache",
    "CatalogMissingError",
    "Columns",
    "Compression",
    "Encoder",
    "PayloadFormat",
    "decode",
    "decode_alarm",
    "decode_columns",
    "encode",
    "encode_alarm",
    "inflate",
    "is_catalog_topic",
    "mark_historical",
    "points_payload",
    "row_tags",
    "zstd_available",
]

SCHEMA_VERSION = 1
WIRE_V2 = 2
ZSTD_DICT = 1  # the dictionary new v2 messages are compressed with (gateway/wire_dicts/<n>.zdict)
FLAG_HISTORICAL = 0x01  # per-point flag bit: the sample was replayed from a store, not acquired live
_MAX_SAMPLES = 1_000_000
_MAX_INFLATED = 256 << 20  # a compressed message never inflates beyond this (zip-bomb guard)

PayloadFormat = Literal["msgpack", "json"]
Compression = Literal["none", "zlib", "zstd"]

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
        compression_level: int | None = None, version: int = SCHEMA_VERSION, zstd_dict: bool = True,
    ) -> None:
        """``version`` 2: batches refer to :attr:`catalog_message` (publish it, retained, before them);
        msgpack only.  ``compression_level``: zlib 6 and zstd 3 by default.  ``zstd_dict``: zstd with
        the shipped dictionary (False: plain zstd, for comparison)."""
        if version not in (SCHEMA_VERSION, WIRE_V2):
            raise ValueError(f"unknown wire format version {version}")
        if version == WIRE_V2 and payload_format != "msgpack":
            raise ValueError("wire format v2 is msgpack only")
        if version == SCHEMA_VERSION and compression == "zstd":
            raise ValueError("wire format v1 has no zstd compression (v1 decoders know zlib only)")
        self.catalog = catalog
        self.payload_format = payload_format
        self.compression = compression
        self.version = version
        self.level = compression_level if compression_level is not None else (3 if compression == "zstd" else 6)
        rows = [
            [p.index, p.key, p.code, p.unit, p.device, p.device_code, p.data_grade, dict(p.tags)]
            for p in catalog.points
        ]
        self._n = len(rows)
        self._packer = msgpack.Packer(use_bin_type=True)
        self.catalog_id, self.catalog_message = catalog_message(catalog.gateway_id, catalog.site, rows,
                                                                names_doc(catalog))
        # v1 splices the rows into every batch: kept, the rows packed once.  v2 sends them once, in
        # the catalog message: nothing per point is kept here (~1 KB per point less)
        self._rows: list[list[Any]] = rows if version == SCHEMA_VERSION else []
        self._packed_rows = [self._packer.pack(r) for r in self._rows]
        if version == WIRE_V2:
            KNOWN_CATALOGS.remember(self.catalog_id, self.catalog_message)  # in-process tools decode what it writes
        self._zstd: Any = _zstd_compressor(self.level, zstd_dict) if compression == "zstd" else None
        self._zstd_dict = zstd_dict
        self._hints = DecimalHints.of(catalog) if version == WIRE_V2 else None
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
        n = self._n
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
        if self.version == WIRE_V2:
            return self._encode_v2(samples, seq, created_ns, flags, check)
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
        if used and (used[0] < 0 or used[-1] >= self._n):
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

    def _encode_v2(self, samples: SampleBatch, seq: int, created_ns: int, flags: list[int] | None,
                   check: bool) -> bytes:
        n = len(samples)
        doc: dict[str, Any] = {"v": WIRE_V2, "c": self.catalog_id, "seq": seq, "t": created_ns}
        kernel = _KERNEL
        cols = kernel(samples, self._n, self._hints.kind_f) if n and kernel and self._hints is not None else None
        body: bytes
        if cols is not None:  # any batch of the wire's kinds, by the compiled kernel (gateway/codec_kernel.py)
            # its columns come as msgpack map entries: after the 4 of the head (a fixmap: 15 entries at most)
            entries, packed = cols
            head = self._packer.pack(doc)
            tail = b""
            if flags is not None and any(flags):
                if len(flags) != n:
                    raise ValueError("flags must have one entry per sample")
                tail = b"\xa1f" + self._packer.pack([x for k, f in enumerate(flags) if f for x in (k, f)])
                entries += 1
            body = b"".join((bytes((0x84 + entries,)), memoryview(head)[1:], packed, tail))
        elif n:
            idx, ts, val, q, rsn = zip(*samples, strict=False)
            if min(idx) < 0 or max(idx) >= self._n or not set(map(type, idx)) <= {int}:
                raise IndexError("a sample's point index is not in the catalog")
            if check and max(ts) > TS_MAX:
                raise OverflowError("a source time is beyond the signed 64-bit nanosecond range")
            # operator.sub: int.__sub__ through map is 3 times slower (idx are ints: checked above)
            doc["i"] = [idx[0], *map(operator.sub, idx[1:], idx)]
            if not set(map(type, ts)) <= _INT:
                raise TypeError("a source time is not an int")
            if min(ts) >= 0 and max(ts) < 2**62:
                doc["ts"] = [ts[0], *map(operator.sub, ts[1:], ts)]
            else:  # deltas could leave int64: absolute times
                doc["ta"] = list(ts)
            doc.update(_values_v2(val, idx, self._hints))
            if q.count(0) != n:
                doc["q"] = [x for k, qk in enumerate(q) if qk for x in (k, int(qk))]
            if rsn.count(None) != n:
                doc["r"] = [x for k, r in enumerate(rsn) if r is not None for x in (k, r)]
            if flags is not None and any(flags):
                if len(flags) != n:
                    raise ValueError("flags must have one entry per sample")
                doc["f"] = [x for k, f in enumerate(flags) if f for x in (k, f)]
        if cols is None:
            body = self._packer.pack(doc)
        if self.compression == "zstd":
            envelope = {"v": WIRE_V2, "z": "zstd", "zd": ZSTD_DICT, "d": self._zstd.compress(body)}
            if not self._zstd_dict:
                del envelope["zd"]
            body = self._packer.pack(envelope)
        elif self.compression == "zlib":
            body = self._packer.pack({"v": WIRE_V2, "z": "zlib", "d": zlib.compress(body, self.level)})
        return body


# the compiled per-sample loop of the v2 encoder when the native build made it (gateway/core/native.py);
# None: the pure-Python column code below does it all
_KERNEL: Callable[[SampleBatch, int, list[int]], tuple[int, bytes] | None] | None = load_kernel(
    "gateway.codec_kernel", "columns_v2")


# v2 value kinds (one byte per sample in "k"): where a sample's value is and what type it has
K_NONE, K_FALSE, K_TRUE, K_INT, K_STR, K_F64, K_F32 = range(7)
K_DEC = 16  # K_DEC + e: a float that is exactly its "vd" integer / 10**e (e = 0..6)
_DEC_EXP = (0, 1, 2, 3, 4, 5, 6)
_POW = tuple(10**e for e in _DEC_EXP)
_DEC_LIMIT = 2.0**53  # a mantissa beyond this is not exact in a float's arithmetic
_DEC_MAX = 9e9  # floats tried as decimals: 9e9 * 10**6 < 2**53
_INT_FLOAT = frozenset({int, float})
_INT = frozenset({int})


def _values_v2(val: tuple[Any, ...], idx: tuple[int, ...] | None = None,
               hints: DecimalHints | None = None) -> dict[str, Any]:
    """The value columns of a v2 batch: kinds, ints, decimal floats as integers, float32, float64, strings.
    Floats go to the smallest exact form: an integer mantissa with a decimal exponent (a scaled
    register: 20.93 is 2093 e2), else float32 when it is one exactly (a float32 sensor), else float64.
    Whole columns at a time (map / compress run in C): the common batch is mostly floats."""
    n = len(val)
    tl = list(map(type, val))
    types = set(tl)
    if hints is not None and idx is not None and float in types and types <= _INT_FLOAT:
        try:
            return _values_hinted(val, idx, hints, tl, types)
        except OverflowError:  # a float near the double's limit times its hint: the search decides
            pass
    kinds = bytearray(n)
    ints: list[int] = []
    strs: list[str] = []
    if types == {float}:
        fpos: list[int] | range = range(n)
        floats = list(val)
    else:
        fpos = []
        for k, v in enumerate(val):
            t = type(v)
            if t is float:
                fpos.append(k)
            elif t is bool:
                kinds[k] = K_TRUE if v else K_FALSE
            elif t is int:
                kinds[k] = K_INT
                ints.append(v)
            elif t is str:
                kinds[k] = K_STR
                strs.append(v)
            elif v is not None:  # K_NONE is 0
                raise TypeError(f"values of no wire type: {t.__name__}")
        floats = [val[k] for k in fpos]
    out: dict[str, Any] = {}
    if floats:
        if not _all_finite(floats):
            raise ValueError("a NaN or infinite value")
        fkind = [K_F64] * len(floats)
        mant: list[int | None] = [None] * len(floats)
        # |f| < 9e9: a mantissa of up to 6 decimals stays below 2**53 (exact); -0.0 keeps its sign as a float
        rest = [j for j, f in enumerate(floats) if -_DEC_MAX < f < _DEC_MAX]
        if 0.0 in floats:
            rest = [j for j in rest if floats[j] or math.copysign(1.0, floats[j]) > 0]
        # float32 first (a float32 sensor's value, most of a deadband-driven stream, is 4 bytes and
        # needs no decimal search), then the decimals: a scaled register's value (2093 e2)
        f32 = _float32_exact(floats)
        if True in f32:
            for j in itertools.compress(range(len(floats)), f32):
                fkind[j] = K_F32
            rest = [j for j in rest if not f32[j]]
        _decimal_search(floats, rest, fkind, mant)
        kinds_f = bytes(fkind)
        if isinstance(fpos, range):
            kinds = bytearray(kinds_f)
        else:
            for k, fk in zip(fpos, kinds_f, strict=True):
                kinds[k] = fk
        vd = [m for m in mant if m is not None]
        if vd:
            out["vd"] = vd
        if K_F32 in kinds_f:
            f32s = [floats[j] for j, fk in enumerate(kinds_f) if fk == K_F32]
            out["vg"] = struct.pack(f"<{len(f32s)}f", *f32s)
        if K_F64 in kinds_f:
            f64s = [floats[j] for j, fk in enumerate(kinds_f) if fk == K_F64]
            out["vf"] = struct.pack(f"<{len(f64s)}d", *f64s)
    first = kinds[0] if kinds else 0
    out["k"] = first if kinds.count(first) == len(kinds) else bytes(kinds)
    if ints:
        out["vi"] = ints
    if strs:
        out["vs"] = strs
    return out


def _decimal_search(floats: list[float] | tuple[float, ...], rest: list[int],
                    fkind: list[int] | bytearray | dict[int, int],
                    mant: list[int | None] | dict[int, int | None]) -> None:
    """The smallest exponent e (0..6) at which each ``floats[j]``, j in ``rest``, is exactly an integer
    over 10**e: ``fkind[j]`` becomes K_DEC + e and ``mant[j]`` the integer; the others are left as
    they are.  One pass per exponent over what is still undecided."""
    for e, p in zip(_DEC_EXP, _POW, strict=True):
        if not rest:
            break
        sub = [floats[j] for j in rest]
        ms = list(map(float.__round__, map(operator.mul, sub, itertools.repeat(float(p)))))  # round(), faster
        ok = list(map(operator.eq, map(operator.truediv, ms, itertools.repeat(p)), sub))
        kind = K_DEC + e
        for j, m in itertools.compress(zip(rest, ms, strict=True), ok):
            fkind[j] = kind
            mant[j] = m
        rest = list(itertools.compress(rest, map(operator.not_, ok)))




def _decimals(x: float) -> int | None:
    """The fewest decimals (0..6) that write ``x`` exactly, None when more are needed."""
    for e, p in zip(_DEC_EXP, _POW, strict=True):
        m = round(x * p)
        if m / p == x:
            return e
    return None


@dataclass(frozen=True, slots=True)
class DecimalHints:
    """Per point of a catalog, the decimals of its scaling (a register scaled by 0.1 with an offset
    of -40: 1; 0.01: 2), for :func:`_values_hinted`; none for points without a decimal scaling (as
    read, a unit conversion, a scale such as 1/3).  Only a hint: every value is checked."""

    pow_f: list[float]  # 10.0**e (1.0 without a hint)
    pow_i: list[float]  # 10**e as an int; NaN without a hint (m / NaN is never the float: not accepted)
    kind_f: list[int]  # K_DEC + e
    kind_row: list[tuple[int, int]]  # (K_INT, K_DEC + e): a sample's kind by "is it a float"

    @classmethod
    def of(cls, catalog: Catalog) -> DecimalHints:
        exps: list[int | None] = []
        for p in catalog.points:
            spec = p.spec
            e: int | None = None
            if spec.conv_factor == 1.0 and spec.conv_offset == 0.0 and not spec.identity_scale:
                es = _decimals(1 / spec.divisor if spec.divisor else spec.scale)
                eo = _decimals(spec.offset)
                e = max(es, eo) if es is not None and eo is not None else None
            exps.append(e or None)
        # shared objects: four pointers (32 bytes) a point, no float or tuple of its own
        pow_f = {e: float(_POW[e or 0]) for e in (None, *_DEC_EXP)}
        pow_i = {e: math.nan if e is None else _POW[e] for e in (None, *_DEC_EXP)}
        row = {e: (K_INT, K_DEC + (e or 0)) for e in (None, *_DEC_EXP)}
        return cls([pow_f[e] for e in exps], [pow_i[e] for e in exps], [K_DEC + (e or 0) for e in exps],
                   [row[e] for e in exps])


def _values_hinted(val: tuple[Any, ...], idx: tuple[int, ...], hints: DecimalHints, tl: list[type],
                   types: set[type]) -> dict[str, Any]:
    """:func:`_values_v2` for a batch of ints and floats, in one pass over the floats: a float of a
    point with a decimal scaling that is exactly a decimal at that scaling's exponent is sent as that
    decimal (0.1: 20.9 is 209 e1, 412.0 is 4120 e1, 20.5 is 205 e1); the others as the search
    decides (float32 if exact, else the smallest decimal, else float64).  The decoder gets the same
    64 bits back: m / 10**e is checked to be the float, as there (-0.0 is never a decimal).

    Raises OverflowError for a float whose product with its hint overflows (the caller searches)."""
    n = len(val)
    if types == {float}:
        floats: tuple[Any, ...] | list[Any] = val
        fidx: tuple[int, ...] | list[int] = idx
        isf: list[bool] | None = None
        ints: list[int] = []
        kinds = bytearray(map(hints.kind_f.__getitem__, idx))
    else:
        isf = list(map(operator.is_, tl, itertools.repeat(float)))  # tl: the values' types
        floats = list(itertools.compress(val, isf))
        fidx = list(itertools.compress(idx, isf))
        ints = list(itertools.compress(val, map(operator.not_, isf)))
        # K_INT or the point's decimal kind, by the sample's type, in C
        kinds = bytearray(map(operator.getitem, map(hints.kind_row.__getitem__, idx), isf))
    if not _all_finite(floats):  # type: ignore[arg-type]
        raise ValueError("a NaN or infinite value")
    ms = list(map(float.__round__, map(operator.mul, floats, map(hints.pow_f.__getitem__, fidx))))  # round()
    acc = list(map(operator.eq, map(operator.truediv, ms, map(hints.pow_i.__getitem__, fidx)), floats))
    if min(floats) <= -_DEC_MAX or max(floats) >= _DEC_MAX:  # no decimal beyond: a mantissa < 2**53
        acc = list(map(operator.and_, acc, map(operator.lt, map(abs, floats), itertools.repeat(_DEC_MAX))))
    if 0.0 in floats:  # -0.0 is 0 e1 by the check (0.0 == -0.0), but decodes to +0.0: never a decimal
        for j, f in enumerate(floats):
            if f == 0.0 and math.copysign(1.0, f) < 0:
                acc[j] = False
    out: dict[str, Any] = {}
    f32s: list[float] = []
    f64s: list[float] = []
    if False in acc:
        nf = len(floats)
        fpos = range(n) if isf is None else list(itertools.compress(range(n), isf))
        others = list(itertools.compress(range(nf), map(operator.not_, acc)))
        f32 = _float32_exact([floats[j] for j in others])
        fkind = dict.fromkeys(others, K_F64)
        rest = []
        for j, exact in zip(others, f32, strict=True):
            if exact:
                fkind[j] = K_F32
            elif -_DEC_MAX < floats[j] < _DEC_MAX:  # (-0.0 is a float32: never here)
                rest.append(j)
        mant: dict[int, int | None] = {}
        _decimal_search(floats, rest, fkind, mant)
        for j in others:
            fk = kinds[fpos[j]] = fkind[j]
            if fk >= K_DEC:
                acc[j] = True
                ms[j] = mant[j]  # type: ignore[assignment]
            elif fk == K_F32:
                f32s.append(floats[j])
            else:
                f64s.append(floats[j])
        vd = list(itertools.compress(ms, acc))
    else:
        vd = ms
    if vd:
        out["vd"] = vd
    if f32s:
        out["vg"] = struct.pack(f"<{len(f32s)}f", *f32s)
    if f64s:
        out["vf"] = struct.pack(f"<{len(f64s)}d", *f64s)
    first = kinds[0] if kinds else 0
    out["k"] = first if kinds.count(first) == len(kinds) else bytes(kinds)
    if ints:
        out["vi"] = ints
    return out


def _float32_exact(floats: list[float]) -> list[bool]:
    try:
        back = struct.unpack(f"<{len(floats)}f", struct.pack(f"<{len(floats)}f", *floats))
    except (OverflowError, struct.error):
        return [_one_float32(f) for f in floats]
    return list(map(operator.eq, back, floats))


def _one_float32(f: float) -> bool:
    try:
        return bool(struct.unpack("<f", struct.pack("<f", f))[0] == f)
    except (OverflowError, struct.error):
        return False


def catalog_message(gateway: str, site: str, rows: list[list[Any]],
                    names: dict[str, Any] | None = None) -> tuple[str, bytes]:
    """(id, message) of a gateway's catalog: the id is a hash of its content (the same points,
    codes, units and tags give the same id after any restart; any change gives another), the message
    a zlib envelope around ``{"v": 2, "kind": "catalog", "gw", "site", "c": id, "cat": rows}``, and
    ``"names"`` when the config names things in any language (:func:`gateway.names.names_doc`;
    then part of the id too, so a renamed point makes a new catalog)."""
    packer = msgpack.Packer(use_bin_type=True)
    cid = hashlib.sha256(packer.pack([gateway, site, rows] + ([names] if names else []))).hexdigest()[:16]
    doc: dict[str, Any] = {"v": WIRE_V2, "kind": "catalog", "gw": gateway, "site": site, "c": cid, "cat": rows}
    if names:
        doc["names"] = names
    body = packer.pack(doc)
    return cid, packer.pack({"v": WIRE_V2, "z": "zlib", "d": zlib.compress(body, 6)})


def is_catalog_topic(topic: str) -> bool:
    """``<prefix>/<site>/<gateway>/catalog/<id>``."""
    parts = topic.split("/")
    return len(parts) == 5 and parts[3] == "catalog"


@cache
def zstd_available() -> bool:
    """Whether the zstandard package is installed (a dependency; an edge box of an architecture it
    has no wheel for compresses with zlib instead)."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def _zstd_dict(number: int) -> Any:
    import zstandard

    try:
        data = resources.files("gateway").joinpath(f"wire_dicts/{number}.zdict").read_bytes()
    except (FileNotFoundError, OSError):
        raise CodecError(f"unknown zstd dictionary {number} (this build has {ZSTD_DICT} and older)") from None
    return zstandard.ZstdCompressionDict(data)


def _zstd_compressor(level: int, with_dict: bool = True) -> Any:
    import zstandard

    return zstandard.ZstdCompressor(level=level, dict_data=_zstd_dict(ZSTD_DICT) if with_dict else None,
                                    write_content_size=True, write_checksum=False, write_dict_id=False)


@cache
def _zstd_decompressor(number: int) -> Any:
    import zstandard

    return zstandard.ZstdDecompressor(dict_data=_zstd_dict(number))


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


def decode(payload: bytes, catalogs: CatalogCache | None = None) -> Batch:
    """Decode and validate any v1 or v2 batch (msgpack or JSON, compressed or not); a v2 batch with
    the catalogs of ``catalogs`` (:data:`KNOWN_CATALOGS` when ``None``).

    Anything malformed raises :class:`CodecError`, never another type.
    """
    c = decode_columns(payload, catalogs)
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
    names: Names = NO_NAMES  # v2: the names of the batch's catalog

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

    def __init__(self, slots: int = 4096, catalog_slots: int = 1024) -> None:
        self.slots = slots
        self._entries: dict[tuple[Any, ...], tuple[list[Any], dict[int, CatRow]]] = {}
        self.catalog_slots = catalog_slots
        self._catalogs: dict[str, tuple[str, str, dict[int, CatRow]]] = {}  # v2: id -> gateway, site, rows
        self._unread: dict[str, bytes] = {}  # v2: id -> catalog message not validated yet (remember)
        self._names: dict[str, Names] = {}  # v2: id -> the names in it (any language), when it has any

    def learn(self, payload: bytes, origin: tuple[str, str] | None = None) -> tuple[str, str, str]:
        """Validate a v2 catalog message and keep it; returns (gateway, site, id).  ``origin``: the
        (site, gateway) of its topic, which it must name.  The oldest is forgotten beyond
        ``catalog_slots`` (a batch then finds it missing and the ingest asks the broker again)."""
        outer = _load(payload)
        doc = inflate(outer) if "z" in outer else outer
        if doc.get("v") != WIRE_V2 or doc.get("kind") != "catalog":
            raise CodecError("not a v2 catalog message")
        gw, site, cid, cat = doc.get("gw"), doc.get("site"), doc.get("c"), doc.get("cat")
        names_entry = doc.get("names")
        if not (isinstance(gw, str) and isinstance(site, str) and isinstance(cid, str) and isinstance(cat, list)):
            raise CodecError("catalog message lacks gw, site, c or cat")
        if origin is not None and (site, gw) != origin:
            raise CodecError(f"forged origin: catalog names site {site!r} gateway {gw!r}, topic is site "
                             f"{origin[0]!r} gateway {origin[1]!r}")
        try:
            content = [gw, site, cat] + ([names_entry] if names_entry else [])
            digest = hashlib.sha256(msgpack.packb(content, use_bin_type=True)).hexdigest()[:16]
        except (TypeError, ValueError) as err:
            raise CodecError(f"catalog rows do not encode: {err}") from None
        if digest != cid:
            raise CodecError(f"catalog id {cid!r} does not match its content ({digest})")
        infos = _catalog(cat)
        names = Names.from_doc(names_entry, cid) if names_entry else NO_NAMES
        if cid not in self._catalogs and len(self._catalogs) >= self.catalog_slots:
            forgotten = next(iter(self._catalogs))
            del self._catalogs[forgotten]
            self._names.pop(forgotten, None)
        self._catalogs[cid] = (gw, site, infos)
        if names is not NO_NAMES:
            self._names[cid] = names
        return gw, site, cid

    def names(self, cid: str) -> Names:
        """The names of a catalog (:data:`gateway.names.NO_NAMES` when it has none)."""
        return self._names.get(cid, NO_NAMES)

    def remember(self, cid: str, message: bytes) -> None:
        """Keep a catalog message as bytes, validated only when a batch first needs it (an encoder's
        own catalog: the gateway itself never decodes, tools and tests in its process may)."""
        if len(self._unread) >= self.catalog_slots:
            del self._unread[next(iter(self._unread))]
        self._unread[cid] = message

    def catalog(self, cid: str) -> tuple[str, str, dict[int, CatRow]] | None:
        hit = self._catalogs.get(cid)
        if hit is None and cid in self._unread:
            self.learn(self._unread.pop(cid))
            hit = self._catalogs.get(cid)
        return hit

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


def decode_columns(payload: bytes, catalogs: CatalogCache | None = None,
                   origin: tuple[str, str] | None = None) -> Columns:
    """:func:`decode` without the per-sample objects; the same validation, column by column.
    ``catalogs``: reuse the validation of catalogs seen before (the ingest keeps one); a v2 batch
    is decoded with the catalog it names from there (:data:`KNOWN_CATALOGS`, this process's, when
    ``None``).  ``origin``: (site, gateway) of the topic; a v2 catalog of another gateway is not used."""
    outer = _load(payload)
    historical = outer.get("h", False)
    doc = inflate(outer) if "z" in outer else outer
    if not isinstance(historical, bool) or not isinstance(doc.get("h", False), bool):
        raise CodecError("h must be a boolean")
    historical = historical or doc.get("h", False)
    if doc.get("v") == WIRE_V2:
        if doc.get("kind") is not None:
            raise CodecError(f"a {doc.get('kind')!r} message, not a batch")
        return _columns_v2(doc, historical, KNOWN_CATALOGS if catalogs is None else catalogs, origin)
    return _columns(doc, historical, catalogs)


def inflate(outer: dict[str, Any]) -> dict[str, Any]:
    """The document inside a compression envelope (zlib or zstd), checked and size-limited."""
    version, z, data = outer.get("v"), outer["z"], outer.get("d")
    if version not in (SCHEMA_VERSION, WIRE_V2):
        raise CodecError(f"unsupported wire format version {version!r} (this build reads 1 and 2)")
    if not isinstance(data, bytes):
        raise CodecError("compression envelope without its data (d)")
    if z == "zlib":
        inflater = zlib.decompressobj()
        try:
            inner = inflater.decompress(data, _MAX_INFLATED)
        except zlib.error as err:
            raise CodecError(f"compressed data is corrupt: {err}") from None
        if inflater.unconsumed_tail:
            raise CodecError(f"compressed batch inflates beyond {_MAX_INFLATED} bytes")
        if not inflater.eof:
            raise CodecError("compressed data is truncated")
    elif z == "zstd" and version == WIRE_V2:
        if not zstd_available():
            raise CodecError("a zstd-compressed message, and the zstandard package is not installed here")
        import zstandard

        number = outer.get("zd")
        if number is not None and not _is_int(number):
            raise CodecError("zd (the zstd dictionary) must be an integer")
        try:
            dctx = _zstd_decompressor(number) if number is not None else zstandard.ZstdDecompressor()
            inner = dctx.decompress(data, max_output_size=_MAX_INFLATED)
        except zstandard.ZstdError as err:
            raise CodecError(f"compressed data is corrupt or inflates beyond {_MAX_INFLATED} bytes: {err}") from None
    else:
        raise CodecError(f"unsupported compression {z!r} in a v{version} envelope")
    doc = _load(inner)
    if "z" in doc:
        raise CodecError("nested compression envelopes are not allowed")
    return doc


class CatalogMissingError(CodecError):
    """A v2 batch names a catalog this decoder has not (yet) received."""

    def __init__(self, catalog_id: str) -> None:
        super().__init__(f"catalog {catalog_id!r} not received (yet)")
        self.catalog_id = catalog_id


_KINDS_KNOWN = frozenset({K_NONE, K_FALSE, K_TRUE, K_INT, K_STR, K_F64, K_F32, *(K_DEC + e for e in _DEC_EXP)})


def _columns_v2(doc: dict[str, Any], historical: bool, store: CatalogCache,
                origin: tuple[str, str] | None) -> Columns:
    try:
        cid, seq, created = doc["c"], doc["seq"], doc["t"]
    except KeyError as err:
        raise CodecError(f"batch lacks field {err.args[0]!r}") from None
    if not (isinstance(cid, str) and _is_int(seq) and _is_int(created)):
        raise CodecError("batch header has wrong types")
    entry = store.catalog(cid)
    if entry is None or (origin is not None and (entry[1], entry[0]) != origin):
        raise CatalogMissingError(cid)
    gw, site, infos = entry
    di = doc.get("i", [])
    lists = {name: doc.get(name, []) for name in ("ts", "ta", "vi", "vd", "vs", "q", "r", "f")}
    if not isinstance(di, list) or not all(isinstance(c, list) for c in lists.values()):
        raise CodecError("i, ts, vi, vd, vs, q, r and f must be arrays")
    n = len(di)
    if n > _MAX_SAMPLES:
        raise CodecError("too many samples")
    dts = lists["ts"] or lists["ta"]
    vi, vd, vs = lists["vi"], lists["vd"], lists["vs"]
    if len(dts) != n:
        raise CodecError("columns i and ts must have the same length")
    if n and not set(map(type, itertools.chain(di, dts, vi, vd))) <= {int}:
        raise CodecError("malformed batch content: sample has wrong types")
    idx = list(itertools.accumulate(di))
    ts = list(itertools.accumulate(dts)) if lists["ts"] else list(dts)
    if not set(idx) <= infos.keys():
        raise CodecError("malformed batch content: a sample names a point the batch's catalog lacks")
    kinds_raw = doc.get("k", K_NONE)
    if _is_int(kinds_raw):
        kinds = bytes((kinds_raw,)) * n if 0 <= kinds_raw < 256 else b"\xff"
    elif isinstance(kinds_raw, bytes) and len(kinds_raw) == n:
        kinds = kinds_raw
    else:
        raise CodecError("k must be an integer or one byte per sample")
    val = _decode_values(kinds, n, vi, vd, doc.get("vg", b""), doc.get("vf", b""), vs)
    q = [0] * n
    rsn: list[str | None] = [None] * n
    flags = [0] * n
    for name, column, ok in (("q", q, lambda x: x in (0, 1, 2) and _is_int(x)),
                             ("r", rsn, lambda x: isinstance(x, str)), ("f", flags, _is_int)):
        pairs = lists[name]
        if len(pairs) % 2 or not set(map(type, pairs[::2])) <= {int} or not all(map(ok, pairs[1::2])):
            raise CodecError(f"malformed batch content: {name} must be pairs of sample and a valid value")
        for k, x in zip(pairs[::2], pairs[1::2], strict=True):
            if not 0 <= k < n:
                raise CodecError(f"malformed batch content: {name} names sample {k} of {n}")
            column[k] = x
    return Columns(gw, site, seq, created, historical, infos, idx, ts, val, q, rsn, flags, store.names(cid))


def _decode_values(kinds: bytes, n: int, vi: list[int], vd: list[int], vg: Any, vf: Any, vs: list[Any]) -> list[Any]:
    present = set(kinds)
    if not present <= _KINDS_KNOWN:
        raise CodecError(f"malformed batch content: unknown value kind(s) {sorted(present - _KINDS_KNOWN)}")
    if not isinstance(vg, bytes) or not isinstance(vf, bytes):
        raise CodecError("vg and vf must be binary")
    n_dec = n - sum(kinds.count(k) for k in present if k < K_DEC)
    if (kinds.count(K_INT) != len(vi) or n_dec != len(vd) or kinds.count(K_STR) != len(vs)
            or kinds.count(K_F32) * 4 != len(vg) or kinds.count(K_F64) * 8 != len(vf)):
        raise CodecError("malformed batch content: the value columns do not match the kinds")
    if vs and not set(map(type, vs)) <= {str}:
        raise CodecError("malformed batch content: vs must hold strings")
    f32 = struct.unpack(f"<{len(vg) // 4}f", vg)
    f64 = struct.unpack(f"<{len(vf) // 8}d", vf)
    if not _all_finite([*f32, *f64]):
        raise CodecError("malformed batch content: a value is NaN or infinite: non-finite numbers are never sent")
    if vd:
        if max(map(abs, vd)) >= _DEC_LIMIT:
            raise CodecError("malformed batch content: a decimal mantissa beyond 2**53")
        decs = list(map(operator.truediv, vd, [_POW[k - K_DEC] for k in kinds if k >= K_DEC]))  # ints: checked
    else:
        decs = []
    if len(present) == 1:
        (only,) = present
        if only >= K_DEC:
            return decs
        if only <= K_TRUE:
            return [(None, False, True)[only]] * n
        return list({K_INT: vi, K_STR: vs, K_F32: f32, K_F64: f64}[only])
    nxt: list[Any] = [None] * (K_DEC + len(_DEC_EXP))
    nxt[K_NONE], nxt[K_FALSE], nxt[K_TRUE] = (lambda: None), (lambda: False), (lambda: True)
    nxt[K_INT], nxt[K_STR] = iter(vi).__next__, iter(vs).__next__
    nxt[K_F32], nxt[K_F64] = iter(f32).__next__, iter(f64).__next__
    dnext = iter(decs).__next__
    for e in _DEC_EXP:
        nxt[K_DEC + e] = dnext
    return [nxt[k]() for k in kinds]


KNOWN_CATALOGS = CatalogCache()  # this process's v2 catalogs: its encoders' and those learnt by tools


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
