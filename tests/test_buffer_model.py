"""Model-based test of the SQLite buffer: random put / begin / end / crash / reopen sequences.

The model is the obvious one: a FIFO list of (payload, npoints) plus the persistent counters; what a
put on a full buffer must do is derived from the rule in docs/buffer.md (lose as little as the policy
must: with batches in flight, old batches are deleted only when that makes the new one fit).
A "crash" abandons the connection without cleanup (what kill -9 leaves behind: in-flight batches
were never confirmed, so they must all come back); "reopen" is a clean close and open.  After
every step the buffer must agree with the model exactly, and the ledger must balance:
accepted = delivered + dropped + pending.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.buffer import Outcome, SqliteBuffer, Transaction
from gateway.core.errors import BufferFullError

__all__ = ["BufferMachine"]

_MAX_BYTES = 400


class BufferMachine(RuleBasedStateMachine):
    """Drives one buffer and a list model in lockstep."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="edgegw-model-"))
        self.policy = "drop_oldest"
        self.buf: SqliteBuffer | None = None
        self.model: list[tuple[int, bytes, int]] = []  # (row id, payload, npoints), FIFO
        self.inflight: list[Transaction] = []
        self.counters = dict.fromkeys(
            ("accepted_points", "delivered_points", "dropped_oldest_points", "dropped_newest_points",
             "dropped_oldest_batches", "dropped_newest_batches", "quarantined_points"), 0
        )
        self.seq = 0
        self.rotten: set[int] = set()

    def _open(self) -> SqliteBuffer:
        return SqliteBuffer(self.dir / "buf.db", max_bytes=_MAX_BYTES, when_full=self.policy, durability="interval")

    @rule(policy=st.sampled_from(["drop_oldest", "drop_newest", "block"]))
    @precondition(lambda self: self.buf is None)
    def start(self, policy: str) -> None:
        self.policy = policy
        self.buf = self._open()

    @rule(size=st.one_of(st.integers(1, 150), st.integers(200, 399), st.integers(390, 420)), npoints=st.integers(1, 50))
    @precondition(lambda self: self.buf is not None)
    def put(self, size: int, npoints: int) -> None:
        """What a put must do, from docs/buffer.md ("When the buffer is full", "Full with batches in
        flight"), not from the code."""
        assert self.buf is not None
        self.seq += 1
        payload = self.seq.to_bytes(4, "big") + b"x" * max(0, size - 4)
        need = sum(len(p) for _, p, _ in self.model) + len(payload) - _MAX_BYTES
        if need > 0:
            if len(payload) > _MAX_BYTES:
                # can never fit: dropped under every policy, block included
                self._refused(payload, npoints)
                return
            if self.policy == "block":
                with pytest.raises(BufferFullError):
                    self.buf.put(payload, npoints)
                return  # nothing stored, nothing dropped
            if self.policy == "drop_newest":
                self._refused(payload, npoints)
                return
            # drop_oldest: the candidates are the batches not in flight, oldest first
            inflight_ids = {i for tx in self.inflight for i in tx.ids}
            candidates = [row for row in self.model if row[0] not in inflight_ids]
            if sum(len(p) for _, p, _ in candidates) < need:
                # rule 2: deleting every candidate could not make room: no old batch is deleted,
                # only the new one is lost
                self._refused(payload, npoints)
                return
            # rule 1: the oldest candidates, just as many as needed, then the new batch is stored
            victims: set[int] = set()
            freed = 0
            for rid, p, n in candidates:
                if freed >= need:
                    break
                victims.add(rid)
                freed += len(p)
                self.counters["dropped_oldest_points"] += n
                self.counters["dropped_oldest_batches"] += 1
            self.model = [row for row in self.model if row[0] not in victims]
            self.rotten -= victims
        assert self.buf.put(payload, npoints) is True
        rid = self.buf._db.execute("SELECT MAX(id) FROM batches").fetchone()[0]
        self.model.append((rid, payload, npoints))
        self.counters["accepted_points"] += npoints

    @rule(size=st.integers(300, 400), npoints=st.integers(1, 50))
    @precondition(lambda self: self.buf is not None and self.inflight)
    def put_large_while_sending(self, size: int, npoints: int) -> None:
        """A large batch while some are in flight: where the full-with-in-flight rule is decided."""
        self.put(size, npoints)

    def _refused(self, payload: bytes, npoints: int) -> None:
        """The new batch is not stored (counted in dropped_newest_*); the buffered ones all stay."""
        assert self.buf is not None
        assert self.buf.put(payload, npoints) is False
        self.counters["dropped_newest_points"] += npoints
        self.counters["dropped_newest_batches"] += 1

    @rule(n=st.integers(1, 4))
    @precondition(lambda self: self.buf is not None)
    def begin(self, n: int) -> None:
        assert self.buf is not None
        tx = self.buf.begin(n)
        taken = {i for t in self.inflight for i in t.ids}
        while True:  # damaged rows among the candidates are quarantined, then the next ones are taken
            expected = [row for row in self.model if row[0] not in taken][:n]
            bad = {r[0] for r in expected if r[0] in self.rotten}
            if not bad:
                break
            self.counters["quarantined_points"] += sum(r[2] for r in expected if r[0] in bad)
            self.model = [row for row in self.model if row[0] not in bad]
            self.rotten -= bad
        # FIFO: the oldest batches not already in flight, in order, byte for byte
        assert list(tx.ids) == [r[0] for r in expected]
        assert list(tx.payloads) == [r[1] for r in expected]
        if tx.ids:
            self.inflight.append(tx)

    @rule(data=st.data())
    @precondition(lambda self: self.buf is not None and self.inflight)
    def end(self, data: st.DataObject) -> None:
        assert self.buf is not None
        tx = self.inflight.pop(0)
        outcomes = data.draw(st.lists(st.sampled_from(list(Outcome)), min_size=len(tx.ids), max_size=len(tx.ids)))
        self.buf.end(tx, outcomes)
        done = {i for i, o in zip(tx.ids, outcomes, strict=True) if o is Outcome.DELIVERED}
        self.counters["delivered_points"] += sum(n for i, _, n in self.model if i in done)
        self.model = [row for row in self.model if row[0] not in done]

    @rule(data=st.data())
    @precondition(lambda self: self.buf is not None and self.model)
    def rot(self, data: st.DataObject) -> None:
        """A stored payload changes on disk (bit rot): its checksum no longer matches."""
        assert self.buf is not None
        sound = [i for i, row in enumerate(self.model) if row[0] not in self.rotten]
        if not sound:
            return
        i = data.draw(st.sampled_from(sound))
        rid, payload, npoints = self.model[i]
        damaged = bytes([payload[0] ^ 0xFF]) + payload[1:]
        self.buf._db.execute("UPDATE batches SET payload = ? WHERE id = ?", (damaged, rid))
        self.model[i] = (rid, damaged, npoints)
        # a batch in flight was read before it rotted: it is caught if it comes back for a retry
        self.rotten.add(rid)

    @rule()
    @precondition(lambda self: self.buf is not None)
    def crash(self) -> None:
        """Abandon the connection mid-flight, as kill -9 would: nothing in flight was confirmed."""
        assert self.buf is not None
        self.buf._db.close()  # no end() for in-flight transactions, no cleanup
        self.buf = self._open()
        self.inflight.clear()

    @rule()
    @precondition(lambda self: self.buf is not None and not self.inflight)
    def reopen(self) -> None:
        assert self.buf is not None
        self.buf.close()
        self.buf = self._open()

    @invariant()
    def agrees_with_model(self) -> None:
        if self.buf is None:
            return
        got = self.buf.counters()
        for name, value in self.counters.items():
            assert got[name] == value, (name, got[name], value)
        assert self.buf.pending_batches == len(self.model)
        assert self.buf.pending_points == sum(n for _, _, n in self.model)
        rows = self.buf._db.execute("SELECT id, payload FROM batches ORDER BY id").fetchall()
        assert [(r[0], r[1]) for r in rows] == [(i, p) for i, p, _ in self.model]
        # the ledger balances: nothing accepted disappears uncounted
        assert got["accepted_points"] == (
            got["delivered_points"] + got["dropped_oldest_points"] + got["quarantined_points"]
            + self.buf.pending_points
        )

    def teardown(self) -> None:
        if self.buf is not None:
            self.buf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestBufferModel = BufferMachine.TestCase
