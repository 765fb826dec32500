"""`edgegw bench modbus --cpu-quota`: the process really runs under a cgroup CPU quota, and leaves
no group behind.  Needs root (cgroups): skipped otherwise, failed in CI where tests run as root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

__all__: list[str] = []

_CHILD = """
import json, os, time
from pathlib import Path
from gateway.cpuquota import _hierarchy, confine
undo = confine(0.05)
root, version = _hierarchy()
group = root / f"edgegw-bench-{os.getpid()}"
end = time.monotonic() + 0.6
while time.monotonic() < end:
    pass
stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
undo()
print(json.dumps({"throttled": int(stat["nr_throttled"]), "group": str(group), "left": group.exists()}))
"""


def test_the_quota_throttles_the_process_and_is_removed_after() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs the tests as root: the cgroup quota must be testable")
        pytest.skip("needs root (cgroups)")
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0 and "no cgroup with the cpu controller" in proc.stderr and not IN_CI:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["throttled"] > 0  # 0.6 s of busy loop under 0.05 core: the kernel held it back
    assert not out["left"] and not Path(out["group"]).exists()


def test_a_quota_out_of_range_is_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "bench", "modbus", "--cpu-quota", "0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "--cpu-quota 0" in proc.stderr and "Traceback" not in proc.stderr


def test_bench_chain_runs_the_gateway_under_the_quota(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs the tests as root: the cgroup quota must be testable")
        pytest.skip("needs root (cgroups)")
    out = tmp_path / "chain.json"
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "bench", "chain", "--devices", "2", "--registers", "20",
                           "--seconds", "2", "--runs", "1", "--cpu-quota", "0.5", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["params"]["cpu_quota"] == 0.5
    assert result["polled_points_per_s"] > 0 and result["delivered_points_per_s"] > 0
    root = Path("/sys/fs/cgroup")  # the group was removed (v2 at the top, v1 under its controller)
    assert not [*root.glob("edgegw-bench-*"), *root.glob("*/edgegw-bench-*")]
