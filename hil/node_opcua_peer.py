"""Start the node-opcua interop server (hil/node_opcua/server.js) on 127.0.0.1 and stop it by PID.

An independent OPC UA implementation keeps the driver honest: asyncua talking to asyncua can hide
bugs both sides share.  Its PKI and $HOME go to a scratch directory, never the user's ~/.config.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from hil.opcua_server import free_port

__all__ = ["NODE_DIR", "NodeOpcuaPeer", "PeerUnavailable"]

NODE_DIR = Path(__file__).resolve().parent / "node_opcua"


class PeerUnavailable(RuntimeError):
    """node is missing or `npm ci` was not run in hil/node_opcua (scripts/test.sh does it)."""


class NodeOpcuaPeer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/UA/edgegw"
        self.cert_der: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        node = shutil.which("node")
        if node is None:
            raise PeerUnavailable("node is not installed")
        if not (NODE_DIR / "node_modules" / "node-opcua").is_dir():
            raise PeerUnavailable("node-opcua is not installed: run `npm ci` in hil/node_opcua")
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOME": str(self.workdir)}
        log = (self.workdir / "peer.log").open("wb")
        self.proc = subprocess.Popen(
            [node, str(NODE_DIR / "server.js"), str(self.port), str(self.workdir / "server")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, cwd=NODE_DIR,
        )
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout_s
        line = b""
        while time.monotonic() < end:  # node-opcua logs to stdout too: skip to our READY line
            line = self.proc.stdout.readline()
            if not line or line.startswith(b"READY"):
                break
        if not line.startswith(b"READY"):
            self.stop()
            tail = (self.workdir / "peer.log").read_text(errors="replace")[-2000:]
            raise PeerUnavailable(f"node-opcua peer did not start: {line!r}\n{tail}")
        # keep draining stdout so node-opcua's own logging can never fill the pipe and stall it
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        _, port, der = line.decode().split(maxsplit=2)
        self.cert_der = Path(der.strip())
        # node-opcua's default endpoint path is the resource path it was given; discover it
        self.endpoint = f"opc.tcp://127.0.0.1:{port}"

    def delete_node(self, node_id: str) -> None:
        """Delete a node of the running server (``ns=1;s=Kiln.Doomed1``), as a re-engineered PLC would."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"delete {node_id}\n".encode())
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
