"""A running gateway keeps the point table, not the parsed config (#17, memory per configured point).

The parsed models cost about 1.2 KB per point; the gateway, the Modbus driver and ``edgegw run`` must
let them go once the gateway is built, while a reload still tells unchanged devices from changed ones
(by a digest of each device's config).  Nothing is started here: no device is polled, no broker is
needed (``Gateway.reload`` is applied to a gateway that is built but not running).
"""

from __future__ import annotations

import gc
import os
import pickle
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
from gateway.core.point import Quality, SampleBatch
from gateway.core.schema import PointBase
from gateway.driver_registry import DRIVERS, spec_of
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


def _record_calls(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Every read of TOML text and every validation of a config appends the PID of the process that
    does it to ``log`` (a file: a forked child's writes reach the test, its memory does not)."""
    import gateway.config
    import gateway.core.tomlread

    def recording(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with log.open("a") as f:
                f.write(f"{name} {os.getpid()}\n")
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(gateway.core.tomlread, "loads", recording("toml", gateway.core.tomlread.loads))
    monkeypatch.setattr(gateway.config, "_parse", recording("validate", gateway.config._parse))


def _calls(log: Path) -> list[tuple[str, int]]:
    return [(w, int(p)) for w, p in (line.split() for line in log.read_text().splitlines())] if log.exists() else []


def test_edgegw_run_and_its_reload_never_parse_the_config_in_the_gateways_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's text, the TOML objects and the models exist only in a child process (gateway.prebuild):
    the gateway's heap holds only what it keeps, allocated in one go (#17)."""
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(_data(tmp_path)), encoding="utf-8")
    log = tmp_path / "calls.log"
    _record_calls(monkeypatch, log)
    seen: list[object] = []

    async def run(self: Gateway) -> None:  # instead of polling: the start, then a reload (SIGHUP)
        seen.append((_live_points(), len(self.catalog.points), len(_calls(log))))
        path.write_text(tomli_w.dumps(_data(tmp_path, interval_ms=500, devices=4)), encoding="utf-8")
        assert self.reload_source is not None
        await self._reload_once(self.reload_source)
        rs = self.reload_status
        seen.append((_live_points(), len(self.catalog.points), rs.applied, rs.last_summary))
        seen.append([r.driver.name for r in self.runners])
        seen.append(sorted({len(getattr(r.driver, "points", ())) for r in self.runners}))

    monkeypatch.setattr(gateway.app.Gateway, "run", run)
    assert cli.main(["run", "-c", str(path)]) == 0
    calls = _calls(log)
    assert seen[0] == (0, 60, 2)  # the start read the file and validated it once, elsewhere
    assert seen[1] == (0, 80, 1, "1 changed (plc1), 1 added (plc3), 0 removed, 2 unchanged")
    assert seen[2] == ["plc0", "plc1", "plc2", "plc3"] and seen[3] == [20]  # every driver has its points
    assert [w for w, _ in calls] == ["toml", "validate", "toml", "validate"]
    assert os.getpid() not in {pid for _, pid in calls}


@pytest.mark.parametrize("mistake", [
    ('data_type = "int16"', 'data_type = "int17"'),  # a validation error, located in the file
    ("unit_id = 1", "unit_id = 1\nunit_idd = 2"),  # an unknown key
    ("[gateway]", "[gateway"),  # TOML syntax
])
def test_a_config_error_reads_the_same_from_run_as_from_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], mistake: tuple[str, str]) -> None:
    path = tmp_path / "gateway.toml"
    text = tomli_w.dumps(_data(tmp_path))
    assert mistake[0] in text
    path.write_text(text.replace(mistake[0], mistake[1], 1), encoding="utf-8")
    assert cli.main(["check", "-c", str(path)]) == 2
    checked = capsys.readouterr().err
    assert cli.main(["run", "-c", str(path)]) == 2
    ran = capsys.readouterr().err
    assert ran == checked and f"{path}:" in ran


def test_a_point_table_pickles_by_columns_with_the_shared_code_stem(tmp_path: Path) -> None:
    data = _data(tmp_path)
    points = data["devices"][0]["points"] = [dict(p) for p in data["devices"][0]["points"]]
    points[1]["code"] = "88.608.5288/GIVEN.1"
    cat = parse(data).catalog()
    back = pickle.loads(pickle.dumps(cat))
    assert back == cat and [p.code for p in back.points] == [p.code for p in cat.points]
    assert back.points[1].code == "88.608.5288/GIVEN.1"
    stems = {id(p._code) for i, p in enumerate(back.points) if i != 1}
    assert len(stems) == 1  # one minted-code stem for the whole table, not a code per point


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


