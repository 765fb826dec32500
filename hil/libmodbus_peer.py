"""The libmodbus interop server (hil/libmodbus/server.c), compiled with gcc on first use.

An independent Modbus implementation keeps the driver honest: our client against pymodbus's server
could hide a mistake both share.  The binary goes to a scratch directory; the server listens on
127.0.0.1 (a free port it reports) or serves Modbus RTU on a serial device (a socat pty).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from hil.services import ServiceUnavailable, compile_c

__all__ = ["LibmodbusServer", "build_server"]

SOURCE = Path(__file__).resolve().parent / "libmodbus" / "server.c"


def build_server(workdir: Path) -> Path:
    """Compile the server into ``workdir``; ServiceUnavailable if gcc or libmodbus-dev is missing."""
    if not Path("/usr/include/modbus/modbus.h").exists():
        raise ServiceUnavailable("libmodbus-dev is not installed")
    return compile_c(SOURCE, workdir / "libmodbus-server", "-I/usr/include/modbus", "-lmodbus")


class LibmodbusServer:
    """One server process serving a fixed register image; stopped by PID."""

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        *,
        coils: Sequence[bool] = (),
        discrete_inputs: Sequence[bool] = (),
        holding_registers: Sequence[int] = (),
        input_registers: Sequence[int] = (),
        serial_port: str = "",
        unit_id: int = 1,
        tcp_gateway: bool = False,
    ) -> None:
        """``tcp_gateway``: over TCP, answer like a TCP-to-RTU gateway with only ``unit_id`` behind it
        (exception 11 for any other unit id); by default libmodbus serves any unit id over TCP."""
        self.binary = binary
        self.image = workdir / f"image-{os.getpid()}-{id(self)}.txt"
        tables = (("coils", coils), ("discrete", discrete_inputs), ("holding", holding_registers),
                  ("input", input_registers))
        self.image.write_text(
            "".join(f"{name} {len(vals)} {' '.join(str(int(v)) for v in vals)}\n" for name, vals in tables)
        )
        self.serial_port = serial_port
        self.unit_id = unit_id
        self.tcp_gateway = tcp_gateway
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LibmodbusServer:
        args = [str(self.binary), "tcp", str(self.image)] + ([str(self.unit_id)] if self.tcp_gateway else [])
        if self.serial_port:
            args = [str(self.binary), "rtu", str(self.image), self.serial_port, str(self.unit_id)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(10)
        if not line or not line[0].startswith(b"ready"):
            err = self.proc.stderr.read(2000) if self.proc.poll() is not None and self.proc.stderr else b""
            self.__exit__()
            raise RuntimeError(f"libmodbus server did not start: {err.decode(errors='replace')}")
        self.port = int(line[0].split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
