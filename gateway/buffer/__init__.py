"""Durable store-and-forward buffer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gateway.buffer.sqlite import COUNTERS, BufferStats, Outcome, SqliteBuffer, StoredBatch, Transaction
from gateway.codec import decode, decode_alarm
from gateway.core.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from gateway.config import BufferConfig

__all__ = [
    "COUNTERS", "BufferStats", "Outcome", "SqliteBuffer", "StoredBatch", "Transaction",
    "alarm_buffer_path", "open_buffer",
]


def alarm_buffer_path(path: str | Path) -> Path:
    """The alarm buffer next to the telemetry buffer: ``buffer.db`` -> ``buffer-alarms.db``."""
    p = Path(path)
    return p.with_name(f"{p.stem}-alarms{p.suffix}")


def open_buffer(
    cfg: BufferConfig, *, readonly: bool = False, alarms: bool = False, clock: Clock = SYSTEM_CLOCK
) -> SqliteBuffer:
    """The buffer as configured; rows without a checksum (format 1) are validated by the wire codec.

    ``alarms``: the alarm-event buffer (:func:`alarm_buffer_path`), same durability settings, but
    never dropped by age and bounded by ``alarm_max_bytes`` (oldest dropped, counted) unless
    ``alarm_max_age_s`` is set: a safety alarm is kept until the broker confirmed it.
    """
    return SqliteBuffer(
        alarm_buffer_path(cfg.path) if alarms else cfg.path,
        max_bytes=cfg.alarm_max_bytes if alarms else cfg.max_bytes,
        # never block: alarms are committed from the pipeline, which must not stall on them
        when_full="drop_oldest" if alarms else cfg.when_full.value,
        durability=cfg.durability.value,
        sync_interval_ms=cfg.sync_interval_ms,
        max_age_s=cfg.alarm_max_age_s if alarms else cfg.max_age_s,
        disk_reserve_bytes=cfg.disk_reserve_bytes,
        validate=decode_alarm if alarms else decode,
        readonly=readonly,
        startup_check=cfg.startup_check,
        clock=clock,
    )
