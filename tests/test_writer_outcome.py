"""The event loop awaits the buffer's threads through :func:`gateway.buffer.writer.outcome_on_loop`: a
result or an error arrives as the thread set it, and a cancelled await withdraws nothing (the request
still runs, in order, and its result stays on the request's own future)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path

import pytest

from gateway.buffer import SqliteBuffer
from gateway.buffer.writer import BufferWriter, outcome_on_loop

__all__: list[str] = []


def _fail() -> None:
    raise ValueError("refused by the test")


async def test_results_and_errors_arrive_as_set(tmp_path: Path) -> None:
    buf = SqliteBuffer(tmp_path / "b.db")
    writer = BufferWriter.of(buf)
    try:
        assert await writer.put(b"one", 3) is True
        assert await writer.call(lambda: buf.pending_points) == 3
        tx = await writer.begin(5)
        assert tx.payloads == (b"one",)
        with pytest.raises(ValueError, match="refused by the test"):
            await writer.call(_fail)
        with pytest.raises(ValueError, match="refused by the test"):
            await writer.read(_fail)
    finally:
        buf.close()


async def test_a_cancelled_await_leaves_the_request_to_run(tmp_path: Path) -> None:
    buf = SqliteBuffer(tmp_path / "b.db")
    writer = BufferWriter.of(buf)
    gate = threading.Event()
    try:
        blocker = writer.submit(gate.wait, 10)  # holds the writer thread: the put below queues behind it
        job = writer.submit_put_many([(b"queued", 7)])
        waiting = asyncio.ensure_future(outcome_on_loop(job))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not job.cancelled()
        gate.set()
        assert await asyncio.wrap_future(blocker) is True
        assert await asyncio.wrap_future(job) == [True]  # committed all the same, result kept
        assert buf.pending_points == 7
    finally:
        gate.set()
        buf.close()


async def test_a_job_already_done_and_a_cancelled_job() -> None:
    done: concurrent.futures.Future[int] = concurrent.futures.Future()
    done.set_result(5)
    assert await outcome_on_loop(done) == 5
    dropped: concurrent.futures.Future[int] = concurrent.futures.Future()
    fut = outcome_on_loop(dropped)
    dropped.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fut
