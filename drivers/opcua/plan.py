"""Request sizing under the server's operation limits (pure).

Servers advertise limits such as MaxNodesPerRead and MaxMonitoredItemsPerCall under
Server/ServerCapabilities/OperationLimits; 0 means "no limit".  A config past a server's limit is
the top cause of large OPC UA configs failing at peers, so every request is cut to fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

__all__ = ["batch_size", "chunks"]

T = TypeVar("T")


def batch_size(server_limit: int | None, configured_cap: int) -> int:
    """The smaller of the server's advertised limit (0 or unknown = unlimited) and our own cap."""
    if server_limit is None or server_limit <= 0:
        return configured_cap
    return min(server_limit, configured_cap)


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [items[i : i + size] for i in range(0, len(items), size)]
