"""IEC 60870-5-104 client driver: the only module of the driver that does I/O (asyncio streams).

A push driver (``streaming``): after STARTDT it sends a general interrogation (and a counter
interrogation when integrated totals are configured), then yields one batch per burst of received
I-frames, whatever their cause (interrogation, spontaneous, periodic).  The interrogations repeat
every ``interrogation_period_s`` / ``counter_interrogation_period_s``; an end of initialisation
(M_EI_NA_1: the station restarted) triggers a new general interrogation at once.

The framing (:mod:`drivers.iec104.codec`), the link rules (:mod:`drivers.iec104.session`: sequence
numbers, k / w, t1 / t2 / t3) and the mapping to samples (:mod:`drivers.iec104.decode`) are pure; this
module only moves bytes and keeps the interrogation schedule.  Reconnecting is not done here: any link
error (t1 timeout, wrong sequence number, garbage, connection closed) makes :meth:`stream` raise a
:class:`ReadError` with the reason, and the runner re-enters the driver with capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Self

from drivers.iec104.codec import (
    Asdu,
    AsduError,
    Cot,
    Cp56,
    Deframer,
    FrameError,
    TypeId,
    UnknownTypeError,
    decode_asdu,
    encode_asdu,
)
from drivers.iec104.config import ClockSync, Iec104Device, PointType
from drivers.iec104.decode import MONITOR_TYPES, Iec104Points, Router, points_form
from drivers.iec104.session import LinkError, LinkParams, Session
from gateway.core.errors import ConnectError, ReadError
from gateway.core.point import Quality, SampleBatch, now_ns

__all__ = ["Iec104Driver", "lean_device"]


def lean_device(config: Iec104Device) -> tuple[Iec104Device, Iec104Points]:
    """The station without its points, and the compact form the driver is made from (``DriverSpec.lean``)."""
    return config.model_copy(update={"points": []}), points_form(config)

log = logging.getLogger("edgegw.iec104")

QOI_STATION = 20  # general interrogation
QCC_GENERAL = 5  # counter interrogation, general request counter, no freeze
_READ_SIZE = 65536


class Iec104Driver:
    """One TCP connection to one controlled station (RTU, substation gateway)."""

    streaming = True

    def __init__(self, config: Iec104Device, first_index: int, *, clock: Callable[[], float] = time.monotonic,
                 form: Iec104Points | None = None) -> None:
        """``form``: :func:`lean_device`'s compact form of the points when ``config`` is the station
        without them (``edgegw run`` reads its config in a child process and hands over only that);
        otherwise made here from ``config.points``, which are then let go: the routes are what the
        points need, the parsed point models (~1.2 KB a point) go (#17)."""
        if form is None:
            config, form = lean_device(config)
        self.config = config
        self.router = Router(config, first_index, form)
        self.params = LinkParams(config.k, config.w, config.t0_s, config.t1_s, config.t2_s, config.t3_s)
        self.common_addresses = sorted({ca for ca, _ in form.addresses})
        totals = (PointType.M_IT_NA_1, PointType.M_IT_TB_1)
        self.has_totals = any(t in totals for t in form.types)
        self.counters: Counter[str] = Counter()
        # per CA, the points an interrogation must answer: general (all but totals), counter (totals)
        self._expected: dict[tuple[int, int], list[int]] = {}
        for i, ((ca, _), t) in enumerate(zip(form.addresses, form.types, strict=True)):
            kind = TypeId.C_CI_NA_1 if t in totals else TypeId.C_IC_NA_1
            self._expected.setdefault((ca, kind), []).append(first_index + i)
        self._seen: set[int] = set()
        self._checked: set[tuple[int, int]] = set()
        self._clock = clock
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._session: Session | None = None
        self._deframer = Deframer()
        self._next_gi = math.inf
        self._next_ci = math.inf
        self._said: set[str] = set()  # anomalies logged once per connection
        self._broken: ReadError | None = None  # the stream failed after the frames of its last read

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def connect_timeout_s(self) -> float:
        """TCP connect (t0) plus STARTDT confirmation (t1), for the runner's bound on __aenter__."""
        return self.config.t0_s + self.config.t1_s + 1.0

    # ------------------------------------------------------------------ connect
    async def __aenter__(self) -> Self:
        cfg = self.config
        self._said.clear()
        self._seen.clear()
        self._checked.clear()
        self._deframer = Deframer()
        self._next_gi = self._next_ci = math.inf  # no interrogation is due before STARTDT is confirmed
        self._broken = None
        try:
            async with asyncio.timeout(cfg.t0_s):
                self._reader, self._writer = await asyncio.open_connection(cfg.host, cfg.port)
        except TimeoutError as err:
            raise ConnectError(cfg.name, f"no connection to {cfg.host}:{cfg.port} within t0 = {cfg.t0_s:g} s") from err
        except OSError as err:
            raise ConnectError(cfg.name, f"cannot connect to {cfg.host}:{cfg.port}: {err.strerror or err}") from err
        self.counters["connects"] += 1
        now = self._clock()
        session = self._session = Session(self.params, now)
        session.start(now)
        try:
            await self._flush()
            while not session.started:
                await self._receive_once()
        except ReadError as err:
            await self.__aexit__(None, None, None)
            raise ConnectError(cfg.name, f"STARTDT failed: {err}") from err
        except BaseException:  # cancelled (the runner's bound on connecting): no socket left behind
            self._drop()
            raise
        if cfg.clock_sync is ClockSync.ON_CONNECT:
            for ca in self.common_addresses:
                self._command(TypeId.C_CS_NA_1, ca, Cp56.from_ns(now_ns(), self.router.tz))
        now = self._clock()
        self._next_gi = now
        self._next_ci = now if self.has_totals and cfg.counter_interrogation_period_s > 0 else math.inf
        return self

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        if self._session is not None:
            self.counters.update(self._session.counters)
        self._writer = self._reader = self._session = None

    async def __aexit__(self, *exc: object) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if self._session is not None:  # the link counters outlive the connection
            self.counters.update(self._session.counters)
        self._session = None
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(2):
                    await writer.wait_closed()
            except (OSError, TimeoutError):
                pass

    # ------------------------------------------------------------------ commands
    def _command(self, type_id: TypeId, ca: int, value: int | Cp56) -> None:
        assert self._session is not None
        asdu = encode_asdu(Asdu(type_id, Cot.ACTIVATION, ca, ((0, value, 0, None),),
                                originator=self.config.originator_address))
        self._session.send_asdu(asdu, self._clock())
        self.counters[type_id.name] += 1

    def _schedule(self, now: float) -> None:
        cfg = self.config
        if now >= self._next_gi:
            for ca in self.common_addresses:
                self._command(TypeId.C_IC_NA_1, ca, QOI_STATION)
            self._next_gi = now + cfg.interrogation_period_s if cfg.interrogation_period_s > 0 else math.inf
        if now >= self._next_ci:
            for ca in self.common_addresses:
                self._command(TypeId.C_CI_NA_1, ca, QCC_GENERAL)
            self._next_ci = now + cfg.counter_interrogation_period_s

    # ------------------------------------------------------------------ I/O
    async def _flush(self) -> None:
        assert self._session is not None and self._writer is not None
        data = self._session.take()
        if not data:
            return
        try:
            self._writer.write(data)
            async with asyncio.timeout(self.config.t1_s):
                await self._writer.drain()
        except TimeoutError as err:  # the station reads nothing: its receive window is full
            raise ReadError(self.name, f"cannot send within t1 = {self.config.t1_s:g} s", reason="timeout",
                            disconnect=True) from err
        except OSError as err:
            raise ReadError(self.name, f"connection lost: {err}", reason="disconnected", disconnect=True) from err

    def _fail(self, err: LinkError | FrameError) -> ReadError:
        reason = err.reason if isinstance(err, LinkError) else "malformed_response"
        self.counters[reason] += 1
        return ReadError(self.name, str(err), reason=reason, disconnect=True)

    async def _receive_once(self) -> SampleBatch:
        """Wait for bytes until the next timer; apply them; the samples they carried."""
        session, reader = self._session, self._reader
        assert session is not None and reader is not None
        now = self._clock()
        try:
            session.tick(now)
        except LinkError as err:
            raise self._fail(err) from None
        await self._flush()
        wait = max(0.0, min(session.deadline(), self._next_gi, self._next_ci) - now)
        try:
            async with asyncio.timeout(wait):
                data = await reader.read(_READ_SIZE)
        except TimeoutError:
            return []
        except OSError as err:
            raise ReadError(self.name, f"connection lost: {err}", reason="disconnected", disconnect=True) from err
        if not data:
            raise ReadError(self.name, "the station closed the connection", reason="disconnected", disconnect=True)
        try:
            frames = self._deframer.feed(data)
        except FrameError as err:
            raise self._fail(err) from None
        now = self._clock()
        stamp = now_ns()
        batch: SampleBatch = []
        for frame in frames:
            try:
                asdu = session.receive(frame, now)
            except LinkError as err:
                raise self._fail(err) from None
            if asdu is not None:
                batch += self._asdu(asdu, stamp)
        if self._deframer.error is not None:  # garbage after good frames: those count, then the link goes
            self._broken = self._fail(self._deframer.error)
        await self._flush()
        return batch

    def _once(self, key: str, message: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning(message, *args, extra={"device": self.name})

    def _asdu(self, data: bytes, stamp: int) -> SampleBatch:
        try:
            asdu = decode_asdu(data)
        except UnknownTypeError as err:
            self.counters["unknown_type"] += 1
            self._once(f"type{err.type_id}", "Device %s sends type identification %d, which the driver does not "
                       "read: those ASDUs are skipped (counted as unknown_type).", self.name, err.type_id)
            return []
        except AsduError as err:
            self.counters["malformed_asdu"] += 1
            self._once("asdu", "Device %s sent a malformed ASDU (%s): skipped, counted as malformed_asdu.",
                       self.name, err)
            return []
        tid = asdu.type_id
        if tid in MONITOR_TYPES:
            self.counters["objects"] += len(asdu.objects)
            batch = self.router.samples(asdu, stamp)
            self._seen.update(s[0] for s in batch)
            return batch
        if tid == TypeId.M_EI_NA_1:
            log.info("Device %s (CA %d) reports end of initialisation: interrogating again.", self.name, asdu.ca)
            self._next_gi = self._clock()
            if self.has_totals and self.config.counter_interrogation_period_s > 0:
                self._next_ci = self._next_gi
        elif asdu.negative:
            self.counters[f"negative_{TypeId(tid).name}"] += 1
            unknown_ca = asdu.cause == Cot.UNKNOWN_CA
            self._once(f"neg{tid}.{asdu.ca}", "Device %s refused %s for CA %d (cause %d%s).", self.name,
                       TypeId(tid).name, asdu.ca, asdu.cause, ": the station has no such common address" if unknown_ca
                       else "")
            key = (asdu.ca, tid)
            if key in self._expected and key not in self._checked:  # its points would otherwise stay silent
                self._checked.add(key)
                reason = "unknown_common_address" if unknown_ca else "interrogation_refused"
                return [(i, stamp, None, Quality.BAD, reason) for i in self._expected[key] if i not in self._seen]
        elif asdu.cause == Cot.ACTIVATION_TERMINATION:
            self.counters[f"done_{TypeId(tid).name}"] += 1
            return self._unanswered(asdu.ca, tid, stamp)
        return []

    def _unanswered(self, ca: int, tid: int, stamp: int) -> SampleBatch:
        """After the first interrogation of a connection: the points it should have answered and did not
        (a wrong CA or IOA, or a point the station leaves out of interrogations) turn bad with a reason,
        instead of staying silently empty."""
        key = (ca, tid)
        if key in self._checked or key not in self._expected:
            return []
        self._checked.add(key)
        missing = [i for i in self._expected[key] if i not in self._seen]
        if missing:
            self.counters["not_in_interrogation"] += len(missing)
            self._once(f"gi{ca}.{tid}", "Device %s: %d point(s) of CA %d were not in the answer to %s (wrong CA or "
                       "IOA, or not reported on interrogation): they are bad until the station sends them.",
                       self.name, len(missing), ca, TypeId(tid).name)
        return [(i, stamp, None, Quality.BAD, "not_in_interrogation") for i in missing]

    async def stream(self) -> AsyncIterator[SampleBatch]:
        """Batches as the station sends them; raises :class:`ReadError` when the link is lost."""
        if self._session is None:
            raise ConnectError(self.name, "not connected")
        while True:
            if self._broken is not None:
                raise self._broken
            self._schedule(self._clock())
            batch = await self._receive_once()
            if batch:
                yield batch

    def stats(self) -> dict[str, int]:
        """Driver, link and routing counters (for benches, tests and the status page)."""
        out = self.counters + self.router.counters
        if self._session is not None:
            out.update(self._session.counters)
        return dict(out)
