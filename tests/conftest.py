"""Shared fixtures: real servers on 127.0.0.1 (free ports), started once per session.

Under CI (``CI=true``) a server that cannot start is a test failure, never a silent skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.services import Influx1, Mosquitto, PtyPair, Service, ServiceUnavailable, VictoriaMetrics

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _start(service: Service) -> Service:
    try:
        service.start()
    except ServiceUnavailable as err:
        if IN_CI:
            pytest.fail(f"{err}: CI must install it (the README's test command does, as root)")
        pytest.skip(f"{err}; run the README's test command as root to install it")
    return service


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # not pytest's tmp dirs: those are 0700 and user 'mosquitto' could not reach its data dir
    d = Path(tempfile.mkdtemp(prefix="edgegw-services-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _session_service(service: Service) -> Iterator[Service]:
    _start(service)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def mosquitto(services_dir: Path) -> Iterator[Service]:
    yield from _session_service(Mosquitto(workdir=services_dir / "mosquitto"))


@pytest.fixture(scope="session")
def influx1(services_dir: Path) -> Iterator[Service]:
    yield from _session_service(Influx1(workdir=services_dir / "influxd"))


@pytest.fixture(scope="session")
def victoria(services_dir: Path) -> Iterator[Service]:
    yield from _session_service(VictoriaMetrics(workdir=services_dir / "victoria-metrics"))


@pytest.fixture
def pty_pair() -> Iterator[Service]:
    """Two ptys joined by socat: a Modbus RTU server on ``a``, the gateway on ``b``."""
    d = Path(tempfile.mkdtemp(prefix="edgegw-pty-"))
    yield from _session_service(PtyPair(workdir=d))
    shutil.rmtree(d, ignore_errors=True)


async def eventually(
    condition: Callable[..., bool | Awaitable[bool]], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> None:
    """Poll a condition under a timeout (never a bare sleep to wait for an effect).

    ``condition`` is called without arguments; it is typed ``Callable[..., ...]`` so that a lambda in a
    loop may bind the loop's variables through default arguments (``lambda n=n: ...``)."""
    end = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(interval)


async def stop_tasks(*tasks: asyncio.Task[Any]) -> None:
    """Cancel background tasks in a teardown and re-raise what any of them died of: cancellation is
    the expected end, anything else (an assertion in a callback, a crash) fails the test instead of
    being thrown away as ``gather(..., return_exceptions=True)`` would."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup("background tasks failed", errors)


def built(build: Callable[[Path], Path], workdir: Path) -> Path:
    """A test helper compiled from C (hil/*.c); a missing compiler or library skips, under CI fails."""
    try:
        return build(workdir)
    except ServiceUnavailable as err:
        if IN_CI:
            pytest.fail(f"{err}: CI must install it (the README's test command does, as root)")
        pytest.skip(f"{err}; run the README's test command as root to install it")


@pytest.fixture(scope="session")
def powercut_library(services_dir: Path) -> Path:
    """hil/powercut's LD_PRELOAD library (power cuts, failing and slow syncs), compiled once per session."""
    from hil.powercut import build_library

    return built(build_library, services_dir)


@pytest.fixture(scope="session")
def libmodbus_server(services_dir: Path) -> Path:
    """The libmodbus interop server (hil/libmodbus/server.c), compiled once per session."""
    from hil.libmodbus_peer import build_server

    return built(build_server, services_dir)


SMALL_FS_BYTES = 3 << 20


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A 3 MiB tmpfs (a small, full-able disk); needs root (mount): skipped otherwise, failed in CI."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the full-disk test needs root to mount a tmpfs (CI runs the tests as root)")
        pytest.skip("needs root to mount a small tmpfs")
    d = Path(tempfile.mkdtemp(prefix="edgegw-fulldisk-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS_BYTES},mode=0755", "tmpfs", str(d)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        d.rmdir()
        msg = f"cannot mount a tmpfs: {mounted.stderr.strip()}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)]).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], check=True)  # a file still open after a failure
        d.rmdir()
