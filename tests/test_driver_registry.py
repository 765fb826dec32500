"""The driver registry (gateway/driver_registry.py): everything the gateway knows about a protocol
derives from each package's DriverSpec: the config union, the known types, error locations, driver
construction and the runner kind.  The "example" driver below is registered the way docs/drivers.md
says, without touching gateway/config.py or gateway/app.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from drivers.modbus.config import ModbusTcpDevice
from drivers.opcua.config import OpcUaDevice
from gateway.app import Gateway
from gateway.config import format_location, parse
from gateway.core.driver import DriverSpec, PollSettings, RunnerKind
from gateway.core.errors import ConfigError
from gateway.core.point import Quality, SampleBatch
from gateway.core.schema import DeviceBase, PointBase
from gateway.driver_registry import BY_TYPE, DEVICE_TYPES, DRIVERS, DriverFactory, _by_type, device_union, spec_of
from gateway.runner import DeviceRunner, StreamRunner
from tests.test_config import GOOD

__all__: list[str] = []

class ExamplePoint(PointBase):
    slot: int = Field(ge=0, le=65535)


class ExampleDevice(DeviceBase):
    type: Literal["example"]
    host: str
    points: list[ExamplePoint] = Field(min_length=1)


class ExampleDriver:
    def __init__(self, config: ExampleDevice, first_index: int) -> None:
        self.config = config
        self.first = first_index

    @property
    def name(self) -> str:
        return self.config.name

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> SampleBatch:
        return [(self.first + i, 0, p.slot, Quality.GOOD, None) for i, p in enumerate(self.config.points)]


EXAMPLE: DriverSpec[ExampleDevice] = DriverSpec(
    name="example", models=(ExampleDevice,), make=lambda dev, first, shared: ExampleDriver(dev, first)
)


_OPCUA = {"type": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840", "security_policy": "None", "security_mode": "None",
          "allow_no_security": True, "points": [{"name": "g", "node_id": "ns=2;s=G"}]}


def test_the_known_types_are_those_the_packages_declare() -> None:
    assert [s.name for s in DRIVERS] == ["modbus", "opcua", "dlt645", "iec104", "s7"]
    assert {
        "modbus_tcp", "modbus_rtu_tcp", "modbus_rtu", "opcua", "dlt645", "dlt645_tcp", "iec104", "s7",
    } == DEVICE_TYPES
    assert {t: s.name for t, s in BY_TYPE.items()} == {
        "modbus_tcp": "modbus", "modbus_rtu_tcp": "modbus", "modbus_rtu": "modbus", "opcua": "opcua",
        "dlt645": "dlt645", "dlt645_tcp": "dlt645", "iec104": "iec104", "s7": "s7",
    }


def test_unknown_and_missing_types_list_every_registered_type() -> None:
    known = ", ".join(sorted(DEVICE_TYPES))
    for device, message in [
        ({"type": "exmaple", "name": "x"}, f"devices[0]: unknown device type 'exmaple'; known: {known}"),
        ({"name": "x"}, f"devices[0]: missing 'type' (one of: {known})"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse({"gateway": GOOD["gateway"], "devices": [device]})
        assert [str(i) for i in err.value.issues] == [message]


def test_error_locations_leave_out_the_tag_of_every_registered_type() -> None:
    for t in DEVICE_TYPES:
        assert format_location(("devices", 3, t, "points", 1, "address")) == "devices[3].points[1].address"
    assert format_location(("devices", 3, "other", "x")) == "devices[3].other.x"


def test_a_new_package_joins_the_union_from_its_spec_alone() -> None:
    specs = (*DRIVERS, EXAMPLE)
    item: Any = list.__class_getitem__(device_union(specs))  # built at run time: pydantic reads it, mypy cannot
    adapter: TypeAdapter[Any] = TypeAdapter(item)
    devices = adapter.validate_python([
        {"type": "example", "name": "e1", "host": "10.0.0.9", "points": [{"name": "p", "slot": 7}]},
        {"type": "modbus_tcp", "name": "m1", "host": "127.0.0.1", "points": [{"name": "p", "address": 1}]},
    ])
    assert [type(d) for d in devices] == [ExampleDevice, ModbusTcpDevice]
    with pytest.raises(ValidationError, match="less than or equal to 65535"):
        adapter.validate_python(
            [{"type": "example", "name": "e", "host": "h", "points": [{"name": "p", "slot": 65536}]}]
        )
    assert set(_by_type(specs)) == DEVICE_TYPES | {"example"}


def test_a_type_declared_twice_or_a_model_without_a_type_is_refused_at_registration() -> None:
    with pytest.raises(TypeError, match="'example' is declared by drivers example and copy"):
        _by_type((EXAMPLE, DriverSpec(name="copy", models=(ExampleDevice,), make=EXAMPLE.make)))

    class Untyped(DeviceBase):
        points: list[ExamplePoint]

    with pytest.raises(TypeError, match="Untyped needs a field `type"):
        _by_type((DriverSpec(name="untyped", models=(Untyped,), make=EXAMPLE.make),))


def test_runner_kinds_and_poll_settings_come_from_the_spec() -> None:
    cfg = parse({**GOOD, "devices": [
        {**GOOD["devices"][0], "retries": 2, "suspend_after_timeouts": 5},
        {**_OPCUA, "name": "sub"}, {**_OPCUA, "name": "poll", "mode": "polling"},
    ]})
    modbus, sub, _poll = cfg.devices
    assert isinstance(sub, OpcUaDevice)
    assert [spec_of(d).runner_kind(d) for d in cfg.devices] == [RunnerKind.POLLED, RunnerKind.PUSHED, RunnerKind.POLLED]
    factory = DriverFactory()
    driver = factory.make(modbus, 0)
    settings = spec_of(modbus).poll_settings
    assert settings is not None
    ps = settings(modbus, driver)
    assert (ps.retries, ps.suspend_after, ps.watchdog) == (2, 5, False) and ps.schedules
    assert PollSettings() == PollSettings(None, 0, True, 0, 10.0)  # what a driver without poll_settings gets


def test_the_gateway_builds_the_runner_each_spec_asks_for(tmp_path: Path) -> None:
    cfg = parse({**GOOD, "buffer": {"path": str(tmp_path / "b.db")}, "devices": [
        GOOD["devices"][0], {**_OPCUA, "name": "sub"}, {**_OPCUA, "name": "poll", "mode": "polling"},
    ]})
    gw = Gateway(cfg)
    try:
        assert {r.driver.name: type(r) for r in gw.runners} == {
            "gas-sub-01": DeviceRunner, "sub": StreamRunner, "poll": DeviceRunner
        }
    finally:
        gw.buffer.close()


def test_modbus_devices_of_one_gateway_share_one_line_pool() -> None:
    rtu = {"type": "modbus_rtu", "port": "/dev/ttyUSB0", "points": [{"name": "p", "address": 1}]}
    cfg = parse({"gateway": GOOD["gateway"], "devices": [{**rtu, "name": "a", "unit_id": 1},
                                                         {**rtu, "name": "b", "unit_id": 2}]})
    factory = DriverFactory()
    a, b = (factory.make(d, 0) for d in cfg.devices)
    assert a.line is b.line  # type: ignore[union-attr]
    c = DriverFactory().make(cfg.devices[0], 0)
    assert c.line is not a.line  # type: ignore[union-attr]


def test_a_reload_keeps_the_lines_of_kept_devices_and_makes_the_others_afresh() -> None:
    rtu = {"type": "modbus_rtu", "points": [{"name": "p", "address": 1}]}
    cfg = parse({"gateway": GOOD["gateway"], "devices": [
        {**rtu, "name": "a", "port": "/dev/ttyUSB0", "unit_id": 1},
        {**rtu, "name": "b", "port": "/dev/ttyUSB0", "unit_id": 2},
        {**rtu, "name": "c", "port": "/dev/ttyUSB1", "unit_id": 1},
    ]})
    a, b, c = cfg.devices
    factory = DriverFactory()
    kept_a, old_c = factory.make(a, 0), factory.make(c, 2)
    reloaded = factory.for_reload([a])  # a keeps running; b (re)starts; c changed
    assert reloaded.make(b, 1).line is kept_a.line  # type: ignore[union-attr]
    assert reloaded.make(c, 2).line is not old_c.line  # type: ignore[union-attr]
    assert DriverFactory().for_reload([a]).make(b, 1).line is not kept_a.line  # type: ignore[union-attr]
