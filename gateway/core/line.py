"""A shared field-bus line: devices on one RS-485 port, or behind one serial device server, share it.

Modbus RTU (and RTU over TCP) and DL/T 645 meet the same physics: one connection, one request at a
time, a silent gap before each request, and an answer that belongs to the one outstanding request
or to nobody.  This module is the part both drivers had written alike (and any further serial-line
protocol uses): the transport and its single outstanding request (:class:`LineConnection`, which a
driver subclasses with its own framing), the line its devices share (:class:`Line`: opened by the
first user, closed by the last; :meth:`Line.wait_quiet` finds a moment when a suspended device's
attempt delays no live poll), the pool of lines of one gateway (:class:`LinePool`), how a line is
opened (:func:`tcp_opener`, :func:`serial_opener`), and the config check that devices sharing a line
agree on its settings (:func:`line_issues`).

Each request has its own timeout, counted from when the line is ours, so a dead device delays the
others by at most its own timeout per attempt and never closes the connection they use.

A serial port is opened with an asyncio serial transport the driver hands in (pymodbus's, on
pyserial): no protocol library is imported here.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

from gateway.core.errors import ConfigIssue, ConnectError

if TYPE_CHECKING:
    from gateway.core.schema import DeviceBase

# ``create_serial_connection(loop, protocol_factory, port, **settings)`` of an asyncio serial transport
SerialConnect = Callable[..., Awaitable[Any]]

__all__ = [
    "Line",
    "LineConnection",
    "LineKey",
    "LineMember",
    "LinePool",
    "Opener",
    "SerialConnect",
    "line_issues",
    "serial_opener",
    "tcp_opener",
]

T = TypeVar("T")
LineKey = tuple[str, ...]  # ("serial", port) or (kind, host, port): the line a device sits on


class LineConnection(asyncio.Protocol, Generic[T]):
    """One transport (serial port or TCP socket) with at most one outstanding request, answered by a T.

    A subclass feeds :meth:`data_received` to its framing and resolves the future :meth:`_waiting`
    returns with the answer (or an exception) when a frame answers the outstanding request; it sends
    requests through :meth:`_transact`.  Callers serialise requests with :attr:`lock`.
    """

    def __init__(self, frame_gap_s: float) -> None:
        self.frame_gap = frame_gap_s
        self.lock = asyncio.Lock()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self._waiter: asyncio.Future[T] | None = None
        self._idle_since = 0.0
        self.dropped_frames = 0  # late or foreign answers discarded

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closed.set()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection lost: {exc or 'closed by peer'}"))

    # -- requests ------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def _transact(self, request: Callable[[], bytes], timeout: float) -> T:
        """Wait out the frame gap, then send ``request()`` and return its answer.

        ``request`` runs once the gap is over: it resets the framing and records what answer is
        expected, and returns the bytes to send.  Raises TimeoutError (no answer within ``timeout``)
        and ConnectionError, and whatever the subclass sets on the future."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionError("not connected")
        if self.frame_gap:
            wait = self._idle_since + self.frame_gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        frame = request()
        self._waiter = waiter
        transport.write(frame)
        handle = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            handle.cancel()
            self._waiter = None
            self._idle_since = time.monotonic()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer"))


class LineMember(Protocol):
    """A device polled over a line, as :meth:`Line.wait_quiet` sees it."""

    @property
    def next_due(self) -> float:
        """When its next poll falls due (event-loop time; inf before its first poll)."""
        ...

    @property
    def answering(self) -> bool:
        """Its last request was answered: a live device, whose polls others must not delay."""
        ...


C = TypeVar("C", bound=LineConnection[Any])
M = TypeVar("M", bound=LineMember)
Opener = Callable[[C], Awaitable[None]]


class Line(Generic[C, M]):
    """One connection (TCP socket or serial port) and the devices polled over it."""

    def __init__(self, description: str, frame_gap_s: float, connection: Callable[[], C], opener: Opener[C]) -> None:
        self.description = description
        self.frame_gap = frame_gap_s
        self._connection = connection
        self._opener = opener
        self._open_lock = asyncio.Lock()
        self.conn: C | None = None
        self.users = 0
        self.opens = 0
        self.members: set[M] = set()  # the entered drivers of the devices on this line

    async def acquire(self) -> None:
        """Register a user; (re)open the connection if it is not open."""
        async with self._open_lock:
            if self.conn is None or not self.conn.is_open:
                conn = self._connection()
                await self._opener(conn)
                self.conn = conn
                self.opens += 1
            self.users += 1

    async def enter(self, member: M, device: str) -> None:
        """``member`` (the driver of device ``device``) starts polling over this line; an error opening
        it is the device's ConnectError."""
        try:
            await self.acquire()
        except OSError as err:
            raise ConnectError(device, f"cannot open {self.description}: {err}") from err
        self.members.add(member)

    def leave(self, member: M) -> None:
        """``member`` stops polling over this line (the last one closes the connection)."""
        self.members.discard(member)
        self.release()

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self.conn is not None:
            self.users = 0
            self.conn.close()
            self.conn = None

    def drop(self) -> None:
        """Close the connection (stream out of step); the next acquire reopens it."""
        if self.conn is not None:
            self.conn.close()

    async def wait_quiet(self, me: M, timeout_s: float, limit_s: float) -> bool:
        """For a suspended device ``me`` whose requests time out after ``timeout_s``: wait until the
        line is free and no answering device's poll falls due within one attempt of ``me`` (its
        timeout, plus the frame gap before and after it).

        So the attempt delays no live poll.  Where the line is never quiet that long (poll intervals
        shorter than the timeout), it gives up after ``limit_s`` and returns False: the attempt then
        costs the others at most one timeout.
        """
        need_s = timeout_s + 2 * self.frame_gap + 0.01
        loop = asyncio.get_running_loop()
        end = loop.time() + limit_s
        while (now := loop.time()) < end:
            conn = self.conn
            if conn is not None and conn.lock.locked():
                async with conn.lock:  # the request in progress (and those queued) first
                    pass
                continue
            due = [d.next_due for d in self.members if d is not me and d.answering and d.next_due > now - need_s]
            soonest = min(due, default=math.inf)
            if soonest - now >= need_s:
                return True
            # wait until that poll has started (it takes the lock), then look again
            await asyncio.sleep(min(max(soonest - now, 0.0) + 0.002, end - now))
        return False


