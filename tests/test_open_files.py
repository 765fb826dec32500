"""A gateway of many devices holds one connection each: `edgegw run` raises its soft open-files limit
to what the config needs, and a hard limit below that is one located line, not connect errors later.

Each case runs in a child process: a lowered hard limit cannot be raised again in the same process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomli_w


def _config(path: Path, devices: int) -> None:
    path.write_text(tomli_w.dumps({
        "gateway": {"id": "gw1", "site": "s1", "enterprise_prefix": "88.608.5288"},
        "uplink": {"host": "127.0.0.1"},
        "buffer": {"path": str(path.parent / "buffer.db")},
        "devices": [{"type": "modbus_tcp", "name": f"plc{d}", "host": "127.0.0.1", "port": 1502,
                     "points": [{"name": "r0", "address": 0}]} for d in range(devices)],
    }), encoding="utf-8")


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_a_hard_limit_below_the_need_is_one_located_line(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    _config(cfg, 100)  # needs 164
    done = _child(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_NOFILE, (150, 150))
        from gateway.cli import main
        sys.exit(main(["check", "--here", "-c", {str(cfg)!r}]))
    """)
    assert done.returncode == 2, done.stderr
    assert "devices: 100 devices need about 164 open files" in done.stderr and "hard limit" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_soft_limit_is_raised_to_the_need_and_never_lowered(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    _config(cfg, 300)
    done = _child(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 1000))
        from gateway.config import load
        from gateway.preflight import file_problems, open_files_needed, raise_open_files
        cfg = load({str(cfg)!r})
        assert not [e for e in file_problems(cfg, "edge").errors if e.location == "devices"]
        print(open_files_needed(cfg), raise_open_files(open_files_needed(cfg)),
              resource.getrlimit(resource.RLIMIT_NOFILE)[0], raise_open_files(10),
              resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["364", "364", "364", "364", "364"]


def test_a_limit_that_may_not_be_raised_is_one_line_naming_the_unit_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipped systemd unit filters `setrlimit` (~@resources, EPERM); seccomp cannot be set up in
    a test, so `resource.setrlimit` is replaced by one that answers as the filter does."""
    import errno
    import resource

    from gateway.core.errors import ConfigError
    from gateway.preflight import raise_open_files

    def refused(*_: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 524288))
    monkeypatch.setattr(resource, "setrlimit", refused)
    assert raise_open_files(1000) == 1024  # enough already: nothing to raise, nothing refused
    with pytest.raises(ConfigError) as err:
        raise_open_files(1064)
    assert "1000 devices need about 1064 open files; the limit is 1024" in str(err.value)
    assert "LimitNOFILE=1064" in str(err.value)
