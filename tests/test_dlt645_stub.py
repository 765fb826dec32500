"""The DL/T 645 meter stubs: deterministic, energy counters only increase, every reading fits its
spec format (so it goes on the wire unchanged), three phases plausible; the sample config loads."""

from __future__ import annotations

import itertools

import pytest

from drivers.dlt645.codec import decode_bcd, encode_bcd
from drivers.dlt645.dataids import lookup
from firmware_stubs.energy_meters import METER_POINTS, EnergyMeter, plant_meters
from gateway.config import load
from tests.gateway_process import REPO


def test_readings_are_a_function_of_seed_and_tick() -> None:
    a, b = EnergyMeter("1", seed=9), EnergyMeter("1", seed=9)
    assert a.readings(77) == b.readings(77)
    assert a.readings(77) != EnergyMeter("1", seed=10).readings(77)


@pytest.mark.parametrize("meter", plant_meters(seed=3), ids=lambda m: m.address)
def test_energy_only_increases_and_every_value_fits_its_format(meter: EnergyMeter) -> None:
    for t0, t1 in itertools.pairwise(range(0, 20_000, 997)):
        r0, r1 = meter.readings(t0), meter.readings(t1)
        for di in (0x00010000, 0x00010400, 0x00020000, 0x00000000):
            assert r1[di] >= r0[di], (hex(di), t0, t1)
        assert r1[0x00010000] > r0[0x00010000]
    r = meter.readings(5000)
    for name, (di, decimals, unit) in METER_POINTS.items():
        item = lookup(di)
        assert item is not None and item.fmt.decimals == decimals and item.unit == unit, name
        assert decode_bcd(encode_bcd(r[di], item.fmt), item.fmt) == pytest.approx(r[di], abs=1e-9), name
    assert all(200 < r[0x02010000 | k << 8] < 240 for k in (1, 2, 3))
    assert all(0.8 < r[0x02060000 | k << 8] <= 1 for k in (0, 1, 2, 3))
    assert r[0x02030000] == pytest.approx(sum(r[0x02030000 | k << 8] for k in (1, 2, 3)), abs=1e-3)
    assert r[0x00010000] == pytest.approx(sum(r[0x00010000 | t << 8] for t in (1, 2, 3, 4)), abs=0.011)


def test_a_missing_data_identifier_reads_none() -> None:
    m = EnergyMeter("1", missing=frozenset({0x02800002}))
    assert m.read(0x02800002, 0) is None and m.read(0x02010100, 0) is not None


def test_the_sample_config_loads() -> None:
    cfg = load(REPO / "drivers" / "dlt645" / "sample.toml")
    assert {d.type for d in cfg.devices} == {"dlt645", "dlt645_tcp"}
