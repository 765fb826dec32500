"""An ingest that cannot reach or log in to its broker says so at once (it used to stay silent until it
had been connected once)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gateway.config import IngestSection
from gateway.ingest import Ingest
from hil.services import Mosquitto, _find, free_port
from tests.conftest import _start, eventually


def _cfg(tmp: Path, port: int, **mqtt: object) -> IngestSection:
    return IngestSection.model_validate({
        "mqtt": {"port": port, "client_id": "ingest-err", "timeout_s": 2, **mqtt},
        "influx": {"api": "file", "path": str(tmp / "out.lp")},
        "dead_letter_path": str(tmp / "dl.db"),
    })


def _password_file(d: Path) -> Path:
    d.chmod(0o755)
    passwd = d / "passwd"
    subprocess.run([_find("mosquitto_passwd"), "-b", "-c", str(passwd), "ingest", "right-pw"], check=True)
    passwd.chmod(0o644)
    return passwd


async def _first_error(ingest: Ingest, caplog: pytest.LogCaptureFixture) -> str:
    task = asyncio.create_task(ingest.run())
    try:
        await eventually(lambda: any(r.levelname == "ERROR" for r in caplog.records), timeout=10,
                         what="an ERROR about the broker")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return next(r.getMessage() for r in caplog.records if r.levelname == "ERROR")


async def test_unreachable_broker_is_an_error_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    msg = await _first_error(Ingest(_cfg(tmp_path, port)), caplog)
    assert f"cannot reach or log in to the broker 127.0.0.1:{port}" in msg and "attempt 1" in msg


@pytest.mark.integration
async def test_wrong_password_is_an_error_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    d = Path(tempfile.mkdtemp(prefix="edgegw-auth-"))
    passwd = _password_file(d)
    broker = Mosquitto(workdir=d / "m", extra_config=f"allow_anonymous false\npassword_file {passwd}\n")
    _start(broker)
    try:
        monkeypatch.setenv("TEST_INGEST_PW", "wrong-pw")
        ingest = Ingest(_cfg(tmp_path, broker.port, username="ingest", password_env="TEST_INGEST_PW"))
        msg = await _first_error(ingest, caplog)
        assert "cannot reach or log in to the broker" in msg and "wrong-pw" not in caplog.text
    finally:
        broker.stop()
        shutil.rmtree(d, ignore_errors=True)