def test_stages_with_nothing_configured_hold_no_per_point_state_and_reload_either_way() -> None:
    """Spike / stuck checks, alarms and deadbands keep a list slot per point only where a point uses
    them (#17); a reload between a config with none and one with some carries what there is."""
    from pipelines.pipeline import Pipeline
    from pipelines.spec import AlarmSpec, PointSpec

    bare = Pipeline([PointSpec()] * 1000, min_valid_ns=0)
    stages = (bare.plausibility, bare.alarms, bare.deadband)
    assert [s.active for s in stages] == [False, False, False]
    assert bare.plausibility._ref == [] and bare.alarms._level == [] and bare.deadband._last == []
    good, t = Quality.GOOD, 1_780_000_000_000_000_000  # source times in 2026 (a set clock)
    batch: SampleBatch = [(i, t, float(i), good, None) for i in (0, 999)]
    out, events = bare(batch, t + 10**9, 0)
    assert out == batch and events == [] and bare.alarms.level(999).name == "NORMAL"

    used = Pipeline([PointSpec(deadband=1.0, spike_delta=100.0, alarm=AlarmSpec(high=500.0))] * 1000, min_valid_ns=0)
    used.carry(bare, range(1000))  # nothing to carry from stages without state
    assert len(used.deadband._last) == 1000 and len(used.plausibility._ref) == 1000
    first, _ = used([(7, t, 1.0, good, None)], t + 10**9, 0)
    again, _ = used([(7, t + 10**8, 1.5, good, None)], t + 10**9, 0)
    assert len(first) == 1 and again == []  # within the deadband
    _, events = used([(8, t, 600.0, good, None)], t + 10**9, 0)
    assert [e.index for e in events] == [8]
    back = Pipeline([PointSpec()] * 1000, min_valid_ns=0)
    back.carry(used, range(1000))
    assert back.deadband._last == [] and back.deadband.suppressed == used.deadband.suppressed == 1



SAMPLES = sorted(Path(__file__).resolve().parents[1].glob("drivers/*/sample.toml"))
# the driver packages with a compact, picklable form of their points: every one
LEAN = {"modbus", "opcua", "s7", "iec104", "dlt645"}


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.parent.name for p in SAMPLES])
def test_every_drivers_sample_builds_from_a_child_process_read(sample: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``edgegw run`` builds: the config parsed in a child, the Gateway from what comes back; a
    package with a compact form (all of them: Modbus, OPC UA, S7, IEC 104, DL/T 645) gets its devices
    without points; one without would hand over its models, which its driver lets go.  The same table,
    drivers and digests as from a config parsed here."""
    from gateway.prebuild import Prebuilt, in_child, prebuild

    monkeypatch.chdir(tmp_path)  # relative paths of the samples (buffer, pki) land here
    data = tomllib.loads(sample.read_text(encoding="utf-8"))
    data.setdefault("uplink", {"host": "127.0.0.1", "port": 1883})  # not connected: nothing is started
    reference = parse(data)
    table = reference.catalog().points
    names = [d.name for d in reference.devices if d.enabled]
    digests = {d.name: device_digest(d) for d in reference.devices}
    del reference
    built = in_child(lambda: prebuild(parse(data)))
    assert isinstance(built, Prebuilt) and built.points == len(table) > 0
    # a package with a compact form hands over no point model at all
    lean = [(bool(d.points), d.name in built.forms) for d in built.cfg.devices if spec_of(d).lean is not None]
    assert lean == [(False, True)] * len(lean) and bool(lean) == (sample.parent.name in LEAN)
    gw = Gateway(built)
    del built
    gc.collect()
    try:
        alive = [o for o in gc.get_objects() if isinstance(o, PointBase)]
        assert alive == [], f"{len(alive)} parsed point models kept, e.g. {type(alive[0]).__name__}"
        assert gw.catalog.points == table and [r.driver.name for r in gw.runners] == names
        assert gw._device_digests == digests and all(not d.points for d in gw.cfg.devices)
    finally:
        gw.buffer.close()


def test_a_reload_hands_over_only_the_rows_of_changed_and_added_devices(tmp_path: Path) -> None:
    """The unchanged devices keep their running rows: the table a reload's child hands over leaves
    theirs out, and the re-laid-out table is the same as from the whole new table."""
    from gateway.catalog import relayout, without_rows

    old = parse(_data(tmp_path)).catalog()
    new = parse(_data(tmp_path, interval_ms=500, devices=4)).catalog()
    keep = {"plc0", "plc2"}
    part = without_rows(new, keep)
    assert len(part.points) == 40 and list(part.by_device) == list(new.by_device)
    assert pickle.loads(pickle.dumps(part)) == part
    full, lean = relayout(old, new, keep), relayout(old, part, keep)
    assert lean == full and lean.by_device == full.by_device
    assert all(lean.points[i] is old.points[i] for n in keep for i in old.by_device[n])
