"""One `edgegw run` per buffer; SIGHUP reloads; `edgegw run -v`; `browse` without a scheme.
Real processes of `edgegw run` (no broker needed: the data stays buffered)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from hil.modbus_server import SimulatedPlc
from tests.conftest import eventually
from tests.gateway_process import REPO, gas_substations_toml, start_gateway, stop_gateway


def _config(tmp_path: Path, plc_port: int) -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        '[gateway]\nid = "gw-lock"\nsite = "baotou-mine-01"\nenterprise_prefix = "88.608.5288"\n\n'
        f'[buffer]\npath = "{tmp_path / "buffer.db"}"\n\n'
        '[uplink]\nhost = "127.0.0.1"\nport = 1\n\n'  # nothing listens: the data stays buffered
        + gas_substations_toml(plc_port, 1, poll_interval_ms=200)
    )
    return cfg


async def test_a_second_run_on_one_buffer_refuses_and_sighup_is_logged(tmp_path: Path) -> None:
    async with SimulatedPlc(tick_s=0) as plc:
        cfg = _config(tmp_path, plc.port)
        log = tmp_path / "first.log"
        first = await start_gateway(cfg, log)
        try:
            await eventually(lambda: "is up." in log.read_text(), what="the first gateway polling")
            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg), "-v", cwd=REPO,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                _, err = await asyncio.wait_for(second.communicate(), 60)
            finally:
                if second.returncode is None:  # it started after all: never leave it running
                    second.kill()
                    await second.wait()
            assert second.returncode == 2, err
            # with -v the start-up phases log at DEBUG first; the verdict is the one error line
            lines = [ln for ln in err.decode().strip().splitlines() if " DEBUG " not in ln]
            assert lines == [
                f"error: another edgegw run (PID {first.pid}) is using the buffer {tmp_path / 'buffer.db'} (it"
                " holds a lock on the file). Stop it first (systemctl stop edgegw), or give this config its own"
                " [buffer] path"
            ], lines
            first.send_signal(signal.SIGHUP)
            await eventually(lambda: "Reloaded config: 0 changed, 0 added, 0 removed, 1 unchanged."
                             in log.read_text(), what="the reload line")
            assert first.returncode is None
        finally:
            await stop_gateway(first, log)


def test_verbose_after_the_sub_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, 1)
    assert main(["check", "-c", str(cfg), "-v"]) == 0
    assert main(["-v", "check", "-c", str(cfg)]) == 0
    assert "ok (1 device" in capsys.readouterr().out


def test_browse_without_a_scheme_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["browse", "127.0.0.1:4840"]) == 2
    err = capsys.readouterr().err
    assert err == "error: '127.0.0.1:4840' is not an OPC UA endpoint URL: write opc.tcp://127.0.0.1:4840\n"


def test_bench_opcua_without_node_opcua_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hil.node_opcua_peer

    monkeypatch.setattr(hil.node_opcua_peer, "NODE_DIR", tmp_path)  # a directory without node_modules
    assert main(["bench", "opcua", "--items", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "npm ci" in err, err


def test_browse_with_a_user_needs_the_password_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EDGEGW_OPCUA_PASSWORD", raising=False)
    assert main(["browse", "opc.tcp://127.0.0.1:1", "--user", "operator"]) == 2
    assert capsys.readouterr().err == (
        "error: --user operator: set the password in the environment variable EDGEGW_OPCUA_PASSWORD"
        " (--password-env names another); it is never a command-line argument\n"
    )
