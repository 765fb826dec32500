"""Wire format v1: one msgpack map per MQTT message.

A batch is self-contained: it carries a small catalog of the points it mentions (key, code, unit,
device, device code, grade, tags) and the samples refer to catalog rows by position.  A receiver
that missed every earlier message can still decode it; a point sampled many times in one batch
costs its strings once.  See ``docs/wire-format.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack

from gateway.catalog import Catalog
from gateway.errors import CodecError
from gateway.point import Point, Quality, SampleBatch

__all__ = ["SCHEMA_VERSION", "Batch", "decode", "encode"]

SCHEMA_VERSION = 1
_MAX_SAMPLES = 1_000_000


@dataclass(frozen=True, slots=True)
class Batch:
    gateway: str
    site: str
    seq: int
    created_ns: int
    points: list[Point]


def encode(catalog: Catalog, samples: SampleBatch, seq: int, created_ns: int) -> bytes:
    local: dict[int, int] = {}
    cat_rows: list[list[Any]] = []
    rows: list[list[Any]] = []
    infos = catalog.points
    for idx, ts, value, quality, reason in samples:
        li = local.get(idx)
        if li is None:
            li = local[idx] = len(cat_rows)
            info = infos[idx]
            cat_rows.append(
                [info.key, info.code, info.unit, info.device, info.device_code, info.data_grade, dict(info.tags)]
            )
        rows.append([li, ts, value, int(quality), reason])
    doc = {
        "v": SCHEMA_VERSION,
        "gw": catalog.gateway_id,
        "site": catalog.site,
        "seq": seq,
        "t": created_ns,
        "cat": cat_rows,
        "pts": rows,
    }
    return msgpack.packb(doc, use_bin_type=True)  # type: ignore[no-any-return]


def decode(payload: bytes) -> Batch:
    """Decode and validate a batch; anything malformed raises :class:`CodecError`, never another type."""
    try:
        doc = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_array_len=_MAX_SAMPLES)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as err:
        raise CodecError(f"not a msgpack batch: {err}") from None
    if not isinstance(doc, dict):
        raise CodecError("batch is not a map")
    version = doc.get("v")
    if version != SCHEMA_VERSION:
        raise CodecError(f"unsupported wire format version {version!r} (this build reads {SCHEMA_VERSION})")
    try:
        gw, site, seq, created = doc["gw"], doc["site"], doc["seq"], doc["t"]
        cat, rows = doc["cat"], doc["pts"]
    except KeyError as err:
        raise CodecError(f"batch lacks field {err.args[0]!r}") from None
    if not (isinstance(gw, str) and isinstance(site, str) and isinstance(seq, int) and isinstance(created, int)):
        raise CodecError("batch header has wrong types")
    if not isinstance(cat, list) or not isinstance(rows, list):
        raise CodecError("cat and pts must be arrays")
    try:
        infos = [_cat_row(r) for r in cat]
        points = [_point(r, infos) for r in rows]
    except (TypeError, ValueError, IndexError) as err:
        raise CodecError(f"malformed batch content: {err}") from None
    return Batch(gw, site, seq, created, points)


def _cat_row(r: Any) -> tuple[str, str, str, str, str, str, tuple[tuple[str, str], ...]]:
    key, code, unit, device, device_code, grade, tags = r
    fields = (key, code, unit, device, device_code, grade)
    if not all(isinstance(f, str) for f in fields) or not isinstance(tags, dict):
        raise TypeError("catalog row has wrong types")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise TypeError("tags must map strings to strings")
    tag_items = tuple(sorted(tags.items()))
    if grade:
        tag_items = (*tag_items, ("data_grade", grade))
    return key, code, unit, device, device_code, grade, tuple(sorted(tag_items))


def _point(r: Any, infos: list[tuple[str, str, str, str, str, str, tuple[tuple[str, str], ...]]]) -> Point:
    li, ts, value, q, reason = r
    if not isinstance(li, int) or li < 0 or not isinstance(ts, int):
        raise TypeError("sample row has wrong types")
    key, code, unit, device, device_code, _grade, tags = infos[li]
    quality = Quality(q)
    if value is not None and not isinstance(value, float | int | bool | str):
        raise TypeError(f"value of {key} has unsupported type {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"value of {key} is {value}: non-finite numbers are never sent")
    if reason is not None and not isinstance(reason, str):
        raise TypeError("reason must be a string")
    return Point(key, code, ts, value, quality, reason, unit, device, device_code, tags)
