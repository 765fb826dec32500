"""``edgegw run`` as a real subprocess for fault tests: start, kill -9, stop gracefully.

The child runs with ``-X faulthandler``: if a graceful stop does not finish in time, the test sends
SIGABRT, so the log ends with every thread's stack, and fails with that log instead of hanging.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

__all__ = ["REPO", "accepted_batches", "gas_substations_toml", "kill_9", "start_gateway", "stop_gateway"]

REPO = Path(__file__).resolve().parent.parent


async def start_gateway(cfg: Path, log: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-X", "faulthandler", "-m", "gateway.cli", "run", "-c", str(cfg),
            cwd=REPO, stdout=out, stderr=out, env=env,
        )


async def kill_9(proc: asyncio.subprocess.Process) -> None:
    proc.kill()
    assert await proc.wait() == -signal.SIGKILL


async def stop_gateway(proc: asyncio.subprocess.Process, log: Path, timeout: float = 60) -> None:
    """SIGTERM, then the gateway must drain and exit 0 within ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            rc = await proc.wait()
    except TimeoutError:
        proc.send_signal(signal.SIGUSR1)  # the gateway prints its asyncio tasks' stacks
        await asyncio.sleep(1)  # time to write them (nothing else to wait on)
        proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to the log
        await proc.wait()
        pytest.fail(f"the gateway did not stop within {timeout} s of SIGTERM:\n{log.read_text()[-6000:]}")
    assert rc == 0, log.read_text()[-3000:]


def gas_substations_toml(
    plc_port: int, devices: int, *, first: int = 0, poll_interval_ms: int = 20, ch4_class: bool = False
) -> str:
    """``[[devices]]`` blocks for ``edgegw run``: simulated gas substations ``gas-sub-<first>``... on one
    simulated PLC's port, each with the stub's whole point list (``ch4_class``: the coal-mine preset
    class on the CH4 point, so its alarm thresholds apply)."""
    from firmware_stubs.gas_substation import point_config

    lines = []
    for d in range(first, first + devices):
        lines.append(
            f'[[devices]]\ntype = "modbus_tcp"\nname = "gas-sub-{d}"\nhost = "127.0.0.1"\nport = {plc_port}\n'
            f"poll_interval_ms = {poll_interval_ms}\ntimeout_ms = 1000\nbackoff_max_ms = 200\n"
        )
        for p in point_config():
            if ch4_class and p["name"] == "ch4":
                p = {**p, "class": "ch4"}
            lines.append("[[devices.points]]\n" + "".join(
                f'{k} = "{v}"\n' if isinstance(v, str) else f"{k} = {v}\n" for k, v in p.items()))
    return "\n".join(lines)


def accepted_batches(db: Path) -> int:
    """The buffer's accepted_batches as another process sees it while the gateway runs (0 while the
    gateway is still creating or opening the file)."""
    import sqlite3

    from gateway.buffer import SqliteBuffer
    from gateway.core.errors import BufferCorruptError

    try:
        buf = SqliteBuffer(db, readonly=True)
    except (BufferCorruptError, sqlite3.Error):  # not created yet, or its start-up checkpoint holds it
        return 0
    try:
        return buf.counters()["accepted_batches"]
    except sqlite3.Error:  # no schema yet
        return 0
    finally:
        buf.close()
