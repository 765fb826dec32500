"""Reload without a gap: a real `edgegw run` process, three simulated gas substations, a real mosquitto.

What reached the broker is the oracle: the source timestamps of each device's samples.  A device
whose config did not change must show one sample per poll interval straight through the reload (no
missed cycle), a changed device runs at its new interval, a removed one stops, an added one starts;
every batch names its points as they were when polled (the removed device's point indices are
reused by the added one).  An invalid config on SIGHUP is refused with located errors and polling
goes on.  No secret of the config appears in any line the reloads log.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.codec import decode
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto, free_port
from tests.collector import collect
from tests.conftest import eventually
from tests.gateway_process import REPO, gas_substations_toml, stop_gateway

INTERVAL_MS = 500
SECRET_A, SECRET_B = "reload-pw-A8q3z1", "reload-pw-B4k9x6"


def _config(tmp: Path, plc_port: int, broker_port: int, http_port: int, devices: dict[int, int], *,
            password_env: str = "EDGEGW_TEST_RELOAD_PW_A", keepalive_s: int = 30, linger_ms: int = 20) -> str:
    """``devices``: substation number -> poll interval (ms)."""
    head = (
        '[gateway]\nid = "gw-reload"\nsite = "baotou-mine-01"\nenterprise_prefix = "88.608.5288"\n\n'
        f'[buffer]\npath = "{tmp / "buffer.db"}"\nlinger_ms = {linger_ms}\n\n'
        f'[uplink]\nhost = "127.0.0.1"\nport = {broker_port}\ntopic_prefix = "t-reload"\nclient_id = "gw-reload"\n'
        f'username = "gw"\npassword_env = "{password_env}"\nkeepalive_s = {keepalive_s}\n\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n\n'
    )
    blocks = [gas_substations_toml(plc_port, 1, first=d, poll_interval_ms=ms) for d, ms in devices.items()]
    return head + "\n".join(blocks)


def _samples(received: list[bytes]) -> dict[str, list[int]]:
    """Device -> sorted source times of its `seq` point (one per poll), from what reached the broker."""
    out: dict[str, set[int]] = defaultdict(set)
    for payload in list(received):
        for p in decode(payload).points:
            if p.key.endswith(".seq"):
                assert p.key == f"{p.device}.seq"
                out[p.device].add(p.ts_ns)
    return {d: sorted(ts) for d, ts in out.items()}


def _gaps(ts: list[int], start_ns: int, end_ns: int, interval_ms: int) -> list[tuple[int, int]]:
    """Consecutive samples within [start, end] further apart than 1.5 intervals: a missed poll cycle."""
    window = [t for t in ts if start_ns <= t <= end_ns]
    return [(a, b) for a, b in itertools.pairwise(window) if b - a > 1.5 * interval_ms * 1e6]


def _after(ts: list[int], t_ns: int) -> int:
    return sum(1 for t in ts if t > t_ns)


def _status(http_port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/status?limit=1", timeout=5) as r:
        result: dict[str, object] = json.load(r)
        return result


def _metrics(http_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _deltas_ms(ts: list[int], start_ns: int, end_ns: int) -> list[int]:
    window = [t for t in ts if start_ns <= t <= end_ns]
    return [round((b - a) / 1e6) for a, b in itertools.pairwise(window)]


@pytest.mark.timeout(300)
async def test_sighup_reload_keeps_untouched_devices_polling_without_a_gap(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "gateway.toml"
    log = tmp_path / "gateway.log"
    http = free_port()
    env = {**os.environ, "EDGEGW_TEST_RELOAD_PW_A": SECRET_A, "EDGEGW_TEST_RELOAD_PW_B": SECRET_B}
    async with SimulatedPlc(tick_s=0.1) as plc, collect(mosquitto.port, "t-reload/+/+/data", "reload-oracle") as got:
        three = {0: INTERVAL_MS, 1: INTERVAL_MS, 2: INTERVAL_MS}
        cfg.write_text(_config(tmp_path, plc.port, mosquitto.port, http, three))
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-X", "faulthandler", "-m", "gateway.cli", "run", "-c", str(cfg),
                cwd=REPO, stdout=out, stderr=out, env=env,
            )
        try:
            await eventually(lambda: all(len(_samples(got).get(f"gas-sub-{d}", [])) >= 6 for d in range(3)),
                             timeout=60, what="three devices polling and published")

            # 1. change one device (its poll interval) and, in passing, two settings that need a restart and
            #    the variable the uplink password comes from (its value must not appear anywhere)
            cfg.write_text(_config(tmp_path, plc.port, mosquitto.port, http, {0: INTERVAL_MS, 1: 250, 2: INTERVAL_MS},
                                   password_env="EDGEGW_TEST_RELOAD_PW_B", keepalive_s=45, linger_ms=30))
            hup = time.time_ns()
            proc.send_signal(signal.SIGHUP)
            await eventually(lambda: "Reloaded config:" in log.read_text(), timeout=30, what="the reload")
            text = log.read_text()
            assert "Reloaded config: 1 changed (gas-sub-1), 0 added, 0 removed, 2 unchanged." in text, text[-3000:]
            assert ("not applied until restart: [buffer] linger_ms, [uplink] password_env, [uplink] keepalive_s"
                    in text), text[-3000:]
            done = time.time_ns()
            await eventually(lambda: all(_after(_samples(got).get(f"gas-sub-{d}", []), done) >= 8 for d in range(3)),
                             timeout=60, what="every device polled after the reload")
            samples = _samples(got)
            window = (hup - 6 * INTERVAL_MS * 1_000_000, done + 6 * INTERVAL_MS * 1_000_000)
            for d in (0, 2):
                ts = samples[f"gas-sub-{d}"]
                with capsys.disabled():  # the figures of the "done when", for the report
                    around = [round((t - hup) / 1e6) for t in ts if window[0] <= t <= window[1]]
                    print(f"\ngas-sub-{d}: poll times in ms relative to the SIGHUP (reload applied at "
                          f"{round((done - hup) / 1e6)}): {around}")
                assert _gaps(ts, *window, INTERVAL_MS) == [], f"gas-sub-{d} missed a poll cycle across the reload"
                assert len([t for t in ts if window[0] <= t <= window[1]]) >= 12  # the window spans at least 6 s
            changed = samples["gas-sub-1"]
            after = _deltas_ms(changed, done, done + 10**10)
            with capsys.disabled():
                print(f"\ngas-sub-1 (changed to 250 ms): ms between polls after the reload: {after}")
            assert sorted(after)[len(after) // 2] in range(200, 320), after  # median: the new interval
            # the untouched devices were not reconnected: "is up" is logged once per runner start
            text = log.read_text()
            assert text.count("Device gas-sub-0 is up.") == 1 and text.count("Device gas-sub-2 is up.") == 1
            assert text.count("Device gas-sub-1 is up.") == 2

            # 2. an invalid config is refused with located errors; polling goes on unchanged
            bad = cfg.read_text().replace("poll_interval_ms = 250", "poll_interval_ms = -5", 1)
            cfg.write_text(bad)
            refused_at = time.time_ns()
            proc.send_signal(signal.SIGHUP)
            await eventually(lambda: "Reload refused:" in log.read_text(), timeout=30, what="the refusal")
            text = log.read_text()
            line_no = bad.splitlines().index("poll_interval_ms = -5") + 1
            assert f"ERROR edgegw.app: Reload refused: {cfg}:{line_no}:" in text, text[-3000:]
            assert "devices[1].poll_interval_ms" in text
            await eventually(lambda: all(_after(_samples(got)[f"gas-sub-{d}"], refused_at) >= 6 for d in range(3)),
                             timeout=60, what="polling to go on after the refused reload")
            samples = _samples(got)
            for d in (0, 2):
                assert _gaps(samples[f"gas-sub-{d}"], refused_at - 10**9, time.time_ns(), INTERVAL_MS) == []
            assert _deltas_ms(samples["gas-sub-1"], refused_at, time.time_ns())[-1] < 400  # still at 250 ms

            # 3. remove one device and add another (it takes the removed one's point indices)
            cfg.write_text(_config(tmp_path, plc.port, mosquitto.port, http, {0: INTERVAL_MS, 1: 250, 3: INTERVAL_MS},
                                   password_env="EDGEGW_TEST_RELOAD_PW_B", keepalive_s=45, linger_ms=30))
            swap_at = time.time_ns()
            assert main(["reload", "-c", str(cfg)]) == 0  # `edgegw reload` finds the process and signals it
            assert f"asked edgegw run (PID {proc.pid}) to reload" in capsys.readouterr().out
            await eventually(lambda: "1 added (gas-sub-3), 1 removed (gas-sub-2), 2 unchanged" in log.read_text(),
                             timeout=30, what="the second reload")
            swapped = time.time_ns()
            await eventually(lambda: _after(_samples(got).get("gas-sub-3", []), swapped) >= 4, timeout=60,
                             what="the added device published")
            samples = _samples(got)
            assert min(samples["gas-sub-3"]) > swap_at  # no sample of the removed device is named after it
            assert max(samples["gas-sub-2"]) < swapped  # and the removed device stopped
            assert _gaps(samples["gas-sub-0"], swap_at - 10**9, time.time_ns(), INTERVAL_MS) == []
            status = await asyncio.to_thread(_status, http)
            names = [d["name"] for d in status["devices"]]  # type: ignore[attr-defined]
            assert names == ["gas-sub-0", "gas-sub-1", "gas-sub-3"], names
            reload = status["reload"]
            assert reload == {**reload, "applied": 2, "refused": 1, "last_result": "applied"}, reload  # type: ignore[dict-item]
            metrics = await asyncio.to_thread(_metrics, http)
            assert 'edgegw_config_reloads_total{result="applied"} 2.0' in metrics
            assert 'edgegw_config_reloads_total{result="refused"} 1.0' in metrics
            assert 'device="gas-sub-2"' not in metrics and 'edgegw_device_reads_total{device="gas-sub-3"}' in metrics
        finally:
            await stop_gateway(proc, log)
    text = log.read_text()
    for secret in (SECRET_A, SECRET_B):
        assert secret not in text
    # 4. no gateway runs now: one line, non-zero
    assert main(["reload", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no edgegw run is using the buffer {tmp_path / 'buffer.db'} of {cfg}: nothing to reload "
                   "(start it instead)"], err


def test_reload_of_an_invalid_file_prints_the_errors_and_signals_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(_config(tmp_path, 1, 1, 1, {0: -5}))
    assert main(["reload", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cfg}: invalid configuration (1 problem(s))\n  {cfg}:") and "poll_interval_ms" in err
