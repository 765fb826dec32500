"""`edgegw certs create`, `edgegw browse [--emit-config]`, and the sample config."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.client.ua_client import UaClient

from drivers.opcua.browse import emit_config, format_table, point_name
from drivers.opcua.certs import Pki, application_uri_of
from drivers.opcua.config import OpcUaDevice, SecurityMode, SecurityPolicy, TrustPolicy
from drivers.opcua.driver import OpcUaDriver, SecuritySettings, _eu_range, _unit_text, browse
from gateway.config import parse
from gateway.core.point import Quality
from hil.opcua_server import PlantServer
from pipelines.normalise import Normalise
from tests.opcua.conftest import catalog_for

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]


async def edgegw(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


GATEWAY = '[gateway]\nid = "gw1"\nsite = "ordos-01"\nenterprise_prefix = "88.608.5288"\n\n'


async def checked_device(emitted: str, tmp_path: Path) -> dict[str, Any]:
    """The emitted [[devices]] block pasted under a [gateway] table must pass `edgegw check`."""
    path = tmp_path / "browsed.toml"
    path.write_text(GATEWAY + emitted, encoding="utf-8")
    rc, out, err = await edgegw("check", "-c", str(path))
    assert rc == 0, err
    assert "(1 device, " in out
    device: dict[str, Any] = tomllib.loads(emitted)["devices"][0]
    return device


async def read_as_emitted(device: dict[str, Any], node_id: str) -> Any:
    """Connect with the emitted device's own security settings and read one point (polling, so one Read)."""
    points = [p for p in device["points"] if p["node_id"] == node_id]
    assert points, f"{node_id} not emitted"
    cfg = parse(
        {"gateway": {"id": "g", "site": "s", "enterprise_prefix": "88.608.5288"},
         "devices": [{**device, "mode": "polling", "points": points}]}
    )
    assert isinstance(cfg.devices[0], OpcUaDevice)
    async with OpcUaDriver(cfg.devices[0], 0) as drv:
        batch = await drv.read()
    assert batch[0][3] is Quality.GOOD, batch
    return batch[0][2]


@SESSION_LOOP
async def test_certs_create_writes_cert_with_the_application_uri(tmp_path: Path) -> None:
    rc, out, _ = await edgegw("certs", "create", "--pki-dir", str(tmp_path / "pki"), "--application-uri",
                              "urn:ordos-01:edgegw")
    assert rc == 0, out
    pki = Pki(tmp_path / "pki")
    assert application_uri_of(pki.own_cert.read_bytes()) == "urn:ordos-01:edgegw"
    assert pki.own_key.stat().st_mode & 0o077 == 0  # the private key is not readable by others
    rc, _, err = await edgegw("certs", "create", "--pki-dir", str(tmp_path / "pki"))
    assert rc == 2 and "--force" in err


@SESSION_LOOP
async def test_browse_lists_variables_and_emits_a_valid_point_list(plant: PlantServer, tmp_path: Path) -> None:
    rc, out, err = await edgegw("browse", plant.endpoint, "--filter", "Objects/HotStove2/*")
    assert rc == 0, err
    assert "ns=2;s=HotStove2.Dome.Temperature" in out and "Double" in out
    assert "Gasifier01" not in out
    rc, out, err = await edgegw("browse", plant.endpoint, "--depth", "4", "--emit-config")
    assert rc == 0, err
    dev = await checked_device(out, tmp_path)
    names = {p["name"] for p in dev["points"]}
    assert "Gasifier01.Reactor.Temperature" in names and "CellLine3.Cell02.Voltage" in names
    # browsed with security None: the device says so (and must opt in), not Basic256Sha256
    assert (dev["security_policy"], dev["security_mode"], dev["allow_no_security"]) == ("None", "None", True)
    assert isinstance(await read_as_emitted(dev, "ns=2;s=Gasifier01.Reactor.Temperature"), float)


