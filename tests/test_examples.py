"""Every example config in deploy/examples/ passes ``edgegw check`` (and a broken copy does not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import EXIT_USAGE, main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.toml"))


def test_the_plant_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"baotou-mine.toml", "ordos-coal-chemical.toml", "central-ingest.toml"} <= names


@pytest.mark.parametrize("cfg", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "-c", str(cfg)])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert f"{cfg}: ok (" in out


def test_ordos_example_keeps_recipes_on_site_and_names_points_in_chinese() -> None:
    from gateway.config import load

    cfg = load(REPO / "deploy" / "examples" / "ordos-coal-chemical.toml")
    types = {d.type for d in cfg.devices}
    assert {"opcua", "modbus_tcp", "modbus_rtu_tcp"} <= types
    points = {(d.name, p.name): p for d in cfg.devices for p in d.points}
    assert points[("gasifier-a", "oxygen_coal_ratio")].data_grade == "core"
    assert cfg.data_policy.core == "keep_on_site"
    assert all(p.display_name for p in points.values())


def test_a_broken_copy_fails_check_with_its_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "ordos.toml"
    text = (REPO / "deploy" / "examples" / "ordos-coal-chemical.toml").read_text()
    broken.write_text(text.replace('data_type = "uint32"', 'data_type = "uint33"'))
    assert main(["check", "-c", str(broken)]) == EXIT_USAGE
    assert "data_type" in capsys.readouterr().err
