"""``edgegw buffer export``: pending batches, decoded, as JSON lines or msgpack (read-only).

One record per batch: the buffer row (``buffer_id``, ``created_ns``, ``npoints``) and the decoded
wire batch (``gateway``, ``site``, ``seq``, ``points``).  A row that fails its checksum or does not
decode is written as a record with ``error`` instead of ``points``, so nothing is silently skipped.
Rows of the alarm buffer come out as records with ``alarm`` (the decoded event) instead of ``points``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack

from gateway.buffer.sqlite import SqliteBuffer, StoredBatch
from gateway.codec import decode, decode_alarm
from gateway.core.errors import CodecError
from gateway.core.point import Point

__all__ = ["ExportSummary", "export", "point_record", "record"]


@dataclass(slots=True)
class ExportSummary:
    batches: int = 0
    points: int = 0
    errors: int = 0

    def describe(self, where: str) -> str:
        text = f"exported {self.batches} batches ({self.points} points) to {where}"
        if self.errors:
            text += f"; {self.errors} batches could not be decoded (records with 'error')"
        return text


def record(row: StoredBatch) -> dict[str, Any]:
    rec: dict[str, Any] = {"buffer_id": row.id, "created_ns": row.created_ns, "npoints": row.npoints}
    if row.reason is not None:
        rec["quarantine_reason"] = row.reason
    if not row.checksum_ok:
        rec["error"] = "checksum mismatch"
        return rec
    try:
        batch = decode(row.payload)
    except CodecError as err:
        try:
            rec["alarm"] = decode_alarm(row.payload)
        except CodecError:
            rec["error"] = str(err)
        return rec
    rec.update(gateway=batch.gateway, site=batch.site, seq=batch.seq, batch_created_ns=batch.created_ns)
    rec["points"] = [point_record(p) for p in batch.points]
    return rec


def point_record(p: Point) -> dict[str, Any]:
    """One decoded point as a JSON-ready map (also the dead-letter export's)."""
    return {
        "key": p.key,
        "code": p.code,
        "ts_ns": p.ts_ns,
        "value": p.value,
        "quality": p.quality.label,
        "reason": p.reason,
        "unit": p.unit,
        "device": p.device,
        "device_code": p.device_code,
        "tags": dict(p.tags),
    }


def export(buf: SqliteBuffer, out: BinaryIO, *, fmt: str = "jsonl", quarantined: bool = False,
           progress: Callable[[int], None] | None = None) -> ExportSummary:
    """``progress(1)`` after each batch written (a progress bar in the CLI).  Wire format v2 batches
    are decoded with the catalogs archived beside the buffer (:mod:`gateway.catalog_archive`)."""
    from gateway.catalog_archive import archive_dir, learn_archive
    from gateway.codec import KNOWN_CATALOGS

    learn_archive(archive_dir(buf.path), KNOWN_CATALOGS)
    summary = ExportSummary()
    for row in buf.batches(quarantined=quarantined):
        if progress is not None:
            progress(1)
        rec = record(row)
        if "error" in rec:
            summary.errors += 1
        else:
            summary.batches += 1
            summary.points += len(rec["points"]) if "points" in rec else 1
        if fmt == "jsonl":
            out.write(json.dumps(rec, ensure_ascii=False).encode() + b"\n")
        else:
            out.write(msgpack.packb(rec, use_bin_type=True))
    return summary