@SESSION_LOOP
async def test_browse_lists_process_variables_not_their_properties(plant: PlantServer, tmp_path: Path) -> None:
    """EngineeringUnits (HasProperty, PropertyType) is metadata of its variable: the unit, never a point."""
    for depth in ("4", "3"):  # 3: the variables are on the last level browsed, their properties one below
        rc, out, err = await edgegw("browse", plant.endpoint, "--depth", depth, "--filter", "Objects/Gasifier01/*")
        assert rc == 0, err
        assert "EngineeringUnits" not in out
        assert "EURange" not in out and "InstrumentRange" not in out
        lines = out.splitlines()
        assert lines[0].split() == ["NODE", "ID", "BROWSE", "PATH", "DATA", "TYPE", "UNIT", "RANGE", "ACCESS"]
        rows = {ln.split()[0]: ln.split()[1:] for ln in lines[1:]}
        assert len(rows) == 11  # the gasifier's process variables, nothing else
        # the RANGE column: the InstrumentRange (marked) where there is one, the EURange otherwise
        assert rows["ns=2;s=Gasifier01.Reactor.Temperature"] == [
            "Objects/Gasifier01/Reactor/Temperature", "Double", "degC", "instr:0..1800", "r"
        ]
        assert rows["ns=2;s=Gasifier01.Reactor.Pressure"][2:4] == ["MPa", "instr:-0.1..10"]
        assert rows["ns=2;s=Gasifier01.Reactor.WallTemp"][2:4] == ["degC", "0..400"]
        assert rows["ns=2;s=Gasifier01.Status.Running"][2:4] == ["-", "-"]  # no EngineeringUnits, no EURange
    rc, out, err = await edgegw("browse", plant.endpoint, "--emit-config")
    assert rc == 0, err
    points = {p["name"]: p for p in (await checked_device(out, tmp_path))["points"]}
    assert not [n for n in points if "EngineeringUnits" in n]
    assert points["Gasifier01.Reactor.Temperature"]["unit"] == "degC"
    assert points["Gasifier01.Feed.OxygenFlow"]["unit"] == "Nm3/h"
    assert points["HotStove2.Dome.Temperature"]["unit"] == "degC"
    assert "unit" not in points["Gasifier01.Status.Mode"]


@SESSION_LOOP
async def test_browse_emits_the_eurange_as_min_max(plant: PlantServer, tmp_path: Path) -> None:
    """EURange (Low, High) becomes the point's min/max; the config passes check, and what the emitted
    device reads, through the range check, is good and inside that range."""
    rc, out, err = await edgegw("browse", plant.endpoint, "--emit-config", "--range-check")
    assert rc == 0, err
    dev = await checked_device(out, tmp_path)
    points = {p["node_id"]: p for p in dev["points"]}
    ranged = {plant.node_id(s): s for s in plant.specs if s.eu_range is not None and s.instrument_range is None}
    assert len(ranged) == 16  # the analog items but the cell voltages and those with an InstrumentRange
    specs = {plant.node_id(s): s for s in plant.specs}
    for nid, p in points.items():
        spec = specs.get(nid)  # None: the array
        spec_range = spec and (spec.instrument_range or spec.eu_range)  # an InstrumentRange always wins
        assert (p.get("min"), p.get("max")) == (spec_range or (None, None)), nid
    assert (points["ns=2;s=Gasifier01.Reactor.WallTemp"]["min"],
            points["ns=2;s=Gasifier01.Reactor.WallTemp"]["max"]) == (0.0, 400.0)
    assert (points["ns=2;s=Gasifier01.Reactor.Temperature"]["min"],
            points["ns=2;s=Gasifier01.Reactor.Temperature"]["max"]) == (0.0, 1800.0)
    assert (points["ns=2;s=CellLine3.Cell01.Voltage"]["min"],  # a unit and an InstrumentRange, no EURange
            points["ns=2;s=CellLine3.Cell01.Voltage"]["max"]) == (0.0, 60.0)
    assert points["ns=2;s=CellLine3.Cell01.Voltage"]["unit"] == "V"
    assert "max" not in points["ns=2;s=Gasifier01.Status.BurnerTrips"]
    # the range check reaches the pipeline, and the plant's values pass it
    analog = [p for p in dev["points"] if p["node_id"] in ranged]
    cfg, cat = catalog_for({**dev, "mode": "polling", "points": analog})
    assert [(pt.spec.min, pt.spec.max) for pt in cat.points] == [ranged[p["node_id"]].eu_range for p in analog]
    async with OpcUaDriver(cfg.devices[0], 0) as drv:
        batch = Normalise(cat.specs)(await drv.read())
    good = 0
    for (_i, _ts, value, quality, reason), p in zip(batch, analog, strict=True):
        spec = ranged[p["node_id"]]
        if spec.status(plant.t) != "Good":  # the stub's fault windows
            assert quality is not Quality.GOOD and reason != "out_of_range", (p["name"], reason)
            continue
        lo, hi = spec.eu_range  # type: ignore[misc]
        assert quality is Quality.GOOD and reason is None, (p["name"], reason)
        assert isinstance(value, float), (p["name"], value)
        assert lo <= value <= hi and value == pytest.approx(spec.value(plant.t), rel=1e-6), p["name"]
        good += 1
    assert good >= 10  # of 16: WallTemp, CO2, the hot blast and the bath temperatures have fault windows


