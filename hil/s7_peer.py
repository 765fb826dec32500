"""A small asyncio S7 CPU for benchmarks and fault tests: serves byte areas, and misbehaves on request.

It speaks just enough S7comm (COTP connect, setup communication, read variable) to answer the
gateway's driver, and can be told to go wrong in the ways a real network or CPU does:

- ``fault = "silent"``: read requests are swallowed (a CPU that stops answering, a half-open link);
- ``fault = "garbage"``: the answer is bytes that are no TPKT packet;
- ``fault = "truncated"``: the answer's S7 PDU is cut short (its TPKT length matches what is sent);
- ``fault = "header_error"``: every read is refused with error class 0x81 code 0x04;
- ``fault = "wrong_ref"``: the answer carries another request's PDU reference;
- ``item_errors``: (area code, DB) -> return code for items there (0x0A no such DB, 0x03 access denied);
- reads past an area's end get 0x05 (address out of range) as a CPU answers.

python-snap7's server (hil/s7_server.py) is the peer of the interop and end-to-end tests; this one
is for what that server cannot do (faults) and for load (``python -m hil.s7_peer POINTS COUNT`` serves
COUNT benchmark CPUs on free loopback ports, says ``ready PORT...``, and stops when stdin closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys
from typing import Self

__all__ = ["S7Peer"]

_DT = bytes((0x02, 0xF0, 0x80))


def _tpkt(payload: bytes) -> bytes:
    return struct.pack(">BBH", 3, 0, len(payload) + 4) + payload


def _ack(ref: int, params: bytes, data: bytes = b"", eclass: int = 0, ecode: int = 0) -> bytes:
    return _tpkt(_DT + struct.pack(">BBHHHHBB", 0x32, 3, 0, ref, len(params), len(data), eclass, ecode) + params + data)


class S7Peer:
    def __init__(self, areas: dict[tuple[int, int], bytearray], host: str = "127.0.0.1", port: int = 0,
                 pdu_size: int = 480) -> None:
        self.areas = areas  # (area code 0x81 I / 0x82 Q / 0x83 M / 0x84 DB, DB number) -> bytes
        self.host, self.port, self.pdu_size = host, port, pdu_size
        self.fault: str | None = None
        self.item_errors: dict[tuple[int, int], int] = {}
        self.requests = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack(">H", head[2:])[0] - 4)
                if body[1] == 0xE0:  # connection request -> confirm
                    writer.write(_tpkt(bytes((6, 0xD0, 0, 1, 0, 1, 0))))
                    continue
                pdu = body[3:]
                ref, plen = struct.unpack(">HH", pdu[4:8])
                params = pdu[10:10 + plen]
                if params[0] == 0xF0:
                    size = min(struct.unpack(">H", params[6:8])[0], self.pdu_size)
                    writer.write(_ack(ref, struct.pack(">BBHHH", 0xF0, 0, 1, 1, size)))
                    continue
                self.requests += 1
                answer = self._read(ref, params)
                if self.fault == "silent":
                    continue
                if self.fault == "garbage":
                    answer = b"\x17\x03\x03\x00\x10HTTP/1.1 400 Bad Request\r\n"
                elif self.fault == "truncated":
                    answer = _tpkt(answer[4:][: max(3 + 12, len(answer) - 4 - 6)])
                elif self.fault == "header_error":
                    answer = _ack(ref, b"", eclass=0x81, ecode=0x04)
                elif self.fault == "wrong_ref":
                    answer = answer[:11] + struct.pack(">H", (ref + 7) & 0xFFFF) + answer[13:]
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, struct.error):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _read(self, ref: int, params: bytes) -> bytes:
        n = params[1]
        data = bytearray()
        for i in range(n):
            spec = params[2 + 12 * i: 14 + 12 * i]
            count, db, area = struct.unpack(">HHB", spec[4:9])
            start = int.from_bytes(spec[9:12], "big") >> 3
            mem = self.areas.get((area, db if area == 0x84 else 0))
            code = self.item_errors.get((area, db))
            if code is None:
                code = 0x0A if mem is None else 0x05 if start + count > len(mem) else 0xFF
            if code != 0xFF:
                data += bytes((code, 0, 0, 0))
                continue
            assert mem is not None
            data += struct.pack(">BBH", 0xFF, 0x04, count * 8) + mem[start:start + count]
            if count % 2 and i < n - 1:
                data.append(0)
        return _ack(ref, bytes((0x04, n)), bytes(data))


async def _serve_bench(points: int, count: int) -> None:
    """Benchmark CPUs: DB1 of ``points`` 4-byte values each, its first DWORD changing every second.
    Each binds a free port itself (no port chosen elsewhere that another process may take meanwhile)."""
    size = points * 4
    peers = [S7Peer({(0x84, 1): bytearray(size)}) for _ in range(count)]
    async with contextlib.AsyncExitStack() as stack:
        for peer in peers:
            await stack.enter_async_context(peer)
        print("ready", *(p.port for p in peers), flush=True)
        loop = asyncio.get_running_loop()
        eof = loop.run_in_executor(None, sys.stdin.read)
        tick = 0
        while not eof.done():
            tick += 1
            for peer in peers:
                struct.pack_into(">I", peer.areas[0x84, 1], 0, tick)
            await asyncio.wait([eof], timeout=1.0)


if __name__ == "__main__":
    asyncio.run(_serve_bench(int(sys.argv[1]), int(sys.argv[2])))
