"""The buffer's work on threads of its own, so that no commit or sync ever holds the event loop.

Every SQLite commit of the buffer may wait for the storage: in ``fsync`` durability each commit
syncs the write-ahead log, and cheap eMMC or SD cards take 5-30 ms per sync.  Done on the event
loop, that wait stalled polling, publishing and PUBACK handling alike.  :class:`BufferWriter` owns
one writer thread per buffer that runs every commit in the order submitted (a FIFO: one producer's
batches are committed in the order it offered them); the event loop awaits the result.  Reads (the
forwarder's ``begin``, releasing batches for a retry) run on a second thread: the buffer holds its
connection only for SQL, never during a sync, so a read does not wait for the storage (only for
the SQL of a commit under way).  The durability contract is the buffer's own, unchanged: an awaited
``put_many`` returns only once its batches are committed, and in ``fsync`` durability synced; the
forwarder is handed a batch only once it is synced.

Group commit: ``put_many`` requests that queue up while a commit (and its sync) is in flight are
committed together in one transaction with one sync, each request getting its own results.

Checkpoints (folding the write-ahead log into the database file: two syncs) run on a third thread
with a connection of its own, instead of inside a commit (SQLite's automatic checkpoint), so that
neither commits nor reads wait for them.  They are started after about as many pages as SQLite's
automatic checkpoint would wait for (``checkpoint_pages``, kept within the disk reserve).

The synchronous API of :class:`~gateway.buffer.sqlite.SqliteBuffer` stays for the CLI, the tests
and anything outside an event loop; it is thread-safe (one lock), so both may be mixed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.buffer.sqlite import Outcome, SqliteBuffer, Transaction
from gateway.core.errors import BufferFullError

__all__ = ["GROUP_MAX_BATCHES", "GROUP_MAX_BYTES", "BufferWriter"]

_T = TypeVar("_T")

# at most this many batches (and about this many payload bytes) in one commit of gathered requests
GROUP_MAX_BATCHES = 256
GROUP_MAX_BYTES = 64 << 20
_CREATING = threading.Lock()
_PAGE = 4096  # what a commit or a delete adds to the log besides the payloads, about


@dataclass(slots=True)
class _Put:
    batches: Sequence[tuple[bytes, int]]
    future: concurrent.futures.Future[list[bool]]


@dataclass(slots=True)
class _Call:
    fn: Callable[[], Any]
    future: concurrent.futures.Future[Any]


class BufferWriter:
    """A buffer's threads: the writer (commits and their syncs, FIFO), the reader (``begin``, releases)
    and the checkpointer; get it with :meth:`of`, stopped by ``buffer.close()``."""

    def __init__(self, buffer: SqliteBuffer) -> None:
        self.buffer = buffer
        self._jobs: collections.deque[_Put | _Call] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.commits = 0  # commits of gathered put requests
        self.grouped_requests = 0  # requests that rode on another request's commit
        self._thread = threading.Thread(target=self._run, name=f"edgegw-buffer:{buffer.path.name}", daemon=True)
        self._thread.start()
        self._reader = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"edgegw-buffer-read:{buffer.path.name}"
        )
        self._checkpointer = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"edgegw-buffer-checkpoint:{buffer.path.name}"
        )
        self._ckpt_db: sqlite3.Connection | None = None
        self._ckpt_running = threading.Event()
        self._ckpt_error: BaseException | None = None  # a failed checkpoint: every later request fails with it
        self._written = 0  # about how many bytes went into the log since the last checkpoint started
        self.checkpoints = 0
        self._ckpt_bytes = 0
        if not buffer.readonly:
            buffer.checkpoint_elsewhere()
            self._ckpt_bytes = buffer.checkpoint_pages * buffer._page_size
        buffer.on_close.append(self.stop)

    @classmethod
    def of(cls, buffer: SqliteBuffer) -> BufferWriter:
        """The buffer's writer, started on first use and stopped by ``buffer.close()``."""
        writer = buffer.writer
        if isinstance(writer, BufferWriter) and not writer._stopping:
            return writer  # never the buffer's lock here: a commit may hold it through a WAL-header sync
        with _CREATING:
            writer = buffer.writer
            if not isinstance(writer, BufferWriter) or writer._stopping:
                writer = cls(buffer)
                buffer.writer = writer
            return writer

    # -- submitting (any thread) -------------------------------------------------------------------
    def submit_put_many(self, batches: Sequence[tuple[bytes, int]]) -> concurrent.futures.Future[list[bool]]:
        fut: concurrent.futures.Future[list[bool]] = concurrent.futures.Future()
        self._enqueue(_Put(batches, fut))
        return fut

    def submit(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[_T]:
        fut: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._enqueue(_Call(lambda: fn(*args, **kwargs), fut))
        return fut

    def _enqueue(self, job: _Put | _Call) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError(f"buffer {self.buffer.path} is closed")
            self._jobs.append(job)
            self._cond.notify()

    # -- awaiting (the event loop) -----------------------------------------------------------------
    # A cancelled await does not withdraw the request: it still runs, in order (a batch handed over
    # is committed; a delete of delivered batches is done).
    async def put_many(self, batches: Sequence[tuple[bytes, int]]) -> list[bool]:
        """:meth:`SqliteBuffer.put_many`, off the loop: returns once committed (and synced in fsync
        durability); under ``block`` the list may be shorter, or :class:`BufferFullError` is raised."""
        return await asyncio.shield(asyncio.wrap_future(self.submit_put_many(batches)))

    async def put(self, payload: bytes, npoints: int) -> bool:
        return (await self.put_many([(payload, npoints)]))[0]

    async def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        # shielded: the request's future keeps its result for whoever looks after a cancellation
        return await asyncio.shield(asyncio.wrap_future(self.submit(fn, *args, **kwargs)))

    def submit_read(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[_T]:
        """On the reader thread (no commit: begin, release for a retry); not run if cancelled first."""
        return self._reader.submit(fn, *args, **kwargs)

    async def read(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await asyncio.shield(asyncio.wrap_future(self.submit_read(fn, *args, **kwargs)))

    async def begin(self, max_batches: int, *, after_id: int = 0, up_to_id: int | None = None) -> Transaction:
        return await self.read(self.buffer.begin, max_batches, after_id=after_id, up_to_id=up_to_id)

    async def end(self, tx: Transaction, outcomes: list[Outcome]) -> None:
        """Deletes (delivered) are commits, on the writer thread; releases alone, on the reader thread."""
        if any(o is Outcome.DELIVERED for o in outcomes):
            await self.call(self.buffer.end, tx, outcomes)
        else:
            await self.read(self.buffer.end, tx, outcomes)

    async def maintain(self) -> None:
        await self.call(self.buffer.maintain)

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs:
                    return  # stopping, and everything submitted is done
                job = self._jobs.popleft()
                group: list[_Put] = []
                if isinstance(job, _Put):
                    group.append(job)
                    n = len(job.batches)
                    size = sum(len(p) for p, _ in job.batches)
                    while self._jobs and isinstance(self._jobs[0], _Put):
                        more = self._jobs[0]
                        assert isinstance(more, _Put)
                        extra = sum(len(p) for p, _ in more.batches)
                        if n + len(more.batches) > GROUP_MAX_BATCHES or size + extra > GROUP_MAX_BYTES:
                            break
                        group.append(more)
                        self._jobs.popleft()
                        n += len(more.batches)
                        size += extra
            if self._ckpt_error is not None:  # the storage failed: nothing more is accepted
                for j in [*group] if group else [job]:
                    _fail(j.future, self._ckpt_error)
                continue
            if isinstance(job, _Call):
                _settle(job.future, job.fn)
                self._written += 2 * _PAGE
            else:
                self._commit(group)
                self._written += sum(len(p) + 2 * _PAGE for put in group for p, _ in put.batches)
            if self._ckpt_bytes and self._written >= self._ckpt_bytes and not self._ckpt_running.is_set():
                self._written = 0
                self._ckpt_running.set()
                self._checkpointer.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        """PASSIVE: copies what no reader still needs and never blocks the writer or the readers."""
        try:
            if self._ckpt_db is None:
                self._ckpt_db = sqlite3.connect(self.buffer.path, isolation_level=None, check_same_thread=False)
                self._ckpt_db.execute("PRAGMA synchronous=NORMAL")  # syncs the log, then the file
            self._ckpt_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as err:
            self._ckpt_error = self.buffer.checkpoint_failed(err)
        finally:
            self._ckpt_running.clear()

    def _commit(self, group: list[_Put]) -> None:
        """One transaction (one sync) for every request gathered; each gets its own results.  Under
        ``block`` the batches before the first that does not fit are committed; every later request
        of the group is refused too (order is kept: none of its batches overtakes a refused one)."""
        self.commits += 1
        self.grouped_requests += len(group) - 1
        batches = [b for put in group for b in put.batches]
        try:
            results = self.buffer.put_many(batches)
        except BufferFullError as err:
            for put in group:
                _fail(put.future, err)
            return
        except BaseException as err:  # a disk error: every request of the group sees it (it is fatal)
            for put in group:
                _fail(put.future, err)
            if not isinstance(err, Exception):
                raise
            return
        start = 0
        for put in group:
            mine = results[start:start + len(put.batches)]
            start += len(put.batches)
            if mine or not put.batches:
                _done(put.future, mine)
            else:
                _fail(put.future, BufferFullError(f"buffer {self.buffer.path} is full"))

    def stop(self) -> None:
        """Finish every request submitted, then end the thread (called by ``buffer.close()``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        self._reader.shutdown(wait=True)
        self._checkpointer.shutdown(wait=True)
        if self._ckpt_db is not None:  # before the buffer's own close: the last connection folds the log in
            with contextlib.suppress(sqlite3.Error):
                self._ckpt_db.close()
            self._ckpt_db = None

    @property
    def queued(self) -> int:
        return len(self._jobs)


def _settle(fut: concurrent.futures.Future[Any], fn: Callable[[], Any]) -> None:
    try:
        result = fn()
    except BaseException as err:
        _fail(fut, err)
        if not isinstance(err, Exception):
            raise
        return
    _done(fut, result)


def _done(fut: concurrent.futures.Future[Any], result: Any) -> None:
    # cancelled: the awaiting side gave up waiting (a task cancelled); the work itself is done
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        fut.set_result(result)


def _fail(fut: concurrent.futures.Future[Any], err: BaseException) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        fut.set_exception(err)
