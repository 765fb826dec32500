"""The systemd units in deploy/: accepted by ``systemd-analyze verify``, hardened, consistent.

``systemd-analyze verify`` fails when ExecStart's binary does not exist, and the product installs it in
/opt/edgegw/venv (deploy/offline/install.sh), which this machine does not have. Rather than rewriting
ExecStart (the path would no longer be checked), each test builds a throw-away root: the host's
systemd units (so sysinit.target and friends resolve), the unit under test in /etc/systemd/system,
and an executable stub at ExecStart's path inside that root; then ``verify --root=ROOT``. The stub is
created from the unit's own ExecStart, and a test checks that this path is where install.sh installs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parent.parent
EDGE_UNIT = REPO / "deploy" / "systemd" / "edgegw.service"
INGEST_UNIT = REPO / "deploy" / "central" / "systemd" / "edgegw-ingest@.service"
# where Debian (and most distributions) keep the units systemd ships
HOST_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
MAX_EXPOSURE = 2.5  # `systemd-analyze security`: 0 (locked down) .. 10 (exposed)


def _tool() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        msg = "systemd-analyze missing (Debian package systemd)"
        if IN_CI:
            pytest.fail(f"{msg}: CI must install it (the README's test command does, as root)")
        pytest.skip(f"{msg}; run the README's test command as root to install it")
    return found


def directives(unit: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; repeated keys kept (SystemCallFilter= accumulates)."""
    out = []
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def value(unit: Path, key: str) -> str:
    found = [v for s, k, v in directives(unit) if s == "Service" and k == key]
    assert found, f"{unit.name}: no {key}="
    return found[-1]


def hardening_block(unit: Path) -> list[str]:
    text = unit.read_text()
    start = text.index("# --- hardening")
    return [line for line in text[start:text.index("[Install]")].splitlines() if line and not line.startswith("#")]


def make_root(tmp_path: Path, unit: Path, *, exec_stub: bool = True) -> Path:
    root = tmp_path / "root"
    host = next((d for d in HOST_UNIT_DIRS if (d / "sysinit.target").exists()), None)
    if host is None:
        if IN_CI:
            pytest.fail("no systemd units on this host: CI must install systemd (the README's test command does)")
        pytest.skip("no systemd unit directory on this host")
    shutil.copytree(host, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    shutil.copy(unit, root / "etc" / "systemd" / "system" / unit.name)
    if exec_stub:
        binary = Path(value(unit, "ExecStart").split()[0])
        assert binary.is_absolute()
        stub = root / binary.relative_to("/")
        stub.parent.mkdir(parents=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def instance(unit: Path) -> str:
    return unit.name.replace("@.", "@1.")


def verify(root: Path, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool(), "verify", f"--root={root}", instance(unit)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


@pytest.mark.parametrize("unit", [EDGE_UNIT, INGEST_UNIT], ids=lambda u: u.name)
def test_systemd_analyze_verify_accepts_the_unit(unit: Path, tmp_path: Path) -> None:
    result = verify(make_root(tmp_path, unit), unit)
    # verify exits 0 on an unknown key or a bad value (it only warns): any word about the unit is a failure
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 0 and not complaints, "\n".join(complaints)


@pytest.mark.parametrize("unit", [EDGE_UNIT, INGEST_UNIT], ids=lambda u: u.name)
def test_systemd_analyze_security_exposure_is_low(unit: Path, tmp_path: Path) -> None:
    root = make_root(tmp_path, unit)
    result = subprocess.run(
        [_tool(), "security", "--offline=yes", f"--root={root}", f"--threshold={int(MAX_EXPOSURE * 10)}",
         "--no-pager", instance(unit)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    assert result.returncode == 0, f"exposure above {MAX_EXPOSURE}:\n{result.stdout[-3000:]}{result.stderr}"


def test_verify_catches_a_typo_and_a_missing_binary(tmp_path: Path) -> None:
    """The checks above can fail: a misspelt key and an ExecStart that does not exist are reported."""
    typo = tmp_path / "edgegw.service"
    typo.write_text(EDGE_UNIT.read_text().replace("\nNoNewPrivileges=", "\nNoNewPrivilege="))
    result = verify(make_root(tmp_path / "a", typo), typo)
    assert "Unknown key" in result.stdout + result.stderr
    result = verify(make_root(tmp_path / "b", EDGE_UNIT, exec_stub=False), EDGE_UNIT)
    assert result.returncode != 0 and "not executable" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", [EDGE_UNIT, INGEST_UNIT], ids=lambda u: u.name)
def test_unit_is_hardened_and_does_not_restart_on_a_config_error(unit: Path) -> None:
    assert value(unit, "User") == "edgegw" or value(unit, "DynamicUser") == "yes"
    assert value(unit, "StateDirectory")
    assert value(unit, "WorkingDirectory") == "/var/lib/" + value(unit, "StateDirectory")
    assert value(unit, "ProtectSystem") == "strict"
    assert value(unit, "NoNewPrivileges") == "yes"
    assert value(unit, "CapabilityBoundingSet") == ""
    assert value(unit, "AmbientCapabilities") == ""
    assert value(unit, "PrivateTmp") == "yes"
    assert value(unit, "Restart") == "on-failure"
    assert value(unit, "RestartPreventExitStatus") == "2"  # gateway.cli.EXIT_USAGE: a config mistake


def test_config_error_exit_status_is_the_one_the_units_name() -> None:
    from gateway.cli import EXIT_USAGE

    assert str(EXIT_USAGE) == value(EDGE_UNIT, "RestartPreventExitStatus")


def test_edge_and_ingest_units_share_the_hardening_and_the_install_location() -> None:
    assert hardening_block(EDGE_UNIT) == hardening_block(INGEST_UNIT)
    edge_bin = value(EDGE_UNIT, "ExecStart").split()[0]
    assert edge_bin == value(INGEST_UNIT, "ExecStart").split()[0]
    # the offline installer's default venv is where the units look
    installer = (REPO / "deploy" / "offline" / "install.sh").read_text()
    venv = edge_bin.removesuffix("/bin/edgegw")
    assert f'VENV="${{EDGEGW_VENV:-{venv}}}"' in installer


def test_reload_checks_the_same_file_with_the_same_binary() -> None:
    """`systemctl reload edgegw` runs `edgegw reload` on the file `edgegw run` was started with (it checks the
    file, then signals the process holding that config's buffer)."""
    start = value(EDGE_UNIT, "ExecStart").split()
    reload = value(EDGE_UNIT, "ExecReload").split()
    assert reload[0] == start[0] and reload[1] == "reload" and reload[2:] == start[2:], (start, reload)
    from gateway.cli import build_parser

    assert build_parser().parse_args(reload[1:]).config == start[-1]
