"""What the status endpoint reports, read from the live objects when asked: no second bookkeeping.

:class:`LiveTable` is the one thing kept for it: each point's last sample (after normalising and
the plausibility checks, before the forwarding policy and the deadband, so kept-on-site points and
unchanged values stay visible with their true age) and samples counted by quality.  It is a tap on
the pipeline, installed only when the endpoint is on.

Everything else (device health, buffer, uplink, ingest) is read from the running objects at request
time: :func:`gateway_status`, :func:`ingest_status`, and the readiness checks behind ``/readyz``.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.buffer import BufferStats, SqliteBuffer
from gateway.catalog import Catalog
from gateway.core.errors import BufferCorruptError, BufferStorageError
from gateway.core.point import Quality, Sample, SampleBatch, Value

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.ingest import IngestCore

__all__ = [
    "BUFFER_READY_FILL",
    "Check",
    "LiveTable",
    "buffer_stats",
    "device_state",
    "gateway_readiness",
    "gateway_status",
    "ingest_readiness",
    "ingest_status",
]

# buffering while the uplink is down is normal; past this share of max_bytes (or of max_age_s) the
# gateway is about to drop or expire data and is reported not ready
BUFFER_READY_FILL = 0.8
POINTS_LIMIT = 5000  # points per status response (a filter narrows it; the page says when it is cut)


class LiveTable:
    """Each point's last sample and, per point, how many samples of each quality were acquired."""

    def __init__(self, catalog: Catalog) -> None:
        n = len(catalog.points)
        self.catalog = catalog
        self.last: list[Sample | None] = [None] * n
        self.counts: tuple[list[int], list[int], list[int]] = ([0] * n, [0] * n, [0] * n)  # by Quality value

    def __call__(self, batch: SampleBatch) -> None:
        last, counts = self.last, self.counts
        for s in batch:
            last[s[0]] = s
            counts[s[3]][s[0]] += 1

    def rebase(self, catalog: Catalog, keep: Collection[str]) -> None:
        """A config reload (:func:`gateway.catalog.relayout`): the devices in ``keep`` keep their last samples
        and counts (same indices); every other slot starts empty."""
        n = len(catalog.points)
        last: list[Sample | None] = [None] * n
        counts: tuple[list[int], list[int], list[int]] = ([0] * n, [0] * n, [0] * n)
        for name in keep:
            r = self.catalog.by_device[name]
            last[r.start:r.stop] = self.last[r.start:r.stop]
            for q in range(3):
                counts[q][r.start:r.stop] = self.counts[q][r.start:r.stop]
        self.catalog, self.last, self.counts = catalog, last, counts

    def device_counts(self, device: str) -> dict[str, int]:
        r = self.catalog.by_device[device]
        return {q.label: sum(self.counts[q][r.start:r.stop]) for q in Quality}

    def device_summary(self, device: str, wall_ns: int) -> tuple[int, int, float | None]:
        """(points whose last sample is bad, points with no sample yet, age of the newest good sample)."""
        bad = missing = 0
        newest = 0
        for i in self.catalog.by_device[device]:
            s = self.last[i]
            if s is None:
                missing += 1
            elif s[3] == Quality.BAD:
                bad += 1
            elif s[1] > newest:
                newest = s[1]
        return bad, missing, (max(0.0, (wall_ns - newest) / 1e9) if newest else None)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def buffer_stats(buf: SqliteBuffer) -> tuple[BufferStats | None, str]:
    """The buffer's stats, or None and why not (closed, failed storage)."""
    try:
        return buf.stats(), ""
    except (sqlite3.Error, BufferCorruptError, BufferStorageError) as err:
        return None, str(err) or type(err).__name__


def device_state(up: bool, failed_polls: int, bad: int, runner_state: str = "") -> str:
    """``connecting`` (no answer yet), ``down``, ``degraded`` (answers, some points bad), ``up``.

    A device that answers but whose points are all bad is not up (DESIGN §5): it is degraded.  The
    runner's own state (acquisition: exception responses, illegal addresses, undecodable values) wins;
    ``bad`` (after the pipeline's range checks) can only turn an ``up`` into ``degraded``."""
    if runner_state in ("down", "degraded"):
        return runner_state
    if not up:
        return "down" if failed_polls else "connecting"
    return "degraded" if bad else "up"


def _age(mono: float | None) -> float | None:
    return None if mono is None else round(max(0.0, time.monotonic() - mono), 3)


def _json_value(v: Value | None) -> Value | None:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _within_bounds(st: BufferStats) -> tuple[bool, str]:
    fill = st.bytes / st.max_bytes if st.max_bytes else 0.0
    if fill >= BUFFER_READY_FILL:
        return False, f"buffer {fill:.0%} full ({st.bytes} of {st.max_bytes} bytes)"
    if st.max_age_s and st.oldest_age_s is not None and st.oldest_age_s >= BUFFER_READY_FILL * st.max_age_s:
        return False, f"oldest pending batch is {st.oldest_age_s:.0f} s old (max_age_s {st.max_age_s:.0f})"
    return True, f"{st.batches} batches ({fill:.0%} of max_bytes) buffered"


def gateway_readiness(gw: Gateway) -> list[Check]:
    """Buffer open; at least one device up; uplink connected or buffering within bounds."""
    st, why = buffer_stats(gw.buffer)
    checks = [Check("buffer", st is not None, why or f"open ({st.batches if st else 0} batches pending)")]
    ups = [r.driver.name for r in gw.runners if r.health.up]
    checks.append(Check(
        "devices", bool(ups),
        f"{len(ups)} of {len(gw.runners)} up" if ups else f"none of {len(gw.runners)} devices is up",
    ))
    fs = gw.forwarder.stats
    if fs.connected:
        checks.append(Check("uplink", True, "connected"))
    elif st is None:
        checks.append(Check("uplink", False, f"not connected ({fs.last_error or 'connecting'}); buffer unavailable"))
    else:
        ok, detail = _within_bounds(st)
        checks.append(Check("uplink", ok, f"not connected ({fs.last_error or 'connecting'}); {detail}"))
    return checks


