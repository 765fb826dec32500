"""``--log-format json``: one JSON object per stderr line, with the structured fields; text stays the default."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.logs import JsonFormatter
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto, free_port
from tests.collector import collect
from tests.conftest import eventually
from tests.gateway_process import REPO, gas_substations_toml

__all__: list[str] = []


def _record(msg: str, *args: object, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("disk\non fire")
        except RuntimeError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("edgegw.runner", logging.WARNING, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_json_line_has_time_level_logger_message_and_the_extra_fields() -> None:
    line = JsonFormatter().format(_record("Device %s is down: %s", "风机-1", "refused", device="风机-1",
                                          reason="unreachable", code="88.608.5288/P.x"))
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["level"] == "WARNING" and obj["logger"] == "edgegw.runner"
    assert obj["message"] == "Device 风机-1 is down: refused"
    assert obj["time"].endswith("+00:00") and "T" in obj["time"]
    assert (obj["device"], obj["reason"], obj["code"]) == ("风机-1", "unreachable", "88.608.5288/P.x")
    assert "风机" in line  # UTF-8 as is, not \\u escapes


def test_json_line_keeps_a_traceback_on_one_line_and_odd_fields_readable() -> None:
    line = JsonFormatter().format(_record("boom", exc=True, level="shadow", path=Path("x"), n={1, 2}))
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["level"] == "WARNING" and obj["field_level"] == "shadow"  # an extra cannot shadow a core field
    assert obj["path"] == "x" and "RuntimeError: disk\non fire" in obj["exception"]


def _parse_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"stderr line {n} is not JSON: {line!r}\n--- stderr ---\n{text[-4000:]}")
        assert isinstance(obj, dict) and {"time", "level", "logger", "message"} <= obj.keys(), line
        out.append(obj)
    return out


@pytest.mark.integration
async def test_edgegw_run_with_json_logs_writes_only_json_lines(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A real ``edgegw run``: a simulated PLC that answers, a device nobody listens for, a real broker.
    Every stderr line parses; the up and down transitions carry ``device`` (and ``reason`` when down)."""
    dead_port = free_port()  # closed again: connecting is refused, the device is down
    cfg = tmp_path / "gw.toml"
    err_path = tmp_path / "stderr.log"
    async with SimulatedPlc(tick_s=0.05, seed=3) as plc, collect(
        mosquitto.port, "jsonlogs/+/+/data", "json-logs-subscriber"
    ) as received:
        cfg.write_text("\n".join([
            '[gateway]\nid = "gw-json"\nsite = "ordos-cc-01"\nenterprise_prefix = "88.608.5288"\n',
            f'[buffer]\npath = "{(tmp_path / "buffer.db").as_posix()}"\nlinger_ms = 20\n',
            f'[uplink]\nport = {mosquitto.port}\ntopic_prefix = "jsonlogs"\nclient_id = "gw-json"\n',
            gas_substations_toml(plc.port, 1, poll_interval_ms=100),
            gas_substations_toml(dead_port, 1, first=7, poll_interval_ms=100),
        ]))
        with err_path.open("wb") as err, (tmp_path / "stdout.log").open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "run", "--log-format", "json", "-c", str(cfg),
                cwd=REPO, stdout=out, stderr=err,
            )
        try:
            def seen(fragment: str) -> bool:
                return fragment in err_path.read_text()
            await eventually(lambda: seen("Device gas-sub-0 is up") and seen("Device gas-sub-7 is down"),
                             timeout=30, what=f"up and down lines:\n{err_path.read_text()[-3000:]}")
            await eventually(lambda: len(received) >= 2, timeout=30, what="published batches")
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                rc = await proc.wait()
    text = err_path.read_text()
    assert rc == 0, text[-3000:]
    lines = _parse_lines(text)
    up = [o for o in lines if o["message"].startswith("Device gas-sub-0 is up")]
    down = [o for o in lines if o["message"].startswith("Device gas-sub-7 is down")]
    assert up and up[0]["device"] == "gas-sub-0" and up[0]["level"] == "INFO"
    assert down and down[0]["device"] == "gas-sub-7" and down[0]["level"] == "WARNING"
    assert down[0]["reason"] in ("unreachable", "timeout", "disconnected"), down[0]
    assert (tmp_path / "stdout.log").read_text() == ""


def test_a_config_error_under_json_logs_is_one_json_line(tmp_path: Path) -> None:
    import subprocess

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[gateway]\nid = "gw"\nsite = "s"\n[[devices]]\ntype = "modbus_tcp"\nname = "d"\n')
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "--log-format", "json", "run", "-c", str(cfg)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    [obj] = _parse_lines(result.stderr)
    assert obj["level"] == "ERROR" and obj["reason"] == "config" and obj["issues"]
    assert any("devices[0]" in issue for issue in obj["issues"])


def test_text_stays_the_default(tmp_path: Path) -> None:
    import subprocess

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[gateway]\nid = "gw"\n')
    env = {k: v for k, v in os.environ.items() if k != "EDGEGW_LOG_FORMAT"}
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)],
                            cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