D = TypeVar("D")
L = TypeVar("L")


class LinePool(Generic[D, L]):
    """The lines of one gateway for one driver: devices with the same line key share one line.

    ``key(device)`` names the line (None: the device has a connection of its own, never shared);
    ``make(device)`` makes a new line for it."""

    def __init__(self, key: Callable[[D], LineKey | None], make: Callable[[D], L]) -> None:
        self._key = key
        self._make = make
        self.lines: dict[LineKey, L] = {}

    def line_for(self, config: D) -> L:
        key = self._key(config)
        if key is None:
            return self._make(config)
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = self._make(config)
        return line

    def keeping(self, kept: Iterable[D]) -> Self:
        """After a reload: a pool holding the open lines of the devices that keep running (their
        settings were checked to agree); every other line is made afresh, its settings may have
        changed with all its devices."""
        in_use = {self._key(d) for d in kept}
        pool = copy.copy(self)
        pool.lines = {k: v for k, v in self.lines.items() if k in in_use}
        return pool


def tcp_opener(host: str, port: int) -> Opener[LineConnection[Any]]:
    """Opens a line to a TCP endpoint (a serial device server in transparent mode, or a device)."""

    async def open_tcp(conn: LineConnection[Any]) -> None:
        await asyncio.get_running_loop().create_connection(lambda: conn, host, port)

    return open_tcp


def serial_opener(
    port: str, connect: SerialConnect, *, baudrate: int, parity: str, stopbits: int, bytesize: int = 8
) -> Opener[LineConnection[Any]]:
    """Opens a serial port (RS-485 adapter) with the given character format.  ``connect`` is the
    asyncio serial transport's ``create_serial_connection`` (pymodbus's, on pyserial), handed in by
    the driver: the one place that imports the protocol library."""

    async def open_serial(conn: LineConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        await connect(loop, lambda: conn, port, baudrate=baudrate, bytesize=bytesize, parity=parity,
                      stopbits=stopbits)
        for _ in range(100):  # the transport announces itself on a later loop iteration
            if conn.transport is not None:
                return
            await asyncio.sleep(0)
        raise OSError(f"serial port {port} did not open")

    return open_serial


def line_issues(
    devices: Sequence[DeviceBase],
    key: Callable[[Any], LineKey | None],
    must_agree: Mapping[str, Collection[str]],
    ident: str,
    ident_words: str,
) -> list[ConfigIssue]:
    """Devices on one line agree on its settings and have distinct ids on it (located errors).

    Only devices whose ``type`` is in ``must_agree`` (type -> the settings that must agree) and that
    are enabled are looked at; ``key`` names a device's line (None: not on a shared line); ``ident`` is
    the attribute that must be distinct on a line (``unit_id``, ``address``), ``ident_words`` how an
    error names it ("unit id", "meter address")."""
    issues: list[ConfigIssue] = []
    first: dict[LineKey, tuple[int, Any]] = {}
    seen: dict[tuple[LineKey, object], int] = {}
    for d, dev in enumerate(devices):
        kind = getattr(dev, "type", None)
        if kind not in must_agree or not dev.enabled:
            continue
        line = key(dev)
        if line is None:
            continue
        where = " ".join(line[1:])
        if line in first:
            f, other = first[line]
            for attr in must_agree[kind] if kind == other.type else ():
                mine, theirs = getattr(dev, attr), getattr(other, attr)
                if mine != theirs:
                    issues.append(ConfigIssue(
                        f"devices[{d}].{attr}",
                        f"{mine!r} differs from {theirs!r} of devices[{f}] ({other.name!r}) on the same line {where}",
                    ))
        else:
            first[line] = (d, dev)
        value = getattr(dev, ident)
        if (line, value) in seen:
            issues.append(ConfigIssue(
                f"devices[{d}].{ident}",
                f"{ident_words} {value} is already used on line {where} by devices[{seen[line, value]}]",
            ))
        else:
            seen[line, value] = d
    return issues