def ingest_readiness(ingest: IngestCore) -> list[Check]:
    """Broker connected; the store is not down."""
    s = ingest.stats
    down = s.store_down_since
    return [
        Check("broker", s.connected, "connected" if s.connected else "not connected"),
        Check(
            "store", down is None,
            "writing" if down is None else f"down for {time.monotonic() - down:.0f} s ({_top(s.store_errors)})",
        ),
    ]


def _top(counter: Any) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counter.most_common(3)) or "no error counted"


def _buffer_view(buf: SqliteBuffer) -> dict[str, Any]:
    st, why = buffer_stats(buf)
    if st is None:
        return {"open": False, "error": why}
    c = st.counters
    return {
        "open": True,
        "batches": st.batches,
        "points": st.points,
        "bytes": st.bytes,
        "max_bytes": st.max_bytes,
        "fill": round(st.bytes / st.max_bytes, 4) if st.max_bytes else 0.0,
        "oldest_age_s": st.oldest_age_s,
        "unsynced_points": st.unsynced_points,
        "durability": st.durability,
        "when_full": st.when_full,
        "dropped_points": c["dropped_oldest_points"] + c["dropped_newest_points"] + c["expired_points"],
        "accepted_points": c["accepted_points"],
        "delivered_points": c["delivered_points"],
    }


def _matches(text: str, *fields: str) -> bool:
    return not text or any(text in f.lower() for f in fields)


def gateway_status(
    gw: Gateway, live: LiveTable | None, *, text: str = "", device: str = "", quality: str = "",
    limit: int = POINTS_LIMIT,
) -> dict[str, Any]:
    """The status page's data: devices, points (filtered: ``text`` in key, display name, code or unit;
    ``device``; ``quality``), buffer and uplink."""
    wall = time.time_ns()
    text = text.strip().lower()
    cat = gw.catalog
    names = cat.device_names
    kinds = {d.name: d.type for d in gw.cfg.devices}
    devices = []
    for r in gw.runners:
        name = r.driver.name
        h = r.health
        bad, missing, data_age = live.device_summary(name, wall) if live else (0, 0, None)
        devices.append({
            "name": name,
            "display_name": names.get(name, ("", ""))[0],
            "description": names.get(name, ("", ""))[1],
            "type": kinds.get(name, ""),
            "state": device_state(h.up, h.failed_polls, bad, h.state),
            "reason": h.reason,
            "suspended": h.suspended,
            "last_error": h.last_error,
            "last_error_age_s": _age(h.last_error_mono),
            "last_data_age_s": None if data_age is None else round(data_age, 3),
            "points": len(cat.by_device[name]),
            "bad_points": bad,
            "points_without_data": missing,
            "polls": h.polls,
            "failed_polls": h.failed_polls,
            "deadline_misses": h.deadline_misses,
        })
    points: list[dict[str, Any]] = []
    matched = 0
    for info in cat.live_points:
        s = live.last[info.index] if live else None
        q = Quality(s[3]).label if s is not None else "none"
        if device and info.device != device:
            continue
        if quality and q != quality:
            continue
        if not _matches(text, info.key, info.display_name, info.code, info.unit, info.description):
            continue
        matched += 1
        if len(points) >= limit:
            continue
        points.append({
            "key": info.key,
            "device": info.device,
            "name": info.key.split(".", 1)[1],
            "display_name": info.display_name,
            "description": info.description,
            "code": info.code,
            "unit": info.unit,
            "value": None if s is None else _json_value(s[2]),
            "quality": q,
            "reason": None if s is None else s[4],
            "age_s": None if s is None else round(max(0.0, (wall - s[1]) / 1e9), 3),
        })
    fs = gw.forwarder.stats
    up = gw.cfg.uplink
    checks = gateway_readiness(gw)
    return {
        "role": "gateway",
        "gateway": {"id": cat.gateway_id, "site": cat.site, "display_name": cat.gateway_display_name,
                    "description": gw.cfg.gateway.description if gw.cfg.gateway else "",
                    "site_display_name": cat.site_display_name, "site_description": cat.site_description},
        "time_ns": wall,
        "ready": all(c.ok for c in checks),
        "checks": [c.as_dict() for c in checks],
        "devices": devices,
        "points": points,
        "points_matched": matched,
        "points_total": sum(map(len, cat.by_device.values())),
        "buffer": _buffer_view(gw.buffer),
        "reload": gw.reload_status.as_dict(),
        "uplink": {
            "connected": fs.connected,
            "broker": "{}:{}".format(*gw.forwarder.uplink.server) if up else "",
            "inflight_batches": gw.buffer.inflight_batches,
            "published_points": fs.published_points,
            "historical_points": fs.historical_points,
            "rejected_batches": fs.rejected_batches,
            "reconnects": fs.reconnects,
            "last_error": fs.last_error,
        },
    }


def ingest_status(ingest: IngestCore) -> dict[str, Any]:
    s = ingest.stats
    checks = ingest_readiness(ingest)
    return {
        "role": "ingest",
        "ready": all(c.ok for c in checks),
        "checks": [c.as_dict() for c in checks],
        "connected": s.connected,
        "messages": s.messages,
        "points": s.points,
        "written_points": s.written_points,
        "dead_letter_messages": s.dead_letter_messages,
        "dead_letter_points": s.dead_letter_points,
        "write_retries": s.write_retries,
        "store_errors": dict(s.store_errors),
    }
