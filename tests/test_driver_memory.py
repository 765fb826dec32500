"""Every driver lets the parsed point models go once it is built (#17, memory per configured point).

A parsed point model costs about 1.2 KB; the running gateway keeps the point table and, in each
driver, only what its points need (Modbus layouts, OPC UA node ids and item settings, S7 addresses,
IEC 104 routes, DL/T 645 reads).  Each driver package's sample config (``drivers/*/sample.toml``, the
configs the docs point commissioning engineers to) is built into a Gateway, nothing started, and no
point model may survive; the drivers still describe every point (indices of the point table)."""

from __future__ import annotations

import gc
import tomllib
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import parse
from gateway.core.schema import PointBase

SAMPLES = sorted(Path(__file__).resolve().parents[1].glob("drivers/*/sample.toml"))


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.parent.name for p in SAMPLES])
def test_a_built_gateway_keeps_no_parsed_point_model(sample: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths of the samples (buffer, pki) land here
    assert len(SAMPLES) >= 5  # modbus, opcua, s7, iec104, dlt645
    data = tomllib.loads(sample.read_text(encoding="utf-8"))
    data.setdefault("uplink", {"host": "127.0.0.1", "port": 1883})  # not connected: nothing is started
    cfg = parse(data)
    n_points = sum(len(d.points) for d in cfg.devices)
    gw = Gateway(cfg)
    del cfg
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, PointBase)]
    try:
        assert alive == [], f"{len(alive)} parsed point models kept, e.g. {type(alive[0]).__name__}"
        assert len(gw.catalog.points) == n_points
        assert all(not d.points for d in gw.cfg.devices)  # the running config keeps settings only
        assert {r.driver.name for r in gw.runners} == {d.name for d in gw.cfg.devices}
    finally:
        gw.buffer.close()
