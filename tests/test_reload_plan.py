"""The pure parts of a reload: which devices restart, start and stop, what waits for a restart (named
by key, never by value), and the point table that keeps unchanged devices at their indices."""

from __future__ import annotations

import tomllib
from dataclasses import replace

from gateway.catalog import build_catalog, relayout
from gateway.config import Config, parse
from gateway.core.point import Quality
from gateway.reload import plan_reload
from pipelines.pipeline import Pipeline
from tests.gateway_process import gas_substations_toml

SECRET = "registry-url-pw-T6y2"


def _cfg(devices: dict[int, int], *, disabled: tuple[int, ...] = (), host: str = "127.0.0.1",
         registry_pw: str = SECRET, points: int | None = None) -> Config:
    text = (
        '[gateway]\nid = "gw"\nsite = "baotou-mine-01"\nenterprise_prefix = "88.608.5288"\n\n'
        f'[uplink]\nhost = "{host}"\n\n'
        f'[registry]\napi = "snms"\nurl = "https://app:{registry_pw}@idis.example:3000"\n'
        'identity = "88.608.5288/App"\npassword_env = "EDGEGW_REG_PW"\n\n'
    )
    for d, ms in devices.items():
        block = gas_substations_toml(5020, 1, first=d, poll_interval_ms=ms)
        if d in disabled:
            block = block.replace(f'name = "gas-sub-{d}"\n', f'name = "gas-sub-{d}"\nenabled = false\n', 1)
        if points is not None and d == max(devices):  # the last device with fewer points
            block = "[[devices.points]]".join(block.split("[[devices.points]]")[: points + 1])
        text += block + "\n"
    return parse(tomllib.loads(text))


def test_devices_are_matched_by_name_and_restart_only_settings_are_named_without_values() -> None:
    old = _cfg({0: 500, 1: 500, 2: 500, 4: 500}, disabled=(4,))
    new = _cfg({0: 500, 1: 250, 3: 500, 4: 500}, disabled=(4,), host="10.0.0.9", registry_pw="other-pw-9")
    plan = plan_reload(old, new)
    assert (plan.unchanged, plan.changed, plan.added, plan.removed) == (
        ("gas-sub-0",), ("gas-sub-1",), ("gas-sub-3",), ("gas-sub-2",))
    assert plan.same_layout == {"gas-sub-0", "gas-sub-4"}  # the disabled one is equal too
    assert plan.not_applied == ("[uplink] host", "[registry] url")
    assert plan.summary() == "1 changed (gas-sub-1), 1 added (gas-sub-3), 1 removed (gas-sub-2), 1 unchanged"
    assert plan.effective.uplink == old.uplink and plan.effective.registry == old.registry  # the old values stay
    assert plan.effective.devices == new.devices
    assert SECRET not in repr(plan.not_applied) + plan.summary()
    # enabling a device starts it, disabling stops it
    plan = plan_reload(old, _cfg({0: 500, 1: 500, 2: 500, 4: 500}, disabled=(2,)))
    assert (plan.added, plan.removed, plan.changed) == (("gas-sub-4",), ("gas-sub-2",), ())


def test_unchanged_devices_keep_their_indices_and_the_freed_ones_are_reused() -> None:
    old_cfg = _cfg({0: 500, 1: 500, 2: 500})
    old = build_catalog(old_cfg)
    n = len(old.by_device["gas-sub-0"])
    new_cfg = _cfg({0: 500, 3: 500, 2: 500, 5: 500}, points=3)  # 1 removed; 3 added; 5 added with 3 points
    plan = plan_reload(old_cfg, new_cfg)
    cat = relayout(old, build_catalog(plan.effective), plan.same_layout)
    for name in ("gas-sub-0", "gas-sub-2"):
        assert cat.by_device[name] == old.by_device[name]
        assert [p.key for p in cat.points[cat.by_device[name].start:cat.by_device[name].stop]] == \
            [p.key for p in old.points[old.by_device[name].start:old.by_device[name].stop]]
    assert cat.by_device["gas-sub-3"] == old.by_device["gas-sub-1"]  # the first free range that fits
    assert cat.by_device["gas-sub-5"] == range(3 * n, 3 * n + 3)  # appended
    assert list(cat.by_device) == ["gas-sub-0", "gas-sub-3", "gas-sub-2", "gas-sub-5"]  # config order
    assert all(p.index == i for i, p in enumerate(cat.points))
    assert [p.key for p in cat.live_points] == [p.key for p in build_catalog(new_cfg).points]
    # a device with fewer points leaves an unused slot that no live point is in
    plan2 = plan_reload(new_cfg, _cfg({0: 500, 3: 500, 2: 500, 5: 500}, points=2))
    cat2 = relayout(cat, build_catalog(plan2.effective), plan2.same_layout)
    assert len(cat2.points) == 3 * n + 2 and len(cat2.live_points) == 3 * n + 2
    plan3 = plan_reload(old_cfg, _cfg({0: 500, 1: 500}))
    cat3 = relayout(old, build_catalog(plan3.effective), plan3.same_layout)
    assert len(cat3.points) == 2 * n  # nothing after the last device: trimmed


def test_the_pipeline_state_of_unchanged_points_carries_over() -> None:
    cfg = _cfg({0: 500})
    cat = build_catalog(cfg)
    specs = [replace(s, deadband=1.0) for s in cat.specs]
    old = Pipeline(specs, min_valid_ns=0)
    old([(1, 10, 5.0, Quality.GOOD, None)], 10, 10)
    new = Pipeline(specs, min_valid_ns=0)
    new.carry(old, [1])
    assert new.deadband._last[1] == old.deadband._last[1] is not None
    assert new.counters is old.counters and new.clock is old.clock
