"""`edgegw certs create`, `edgegw browse [--emit-config]`, and the sample config."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from drivers.opcua.browse import emit_config, point_name
from drivers.opcua.certs import Pki, application_uri_of
from drivers.opcua.config import SecurityMode, SecurityPolicy, TrustPolicy
from drivers.opcua.driver import OpcUaDriver, SecuritySettings
from gateway.config import parse
from gateway.point import Quality
from hil.opcua_server import PlantServer

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
        lines = out.splitlines()
        assert lines[0].split() == ["NODE", "ID", "BROWSE", "PATH", "DATA", "TYPE", "UNIT", "ACCESS"]
        rows = {ln.split()[0]: ln.split()[1:] for ln in lines[1:]}
        assert len(rows) == 11  # the gasifier's process variables, nothing else
        assert rows["ns=2;s=Gasifier01.Reactor.Temperature"] == [
            "Objects/Gasifier01/Reactor/Temperature", "Double", "degC", "r"
        ]
        assert rows["ns=2;s=Gasifier01.Status.Running"][2] == "-"  # no EngineeringUnits property
    rc, out, err = await edgegw("browse", plant.endpoint, "--emit-config")
    assert rc == 0, err
    points = {p["name"]: p for p in (await checked_device(out, tmp_path))["points"]}
    assert not [n for n in points if "EngineeringUnits" in n]
    assert points["Gasifier01.Reactor.Temperature"]["unit"] == "degC"
    assert points["Gasifier01.Feed.OxygenFlow"]["unit"] == "Nm3/h"
    assert points["HotStove2.Dome.Temperature"]["unit"] == "degC"
    assert "unit" not in points["Gasifier01.Status.Mode"]


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
    def __init__(self, nid: str, path: str, unit: str = "") -> None:
        self.node_id, self.browse_path, self.data_type, self.access, self.array = nid, path, "Double", "r", False
        self.unit = unit


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
