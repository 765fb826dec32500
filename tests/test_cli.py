"""Command-line behaviour around the commands: a reader that closes the pipe early and a command
line that cannot work are neither tracebacks nor config errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_a_closed_pipe_is_no_traceback() -> None:
    """`edgegw ids validate ... | head -1`: far more output than a pipe holds, reader gone after a line."""
    codes = [f"88.608.5288/DEV.site.dev{i}" for i in range(20_000)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "ids", "validate", *codes],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"ok\t")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_buffer_without_a_config_or_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["buffer", "stats"]) == 2
    err = capsys.readouterr().err
    assert err == "error: give -c FILE (the gateway config) or --file BUFFER_DB\n"


def test_run_names_the_file_that_lacks_the_gateway_role(capsys: pytest.CaptureFixture[str]) -> None:
    ingest_only = ROOT / "deploy" / "examples" / "central-ingest.toml"
    assert main(["run", "-c", str(ingest_only)]) == 2
    err = capsys.readouterr().err
    assert f"error: {ingest_only}: invalid configuration (3 problem(s))" in err
    assert "  gateway: required to run a gateway" in err


def _all_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (),
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(" ".join(("edgegw", *path)), parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _all_parsers(sub, (*path, name))
    return found


def test_every_help_text_formats() -> None:
    """`edgegw <any command> --help` prints its help: a help string with a lone ``%`` made argparse raise
    "incomplete format" for `edgegw bench --help` (argparse %-formats every help string)."""
    parsers = _all_parsers(build_parser())
    assert len(parsers) > 40, [p for p, _ in parsers]
    broken = []
    for path, parser in parsers:
        try:
            text = parser.format_help()
        except (ValueError, TypeError, KeyError) as err:
            broken.append(f"{path}: {err}")
            continue
        assert path.split()[-1] in text
    assert not broken, broken
