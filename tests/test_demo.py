"""`edgegw demo`: one command shows live points end to end, stops after --duration or on Ctrl-C.

Runs the real demo as a subprocess: two pymodbus PLC simulators, the in-process amqtt broker, the
gateway and the ingest writing a line-protocol file.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

CODE = "88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4"


def test_demo_with_duration_prints_points_and_writes_line_protocol(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "8", "--plain", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert CODE in res.stdout and "%CH4" in res.stdout and "good" in res.stdout
    assert "First points reached the ingest side" in res.stdout
    lines = (tmp_path / "telemetry.lp").read_text().splitlines()
    assert any(f"code={CODE}," in ln for ln in lines)
    assert all(ln.startswith(("telemetry,", "alarm,")) for ln in lines)
    # the second substation's CH4 excursion crosses the preset's 1.0 % alarm threshold a few
    # seconds in: shown live and written to the alarm measurement with the point's code
    assert "gas-sub-02.ch4: normal -> high (value 1.2 %CH4, threshold 1.0)" in res.stdout
    assert any(ln.startswith("alarm,") and "code=88.608.5288/DEV.baotou-mine-01.gas-sub-02.ch4," in ln
               and "level=high" in ln for ln in lines)


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "demo", "--plain", "--data-dir", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=err_file, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        assert proc.stdout is not None
        # a thread reads the lines, so that waiting for the next one has a timeout: a silent demo
        # fails the test after the deadline instead of hanging it
        lines: queue.Queue[str | None] = queue.Queue()

        def pump(out: IO[str]) -> None:
            for line in out:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the demo printed no point within 60 s:\n{err_path.read_text()[-2000:]}")
            if line is None:
                pytest.fail(f"the demo exited without printing a point:\n{err_path.read_text()[-2000:]}")
            if CODE in line:
                break
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err_path.read_text()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
