"""Read planning: a device's points as the fewest "read variable" requests that fit the PDU (pure).

1. Points are grouped per area (and data block) and sorted by start byte; neighbours are merged
   into one *range* while the gap between them is at most ``max_gap`` bytes and the range still
   fits one answer on its own (``pdu - 18`` bytes).  A range never splits a point, so every value
   comes from one answer (one PLC scan): no torn REAL.  Only a point wider than an answer (a long
   STRING / WSTRING at a small PDU) is read in several *chunks*.
2. Chunks are packed into the fewest requests under the three limits of a request: at most
   ``max_items`` items, the request (``12 + 12 n`` bytes) within the PDU, and the answer
   (``14 + sum(4 + bytes + fill byte)``) within the PDU.  First-fit decreasing, then, for up to 16
   chunks (most devices), a bounded exact search that proves it minimal or finds fewer requests.

Points named in ``alone`` (they spoiled a shared range with an item error) get a range of their
own, so one wrong address costs only its own point.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.s7.address import Address
from drivers.s7.wire import (
    ITEM_HEADER,
    ITEM_SPEC,
    READ_PARAM,
    RESPONSE_HEADER,
    ReadItem,
    read_request_size,
    read_response_size,
)

__all__ = ["Chunk", "Plan", "Range", "item_payload", "items_per_request", "lower_bound", "plan"]


@dataclass(frozen=True, slots=True)
class Range:
    area_code: int
    db: int
    start: int
    count: int
    members: tuple[int, ...]  # positions in the device's point list


@dataclass(frozen=True, slots=True)
class Chunk:
    range: int  # index into Plan.ranges
    offset: int  # first byte within the range
    count: int

    def item(self, r: Range) -> ReadItem:
        return ReadItem(r.area_code, r.db, r.start + self.offset, self.count)


@dataclass(frozen=True, slots=True)
class Plan:
    ranges: list[Range]
    requests: list[list[Chunk]]


REQUEST_FIXED = read_request_size(0)


def items_per_request(pdu: int, max_items: int) -> int:
    """Items one request may carry: the CPU's limit, and what fits the request's PDU."""
    return max(1, min(max_items, (pdu - REQUEST_FIXED) // ITEM_SPEC))


def item_payload(pdu: int) -> int:
    """The most data bytes one item can carry in an answer of ``pdu`` bytes."""
    return pdu - RESPONSE_HEADER - READ_PARAM - ITEM_HEADER


class Planned(Protocol):
    """What planning needs of a point (an ``S7Point``, or the driver's compact form of one)."""

    @property
    def parsed(self) -> Address: ...

    @property
    def span(self) -> tuple[int, int]: ...


def plan(points: Sequence[Planned], pdu: int, max_items: int, max_gap: int, alone: Collection[int] = ()) -> Plan:
    cap = item_payload(pdu)
    max_items = items_per_request(pdu, max_items)
    isolated = set(alone)
    spans = sorted(
        (p.parsed.area.code, p.parsed.db, *p.span, i) for i, p in enumerate(points)
    )
    ranges: list[Range] = []
    cur: list[int] | None = None  # [area, db, lo, hi] of the open range
    members: list[int] = []
    for area, db, lo, hi, i in spans:
        if (
            cur is not None
            and (area, db) == (cur[0], cur[1])
            and i not in isolated
            and members[0] not in isolated
            and (
                (lo - cur[3] <= max_gap and max(hi, cur[3]) - cur[2] <= cap)
                # inside a range wider than an answer (a long string): its bytes are read anyway, and
                # a point within one chunk still comes from one answer
                or (hi <= cur[3] and (lo - cur[2]) // cap == (hi - 1 - cur[2]) // cap)
            )
        ):
            cur[3] = max(cur[3], hi)
            members.append(i)
            continue
        if cur is not None:
            ranges.append(Range(cur[0], cur[1], cur[2], cur[3] - cur[2], tuple(members)))
        cur, members = [area, db, lo, hi], [i]
    if cur is not None:
        ranges.append(Range(cur[0], cur[1], cur[2], cur[3] - cur[2], tuple(members)))
    chunks = [
        Chunk(r, off, min(cap, rng.count - off)) for r, rng in enumerate(ranges) for off in range(0, rng.count, cap)
    ]
    return Plan(ranges, _pack(chunks, pdu, max_items))


def _fits(counts: list[int], pdu: int) -> bool:
    ordered = sorted(counts, key=lambda n: n % 2)  # an odd item last: its fill byte is not sent
    return read_response_size(ordered) <= pdu


def _pack(chunks: list[Chunk], pdu: int, max_items: int) -> list[list[Chunk]]:
    """Chunks into the fewest requests under the item and both PDU limits: first-fit decreasing, then
    (for up to ``EXACT_CHUNKS`` chunks, the usual device) a bounded branch-and-bound search that
    proves FFD optimal or finds a packing with fewer requests."""
    ordered = sorted(chunks, key=lambda c: -c.count)
    bins = _ffd(ordered, pdu, max_items)
    if len(bins) > 2 and len(ordered) <= EXACT_CHUNKS:
        better = _exact(ordered, pdu, max_items, len(bins) - 1)
        if better is not None:
            bins = better
    # within a request: odd-sized items last (their fill byte is then not sent), else in address order
    return [sorted(b, key=lambda c: (c.count % 2, c.range, c.offset)) for b in bins]


EXACT_CHUNKS = 16
_EXACT_NODES = 20_000


def _ffd(ordered: list[Chunk], pdu: int, max_items: int) -> list[list[Chunk]]:
    bins: list[list[Chunk]] = []
    for c in ordered:
        for b in bins:
            if len(b) < max_items and _fits([*(x.count for x in b), c.count], pdu):
                b.append(c)
                break
        else:
            bins.append([c])
    return bins


def _exact(ordered: list[Chunk], pdu: int, max_items: int, limit: int) -> list[list[Chunk]] | None:
    """A packing into at most ``limit`` requests, searched depth-first (largest chunk first, each into
    an open request or one new request); None when there is none or the search budget ran out."""
    bins: list[list[Chunk]] = []
    nodes = 0

    def place(i: int) -> bool:
        nonlocal nodes
        nodes += 1
        if nodes > _EXACT_NODES:
            return False
        if i == len(ordered):
            return True
        c = ordered[i]
        seen: set[tuple[int, int]] = set()
        for b in bins:
            key = (len(b), sum(x.count for x in b))  # requests alike in both measures: try one of them
            if key in seen or len(b) >= max_items or not _fits([*(x.count for x in b), c.count], pdu):
                continue
            seen.add(key)
            b.append(c)
            if place(i + 1):
                return True
            b.pop()
        if len(bins) < limit:
            bins.append([c])
            if place(i + 1):
                return True
            bins.pop()
        return False

    return [list(b) for b in bins] if place(0) else None


def lower_bound(counts: Collection[int], pdu: int, max_items: int) -> int:
    """No plan of these items can use fewer requests (for the tests' optimality checks)."""
    if not counts:
        return 0
    per_req = items_per_request(pdu, max_items)
    by_items = -(-len(counts) // per_req)
    by_bytes = -(-sum(ITEM_HEADER + n for n in counts) // (pdu - RESPONSE_HEADER - READ_PARAM + 1))
    return max(by_items, by_bytes)
