"""A running gateway keeps the point table, not the parsed config (#17, memory per configured point).

The parsed models cost about 1.2 KB per point; the gateway, the Modbus driver and ``edgegw run`` must
let them go once the gateway is built, while a reload still tells unchanged devices from changed ones
(by a digest of each device's config).  Nothing is started here: no device is polled, no broker is
needed (``Gateway.reload`` is applied to a gateway that is built but not running).
"""

from __future__ import annotations

import gc
import tomllib
import typing
import weakref
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from pydantic import BaseModel, SecretBytes, SecretStr

import gateway.app
from gateway import cli
from gateway.app import Gateway
from gateway.config import parse
from gateway.core.schema import PointBase
from gateway.driver_registry import DRIVERS
from gateway.reload import device_digest, plan_reload, running_config


def _data(tmp: Path, *, interval_ms: int = 1000, uplink_port: int = 1883, devices: int = 3) -> dict[str, Any]:
    points = [{"name": f"memtest_r{a:03d}", "address": a, "data_type": "int16", "scale": 0.1} for a in range(20)]
    return {
        "gateway": {"id": "gw", "site": "bench", "enterprise_prefix": "88.608.5288"},
        "uplink": {"host": "127.0.0.1", "port": uplink_port},
        "buffer": {"path": str(tmp / "buffer.db")},
        "devices": [
            {"type": "modbus_tcp", "name": f"plc{d}", "host": "127.0.0.1", "port": 1502 + d, "unit_id": 1,
             "poll_interval_ms": interval_ms if d == 1 else 1000, "points": points}
            for d in range(devices)
        ],
    }


def _live_points() -> int:
    """Parsed point models of these tests still alive."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, PointBase) and o.name.startswith("memtest_"))


async def test_the_gateway_lets_the_parsed_config_go_and_reload_still_tells_devices_apart(tmp_path: Path) -> None:
    cfg = parse(_data(tmp_path))
    refs: list[weakref.ref[Any]] = [weakref.ref(x) for x in (cfg, cfg.devices[0], cfg.devices[0].points[0])]
    gw = Gateway(cfg)
    del cfg
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    assert _live_points() == 0
    assert len(gw.catalog.points) == 60 and gw.cfg.devices[0].name == "plc0"  # the settings stay
    # one copy of each device's settings, shared by its driver and the running config
    assert all(d is getattr(r.driver, "config", None) for d, r in zip(gw.cfg.devices, gw.runners, strict=True))

    new = parse(_data(tmp_path, interval_ms=500, devices=4))
    new_ref = weakref.ref(new.devices[1].points[0])
    plan = await gw.reload(new)
    assert (plan.unchanged, plan.changed, plan.added, plan.removed) == (("plc0", "plc2"), ("plc1",), ("plc3",), ())
    assert [r.driver.name for r in gw.runners] == ["plc0", "plc1", "plc2", "plc3"]
    assert all(d is getattr(r.driver, "config", None) for d, r in zip(gw.cfg.devices, gw.runners, strict=True))
    assert gw.cfg.devices[1].poll_interval_ms == 500  # the changed device's new settings
    del new, plan
    assert new_ref() is None and _live_points() == 0  # the reloaded config is let go too
    # and the next reload compares against the reloaded config's digests
    plan = await gw.reload(parse(_data(tmp_path, interval_ms=500, devices=4)))
    assert plan.changed == () and len(plan.unchanged) == 4
    gw.buffer.close()


def test_edgegw_run_keeps_no_parsed_point_while_the_gateway_runs(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(_data(tmp_path)), encoding="utf-8")
    seen: list[tuple[int, int]] = []

    async def run(self: Gateway) -> None:  # instead of polling: look at what is alive while it would run
        seen.append((_live_points(), len(self.catalog.points)))

    monkeypatch.setattr(gateway.app.Gateway, "run", run)
    assert cli.main(["run", "-c", str(path)]) == 0
    assert seen == [(0, 60)]


def test_device_digests_are_equal_exactly_when_the_device_configs_are(tmp_path: Path) -> None:
    a, b = parse(_data(tmp_path)), parse(_data(tmp_path))
    assert [device_digest(d) for d in a.devices] == [device_digest(d) for d in b.devices]
    assert device_digest(a.devices[0]) != device_digest(a.devices[2])  # another port
    text = tomli_w.dumps(_data(tmp_path))
    for before, after in (('scale = 0.1', 'scale = 0.2'), ('data_type = "int16"', 'data_type = "uint16"')):
        changed = parse(tomllib.loads(text.replace(before, after, 1)))
        assert device_digest(changed.devices[0]) != device_digest(a.devices[0]), after
    # a value the models compare equal (an integer for a float) is no change
    same = parse(tomllib.loads(text.replace("scale = 0.1", "scale = 1", 1).replace("scale = 0.1", "scale = 1")))
    ones = parse(tomllib.loads(text.replace("scale = 0.1", "scale = 1.0")))
    assert same.devices[0] == ones.devices[0]
    assert device_digest(same.devices[0]) == device_digest(ones.devices[0])


def test_a_running_config_has_no_points_and_plans_like_the_full_one(tmp_path: Path) -> None:
    old = parse(_data(tmp_path))
    slim, digests = running_config(old)
    assert all(not d.points for d in slim.devices) and slim.uplink == old.uplink
    new = parse(_data(tmp_path, interval_ms=250, uplink_port=1884))
    full, kept = plan_reload(old, new), plan_reload(slim, new, digests)
    assert (kept.unchanged, kept.changed, kept.not_applied) == (full.unchanged, full.changed, full.not_applied)
    assert kept.changed == ("plc1",) and kept.not_applied == ("[uplink] port",)


def _secret_fields(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[str]:
    seen.add(model)
    found: list[str] = []
    for name, f in model.model_fields.items():
        todo: list[Any] = [f.annotation]
        while todo:
            t = todo.pop()
            todo.extend(typing.get_args(t))
            if isinstance(t, type) and issubclass(t, (SecretStr, SecretBytes)):
                found.append(f"{model.__name__}.{name}")
            elif isinstance(t, type) and issubclass(t, BaseModel) and t not in seen:
                found += _secret_fields(t, seen)
    return found


def test_no_device_model_holds_a_secret_the_reload_digest_would_read_masked() -> None:
    """device_digest reads a device's JSON form, in which a secret field reads as '**********': a
    changed password would not restart its device.  Credentials are *_env / *_file names today."""
    seen: set[type[BaseModel]] = set()
    found = [f for spec in DRIVERS for m in spec.models for f in _secret_fields(m, seen)]
    assert len(seen) > len(DRIVERS) and found == []
