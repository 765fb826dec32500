"""HIL campaigns end to end (`edgegw hil run`): the shipped scenarios on real servers, judged by the
stub oracle, and a negative control that must fail.

The CI subset stays within about three minutes; ``EDGEGW_HIL_ALL=1`` runs every shipped scenario.
The oracle and the scenario validation are also checked on their own, without servers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from firmware_stubs.gas_substation import GasSubstation, expected_values
from gateway.cli import main
from gateway.core.errors import ConfigError
from hil.campaign import run_campaign
from hil.netns import NetnsUnavailable
from hil.oracle import IR_POINTS, Row, histogram_quantile, judge, recovery_times
from hil.scenario import load_scenario, parse_scenario

SCENARIOS = Path(__file__).parents[1] / "hil" / "scenarios"
NEGATIVE = Path(__file__).parent / "hil_scenarios" / "overflow_drop_newest.toml"
CI_SUBSET = {"gateway_kill_loop", "link_cut", "influxdb_down"}
RUN_ALL = os.environ.get("EDGEGW_HIL_ALL", "") == "1"
# broker_kill found that mosquitto 2.0 does not restore shared subscriptions ($share/...) after a
# restart, and that the gateway deleted batches on PUBACK 0x10; the uplink now keeps them
# (uplink.no_subscribers = "keep"); broker_kill passes on its own but not yet reliably inside the
# loaded full suite (drain within 45 s), so it runs with EDGEGW_HIL_ALL=1
KNOWN_FAILING: dict[str, str] = {}


def _stats(accepted: int, pending: int = 0, **counters: int) -> dict[str, object]:
    return {"points": pending, "counters": {"accepted_points": accepted, **counters}}


def _poll(device: str, stub: GasSubstation, seq: int, ts: int) -> list[Row]:
    want = expected_values(stub.reading(seq))
    return [Row(device, name, ts, float(want[name])) for name in IR_POINTS]


def test_oracle_counts_lost_and_duplicates() -> None:
    stub = GasSubstation(3)
    rows = _poll("plc-0", stub, 5, 1000) + _poll("plc-0", stub, 6, 2000)
    j = judge(rows, {"plc-0": stub}, {"plc-0": {"4": 3}}, [_stats(3 * len(IR_POINTS))])
    assert (j.produced, j.delivered, j.lost, j.duplicates) == (18, 12, 6, 0)
    bad = [*rows[:-1], Row("plc-0", rows[-1].point, rows[-1].ts, 99.0)]  # a different write of one (series, time)
    j = judge(bad, {"plc-0": stub}, {"plc-0": {"4": 2}}, [_stats(2 * len(IR_POINTS))])
    assert (j.lost, j.duplicates, j.mismatched) == (0, 1, 1)
    j = judge(rows, {"plc-0": stub}, {"plc-0": {"4": 3}},
              [_stats(3 * len(IR_POINTS), dropped_oldest_points=6)])
    assert (j.lost, j.dropped_counted) == (0, 6)  # a counted drop is not a loss


def test_histogram_and_recovery() -> None:
    assert histogram_quantile(0.99, {0.005: 90, 0.05: 99, 0.5: 100, float("inf"): 100}) == 0.05
    samples: list[tuple[float, float | None, float | None]] = [(t, 100.0, 0.0 if 5 <= t < 12 else 100.0)
                                                               for t in range(20)]
    assert recovery_times(samples, [(5.0, 9.0)], nominal_rate=100, until=20) == [3.0]


def test_scenario_errors_are_located(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_scenario({"name": "x", "duration_s": 10, "faults": [{"at_s": 1, "kind": "gateway_kill", "repeat": 3}],
                        "pass": {"max_lost": -1}, "plcs": {"cuont": 2}})
    text = str(err.value)
    assert "faults[0]: Value error" not in text and "faults[0]: repeat > 1 needs every_s" in text
    assert "pass.max_lost" in text and "plcs.cuont: unknown key" in text
    with pytest.raises(ConfigError, match=r"needs \[gateway\] netns"):
        parse_scenario({"name": "x", "duration_s": 10, "faults": [{"at_s": 1, "kind": "netem", "netem": "loss 5%"}]})
    with pytest.raises(ConfigError, match=r"faults\[0\]: netem 'loss 5%; rm': words of"):
        parse_scenario({"name": "x", "duration_s": 10, "gateway": {"netns": True},
                        "faults": [{"at_s": 1, "kind": "netem", "netem": "loss 5%; rm"}]})
    with pytest.raises(ConfigError, match=r"gateway: uplink: port set by the runner"):
        parse_scenario({"name": "x", "duration_s": 10, "gateway": {"uplink": {"port": 1883}}})
    with pytest.raises(ConfigError, match=r"plc-5.*1 plc"):
        parse_scenario({"name": "x", "duration_s": 10,
                        "faults": [{"at_s": 1, "kind": "plc_reboot", "target": "plc-5"}]})
    for path in SCENARIOS.glob("*.toml"):
        load_scenario(path)  # every shipped scenario is valid
    soak = load_scenario(SCENARIOS / "bad_day.toml").with_duration(450)
    assert soak.duration_s == 450 and soak.faults[0].at_s == 40 and soak.faults[0].every_s == 100
    assert soak.faults[0].duration_s == 4  # the faults keep their length: more of them fit, spread out
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nduration_s = 5\n[[faults]]\nat_s = 1\nkind = "meteor"\n')
    assert main(["hil", "run", str(bad)]) == 2


def _scenario_params() -> list[Any]:
    out = []
    for path in sorted(SCENARIOS.glob("*.toml")):
        marks: list[pytest.MarkDecorator] = [pytest.mark.integration]
        if path.stem not in CI_SUBSET and not RUN_ALL:
            marks.append(pytest.mark.skip(reason="outside the CI subset (EDGEGW_HIL_ALL=1 runs it)"))
        if path.stem in KNOWN_FAILING:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILING[path.stem], strict=True))
        out.append(pytest.param(path, id=path.stem, marks=marks))
    return out


@pytest.mark.parametrize("path", _scenario_params())
def test_shipped_scenario_passes(path: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    try:
        result = run_campaign(load_scenario(path), report)
    except NetnsUnavailable as err:  # namespace scenarios: root, iproute2, and for netem the sch_netem module
        pytest.skip(str(err))
    for name in ("report.json", "report.md", "rates.png"):
        assert (report / name).stat().st_size > 0, name
    doc = json.loads((report / "report.json").read_text())
    assert doc["passed"] is result.passed
    assert result.passed, (result.reasons, doc["examples"])
    assert result.judgement.delivered > 0 and len(result.recovery_s) == len(result.faults)


@pytest.mark.integration
def test_negative_control_fails_and_counts_the_drops(tmp_path: Path) -> None:
    """A tiny drop_newest buffer behind a long cut: the report must show the drops and fail."""
    report = tmp_path / "report"
    assert main(["hil", "run", str(NEGATIVE), "--report", str(report)]) == 1
    doc = json.loads((report / "report.json").read_text())
    assert doc["passed"] is False
    assert doc["dropped_counted"] > 0 and any(r.startswith("dropped") for r in doc["failed_because"])
    assert doc["lost"] == 0  # every drop was counted: none is silent
    assert doc["delivered"] < doc["produced"]
