"""Stage settings in config: presets, located errors for contradictions, the grade policy."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.catalog import build_catalog
from gateway.config import parse
from pipelines.spec import AlarmSpec
from tests.test_config import issues_of

BASE: dict[str, Any] = {
    "gateway": {"id": "gw1", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288"},
    "devices": [
        {
            "type": "modbus_tcp",
            "name": "gas-sub-01",
            "host": "127.0.0.1",
            "points": [{"name": "p", "address": 0}],
        }
    ],
    "uplink": {"host": "127.0.0.1", "port": 1883},
}


def with_point(**point: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["devices"][0]["points"][0].update(point)
    return data


def test_ch4_class_fills_unit_range_and_thresholds_and_location_picks_the_row() -> None:
    cat = build_catalog(parse(with_point(**{"class": "ch4"})))
    p = cat.points[0]
    assert (p.unit, p.spec.min, p.spec.max, p.point_class) == ("%CH4", 0.0, 100.0, "ch4")
    assert p.spec.alarm == AlarmSpec(high=1.0, power_off=1.5, restore=1.0, hysteresis=0.05)
    assert dict(p.tags)["class"] == "ch4" and dict(p.tags)["data_domain"] == "production"
    t2 = build_catalog(parse(with_point(**{"class": "ch4", "alarm": {"location": "T2"}}))).points[0].spec.alarm
    assert t2 == AlarmSpec(high=1.0, power_off=1.0, restore=1.0, hysteresis=0.05)
    own = build_catalog(parse(with_point(**{"class": "ch4", "alarm": {"high": 0.8}}))).points[0].spec.alarm
    assert own is not None and own.high == 0.8 and own.power_off == 1.5
    none = build_catalog(parse(with_point(**{"class": "ch4", "alarm": False}))).points[0].spec
    assert none.alarm is None


@pytest.mark.parametrize(
    ("cls", "unit", "alarm"),
    [
        ("co", "ppm", AlarmSpec(high=24.0, hysteresis=2.0)),
        ("o2", "%", AlarmSpec(low=20.0, hysteresis=0.2)),
        ("co2", "%", AlarmSpec(high=0.5, hysteresis=0.05)),
        ("wind_speed", "m/s", AlarmSpec(low=0.25, high=4.0, hysteresis=0.05)),
        ("temperature", "degC", AlarmSpec(high=26.0, hysteresis=0.5)),
        ("dust", "mg/m3", AlarmSpec(high=10.0, hysteresis=0.5)),
        ("negative_pressure", "kPa", None),
        ("switch", "", None),
    ],
)
def test_every_mine_class_has_its_preset(cls: str, unit: str, alarm: AlarmSpec | None) -> None:
    p = build_catalog(parse(with_point(**{"class": cls}))).points[0]
    assert p.unit == unit and p.spec.alarm == alarm


def test_scaling_units_deadband_compile_into_the_spec() -> None:
    p = build_catalog(parse(with_point(
        scaling={"signal": "4-20mA", "eng_low": 0.0, "eng_high": 1000.0}, source_unit="ppm", unit="%",
        min=0.0, max=0.1, deadband={"percent": 1.0, "max_silence_s": 60}, spike_delta=0.02, stuck_after_s=600,
    ))).points[0].spec
    assert (p.scale, p.offset, p.raw_fault_low, p.raw_fault_high) == (62.5, -250.0, 3.6, 21.0)
    assert p.conv_factor == pytest.approx(1e-4)
    assert p.deadband == pytest.approx(0.001) and p.max_silence_ns == 60 * 10**9
    assert p.stuck_after_ns == 600 * 10**9 and p.spike_delta == 0.02


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ({"unit": "%", "source_unit": "furlong"}, "devices[0].points[0]: source_unit: unknown unit 'furlong'"),
        ({"unit": "degC", "source_unit": "ppm"}, "devices[0].points[0]: source_unit: cannot convert 'ppm'"),
        ({"class": "ch4", "max": 0.8}, "devices[0].points[0]: alarm.high (1.0) is outside the range 0.0..0.8"),
        ({"min": 0, "max": 10, "alarm": {"high": 12}}, "alarm.high (12.0) is outside the range 0.0..10.0"),
        ({"alarm": {"high": 1.5, "power_off": 1.0}}, "devices[0].points[0].alarm: power_off (1.0) is below high"),
        ({"alarm": {"low": 1.0, "high": 1.1, "hysteresis": 0.2}}, "low (1.0) plus hysteresis (0.2) reaches high"),
        ({"alarm": {"high": 1.0, "location": "T2"}}, "alarm.location is only for class = 'ch4'"),
        ({"class": "ch4", "alarm": {"location": "T9"}}, "alarm.location: unknown CH4 sensor location 'T9'"),
        ({"class": "methane"}, "devices[0].points[0].class: Input should be 'ch4'"),
        ({"deadband": {"percent": 1}}, "deadband.percent needs min and max"),
        ({"deadband": {"absolute": 1, "percent": 1}}, "deadband: give exactly one of absolute or percent"),
        ({"min": 0, "max": 1, "deadband": {"absolute": 2}}, "deadband.absolute (2.0) is not smaller than the range"),
        ({"scaling": {"eng_low": 0, "eng_high": 1}}, "scaling: needs signal"),
        ({"scaling": {"signal": "4-20mA", "eng_low": 1, "eng_high": 1}}, "eng_low and eng_high are both 1.0"),
        ({"scale": 2.0, "scaling": {"signal": "4-20mA", "eng_low": 0, "eng_high": 1}}, "either scaling or scale"),
        ({"spike_delta": 0}, "devices[0].points[0].spike_delta: Input should be greater than 0"),
        ({"data_grade": "secret"}, "devices[0].points[0].data_grade: Input should be"),
    ],
)
def test_contradictions_are_located_config_errors(point: dict[str, Any], expected: str) -> None:
    found = issues_of(with_point(**point))
    assert any(expected in i for i in found), found


def test_core_data_over_plain_mqtt_is_refused_unless_the_policy_allows_it() -> None:
    core = with_point(data_grade="core")
    assert issues_of(core) == [
        "devices[0].points[0].data_grade: core data may only leave the site over TLS (data_policy.core = "
        "'tls_only'), but the uplink is plain MQTT: configure uplink TLS, or change the grade or the policy"
    ]
    kept = parse({**core, "data_policy": {"core": "keep_on_site"}})
    assert build_catalog(kept).points[0].spec.forward is False
    assert build_catalog(parse({**core, "data_policy": {"core": "forward"}})).points[0].spec.forward is True
    strict = issues_of({**with_point(data_grade="important"), "data_policy": {"important": "tls_only"}})
    assert strict and "important data may only leave the site over TLS" in strict[0]
    assert "data_policy.general" in issues_of({**BASE, "data_policy": {"general": "tls_only"}})[0]


def test_the_gateway_refuses_to_start_with_core_data_over_plain_mqtt(tmp_path: Any) -> None:
    from gateway.app import Gateway
    from gateway.config import Config
    from gateway.core.errors import ConfigError

    data = with_point(data_grade="core")
    data["buffer"] = {"path": str(tmp_path / "b.db")}
    cfg = Config.model_validate(data)  # built in code: parse()'s checks skipped
    with pytest.raises(ConfigError, match="core data may only leave the site over TLS"):
        Gateway(cfg)


def test_csv_tag_import_with_mine_classes_round_trips_through_toml() -> None:
    import tomllib

    from drivers.modbus.tags import csv_to_points, points_to_toml

    csv_text = "name,address,class,spike_delta,data_grade\nch4,2,ch4,0.5,important\nfan,3,switch,,\n"
    toml = points_to_toml(csv_to_points(csv_text))
    assert 'class = "ch4"' in toml and "point_class" not in toml and "None" not in toml
    data = with_point()
    data["devices"][0]["points"] = tomllib.loads(toml)["devices"]["points"]
    cat = build_catalog(parse(data))
    ch4 = cat.points[0]
    assert (ch4.point_class, ch4.unit, ch4.spec.spike_delta, ch4.data_grade) == ("ch4", "%CH4", 0.5, "important")
    assert ch4.spec.alarm == AlarmSpec(high=1.0, power_off=1.5, restore=1.0, hysteresis=0.05)
