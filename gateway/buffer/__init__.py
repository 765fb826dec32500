"""Durable store-and-forward buffer."""

from gateway.buffer.sqlite import BufferStats, Outcome, SqliteBuffer, Transaction

__all__ = ["BufferStats", "Outcome", "SqliteBuffer", "Transaction"]
