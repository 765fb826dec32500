"""Bad input from the wire: garbage, truncated frames, wrong transaction / unit id / function code /
byte count, exception responses, a device that stops answering mid-poll.  No crash, no leak: the
affected points are bad with a reason, the next poll works.  The peer is a scripted TCP server that
answers each request with whatever the test says, framed as MBAP or RTU."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.client import crc16
from drivers.modbus.config import ModbusRtuTcpDevice, ModbusTcpDevice
from drivers.modbus.driver import ModbusDriver
from gateway.core.errors import ReadError
from gateway.core.point import Quality
from tests.conftest import eventually

# (unit, function, address, count) -> bytes to send back (b"" = stay silent)
Script = Callable[[int, int, int, int, int], bytes]


def _good_pdu(function: int, count: int) -> bytes:
    data = struct.pack(f">{count}H", *range(100, 100 + count))
    return bytes((function, len(data))) + data


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def rtu(unit: int, pdu: bytes) -> bytes:
    body = bytes((unit,)) + pdu
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


class ScriptedPeer:
    def __init__(self, framing: str) -> None:
        self.framing = framing
        self.script: Script = self.good
        self.port = 0
        self.requests = 0
        self._server: asyncio.Server | None = None
        self.writer: asyncio.StreamWriter | None = None

    def good(self, tid: int, unit: int, function: int, address: int, count: int) -> bytes:
        return self.frame(tid, unit, _good_pdu(function, count))

    def frame(self, tid: int, unit: int, pdu: bytes) -> bytes:
        return mbap(tid, unit, pdu) if self.framing == "mbap" else rtu(unit, pdu)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        try:
            while True:
                if self.framing == "mbap":
                    head = await reader.readexactly(7)
                    tid, _, length, unit = struct.unpack(">HHHB", head)
                    pdu = await reader.readexactly(length - 1)
                else:
                    frame = await reader.readexactly(8)
                    tid, unit, pdu = 0, frame[0], frame[1:6]
                function, address, count = struct.unpack(">BHH", pdu[:5])
                self.requests += 1
                answer = self.script(tid, unit, function, address, count)
                if answer:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest_asyncio.fixture(loop_scope="function", params=["mbap", "rtu"])
async def peer(request: Any) -> AsyncIterator[ScriptedPeer]:
    p = ScriptedPeer(request.param)
    await p.start()
    yield p
    await p.stop()


def _driver(peer: ScriptedPeer) -> ModbusDriver:
    points = [{"name": "a", "address": 0}, {"name": "b", "address": 1, "data_type": "int16"}]
    if peer.framing == "mbap":
        cfg: ModbusTcpDevice | ModbusRtuTcpDevice = ModbusTcpDevice.model_validate(
            {"type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": peer.port, "unit_id": 5,
             "timeout_ms": 300, "points": points})
    else:
        cfg = ModbusRtuTcpDevice.model_validate(
            {"type": "modbus_rtu_tcp", "name": "plc", "host": "127.0.0.1", "port": peer.port, "unit_id": 5,
             "timeout_ms": 300, "frame_gap_ms": 0, "points": points})
    return ModbusDriver(cfg, 0)


GOOD = [(0, 100, Quality.GOOD, None), (1, 101, Quality.GOOD, None)]


def _short(batch: list[Any]) -> list[tuple[Any, ...]]:
    return [(i, v, q, why) for i, _ts, v, q, why in batch]


async def test_good_answers_then_exception_response(peer: ScriptedPeer) -> None:
    async with _driver(peer) as drv:
        assert _short(await drv.read()) == GOOD
        peer.script = lambda tid, unit, fc, a, n: peer.frame(tid, unit, bytes((fc | 0x80, 6)))
        assert _short(await drv.read()) == [
            (0, None, Quality.BAD, "modbus_exception_6_server_device_busy"),
            (1, None, Quality.BAD, "modbus_exception_6_server_device_busy"),
        ]
        peer.script = peer.good
        assert _short(await drv.read()) == GOOD


@pytest.mark.parametrize(
    "case",
    ["wrong_function", "wrong_byte_count", "truncated_then_silent", "garbage", "silent", "wrong_unit"],
)
async def test_malformed_or_missing_answers_fail_the_poll_with_a_reason(peer: ScriptedPeer, case: str) -> None:
    """The poll raises ReadError (the runner turns every point bad with the reason and reconnects);
    a fresh connection then reads good values."""

    def bad(tid: int, unit: int, fc: int, a: int, n: int) -> bytes:
        good = peer.frame(tid, unit, _good_pdu(fc, n))
        if case == "wrong_function":
            return peer.frame(tid, unit, _good_pdu(4 if fc == 3 else 3, n))
        if case == "wrong_byte_count":
            return peer.frame(tid, unit, bytes((fc, 2 * n + 2)) + struct.pack(f">{n + 1}H", *range(n + 1)))
        if case == "truncated_then_silent":
            return good[: len(good) - 3]
        if case == "garbage":
            return b"\xff\x00\x13\x37" * 3
        if case == "wrong_unit":
            return peer.frame(tid, unit + 1, _good_pdu(fc, n))
        return b""

    peer.script = bad
    mbap = peer.framing == "mbap"
    expected = {
        "wrong_function": "malformed_response",
        "wrong_byte_count": "malformed_response",
        # on a serial line a frame of another unit, or noise, is not ours: dropped, so we time out
        "wrong_unit": "malformed_response" if mbap else "timeout",
        "garbage": "malformed_response" if mbap else "timeout",
    }.get(case, "timeout")
    async with _driver(peer) as drv:
        with pytest.raises(ReadError) as info:
            await drv.read()
        assert info.value.reason == expected
    peer.script = peer.good
    async with _driver(peer) as drv:
        assert _short(await drv.read()) == GOOD


async def test_a_late_answer_to_a_timed_out_request_is_not_taken_for_the_next(peer: ScriptedPeer) -> None:
    """The answer to a timed-out request arrives between polls (dropped) or, on TCP, glued in front
    of the next answer (told apart by its transaction id); the next poll gets its own values."""
    first: list[tuple[int, int, int, int]] = []

    def silent_once(tid: int, unit: int, fc: int, a: int, n: int) -> bytes:
        if not first:
            first.append((tid, unit, fc, n))
            return b""
        return peer.good(tid, unit, fc, a, n)

    peer.script = silent_once
    async with _driver(peer) as drv:
        with pytest.raises(ReadError):
            await drv.read()
        tid, unit, fc, n = first[0]
        stale = peer.frame(tid, unit, bytes((fc, 2 * n)) + struct.pack(f">{n}H", *([999] * n)))
        assert peer.writer is not None
        peer.writer.write(stale)  # late, while nobody waits
        conn = drv.line.conn
        assert conn is not None
        await eventually(lambda: conn.dropped_frames >= 1, what="the late answer dropped")
        assert _short(await drv.read()) == GOOD
        if peer.framing == "mbap":
            peer.script = lambda t, u, f, a, c: stale + peer.good(t, u, f, a, c)
            assert _short(await drv.read()) == GOOD


class _Wire:
    """The write side of a transport, for feeding a Connection bytes directly."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return False


