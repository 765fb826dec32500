"""The records that cross module boundaries.

On the hot path a sample is a plain tuple ``(point index, source time ns, value, quality, reason)``:
everything static about a point (identifier code, unit, tags) lives once in the point table
(:mod:`gateway.catalog`), so a sample carries only what changes.  :class:`Point` is the
self-describing form that tests, the demo and the ingest side speak.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TypeAlias

__all__ = ["Point", "Quality", "Sample", "SampleBatch", "Value", "good_samples", "index_int", "now_ns"]

Value: TypeAlias = float | int | bool | str


class Quality(enum.IntEnum):
    """OPC-style quality, reduced to the three classes every consumer understands."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @property
    def label(self) -> str:
        return self.name.lower()


# (point index, source time in UTC ns, value or None when bad, quality, reason or None)
Sample: TypeAlias = tuple[int, int, Value | None, Quality, str | None]
SampleBatch: TypeAlias = list[Sample]


# one int object per point index, for the whole process: the point table and the drivers' decoders
# (whose samples carry it) share it instead of each making its own, 28 bytes a point (#17)
_INDEX_INTS: list[int] = []


def index_int(i: int) -> int:
    """The process's shared int object equal to point index ``i`` (``i >= 0``)."""
    ints = _INDEX_INTS
    if i >= len(ints):
        ints.extend(range(len(ints), i + 1024))
    return ints[i]


def good_samples(indices: Sequence[int], ts: int, values: Sequence[Value]) -> SampleBatch:
    """One good sample ``(index, ts, value, GOOD, None)`` per index and value (equal lengths), as a
    driver makes a block's: the tuples are built by ``zip`` in C, cheaper than a comprehension
    (docs/benchmarks.md), and the samples carry the one ``ts`` object (which the normalise stage
    notices: the clock check then has no times to scan)."""
    n = len(indices)
    return list(zip(indices, repeat(ts, n), values, repeat(Quality.GOOD, n), repeat(None, n), strict=True))


def now_ns() -> int:
    """Acquisition time: set once per sample, never changed on retry (replays stay idempotent)."""
    return time.time_ns()


@dataclass(frozen=True, slots=True)
class Point:
    """One self-describing sample.

    ``value`` is ``None`` exactly when quality is bad: a bad reading never becomes a number.
    """

    key: str
    code: str
    ts_ns: int
    value: Value | None
    quality: Quality = Quality.GOOD
    reason: str | None = None
    unit: str = ""
    device: str = ""
    device_code: str = ""
    tags: tuple[tuple[str, str], ...] = field(default=())
    historical: bool = False

    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)