TestBufferModel.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)


def test_full_with_batches_in_flight_loses_only_the_new_batch(tmp_path: Path) -> None:
    """The case the rule was written for: the oldest batch is in flight and what else could be
    deleted is too small for the new batch. Only the new batch is lost; the others stay."""
    buf = SqliteBuffer(tmp_path / "buf.db", max_bytes=_MAX_BYTES, when_full="drop_oldest", durability="interval")
    try:
        assert buf.put(b"a" * 200, 2) and buf.put(b"b" * 100, 1)
        tx = buf.begin(1)  # "a" in flight
        assert buf.put(b"c" * 350, 3) is False  # 300 bytes buffered + 350 > 400, only "b" (100) deletable
        c = buf.counters()
        assert (c["dropped_newest_batches"], c["dropped_oldest_batches"]) == (1, 0)
        assert [p for _, p in buf._db.execute("SELECT id, payload FROM batches ORDER BY id")] == [b"a" * 200,
                                                                                                     b"b" * 100]
        # and when deleting candidates does make room, just as many as needed go
        assert buf.put(b"d" * 150, 4) is True  # 300 + 150 > 400: "b" (100) is enough
        c = buf.counters()
        assert (c["dropped_oldest_batches"], c["dropped_oldest_points"]) == (1, 1)
        buf.end(tx, [Outcome.DELIVERED])
        assert buf.pending_batches == 1
    finally:
        buf.close()
