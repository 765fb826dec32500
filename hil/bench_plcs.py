"""Many simulated PLCs in one process, for ``edgegw bench modbus``: one pymodbus Modbus TCP server per
PLC on its own loopback port, each with ``registers`` holding registers of seeded values.

Run as ``python -m hil.bench_plcs REGISTERS PORT [PORT ...]``: prints ``ready`` once every server
listens, and serves until stdin closes or SIGTERM.  The bench starts a few of these so the
servers' CPU is not counted as the gateway's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = ["main", "register_values"]


def register_values(port: int, registers: int) -> list[int]:
    """The image of the PLC on ``port``: deterministic, so a run can be checked."""
    rng = random.Random(port)
    return [rng.randrange(0, 65536) for _ in range(registers)]


async def _serve(registers: int, ports: list[int]) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    servers = []
    for port in ports:
        device = SimDevice(
            1, simdata=[SimData(0, values=register_values(port, registers), datatype=DataType.REGISTERS)]
        )
        server = ModbusTcpServer(device, address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        servers.append(server)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 1) else None)
    await stop.wait()
    for server in servers:
        await server.shutdown()  # type: ignore[no-untyped-call]


def main(argv: list[str]) -> None:
    asyncio.run(_serve(int(argv[0]), [int(p) for p in argv[1:]]))


if __name__ == "__main__":
    main(sys.argv[1:])
