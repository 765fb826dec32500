"""Config errors are located, complete, and never tracebacks; `edgegw check` exits 2."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import build_catalog
from gateway.config import load, parse
from gateway.core.errors import ConfigError

GOOD: dict[str, Any] = {
    "gateway": {"id": "gw1", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288"},
    "devices": [
        {
            "type": "modbus_tcp",
            "name": "gas-sub-01",
            "host": "127.0.0.1",
            "port": 5020,
            "points": [
                {"name": "ch4", "table": "input_register", "address": 2, "data_type": "float32", "unit": "%CH4"},
                {"name": "co", "table": "input_register", "address": 4, "unit": "ppm"},
                {"name": "o2", "address": 5, "scale": 0.01, "unit": "%", "code": "88.608.5288/O2.0042"},
            ],
        }
    ],
    "uplink": {"host": "127.0.0.1", "port": 1883},
}


def broken(**edits: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    for path, value in edits.items():
        node: Any = data
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        node[int(last) if last.isdigit() else last] = value
    return data


def issues_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data)
    return [str(i) for i in info.value.issues]


def test_good_config_builds_a_catalog_with_minted_and_given_codes() -> None:
    cat = build_catalog(parse(GOOD))
    codes = [p.code for p in cat.points]
    assert codes == [
        "88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4",
        "88.608.5288/DEV.baotou-mine-01.gas-sub-01.co",
        "88.608.5288/O2.0042",  # given codes are kept verbatim, leading zeros included
    ]
    assert cat.points[0].device_code == "88.608.5288/DEV.baotou-mine-01.gas-sub-01"
    assert dict(cat.points[0].tags)["site"] == "baotou-mine-01"


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        ({"devices__0__points__1__address": "four"}, "devices[0].points[1].address: Input should be a valid integer"),
        ({"devices__0__points__1__address": -1}, "devices[0].points[1].address: Input should be greater than"),
        ({"devices__0__points__2__colour": "red"}, "devices[0].points[2].colour: unknown key"),
        ({"devices__0__points__0__data_type": "float16"}, "devices[0].points[0].data_type: Input should be"),
        (
            {"devices__0__points__2__code": "88.608.5288"},
            "devices[0].points[2].code: identifier '88.608.5288' has no '/'",
        ),
        ({"devices__0__points__2__code": "99.1.2/x"}, "devices[0].points[2].code: prefix '99.1.2' is not a national"),
        ({"devices__0__type": "profibus"}, "devices[0]: unknown device type 'profibus'"),
        ({"devices__0__port": 70000}, "devices[0].port: Input should be less than or equal to 65535"),
        ({"gateway__site": "bad site"}, "gateway.site: 'bad site' is not a valid key: use 1-64 letters"),
        ({"devices__0__points__1__min": 5, "devices__0__points__1__max": 1}, "min (5.0) is greater than max (1.0)"),
        ({"buffer": {"when_full": "explode"}}, "buffer.when_full: Input should be 'block', 'drop_oldest'"),
    ],
)
def test_errors_are_located(edits: dict[str, Any], expected: str) -> None:
    found = issues_of(broken(**edits))
    assert any(expected in f for f in found), found


def test_data_category_and_personal_info_become_tags() -> None:
    """GB/T 43697 / MIIT classification tags: category defaults to operating state (condition);
    personal information (personnel positioning) is marked only where it is."""
    data = broken(devices__0__points__1__data_category="control", devices__0__points__2__personal_info=True)
    tags = [dict(p.tags) for p in build_catalog(parse(data)).points]
    assert [t["data_category"] for t in tags] == ["condition", "control", "condition"]
    assert [t.get("personal_info") for t in tags] == [None, None, "true"]
    assert any("devices[0].points[0].data_category" in i
               for i in issues_of(broken(devices__0__points__0__data_category="secret")))


def test_every_error_is_reported_at_once() -> None:
    found = issues_of(broken(devices__0__points__0__address="x", devices__0__points__1__bogus=1, gateway__id=""))
    assert len(found) == 3, found


def test_duplicate_identifier_codes_name_both_points() -> None:
    data = broken(devices__0__points__1__code="88.608.5288/O2.0042")
    found = issues_of(data)
    assert found == [
        "devices[0].points[2].code: identifier '88.608.5288/O2.0042' is already used by devices[0].points[1].code"
    ]


def test_duplicate_codes_compare_prefix_case_insensitively_but_suffix_exactly() -> None:
    data = broken(devices__0__points__0__code="88.608.5288/o2.0042")
    build_catalog(parse(data))  # suffix differs in case: distinct codes
    data = broken(devices__0__points__0__code="88.608.5288/O2.0042", devices__0__points__2__code="88.608.5288/O2.0042")
    assert "already used" in issues_of(data)[0]


def test_missing_code_without_enterprise_prefix() -> None:
    data = broken(gateway={"id": "gw1", "site": "s1"})
    found = issues_of(data)
    assert found[0] == "devices[0].points[0].code: missing: give a code or set gateway.enterprise_prefix"


def test_load_reports_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nid = 1\n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "absent.toml")


def _edgegw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_cli_exits_2_with_located_errors_and_no_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text(
        """
[gateway]
id = "gw1"
site = "baotou-mine-01"
enterprise_prefix = "88.608.5288"

[[devices]]
type = "modbus_tcp"
name = "gas-sub-01"
host = "127.0.0.1"
colour = "red"

[[devices.points]]
name = "ch4"
address = "two"

[[devices.points]]
name = "co"
address = 4
code = "88.608.5288 /co"
"""
    )
    res = _edgegw("check", "-c", str(cfg))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "devices[0].colour: unknown key" in res.stderr
    assert "devices[0].points[0].address: Input should be a valid integer" in res.stderr
    assert "devices[0].points[1].code: prefix segment '5288 ' contains whitespace" in res.stderr


def test_check_cli_accepts_the_shipped_sample_configs() -> None:
    root = Path(__file__).resolve().parent.parent
    samples = [root / "drivers" / "modbus" / "sample.toml", *sorted((root / "deploy" / "examples").glob("*.toml"))]
    assert len(samples) >= 2
    for sample in samples:
        res = _edgegw("check", "-c", str(sample))
        assert res.returncode == 0, (sample, res.stderr)
        assert ": ok (" in res.stdout


def test_an_unset_password_variable_is_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.config import MqttConfig, RegistrySection

    monkeypatch.delenv("EDGEGW_TEST_UNSET_PASSWORD", raising=False)
    mqtt = MqttConfig(password_env="EDGEGW_TEST_UNSET_PASSWORD")
    reg = RegistrySection(api="snms", url="http://127.0.0.1:1", identity="88.608.5288/App_gw",
                          password_env="EDGEGW_TEST_UNSET_PASSWORD")
    with caplog.at_level("WARNING", logger="edgegw.config"):
        assert mqtt.password() is None and mqtt.password() is None and reg.password() == ""
    warnings = [r.getMessage() for r in caplog.records if "EDGEGW_TEST_UNSET_PASSWORD" in r.getMessage()]
    assert warnings == ["password_env names EDGEGW_TEST_UNSET_PASSWORD, which is not set in the environment: "
                        "the password is empty."]
    monkeypatch.setenv("EDGEGW_TEST_UNSET_PASSWORD", "s3cret")
    assert mqtt.password() == "s3cret" and reg.password() == "s3cret"
