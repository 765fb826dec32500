"""Serve the 104 substation stub as a controlled station (outstation) on loopback, with fault modes.

Built on the driver's own pure codec (:mod:`drivers.iec104.codec`); the interop test runs the
driver against c104 (lib60870) instead, so the codec is not only checked against itself.

The station answers STARTDT, TESTFR, general interrogation (COT 20, plain types), counter
interrogation (COT 37) and clock synchronisation; each tick (every ``tick_s``, or
:meth:`Substation104.advance` when ``tick_s`` is 0) it sends the changed points spontaneously (COT 3,
time-tagged types).  It honours k (it stops sending once k I-frames are unacknowledged) and
acknowledges after w I-frames.

Fault modes, for bad-input tests: :meth:`silence` (keeps the socket open and stops answering
anything: the client's t1 / t3 must notice), :meth:`inject` (raw bytes: garbage, a truncated APDU,
an unknown type), :meth:`skip_sequence` (the next I-frame carries a wrong N(S)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Self

from drivers.iec104.codec import (
    SEQ_MOD,
    Asdu,
    AsduError,
    Cot,
    Cp56,
    Deframer,
    FrameError,
    IFrame,
    SFrame,
    TypeId,
    UFrame,
    UFunc,
    UnknownTypeError,
    decode_asdu,
    encode_asdu,
    encode_frame,
    max_objects,
)
from firmware_stubs.iec104_substation import CA, POINTS, Iec104Substation, StubPoint, timed_type

__all__ = ["STATIONS", "Substation104", "bench_station", "serve_station", "station_toml"]

log = logging.getLogger("edgegw.hil.iec104")


STATIONS = {"substation-104": "110/10 kV substation of a coal-chemical plant (IEC 60870-5-104, CA 1)"}


def station_toml(host: str, port: int) -> str:
    """The ``[[devices]]`` block for the simulated station (paste it into a gateway config)."""
    import tomli_w

    from firmware_stubs.iec104_substation import point_config

    return tomli_w.dumps({"devices": [{"type": "iec104", "name": "sim-substation-104", "host": host, "port": port,
                                       "common_address": CA, "points": point_config()}]})


async def serve_station(*, host: str, port: int, seed: int, tick_s: float,
                        ready: Callable[[Substation104], None]) -> None:
    """Serve the substation until cancelled; ``ready`` is called once it listens."""
    async with Substation104(host, port, seed=seed, tick_s=tick_s) as station:
        ready(station)
        await asyncio.Event().wait()


class _Conn:
    def __init__(self, writer: asyncio.StreamWriter, k: int, w: int) -> None:
        self.writer = writer
        self.k, self.w = k, w
        self.vs = self.vr = self.acked = 0
        self.started = False
        self.unacked_rx = 0
        self.queue: list[bytes] = []

    def send_i(self, asdu: bytes) -> None:
        self.queue.append(asdu)
        self.flush()

    def flush(self) -> None:
        while self.queue and self.started and (self.vs - self.acked) % SEQ_MOD < self.k:
            self.writer.write(encode_frame(IFrame(self.vs, self.vr, self.queue.pop(0))))
            self.vs = (self.vs + 1) % SEQ_MOD
            self.unacked_rx = 0


class Substation104:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, seed: int = 1, tick_s: float = 1.0,
                 ca: int = CA, k: int = 12, w: int = 8, stub: Iec104Substation | None = None) -> None:
        self.host, self.port, self.tick_s, self.ca, self.k, self.w = host, port, tick_s, ca, k, w
        # stepped by hand (tick_s 0): 10 ms of station time per tick, so a test stepping quickly never
        # stamps data in the future
        self.stub = stub or Iec104Substation(seed, t0_ns=time.time_ns() // 1_000_000 * 1_000_000,
                                             tick_ms=max(1, round(tick_s * 1000)) if tick_s else 10)
        self.conns: list[_Conn] = []
        self.silent = False
        self.counters: dict[str, int] = {"connections": 0, "interrogations": 0, "counter_interrogations": 0,
                                         "clock_syncs": 0, "testfr": 0, "spontaneous": 0}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._skip = False

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.tick_s > 0:
            self._ticker = asyncio.create_task(self._tick_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
        for c in self.conns:
            c.writer.transport.abort()  # the handlers see the end of the stream and return
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=2)
            for t in late:
                t.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    # ------------------------------------------------------------------ faults
    def silence(self) -> None:
        self.silent = True

    def revive(self) -> None:
        self.silent = False

    def inject(self, data: bytes) -> None:
        for c in self.conns:
            c.writer.write(data)

    def skip_sequence(self) -> None:
        """The next spontaneous I-frame jumps N(S) by one (a lost frame, as the client sees it)."""
        self._skip = True

    def drop_all(self) -> None:
        for c in self.conns:
            c.writer.close()

    # ------------------------------------------------------------------ data
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            await self.advance()

    async def advance(self, ticks: int = 1) -> None:
        for _ in range(ticks):
            changed = self.stub.advance()
            if changed and not self.silent:
                by_name = {p.name: p for p in POINTS}
                asdus = self._asdus([by_name[n] for n in changed], Cot.SPONTANEOUS, timed=True)
                for c in self.conns:
                    if self._skip:
                        self._skip = False
                        c.vs = (c.vs + 1) % SEQ_MOD
                        c.acked = (c.acked + 1) % SEQ_MOD
                    for a in asdus:
                        c.send_i(a)
                    self.counters["spontaneous"] += len(asdus)
        for c in self.conns:
            with contextlib.suppress(ConnectionError):
                await c.writer.drain()

    def _asdus(self, points: list[StubPoint], cause: Cot, timed: bool) -> list[bytes]:
        values = self.stub.values()
        tag = Cp56.from_ns(self.stub.time_ns()) if timed else None
        by_type: dict[str, list[StubPoint]] = {}
        for p in points:
            by_type.setdefault(timed_type(p.type_id) if timed else p.type_id, []).append(p)
        out = []
        for type_name, pts in by_type.items():
            tid = TypeId[type_name]
            per = max_objects(tid)
            for i in range(0, len(pts), per):
                objs = tuple((p.ioa, values[p.name], self.stub.faults.get(p.name, 0), tag) for p in pts[i:i + per])
                out.append(encode_asdu(Asdu(tid, cause, self.ca, objs)))
        return out

    # ------------------------------------------------------------------ link
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Conn(writer, self.k, self.w)
        self.conns.append(conn)
        self.counters["connections"] += 1
        deframer = Deframer()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.silent:
                    continue
                for frame in deframer.feed(data):
                    self._frame(conn, frame)
                await writer.drain()
        except (FrameError, ConnectionError, OSError) as err:
            log.info("104 station: connection ends: %s", err)
        finally:
            self.conns.remove(conn)
            writer.close()
            self._tasks.discard(task)

    def _frame(self, c: _Conn, frame: IFrame | SFrame | UFrame) -> None:
        w = c.writer
        if isinstance(frame, UFrame):
            if frame.func is UFunc.STARTDT_ACT:
                c.started = True
                w.write(encode_frame(UFrame(UFunc.STARTDT_CON)))
                c.flush()
            elif frame.func is UFunc.STOPDT_ACT:
                c.started = False
                w.write(encode_frame(UFrame(UFunc.STOPDT_CON)))
            elif frame.func is UFunc.TESTFR_ACT:
                self.counters["testfr"] += 1
                w.write(encode_frame(UFrame(UFunc.TESTFR_CON)))
            return
        c.acked = frame.nr
        if isinstance(frame, SFrame):
            c.flush()
            return
        c.vr = (c.vr + 1) % SEQ_MOD
        c.unacked_rx += 1
        try:
            asdu = decode_asdu(frame.asdu)
        except (UnknownTypeError, AsduError):
            return
        self._command(c, asdu)
        if c.unacked_rx >= c.w:
            w.write(encode_frame(SFrame(c.vr)))
            c.unacked_rx = 0
        c.flush()

    def _command(self, c: _Conn, a: Asdu) -> None:
        def reply(cause: Cot, negative: bool = False) -> None:
            c.send_i(encode_asdu(Asdu(a.type_id, cause, a.ca, a.objects, negative=negative)))

        known = a.ca in (self.ca, 0xFFFF)
        if a.type_id == TypeId.C_IC_NA_1:
            reply(Cot.ACTIVATION_CON if known else Cot.UNKNOWN_CA, negative=not known)
            if known:
                self.counters["interrogations"] += 1
                plain = [p for p in POINTS if p.type_id != "M_IT_NA_1"]
                for asdu in self._asdus(plain, Cot.INTERROGATED_BY_STATION, timed=False):
                    c.send_i(asdu)
                reply(Cot.ACTIVATION_TERMINATION)
        elif a.type_id == TypeId.C_CI_NA_1:
            reply(Cot.ACTIVATION_CON if known else Cot.UNKNOWN_CA, negative=not known)
            if known:
                self.counters["counter_interrogations"] += 1
                totals = [p for p in POINTS if p.type_id == "M_IT_NA_1"]
                for asdu in self._asdus(totals, Cot.REQUESTED_BY_GENERAL_COUNTER, timed=False):
                    c.send_i(asdu)
                reply(Cot.ACTIVATION_TERMINATION)
        elif a.type_id == TypeId.C_CS_NA_1:
            self.counters["clock_syncs"] += 1
            reply(Cot.ACTIVATION_CON if known else Cot.UNKNOWN_CA, negative=not known)


async def bench_station(port: int, points: int, rate: float, ready: asyncio.Event | None = None) -> None:
    """A station for `edgegw bench iec104`: ``points`` short floats (CA 1, IOA 1..points) sent spontaneously
    with time tags at ``rate`` points/s (0: as fast as the k window allows), to one client at a time."""
    per = max_objects(TypeId.M_ME_TF_1)

    def asdus(tick: int) -> list[bytes]:
        tag = Cp56.from_ns(time.time_ns() // 1_000_000 * 1_000_000)
        out = []
        for first in range(1, points + 1, per):
            last = min(points, first + per - 1)
            objs = tuple((ioa, float(ioa % 1000) + tick % 7, 0, tag) for ioa in range(first, last + 1))
            out.append(encode_asdu(Asdu(TypeId.M_ME_TF_1, Cot.SPONTANEOUS, CA, objs)))
        return out

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer, 12, 8)
        deframer = Deframer()
        room = asyncio.Event()

        async def read() -> None:
            while data := await reader.read(65536):
                for frame in deframer.feed(data):
                    if isinstance(frame, UFrame):
                        if frame.func is UFunc.STARTDT_ACT:
                            conn.started = True
                            writer.write(encode_frame(UFrame(UFunc.STARTDT_CON)))
                        elif frame.func is UFunc.TESTFR_ACT:
                            writer.write(encode_frame(UFrame(UFunc.TESTFR_CON)))
                    else:
                        conn.acked = frame.nr
                        if isinstance(frame, IFrame):
                            conn.vr = (conn.vr + 1) % SEQ_MOD
                    room.set()
            room.set()

        reading = asyncio.create_task(read())
        try:
            tick = 0
            sent = 0
            begun = time.monotonic()
            while not reading.done():
                for asdu in asdus(tick):
                    while conn.started is False or (conn.vs - conn.acked) % SEQ_MOD >= conn.k:
                        room.clear()
                        await room.wait()
                        if reading.done():
                            return
                    conn.send_i(asdu)
                    sent += 1
                    if rate > 0:
                        ahead = sent * per / rate - (time.monotonic() - begun)
                        if ahead > 0.005:
                            await writer.drain()
                            await asyncio.sleep(ahead)
                await writer.drain()
                tick += 1
        except (ConnectionError, FrameError):
            pass
        except asyncio.CancelledError:
            return  # the bench ends: a handler that raises this makes asyncio log a traceback (3.11)
        finally:
            reading.cancel()
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()


def _main() -> None:
    """``python -m hil.iec104_server PORT POINTS RATE``: the bench station; prints "ready", stops on stdin EOF."""
    import sys

    port, points, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

    async def run() -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(bench_station(port, points, rate, ready))
        await ready.wait()
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        task.cancel()

    asyncio.run(run())


if __name__ == "__main__":
    _main()
