"""What an operator does with the ingest's dead letters: list, export, replay, delete.

``list`` and ``export`` only read the store (safe while the ingest runs).  ``replay`` sends each
entry through the ingest's own path again (:meth:`IngestCore.prepare` and :meth:`IngestCore.settle`
against the configured InfluxDB): an entry whose rows are now all written is deleted; what is
refused again becomes new dead letters that replace the entry in one transaction, so an entry is
never both written and lost, nor kept twice.  Rewriting a row that was written before lands on the
same (series, time), so a replay is idempotent.  ``replay`` and ``delete`` may run while the ingest
runs (SQLite serialises the writers).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiomqtt

from gateway.buffer.export import point_record
from gateway.codec import decode, decode_alarm
from gateway.config import IngestSection
from gateway.core.errors import CodecError, StoreUnavailableError
from gateway.deadletter import DeadLetterStore, StoredDeadLetter
from gateway.ingest import IngestCore, Prepared, fetch_catalogs

log = logging.getLogger("edgegw.deadletter")

__all__ = ["ReplayOutcome", "ReplayReport", "export_record", "list_record", "replay"]

_REPLAY_CHUNK = 100  # entries settled together (one store transaction for what is refused again)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def list_record(e: StoredDeadLetter) -> dict[str, Any]:
    """An entry without its payload: what ``list`` shows."""
    return {"id": e.id, "time": _iso(e.received_ns), "received_ns": e.received_ns, "topic": e.topic,
            "kind": e.kind, "points": e.points, "bytes": len(e.payload), "reason": e.reason}


def export_record(e: StoredDeadLetter) -> dict[str, Any]:
    """Every field of an entry, the payload as base64, and what it decodes to (if it does).

    The payload is the authoritative copy; ``decoded`` (a telemetry batch) or ``event`` (an alarm)
    is a reading aid, and ``decode_error`` says why there is none.
    """
    rec = list_record(e)
    rec["payload_base64"] = base64.b64encode(e.payload).decode("ascii")
    if e.topic.endswith("/alarm"):
        try:
            rec["event"] = decode_alarm(e.payload)
        except CodecError as err:
            rec["decode_error"] = str(err)
        return rec
    try:
        batch = decode(e.payload)
    except CodecError as err:
        rec["decode_error"] = str(err)
        return rec
    rec["decoded"] = {
        "gateway": batch.gateway, "site": batch.site, "seq": batch.seq, "created_ns": batch.created_ns,
        "historical": batch.historical,
        "points": [{**point_record(p), "historical": p.historical} for p in batch.points],
    }
    return rec


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    id: int
    topic: str
    written: int  # rows written now (points, or 1 for an alarm event)
    refused: list[str]  # the reasons of what was refused again (empty: the entry is gone)

    @property
    def ok(self) -> bool:
        return not self.refused


@dataclass(slots=True)
class ReplayReport:
    outcomes: list[ReplayOutcome] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)  # ids asked for that are not in the store
    gave_up: str | None = None  # the store or the dead-letter file could not take writes

    @property
    def ok(self) -> bool:
        return self.gave_up is None and not self.missing and all(o.ok for o in self.outcomes)


def _outcome(entry: StoredDeadLetter, prep: Prepared) -> ReplayOutcome:
    refused = [d.reason for d in prep.dead] + [reason for _, reason in prep.refused]
    return ReplayOutcome(entry.id, entry.topic, len(prep.rows) - len(prep.refused), refused)


def _chunks(store: DeadLetterStore, ids: list[int]) -> Iterator[tuple[list[int], list[StoredDeadLetter]]]:
    for start in range(0, len(ids), _REPLAY_CHUNK):
        chunk = ids[start:start + _REPLAY_CHUNK]
        yield chunk, list(store.entries(chunk))


async def replay(cfg: IngestSection, store: DeadLetterStore, ids: list[int] | None, *,
                 give_up_after_s: float = 60.0) -> ReplayReport:
    """Replay the entries ``ids`` (all when None), oldest first.

    Stops (``gave_up``) when InfluxDB or the dead-letter store cannot take writes for
    ``give_up_after_s``: entries not settled by then are left as they were.
    """
    report = ReplayReport()
    wanted = store.ids() if ids is None else list(dict.fromkeys(ids))
    core = IngestCore(cfg, dead_letters=store)
    core.give_up_after_s = give_up_after_s
    fetched = False
    try:
        for chunk, entries in _chunks(store, wanted):
            found = {e.id for e in entries}
            report.missing.extend(i for i in chunk if i not in found)
            if not entries:
                continue
            prepared = [core.prepare(e.topic, e.payload) for e in entries]
            if any(p.missing is not None for p in prepared) and not fetched:
                fetched = True  # wire format v2 batches: their catalogs are retained on the broker
                try:
                    await fetch_catalogs(core)
                except (aiomqtt.MqttError, OSError) as err:
                    log.warning("Cannot fetch the gateways' catalogs from the broker (%s): wire format v2 "
                                "batches stay dead letters.", err)
                prepared = [core.prepare_again(p) if p.missing is not None else p for p in prepared]
            try:
                await core.settle(prepared, replaces=[e.id for e in entries])
            except StoreUnavailableError as err:
                report.gave_up = str(err)
                break
            report.outcomes.extend(_outcome(e, p) for e, p in zip(entries, prepared, strict=True))
    finally:
        core.writer.close()  # the store is the caller's
    return report
