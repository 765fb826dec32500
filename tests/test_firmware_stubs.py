"""The stubs are the oracle of the end-to-end tests, so they are checked on their own: their
encoder against the hand-written register images of the decode tests, their determinism, and
their point lists against the config model."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.modbus.config import ModbusTcpDevice
from firmware_stubs.belt_conveyor import BeltConveyor
from firmware_stubs.drainage_pump import DrainagePump
from firmware_stubs.mine_hoist import MineHoist
from firmware_stubs.register_map import Register, Stub, encode_value
from firmware_stubs.ventilation_fan import VentilationFan
from tests.test_modbus_decode import CASES

STUBS: list[type[Stub]] = [VentilationFan, BeltConveyor, DrainagePump, MineHoist]


@pytest.mark.parametrize(("data_type", "order", "registers", "expected"), CASES)
def test_the_stub_encoder_writes_the_hand_written_images(
    data_type: Any, order: Any, registers: list[int], expected: Any
) -> None:
    assert encode_value(Register("x", "holding_register", 0, data_type.value, order.value), expected) == registers


@pytest.mark.parametrize("stub", STUBS, ids=lambda s: s.__name__)
def test_stubs_are_deterministic_valid_and_vary(stub: type[Stub]) -> None:
    a, b, other = stub(seed=3), stub(seed=3), stub(seed=4)
    ticks = range(0, 3600, 37)
    assert [a.image(t) for t in ticks] == [b.image(t) for t in ticks]
    assert [a.image(t) for t in ticks] != [other.image(t) for t in ticks]
    assert len({tuple(a.image(t).input_registers[2:]) for t in ticks}) > 5  # measurements move
    dev = ModbusTcpDevice.model_validate(
        {"type": "modbus_tcp", "name": "d", "host": "127.0.0.1", "points": stub.point_config()}
    )
    assert [p.name for p in dev.points] == [r.name for r in stub.REGISTERS]
    orders = {r.byte_order for r in stub.REGISTERS if r.data_type not in ("uint16", "int16", "string")}
    assert len(orders) >= 2, "a stub mixes byte orders, as real equipment does"
    for t in ticks:
        expected = a.expected(t)
        assert expected["seq"] == t and set(expected) == {r.name for r in stub.REGISTERS}


def test_opcua_plant_ranges_hold_every_value_and_units_have_their_codes() -> None:
    """An EURange or InstrumentRange the simulator serves is an oracle for the range check: no stub
    value may leave it."""
    from firmware_stubs.opcua_plants import PLANTS, UNITS, unit_id

    assert unit_id("CEL") == 4408652 and unit_id("") == -1  # Part 8's example, and "not available"
    for plant in PLANTS.values():
        for spec in plant():
            assert not spec.unit or spec.unit in UNITS, spec.unit
            if spec.instrument_range is not None:  # the instrument's limits: wider than the EURange, never left
                lo, hi = spec.instrument_range
                assert lo < hi and spec.data_type in ("Double", "Float"), spec.path
                if spec.eu_range is not None:
                    assert lo < spec.eu_range[0] or spec.eu_range[1] < hi, spec.path
                    assert lo <= spec.eu_range[0] and spec.eu_range[1] <= hi, spec.path
                assert all(lo <= spec.value(t) <= hi for t in range(2000)), spec.path  # type: ignore[operator]
            if spec.eu_range is None:
                continue
            lo, hi = spec.eu_range
            assert lo < hi and spec.data_type in ("Double", "Float"), spec.path
            assert all(lo <= spec.value(t) <= hi for t in range(2000)), spec.path  # type: ignore[operator]
    instrumented = [s for plant in PLANTS.values() for s in plant() if s.instrument_range is not None]
    assert len(instrumented) >= 3 and any(s.eu_range is None for s in instrumented)
