"""An ingest that cannot reach or log in to its broker says so at once (it used to stay silent until it
had been connected once)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
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


@pytest.mark.integration
async def test_messages_held_when_the_broker_dies_are_written(tmp_path: Path) -> None:
    """A broker killed with SIGKILL loses what it had not saved; the messages the ingest holds then
    (received, not yet written: here a 30 s linger keeps them) are the last copies and must reach the
    store, unacknowledged.  Found by hil/scenarios/broker_kill.toml (16 points lost per run or so)."""
    from gateway.config import MqttConfig
    from gateway.sinks.mqtt import MqttClient
    from tests.ingest.test_flow_control import _batch

    d = Path(tempfile.mkdtemp(prefix="edgegw-held-"))
    d.chmod(0o755)
    conf = d / "no-persistence.conf"
    conf.write_text("max_queued_messages 1000\n")  # persistence off: a kill loses every queued message
    broker = Mosquitto(workdir=d / "m", shipped=conf)
    _start(broker)
    cfg = IngestSection.model_validate({
        "mqtt": {"port": broker.port, "client_id": "ingest-held", "timeout_s": 2, "keepalive_s": 5},
        "influx": {"api": "file", "path": str(tmp_path / "out.lp")},
        "dead_letter_path": str(tmp_path / "dl.db"), "linger_ms": 30_000,
    })
    ingest = Ingest(cfg)
    task = asyncio.create_task(ingest.run())
    try:
        await eventually(lambda: ingest.subscribed.is_set(), timeout=20, what="the ingest to subscribe")
        async with MqttClient(MqttConfig(port=broker.port, timeout_s=5), "pub-held") as client:
            for seq in range(3):
                await client.publish_checked("edgegw/site-h/gw-h/data", _batch("site-h", "gw-h", seq, 4), timeout=5)
        await eventually(lambda: ingest.stats.messages == 3, timeout=10, what="the ingest to hold 3 messages")
        assert not (tmp_path / "out.lp").exists() or (tmp_path / "out.lp").read_text() == ""  # still held
        broker.stop(signal.SIGKILL)
        await eventually(lambda: (tmp_path / "out.lp").exists() and
                         len((tmp_path / "out.lp").read_text().splitlines()) == 12, timeout=15,
                         what="the 12 held points written after the broker died")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()
        shutil.rmtree(d, ignore_errors=True)