@SESSION_LOOP
async def test_browse_emits_the_instrument_range_as_active_limits(plant: PlantServer, tmp_path: Path) -> None:
    """An InstrumentRange (the instrument's physical limits) is emitted as active min/max even without
    --range-check, its EURange as a comment only; the config passes check, and what the emitted device
    reads through that range check is good."""
    rc, out, err = await edgegw("browse", plant.endpoint, "--emit-config")
    assert rc == 0, err
    dev = await checked_device(out, tmp_path)
    points = {p["node_id"]: p for p in dev["points"]}
    instrumented = {plant.node_id(s): s for s in plant.specs if s.instrument_range is not None}
    assert len(instrumented) == 7  # gasifier temperature and pressure, dome temperature, 4 cell voltages
    for nid, p in points.items():
        want = instrumented[nid].instrument_range if nid in instrumented else None
        assert (p.get("min"), p.get("max")) == (want or (None, None)), nid  # EURange-only: commented
    temp = points["ns=2;s=Gasifier01.Reactor.Temperature"]
    assert (temp["min"], temp["max"]) == (0.0, 1800.0)
    block = out[out.index('node_id = "ns=2;s=Gasifier01.Reactor.Temperature"'):]
    block = block[: block.index("[[devices.points]]")]
    assert "  min = 0.0\n  max = 1800.0\n  # EURange (normal operation, for information): 0.0 .. 1600.0\n" in block
    assert "InstrumentRange" in block and "# min" not in block
    wall = out[out.index('node_id = "ns=2;s=Gasifier01.Reactor.WallTemp"'):]
    assert "  # min = 0.0\n  # max = 400.0\n" in wall[: wall.index("[[devices.points]]")]  # no InstrumentRange
    # the range check reaches the pipeline, and the plant's values pass it
    limited = [p for p in dev["points"] if p["node_id"] in instrumented]
    cfg, cat = catalog_for({**dev, "mode": "polling", "points": limited})
    assert [(pt.spec.min, pt.spec.max) for pt in cat.points] == [
        instrumented[p["node_id"]].instrument_range for p in limited
    ]
    async with OpcUaDriver(cfg.devices[0], 0) as drv:
        batch = Normalise(cat.specs)(await drv.read())
    for (_i, _ts, value, quality, reason), p in zip(batch, limited, strict=True):
        spec = instrumented[p["node_id"]]
        assert spec.status(plant.t) == "Good" and quality is Quality.GOOD and reason is None, (p["name"], reason)
        lo, hi = spec.instrument_range  # type: ignore[misc]
        assert isinstance(value, float), (p["name"], value)
        assert lo <= value <= hi and value == pytest.approx(spec.value(plant.t), rel=1e-6), p["name"]
    # --range-check leaves them as they are: the InstrumentRange, not the EURange
    rc, out, err = await edgegw("browse", plant.endpoint, "--emit-config", "--range-check",
                                "--filter", "Objects/Gasifier01/Reactor/*")
    assert rc == 0, err
    points = {p["node_id"]: p for p in (await checked_device(out, tmp_path))["points"]}
    assert (points["ns=2;s=Gasifier01.Reactor.Pressure"]["min"],
            points["ns=2;s=Gasifier01.Reactor.Pressure"]["max"]) == (-0.1, 10.0)
    assert (points["ns=2;s=Gasifier01.Reactor.WallTemp"]["min"],
            points["ns=2;s=Gasifier01.Reactor.WallTemp"]["max"]) == (0.0, 400.0)