@settings(max_examples=60, deadline=None)
@given(framing=st.sampled_from(["mbap", "rtu"]), count=st.integers(1, 125), cuts=st.lists(st.integers(1, 300)))
def test_an_answer_split_anywhere_across_reads_is_reassembled(framing: str, count: int, cuts: list[int]) -> None:
    """TCP and serial ports deliver a frame in arbitrary pieces; noise may precede an RTU frame."""
    from drivers.modbus.client import Connection, Framing

    async def run() -> bytes:
        conn = Connection(Framing.MBAP if framing == "mbap" else Framing.RTU)
        conn.transport = _Wire()  # type: ignore[assignment]
        task = asyncio.create_task(conn.read(9, 3, 0, count, 5.0))
        await asyncio.sleep(0)
        pdu = _good_pdu(3, count)
        answer = mbap(1, 9, pdu) if framing == "mbap" else b"\x00\x07" + rtu(9, pdu)  # two bytes of noise
        pos = 0
        for cut in [*sorted(set(cuts)), len(answer)]:
            if pos < min(cut, len(answer)):
                conn.data_received(answer[pos : min(cut, len(answer))])
                pos = min(cut, len(answer))
                await asyncio.sleep(0)
        return await asyncio.wait_for(task, 1)

    assert asyncio.run(run()) == _good_pdu(3, count)[2:]


def _fuzz_answer(framing: str, chunks: list[bytes]) -> bytes | BaseException:
    from drivers.modbus.client import Connection, Framing

    async def run() -> bytes | BaseException:
        conn = Connection(Framing.MBAP if framing == "mbap" else Framing.RTU)
        conn.transport = _Wire()  # type: ignore[assignment]
        task = asyncio.create_task(conn.read(9, 3, 0, 4, 0.02))
        await asyncio.sleep(0)
        for chunk in chunks:
            conn.data_received(chunk)
            await asyncio.sleep(0)
        try:
            return await asyncio.wait_for(task, 1)
        except Exception as err:  # noqa: BLE001 - the property below sorts what came out
            return err

    return asyncio.run(run())


def _mutations() -> st.SearchStrategy[tuple[str, list[bytes]]]:
    """A valid answer with random bytes flipped, cut, or extended; or plain random bytes."""

    def mutate(framing: str, flips: list[tuple[int, int]], cut: int, tail: bytes) -> tuple[str, list[bytes]]:
        good = bytearray(mbap(1, 9, _good_pdu(3, 4)) if framing == "mbap" else rtu(9, _good_pdu(3, 4)))
        for pos, value in flips:
            good[pos % len(good)] = value
        data = bytes(good[: max(0, len(good) - cut)]) + tail
        return framing, [data[i : i + 3] for i in range(0, len(data), 3)]

    mutated = st.builds(mutate, st.sampled_from(["mbap", "rtu"]), st.lists(st.tuples(st.integers(0, 99),
                        st.integers(0, 255)), max_size=3), st.integers(0, 4), st.binary(max_size=8))
    noise = st.tuples(st.sampled_from(["mbap", "rtu"]), st.lists(st.binary(max_size=40), max_size=6))
    return st.one_of(mutated, noise)


@settings(max_examples=200, deadline=None)
@given(case=_mutations())
def test_garbage_and_mutated_answers_give_data_or_a_typed_error(case: tuple[str, list[bytes]]) -> None:
    """Fuzzing the framers (reliability scenario 23, short version): whatever bytes arrive, a read
    ends with the right number of data bytes or a typed error (exception response, frame error,
    timeout) within its deadline; never another exception, never a hang."""
    from drivers.modbus.client import ExceptionResponse, FrameError

    framing, chunks = case
    got = _fuzz_answer(framing, chunks)
    if isinstance(got, bytes):
        assert len(got) == 8  # four registers
    else:
        assert isinstance(got, ExceptionResponse | FrameError | TimeoutError), repr(got)
