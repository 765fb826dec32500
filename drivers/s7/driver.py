"""S7 driver: ISO-on-TCP to one CPU, "read variable" requests planned to the negotiated PDU.

It does I/O only, on an asyncio stream (nothing blocks the event loop, no thread): connect (COTP
connection request with the TSAPs, then "setup communication"), send the planned requests one at
a time, hand the answers to :mod:`drivers.s7.wire` and :mod:`drivers.s7.codec`.  Cadence, backoff
and health live in :mod:`gateway.runner`.

Quality and reasons, as the Modbus driver:

- no answer within ``timeout_ms`` -> the poll fails with ``timeout`` (the connection is closed and
  reopened: an answer arriving late would put the stream out of step);
- the connection closed or reset -> ``disconnected``; bytes that are not S7comm -> ``malformed_response``;
- an item refused by the CPU -> only the points of that item are bad, with the return code as reason
  (``s7_address_out_of_range``, ``s7_object_does_not_exist``, ``s7_access_denied``...); when the
  item covered several points they are read one by one at once, and from then on, so one wrong
  address spoils only its own point;
- a request refused as a whole (header error class) -> its points are bad with ``s7_error_CCDD``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Self

from drivers.s7.address import Address
from drivers.s7.codec import Reader, reader
from drivers.s7.config import DataType, S7Device
from drivers.s7.plan import Plan, plan
from drivers.s7.wire import (
    RETURN_OK,
    FrameError,
    ItemResult,
    ReadItem,
    S7HeaderError,
    cotp_connect_request,
    cotp_data_payload,
    parse_connect_confirm,
    parse_read_response,
    parse_setup_response,
    read_request,
    return_code_reason,
    setup_request,
    tpkt_length,
)
from gateway.core.errors import ConnectError, ReadError
from gateway.core.point import Quality, SampleBatch, now_ns
from gateway.core.values import StringEncoding

__all__ = ["S7Driver", "S7Points", "lean_device"]

MAX_FRAGMENTS = 16  # COTP data TPDUs one S7 PDU may span (a PDU is at most 960 bytes)

# (point index, offset in its range, its reader)
_Field = tuple[int, int, Reader]


class _Layout(NamedTuple):
    """One point as the planner and the decoder see it (its device's defaults applied)."""

    parsed: Address
    span: tuple[int, int]
    type: DataType
    length: int
    encoding: StringEncoding


class _Group:
    __slots__ = ("fields", "interval_s", "plan", "points")

    def __init__(self, interval_s: float, points: list[int]) -> None:
        self.interval_s = interval_s
        self.points = points  # positions in the device's point list
        self.plan: Plan | None = None  # made at connect, for the negotiated PDU
        self.fields: list[list[_Field]] = []  # per range of the plan


class S7Points(NamedTuple):
    """What the driver keeps of a device's points, with the device's defaults applied: picklable, so
    that ``edgegw run``'s config-reading child hands over this instead of the point models
    (:func:`lean_device`)."""

    layouts: list[_Layout]
    groups: dict[str, tuple[int, list[int]]]  # poll group -> (interval ms, positions of its points)


def points_form(config: S7Device) -> S7Points:
    layouts = [_Layout(p.parsed, p.span, p.type, p.length or 254, p.string_encoding or config.string_encoding)
               for p in config.points]
    groups = {name: (ms, [i for i, p in enumerate(config.points) if (p.group or "") == name])
              for name, ms in config.group_intervals_ms().items()}
    return S7Points(layouts, groups)


def lean_device(config: S7Device) -> tuple[S7Device, S7Points]:
    """The device without its points, and the compact form the driver is made from (``DriverSpec.lean``)."""
    return config.model_copy(update={"points": []}), points_form(config)


class S7Driver:
    def __init__(self, config: S7Device, first_index: int, *, form: S7Points | None = None) -> None:
        """``form``: :func:`lean_device`'s compact form of the points when ``config`` is the device
        without them (``edgegw run`` reads its config in a child process and hands over only that);
        otherwise made here from ``config.points``."""
        if form is None:
            config, form = lean_device(config)
        self.config = config
        self._first = first_index
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ref = 0
        self.pdu_size = 0  # negotiated at connect
        self.max_jobs = 1
        self.alone: set[int] = set()  # points that spoiled a shared item: read on their own
        self.groups: dict[str, _Group] = {}  # poll group ("" = the device's poll_interval_ms) -> its plan
        for name, (ms, members) in form.groups.items():
            self.groups[name] = _Group(ms / 1000, members)
        self.requests = 0  # requests sent, for benchmarks and diagnostics
        # what planning and decoding need of each point; the parsed point models (~1.2 KB a point) go (#17)
        self._layouts = form.layouts

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def requests_per_poll(self) -> int:
        """Requests of one poll of every group."""
        return sum(len(g.plan.requests) for g in self.groups.values() if g.plan is not None)

    @property
    def plan(self) -> Plan | None:
        """The plan of the device's own group (every point, when no poll_groups are used)."""
        first = next(iter(self.groups.values()))
        return first.plan

    def schedules(self) -> list[tuple[float, Callable[[], Awaitable[SampleBatch]]]]:
        """(interval, read one group) per poll group, for the runner."""
        return [(g.interval_s, functools.partial(self.read_group, name)) for name, g in self.groups.items()]

    # --- connection -------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        cfg = self.config
        timeout = cfg.timeout_ms / 1000
        where = f"{cfg.host}:{cfg.port}"
        try:
            async with asyncio.timeout(timeout):
                self._reader, self._writer = await asyncio.open_connection(cfg.host, cfg.port)
                local, remote = cfg.tsaps()
                self._writer.write(cotp_connect_request(local, remote))
                parse_connect_confirm(await self._packet())
                ref = self._next_ref()
                self._writer.write(setup_request(ref, cfg.pdu_size))
                setup = parse_setup_response(await self._pdu(), ref)
        except TimeoutError as err:
            self._close()
            raise ConnectError(cfg.name, f"no answer from {where} within {timeout:g} s") from err
        except (FrameError, S7HeaderError) as err:
            self._close()
            raise ConnectError(cfg.name, f"{where}: {err} (TSAPs {local:04X} -> {remote:04X})") from err
        except asyncio.IncompleteReadError as err:
            self._close()
            why = f"its connections all in use, or rack / slot / TSAP {local:04X} -> {remote:04X} wrong"
            raise ConnectError(cfg.name, f"{where} closed the connection during the S7 handshake ({why})") from err
        except OSError as err:
            self._close()
            raise ConnectError(cfg.name, f"cannot connect to {where}: {err}") from err
        self.pdu_size = min(setup.pdu_size, cfg.pdu_size)
        self.max_jobs = setup.max_jobs_called
        self._replan()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    def _next_ref(self) -> int:
        self._ref = self._ref % 0xFFFF + 1
        return self._ref

    def _replan(self) -> None:
        """Plan every poll group for the negotiated PDU; again when points had to be read alone."""
        cfg = self.config
        for g in self.groups.values():
            subset = [self._layouts[i] for i in g.points]
            alone = {j for j, i in enumerate(g.points) if i in self.alone}
            g.plan = plan(subset, self.pdu_size, cfg.max_items, cfg.max_gap, alone)
            g.fields = [[self._field(g.points[m], subset[m].span[0] - r.start) for m in r.members]
                        for r in g.plan.ranges]

    async def _packet(self) -> bytes:
        assert self._reader is not None
        head = await self._reader.readexactly(4)
        return head + await self._reader.readexactly(tpkt_length(head) - 4)

    async def _pdu(self) -> bytes:
        """One S7 PDU, reassembled from its COTP data TPDUs."""
        out = b""
        for _ in range(MAX_FRAGMENTS):
            payload, last = cotp_data_payload(await self._packet())
            out += payload
            if last:
                return out
        raise FrameError(f"an S7 PDU spread over more than {MAX_FRAGMENTS} COTP fragments")

    # --- polling ----------------------------------------------------------------------------------------

    async def read(self) -> SampleBatch:
        """One poll of every group."""
        out: SampleBatch = []
        for name in self.groups:
            out += await self.read_group(name)
        return out

    async def read_group(self, name: str) -> SampleBatch:
        """One poll of one group: its planned requests, then (once) the points of refused shared items
        one by one."""
        g = self.groups[name]
        if self._writer is None or g.plan is None:
            raise ReadError(self.name, "not connected", reason="disconnected", disconnect=True)
        out: SampleBatch = []
        failed = await self._read_plan(g.plan, g.fields, g.points, out)
        if failed:
            # items of several points refused: read those points one by one, now and from now on
            self.alone |= failed
            self._replan()
            order = sorted(failed)
            sub = [self._layouts[i] for i in order]
            retry = plan(sub, self.pdu_size, self.config.max_items, 0, range(len(sub)))
            fields = [[self._field(order[m], 0) for m in r.members] for r in retry.ranges]
            await self._read_plan(retry, fields, order, out)
        return out

    def _field(self, i: int, offset: int) -> _Field:
        p = self._layouts[i]
        return self._first + i, offset, reader(p.type, p.parsed.bit, p.length, p.encoding)

    async def _read_plan(self, pl: Plan, fields: list[list[_Field]], position: Sequence[int],
                         out: SampleBatch) -> set[int]:
        """Read every request of ``pl`` and decode into ``out`` (``position``: a range member -> its
        point's position in the device).  Returns the points of refused items that covered more than
        one point, which are not in ``out`` yet: the caller reads them one by one."""
        buffers: list[bytearray] = [bytearray(r.count) for r in pl.ranges]
        codes: list[int] = [RETURN_OK] * len(pl.ranges)
        header_errors: dict[int, str] = {}
        stamps: list[int] = [0] * len(pl.ranges)
        for request in pl.requests:
            items = [c.item(pl.ranges[c.range]) for c in request]
            ts = now_ns()
            try:
                results = await self._request(items)
            except S7HeaderError as err:
                for c in request:
                    header_errors[c.range] = err.reason
                continue
            for c, res in zip(request, results, strict=True):
                stamps[c.range] = stamps[c.range] or ts
                if res.code != RETURN_OK:
                    codes[c.range] = res.code
                else:
                    buffers[c.range][c.offset:c.offset + c.count] = res.data
        failed: set[int] = set()
        bad = Quality.BAD
        good = Quality.GOOD
        first = self._first
        for r, rng in enumerate(pl.ranges):
            reason = header_errors.get(r)
            if reason is None and codes[r] != RETURN_OK:
                if len(rng.members) > 1:
                    failed.update(position[m] for m in rng.members)
                    continue
                reason = return_code_reason(codes[r])
            ts = stamps[r] or now_ns()
            if reason is not None:
                out.extend((first + position[m], ts, None, bad, reason) for m in rng.members)
                continue
            buf = bytes(buffers[r])
            for index, off, read in fields[r]:
                value, why = read(buf, off)
                out.append((index, ts, value, good, None) if why is None else (index, ts, None, bad, why))
        return failed

    async def _request(self, its: list[ReadItem]) -> list[ItemResult]:
        """One read-variable job; transport failures become ReadError, a refused job S7HeaderError."""
        assert self._writer is not None
        ref = self._next_ref()
        self.requests += 1
        timeout = self.config.timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout):
                self._writer.write(read_request(ref, its))
                pdu = await self._pdu()
            return parse_read_response(pdu, ref, [i.count for i in its])
        except TimeoutError as err:
            raise ReadError(self.name, f"no answer within {timeout:g} s", reason="timeout", disconnect=True) from err
        except FrameError as err:
            raise ReadError(self.name, f"malformed response: {err}", reason="malformed_response",
                            disconnect=True) from err
        except asyncio.IncompleteReadError as err:
            raise ReadError(self.name, "connection lost: the CPU closed it", reason="disconnected",
                            disconnect=True) from err
        except OSError as err:
            raise ReadError(self.name, f"connection lost: {err}", reason="disconnected", disconnect=True) from err
