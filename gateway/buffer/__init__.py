"""Durable store-and-forward buffer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.buffer.sqlite import COUNTERS, BufferStats, Outcome, SqliteBuffer, StoredBatch, Transaction

if TYPE_CHECKING:
    from gateway.config import BufferConfig

__all__ = ["COUNTERS", "BufferStats", "Outcome", "SqliteBuffer", "StoredBatch", "Transaction", "open_buffer"]


def open_buffer(cfg: BufferConfig, *, readonly: bool = False) -> SqliteBuffer:
    """The buffer as configured; rows without a checksum (format 1) are validated by the wire codec."""
    from gateway.codec import decode

    return SqliteBuffer(
        cfg.path,
        max_bytes=cfg.max_bytes,
        when_full=cfg.when_full.value,
        durability=cfg.durability.value,
        sync_interval_ms=cfg.sync_interval_ms,
        max_age_s=cfg.max_age_s,
        disk_reserve_bytes=cfg.disk_reserve_bytes,
        validate=decode,
        readonly=readonly,
        startup_check=cfg.startup_check,
    )