@SESSION_LOOP
async def test_browse_reads_properties_in_batches_within_max_nodes_per_read(
    plant: PlantServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attributes, EngineeringUnits and EURange of all variables go in shared Reads, none over the
    server's MaxNodesPerRead (4 on this plant)."""
    sizes: list[int] = []
    real_read = UaClient.read

    async def counting_read(self: UaClient, params: ua.ReadParameters) -> Any:
        sizes.append(len(params.NodesToRead))
        return await real_read(self, params)

    monkeypatch.setattr(UaClient, "read", counting_read)
    found = await browse(plant.endpoint, depth=4, pattern="Objects/HotStove2/*")
    by_path = {v.browse_path: v for v in found}
    assert len(found) == 7
    assert by_path["Objects/HotStove2/Dome/Temperature"].eu_range == (0.0, 1600.0)
    assert by_path["Objects/HotStove2/Dome/Temperature"].unit == "degC"
    assert by_path["Objects/HotStove2/Status/Phase"].eu_range is None
    assert by_path["Objects/HotStove2/Dome/Temperature"].instrument_range == (0.0, 1800.0)
    assert by_path["Objects/HotStove2/Waste/FlueTemperature"].instrument_range is None
    # 7 variables x 3 attributes + 6 units + 6 EURanges + 1 InstrumentRange = 34 nodes: 8 full Reads of 4
    # and one of 2
    assert sorted(sizes, reverse=True) == [4] * 8 + [2]


@SESSION_LOOP
async def test_browse_skips_ranges_that_are_not_usable(tmp_path: Path) -> None:
    """Non-finite, inverted or empty EURanges give no min/max; a plain-string EngineeringUnits is still a unit."""
    async with PlantServer(["hot_stove"]) as srv:
        assert srv._server is not None
        bad = {
            "HotStove2.Dome.Temperature": ua.Range(Low=math.nan, High=1600.0),
            "HotStove2.Waste.FlueTemperature": ua.Range(Low=600.0, High=0.0),
            "HotStove2.Blast.HotBlastTemperature": ua.Range(Low=0.0, High=math.inf),
            "HotStove2.Blast.ColdBlastFlow": ua.Range(Low=0.0, High=0.0),  # an unset range
        }
        for sid, rng in bad.items():
            await srv._server.write_attribute_value(
                ua.NodeId(f"{sid}.EURange", srv.ns), ua.DataValue(ua.Variant(rng))
            )
        await srv._server.write_attribute_value(  # an inverted InstrumentRange: ignored as well
            ua.NodeId("HotStove2.Dome.Temperature.InstrumentRange", srv.ns),
            ua.DataValue(ua.Variant(ua.Range(Low=1800.0, High=0.0))),
        )
        await srv._server.write_attribute_value(
            ua.NodeId("HotStove2.Gas.BfgFlow.EngineeringUnits", srv.ns), ua.DataValue(ua.Variant("Nm3/h"))
        )
        found = {v.node_id: v for v in await browse(srv.endpoint, depth=4)}
        for sid in bad:
            assert found[srv.node_id(sid)].eu_range is None, sid
            assert found[srv.node_id(sid)].instrument_range is None, sid
            assert found[srv.node_id(sid)].unit in ("degC", "Nm3/min")
        assert (found[srv.node_id("HotStove2.Gas.BfgFlow")].unit,
                found[srv.node_id("HotStove2.Gas.BfgFlow")].eu_range) == ("Nm3/h", (0.0, 150000.0))
        rc, out, err = await edgegw("browse", srv.endpoint, "--emit-config", "--range-check")
    assert rc == 0, err
    points = {p["name"]: p for p in (await checked_device(out, tmp_path))["points"]}
    for sid in bad:
        assert "min" not in points[sid] and "max" not in points[sid], sid
    assert (points["HotStove2.Gas.BfgFlow"]["min"], points["HotStove2.Gas.BfgFlow"]["max"]) == (0.0, 150000.0)


@SESSION_LOOP
async def test_browse_a_secured_server(secure_plant: PlantServer, pki_root: Path, tmp_path: Path) -> None:
    """The secured plant offers no None endpoint: only a Sign / SignAndEncrypt session can browse it."""
    rc, _, err = await edgegw("browse", secure_plant.endpoint)
    assert rc == 1 and "Traceback" not in err
    assert "offers no security None endpoint: browse with --security" in err
    gw = pki_root / "gw"
    for policy, mode in (("Basic256Sha256", "SignAndEncrypt"), ("Aes256_Sha256_RsaPss", "Sign")):
        rc, out, err = await edgegw(
            "browse", secure_plant.endpoint, "--security", policy, "--mode", mode, "--pki-dir", str(gw),
            "--cert", str(gw / "own" / "cert.der"), "--key", str(gw / "own" / "private" / "key.pem"),
            "--filter", "Objects/HotStove2/*",
        )
        assert rc == 0, err
        assert "ns=2;s=HotStove2.Dome.Temperature" in out
    # --emit-config writes the policy, mode, PKI and trust browse used: the device connects the same way
    for policy, mode in (("Aes128_Sha256_RsaOaep", "Sign"), ("Aes256_Sha256_RsaPss", "SignAndEncrypt")):
        rc, out, err = await edgegw(
            "browse", secure_plant.endpoint, "--security", policy, "--mode", mode, "--pki-dir", str(gw),
            "--filter", "Objects/HotStove2/Dome/*", "--emit-config",
        )
        assert rc == 0, err
        dev = await checked_device(out, tmp_path)
        assert (dev["security_policy"], dev["security_mode"]) == (policy, mode)
        assert (dev["pki_dir"], dev["trust"]) == (str(gw), "trust_list")
        assert "allow_no_security" not in dev
        assert isinstance(await read_as_emitted(dev, "ns=2;s=HotStove2.Dome.Temperature"), float)
    # a first browse that pinned the server certificate: the config keeps trust_on_first_use
    tofu = tmp_path / "tofu"
    shutil.copytree(gw / "own", tofu / "own")
    rc, out, err = await edgegw(
        "browse", secure_plant.endpoint, "--security", "Basic256Sha256", "--mode", "Sign", "--pki-dir", str(tofu),
        "--trust-on-first-use", "--filter", "Objects/HotStove2/Dome/*", "--emit-config",
    )
    assert rc == 0, err
    dev = await checked_device(out, tmp_path)
    assert (dev["security_policy"], dev["security_mode"]) == ("Basic256Sha256", "Sign")
    assert (dev["pki_dir"], dev["trust"]) == (str(tofu), "trust_on_first_use")
    assert isinstance(await read_as_emitted(dev, "ns=2;s=HotStove2.Dome.Temperature"), float)
    # the same certificate, but a trust list without the server's: refused, the certificate kept aside
    rc, _, err = await edgegw(
        "browse", secure_plant.endpoint, "--security", "Basic256Sha256", "--pki-dir", str(tmp_path / "empty"),
        "--cert", str(gw / "own" / "cert.der"), "--key", str(gw / "own" / "private" / "key.pem"),
    )
    assert rc == 1 and "is not in the trust list" in err and "Traceback" not in err
    assert list((tmp_path / "empty" / "rejected").iterdir())
    rc, _, err = await edgegw("browse", secure_plant.endpoint, "--security", "Basic256Sha256", "--cert", "x.der")
    assert rc == 2 and "--key" in err


@SESSION_LOOP
async def test_browse_of_a_dead_endpoint_is_a_clear_error() -> None:
    rc, _, err = await edgegw("browse", "opc.tcp://127.0.0.1:1/")
    assert rc == 1 and "cannot connect" in err and "Traceback" not in err


def test_point_names_are_valid_keys() -> None:
    assert point_name("Objects/Line 3/Cell#1/Temp (C)") == "Line_3.Cell_1.Temp__C"


class V:
    def __init__(
        self, nid: str, path: str, unit: str = "", eu_range: tuple[float, float] | None = None, array: bool = False,
        instrument_range: tuple[float, float] | None = None,
    ) -> None:
        self.node_id, self.browse_path, self.data_type, self.access, self.array = nid, path, "Double", "r", array
        self.unit, self.eu_range, self.instrument_range = unit, eu_range, instrument_range


def test_emit_config_deduplicates_names() -> None:
    text = emit_config("opc.tcp://h:1", [V("ns=2;s=a", "Objects/A"), V("ns=2;s=b", "Objects/A")])
    assert [p["name"] for p in tomllib.loads(text)["devices"][0]["points"]] == ["A", "A_2"]


def test_emit_config_carries_the_browse_security_and_units() -> None:
    plain = tomllib.loads(emit_config("opc.tcp://h:1", [V("ns=2;s=a", "Objects/A")]))["devices"][0]
    assert (plain["security_policy"], plain["security_mode"], plain["allow_no_security"]) == ("None", "None", True)
    sec = SecuritySettings(SecurityPolicy.AES128_SHA256_RSAOAEP, SecurityMode.SIGN, "site/pki",
                           TrustPolicy.TRUST_ON_FIRST_USE, "gw.pem", "gw.key")
    text = emit_config("opc.tcp://h:1", [V("ns=2;s=a", "Objects/A", 'd"eg\nC\u00b0')], security=sec)
    dev = tomllib.loads(text)["devices"][0]
    assert {k: dev[k] for k in ("security_policy", "security_mode", "pki_dir", "trust")} == {
        "security_policy": "Aes128_Sha256_RsaOaep", "security_mode": "Sign", "pki_dir": "site/pki",
        "trust": "trust_on_first_use",
    }
    assert "--cert gw.pem --key gw.key" in text and "own/cert.der" in text  # no config key for them: said so
    assert dev["points"][0]["unit"] == 'd"eg\nC\u00b0'  # whatever text a server sends stays valid TOML


def test_emit_config_writes_the_eurange_as_min_max() -> None:
    variables = [
        V("ns=2;s=a", "Objects/A", "degC", (-273.15, 1e20)),
        V("ns=2;s=b", "Objects/B", "%", (0.0, 100.0), array=True),  # a JSON string: never range-checked
        V("ns=2;s=c", "Objects/C"),
    ]
    # by default as comments: EURange is normal operation, an excursion must not lose its value
    default = emit_config("opc.tcp://h:1", variables)
    assert not any("min" in p or "max" in p for p in tomllib.loads(default)["devices"][0]["points"])
    assert "  # min = -273.15\n  # max = 1e+20\n" in default and "uncomment" in default
    text = emit_config("opc.tcp://h:1", variables, range_check=True)
    a, b, c = tomllib.loads(text)["devices"][0]["points"]
    assert (a["min"], a["max"]) == (-273.15, 1e20)
    assert "min" not in b and "max" not in b and b["array_mode"] == "json"
    assert "min" not in c and "max" not in c
    assert "EURange" in text  # says where the limits come from
    table = format_table([V("ns=2;s=a", "Objects/A", "degC", (-50.0, 6.5)), V("ns=2;s=c", "Objects/C")])
    assert [ln.split()[4] for ln in table.splitlines()[1:]] == ["-50..6.5", "-"]


def test_emit_config_writes_the_instrument_range_active_and_the_eurange_as_a_comment() -> None:
    variables = [
        V("ns=2;s=a", "Objects/A", "degC", (0.0, 1600.0), instrument_range=(-50.0, 1800.0)),
        V("ns=2;s=b", "Objects/B", "V", None, instrument_range=(0.0, 60.0)),  # no EURange
        V("ns=2;s=c", "Objects/C", "%", (0.0, 100.0), array=True, instrument_range=(-10.0, 110.0)),
        V("ns=2;s=d", "Objects/D", "MPa", (0.0, 6.5), instrument_range=(10.0, 1.0)),  # inverted: ignored
        V("ns=2;s=e", "Objects/E", "MPa", (0.0, 6.5), instrument_range=(0.0, math.inf)),  # not finite: ignored
        V("ns=2;s=f", "Objects/F", "MPa", (0.0, 6.5), instrument_range=(math.nan, 1.0)),
    ]
    for range_check in (False, True):  # an InstrumentRange is active either way
        text = emit_config("opc.tcp://h:1", variables, range_check=range_check)
        a, b, c, d, e, f = tomllib.loads(text)["devices"][0]["points"]
        assert (a["min"], a["max"]) == (-50.0, 1800.0)
        assert (b["min"], b["max"]) == (0.0, 60.0)
        assert "min" not in c and "max" not in c and c["array_mode"] == "json"
        assert "  min = -50.0\n  max = 1800.0\n  # EURange (normal operation, for information): 0.0 .. 1600.0\n" in text
        assert "InstrumentRange (instrument limits)" in text  # says where the limits come from
        for p in (d, e, f):  # without a usable InstrumentRange: today's EURange, commented or active
            assert ((p.get("min"), p.get("max")) == (0.0, 6.5)) is range_check, (p, range_check)
    default = emit_config("opc.tcp://h:1", variables)
    assert default.count("  # min = 0.0\n  # max = 6.5\n") == 3 and "= nan" not in default and "= inf" not in default
    table = format_table([*variables[:2], variables[3], V("ns=2;s=g", "Objects/G")])
    assert [ln.split()[4] for ln in table.splitlines()[1:]] == ["instr:-50..1800", "instr:0..60", "0..6.5", "-"]


def test_eu_range_and_unit_of_property_values() -> None:
    assert _eu_range(ua.Range(Low=0.0, High=100.0)) == (0.0, 100.0)
    assert _eu_range(ua.Range(Low=-5, High=5)) == (-5.0, 5.0)
    assert _eu_range(ua.Range(Low=-0.1, High=10.0)) == (-0.1, 10.0)  # an InstrumentRange is parsed the same way
    for unusable in (ua.Range(Low=math.nan, High=1.0), ua.Range(Low=0.0, High=math.inf),
                     ua.Range(Low=-math.inf, High=0.0), ua.Range(Low=2.0, High=1.0), ua.Range(Low=3.0, High=3.0),
                     None, "0..100", [0.0, 100.0]):
        assert _eu_range(unusable) is None, unusable
    eu = ua.EUInformation(UnitId=4408652, DisplayName=ua.LocalizedText("°C"))
    assert [_unit_text(v) for v in (eu, ua.LocalizedText(" % "), "degC", None, 42)] == ["°C", "%", "degC", "", ""]


def test_sample_config_passes_check() -> None:
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", "drivers/opcua/sample.toml"],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


@SESSION_LOOP
async def test_bench_smoke_prints_the_figures(tmp_path: Path) -> None:
    """A tiny run so the benchmark cannot rot; figures are printed, never asserted."""
    out_json = tmp_path / "bench.json"
    rc, out, err = await edgegw("bench", "opcua", "--items", "200", "--window", "1", "--json", str(out_json))
    assert rc == 0, err
    assert "notifications_per_s" in out  # printed as well as written
    figures = json.loads(out_json.read_text())
    assert set(figures) >= {"notifications_per_s", "cpu_fraction", "reconnect_s"}
    assert figures["items"] == 200 and figures["reconnect_s"] is not None


def test_a_chinese_browse_name_becomes_the_display_name() -> None:
    """BrowseNames in Chinese cannot be keys (topics and codes stay ASCII): the emitted point keeps an
    ASCII name and carries the server's name as display_name, so each row stays recognisable."""
    text = emit_config("opc.tcp://h:1", [V("ns=2;s=a", "Objects/气化炉A/炉膛温度"),
                                         V("ns=2;s=b", "Objects/Line3/Temp")])
    points = tomllib.loads(text)["devices"][0]["points"]
    assert points[0]["display_name"] == "气化炉A.炉膛温度" and points[0]["name"].isascii()
    assert "display_name" not in points[1]
