"""Start-up at scale: each phase of loading and compiling a config is logged, the point table is
built once per config, and a minted code that collides with a given one is still found."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import tomli_w

import gateway.config
from gateway.app import Gateway
from gateway.catalog import Catalog, build_catalog
from gateway.config import Config, load, parse
from gateway.core.errors import ConfigError
from gateway.startup import StartupProgress
from tests.test_config import GOOD, broken

__all__: list[str] = []


@pytest.mark.parametrize("quiet_below_s", [0.0, 3600.0])
def test_loading_logs_each_phase_with_the_points(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, quiet_below_s: float
) -> None:
    """A slow start (here: any, quiet_below_s = 0) says each phase at INFO; a quick one at DEBUG only."""
    path = tmp_path / "gw.toml"
    path.write_bytes(tomli_w.dumps(GOOD).encode())
    progress = StartupProgress(quiet_below_s=quiet_below_s)
    with caplog.at_level(logging.DEBUG, logger="edgegw.startup"):
        cfg = load(path, progress)
        progress.done()
    phases = [r.__dict__["phase"] for r in caplog.records if "phase" in r.__dict__]
    assert phases == ["file read and TOML parsed", "config validated", "points checked (codes, tags, lines, policies)"]
    assert {r.levelno for r in caplog.records} == {logging.INFO if quiet_below_s == 0 else logging.DEBUG}
    assert progress.points == 3 == sum(len(d.points) for d in cfg.devices)
    assert "3 points" in caplog.records[2].getMessage()
    assert caplog.records[-1].getMessage().startswith("Start-up done in ")
    assert "startup_s" in caplog.records[-1].__dict__


def test_the_point_table_is_built_once_per_config() -> None:
    cfg = parse(GOOD)  # parsing built it to check the codes
    assert cfg.catalog() is cfg.catalog()
    other = parse(GOOD)
    assert other.catalog() is not cfg.catalog()
    assert other.catalog().points == cfg.catalog().points
    # a copy with other devices has a table of its own, not the original's
    fewer = cfg.model_copy(update={"devices": []})
    assert fewer.catalog().points == () and len(cfg.catalog().points) == 3


async def test_load_and_start_build_the_point_table_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the file to a constructed gateway the table is built once: the config check builds it and
    the gateway takes the same object (a large config spent half its start-up building it twice)."""
    calls: list[int] = []

    def counting(cfg: Config) -> Catalog:
        calls.append(1)
        return build_catalog(cfg)

    monkeypatch.setattr(gateway.config, "build_catalog", counting)
    data = {**GOOD, "buffer": {"path": str(tmp_path / "buf.db")}}
    path = tmp_path / "gw.toml"
    path.write_bytes(tomli_w.dumps(data).encode())
    cfg = load(path)
    gw = Gateway(cfg)
    try:
        assert len(calls) == 1
        assert gw.catalog is cfg.catalog()
    finally:
        gw.buffer.close()


def test_a_given_code_equal_to_a_minted_one_is_a_duplicate() -> None:
    # points[1] mints 88.608.5288/DEV.baotou-mine-01.gas-sub-01.co; points[2] is given the same code
    data = broken(devices__0__points__2__code="88.608.5288/DEV.baotou-mine-01.gas-sub-01.co")
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert [str(i) for i in info.value.issues] == [
        "devices[0].points[2].code: identifier '88.608.5288/DEV.baotou-mine-01.gas-sub-01.co' is already used by "
        "devices[0].points[1].code"
    ]
