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

__all__ = ["REPO", "kill_9", "start_gateway", "stop_gateway"]

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
