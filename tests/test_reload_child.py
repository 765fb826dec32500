"""A config read in a child process (gateway.prebuild.in_child) that crashes or hangs fails that read
only: ``edgegw run``'s live reload is refused, the gateway keeps running the config it has, and the
next reload applies.  Real processes (fork), no broker: the gateway is built, its ``run`` replaced by
the reloads under test (nothing is polled)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import tomli_w

import gateway.app
from gateway import cli
from gateway.app import Gateway
from gateway.prebuild import in_child
from tests.test_memory_release import _data


def test_a_child_that_hangs_is_stopped_at_the_timeout() -> None:
    before = _children()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"gave no result within 1 s and was stopped"):
        in_child(lambda: time.sleep(60), quiet=True, timeout_s=1)
    assert time.monotonic() - t0 < 30  # not the child's 60 s
    assert not _children() - before  # no child left behind, not even a zombie (killed and reaped)


def _children() -> set[int]:
    """This process's child processes (other tests' servers included), zombies too."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def test_a_child_that_dies_is_an_error_naming_its_exit_status() -> None:
    with pytest.raises(RuntimeError, match=r"ended without a result \(exit status 7"):
        in_child(lambda: os._exit(7), quiet=True, timeout_s=30)
    assert in_child(lambda: 6 * 7, quiet=True, timeout_s=30) == 42  # and the next one works


def test_a_reload_whose_read_crashes_is_refused_and_the_gateway_carries_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(_data(tmp_path)), encoding="utf-8")
    prepare = Gateway.prepare_reload
    seen: list[object] = []

    async def run(self: Gateway) -> None:  # instead of polling: two reloads (SIGHUP)
        path.write_text(tomli_w.dumps(_data(tmp_path, devices=4)), encoding="utf-8")
        assert self.reload_source is not None
        monkeypatch.setattr(Gateway, "prepare_reload", lambda gw, new: os._exit(9))  # the child dies
        await self._reload_once(self.reload_source)
        rs = self.reload_status
        seen.append((rs.applied, rs.refused, rs.last_result, len(self.catalog.points), len(self.runners)))
        seen.append(rs.last_summary)
        monkeypatch.setattr(Gateway, "prepare_reload", prepare)
        await self._reload_once(self.reload_source)
        seen.append((rs.applied, rs.refused, rs.last_result, len(self.catalog.points), len(self.runners)))

    monkeypatch.setattr(gateway.app.Gateway, "run", run)
    assert cli.main(["run", "-c", str(path)]) == 0
    assert seen[0] == (0, 1, "refused", 60, 3)  # refused, the running config untouched
    assert "could not be read" in str(seen[1]) and "exit status 9" in str(seen[1])
    assert seen[2] == (1, 1, "applied", 80, 4)  # the next reload applies


def _run_with_the_reader_ending_by(sig: signal.Signals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """``edgegw run`` on a good file whose reading process receives ``sig``."""
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(_data(tmp_path)), encoding="utf-8")
    monkeypatch.setattr("gateway.config.load", lambda *a, **k: os.kill(os.getpid(), sig))
    return cli.main(["run", "-c", str(path)])


def test_edgegw_run_says_in_one_line_when_its_config_reader_is_killed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """As the kernel's OOM killer would end a child reading a huge config: exit 1, no traceback."""
    assert _run_with_the_reader_ending_by(signal.SIGKILL, tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    path = tmp_path / "gateway.toml"
    assert f"{path}: the process reading the config ended without a result (exit status -9: killed" in err
    assert "Traceback" not in err


def test_ctrl_c_while_the_config_is_read_exits_quietly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Ctrl-C reaches the whole foreground process group; here only the child gets it
    assert _run_with_the_reader_ending_by(signal.SIGINT, tmp_path, monkeypatch) == 130
    assert "Traceback" not in capsys.readouterr().err
