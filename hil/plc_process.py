"""One simulated PLC (a gas substation stub on Modbus TCP or RTU) in a process of its own, for HIL campaigns.

``python -m hil.plc_process --port P --seed S --tick-ms T --counts FILE [--fault FILE]``
``python -m hil.plc_process --serial PTY ...``  (Modbus RTU on one end of a socat pty pair)

It counts the requests it answers per function code (the polls the gateway made: the oracle's
"produced") and keeps the totals in ``FILE`` (JSON, replaced atomically every 200 ms and at exit;
a restart — a PLC reboot — continues from the file, while the stub starts again at tick 0).
SIGTERM stops it cleanly; SIGUSR1 silences it (requests go unanswered and time out, the connection
stays open: a hung outstation), SIGUSR2 makes it answer again.

On Modbus TCP, the port the gateway polls is a front end of this process that passes every
request on to the pymodbus server and can misbehave as a real outstation does, as the JSON of the
``--fault`` file (read every 200 ms; missing or ``{}``: none) says:

- ``{"kind": "slow", "delay_ms": N}``: every request is answered N ms late;
- ``{"kind": "timeouts", "drop_every": K}``: every K-th request is never answered (counted ``drop<fc>``);
- ``{"kind": "exceptions", "code": C}``: every request is answered with Modbus exception C
  (4 server device failure, 6 server busy), counted as ``x<fc>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from hil.modbus_server import SimulatedPlc
from hil.services import free_port

__all__ = ["CountingPlc", "FaultFront", "read_counts", "read_fault", "write_fault"]


def read_counts(path: Path) -> dict[str, int]:
    """Function code (as a string) -> requests answered; ``x<fc>``: exception answers, ``drop<fc>``:
    requests left unanswered on purpose; {} before the first write."""
    try:
        return {k: int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError):
        return {}


def write_fault(path: Path, fault: dict[str, Any]) -> None:
    """Set (or with {} clear) the fault a PLC process plays: atomic, read by it within 200 ms."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fault))
    os.replace(tmp, path)


def read_fault(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class CountingPlc(SimulatedPlc):
    def __init__(self, counts_path: Path, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.counts_path = counts_path
        self.counts: dict[str, int] = read_counts(counts_path)

    def count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        out = super()._trace_packet(sending, data)
        if not sending or not out:
            return out
        if self.transport != "tcp":  # RTU: one frame per answer, unit then function code
            if len(out) >= 2 and out[1] < 0x80:
                self.count(str(out[1]))
            return out
        i = 0
        while len(out) >= i + 8:  # answers leaving (several MBAP frames may share one write)
            fc = out[i + 7]
            if fc < 0x80:  # not an exception answer: one read served
                self.count(str(fc))
            i += 6 + int.from_bytes(out[i + 4:i + 6], "big")
        return out

    def save(self) -> None:
        tmp = self.counts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.counts))
        os.replace(tmp, self.counts_path)


class FaultFront:
    """The TCP port the gateway polls: MBAP frames passed on to the PLC's server, or delayed,
    dropped or answered with an exception while a fault is set (``self.fault``)."""

    def __init__(self, plc: CountingPlc, port: int, backend_port: int) -> None:
        self.plc = plc
        self.port = port
        self.backend_port = backend_port
        self.fault: dict[str, Any] = {}
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await t

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        back = asyncio.create_task(self._pump(b_reader, writer))
        self._tasks.add(back)
        try:
            while True:
                head = await reader.readexactly(7)
                body = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                await self._request(head + body, writer, b_writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await back
            for w in (writer, b_writer):
                w.close()
            self._tasks.discard(back)
            self._tasks.discard(task)

    async def _request(self, frame: bytes, writer: asyncio.StreamWriter, b_writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        fault = self.fault
        kind = fault.get("kind")
        fc = frame[7] if len(frame) > 7 else 0
        if kind == "slow":  # requests are served one after the other: delaying each delays its answer
            await asyncio.sleep(float(fault.get("delay_ms", 0)) / 1000)
        elif kind == "timeouts" and self.requests % max(1, int(fault.get("drop_every", 2))) == 0:
            self.plc.count(f"drop{fc}")
            return
        elif kind == "exceptions":
            code = int(fault.get("code", 4))
            writer.write(frame[:4] + (3).to_bytes(2, "big") + bytes([frame[6], fc | 0x80, code]))
            await writer.drain()
            self.plc.count(f"x{fc}")
            return
        b_writer.write(frame)
        await b_writer.drain()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()


async def _main(args: argparse.Namespace) -> None:
    fault_path = Path(args.fault) if args.fault else None
    front: FaultFront | None = None
    if args.serial:
        plc = CountingPlc(Path(args.counts), seed=args.seed, tick_s=args.tick_ms / 1000, transport="rtu",
                          serial_port=args.serial)
    else:
        plc = CountingPlc(Path(args.counts), port=free_port(), seed=args.seed,
                          tick_s=args.tick_ms / 1000)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, plc.silence, plc.unit_id)
    loop.add_signal_handler(signal.SIGUSR2, plc.revive, plc.unit_id)
    async with plc:
        if not args.serial:
            front = FaultFront(plc, args.port, plc.port)
            await front.start()
        where = args.serial or f"127.0.0.1:{args.port}"
        print(f"PLC seed {args.seed} serving on {where}", flush=True)
        try:
            while not stop.is_set():
                if front is not None:
                    front.fault = read_fault(fault_path)
                plc.save()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
        finally:
            if front is not None:
                await front.stop()
    plc.save()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--serial", default="", help="Modbus RTU on this serial device (one end of a pty pair)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tick-ms", type=int, default=100)
    p.add_argument("--counts", required=True)
    p.add_argument("--fault", default="", help="JSON file naming the fault to play (see the module's doc)")
    args = p.parse_args()
    if not args.serial and not args.port:
        p.error("--port or --serial is needed")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
