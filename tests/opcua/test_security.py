"""Secured sessions: every policy and mode, every identity kind, the trust list and its refusals."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from drivers.opcua.certs import Pki
from drivers.opcua.driver import OpcUaDriver
from gateway.core.errors import ConfigError, ConnectError
from gateway.core.point import Quality
from hil.opcua_server import PlantServer
from tests.opcua.conftest import USERS, catalog_for, device

pytestmark = pytest.mark.asyncio(loop_scope="session")


def secure_device(srv: PlantServer, pki: Path, **kw: Any) -> dict[str, Any]:
    points = [{"name": "dome", "node_id": srv.node_id("HotStove2.Dome.Temperature"), "unit": "degC"}]
    base = device(srv.endpoint, points, mode="polling", pki_dir=str(pki))
    for k in ("security_policy", "security_mode", "allow_no_security"):
        base.pop(k)
    base.update(kw)
    return base


async def read_once(dev: dict[str, Any]) -> Any:
    cfg, _ = catalog_for(dev)
    async with OpcUaDriver(cfg.devices[0], 0) as drv:
        return await drv.read()


@pytest.mark.parametrize(
    ("policy", "mode"),
    [
        ("Basic256Sha256", "SignAndEncrypt"),
        ("Basic256Sha256", "Sign"),
        ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"),
        ("Aes128_Sha256_RsaOaep", "Sign"),
        ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
        ("Aes256_Sha256_RsaPss", "Sign"),
    ],
)
async def test_every_policy_and_mode_reads_good_values(
    secure_plant: PlantServer, pki_root: Path, policy: str, mode: str
) -> None:
    batch = await read_once(
        secure_device(secure_plant, pki_root / "gw", security_policy=policy, security_mode=mode)
    )
    assert batch[0][3] is Quality.GOOD
    assert batch[0][2] == secure_plant.specs[0].value(secure_plant.t)


async def test_username_identity(secure_plant: PlantServer, pki_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPC_PW", USERS["operator"])
    dev = secure_device(secure_plant, pki_root / "gw", identity="username", username="operator", password_env="OPC_PW")
    assert (await read_once(dev))[0][3] is Quality.GOOD


async def test_wrong_password_is_a_clear_refusal(
    secure_plant: PlantServer, pki_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPC_PW", "wrong")
    dev = secure_device(secure_plant, pki_root / "gw", identity="username", username="operator", password_env="OPC_PW")
    with pytest.raises(ConnectError, match=r"opc1: .*refused the session: Bad(UserAccessDenied|IdentityTokenRejected)"):
        await read_once(dev)


async def test_x509_identity(secure_plant: PlantServer, pki_root: Path) -> None:
    dev = secure_device(
        secure_plant,
        pki_root / "gw",
        identity="certificate",
        user_certificate=str(pki_root / "user" / "cert.der"),
        user_private_key=str(pki_root / "user" / "key.pem"),
    )
    assert (await read_once(dev))[0][3] is Quality.GOOD


async def test_untrusted_server_is_refused_and_its_certificate_kept_for_review(
    secure_plant: PlantServer, pki_root: Path, tmp_path: Path
) -> None:
    pki = Pki(tmp_path / "fresh")
    pki.create_own("urn:edgegw:test:fresh", hostnames=("localhost",))
    with pytest.raises(ConnectError, match="is not in the trust list") as info:
        await read_once(secure_device(secure_plant, pki.root))
    assert "move it to" in str(info.value)
    assert len(list(pki.rejected.iterdir())) == 1
    assert pki.trusted_certificates() == []


async def test_trust_on_first_use_stores_the_certificate_then_pins_it(
    secure_plant: PlantServer, pki_root: Path, tmp_path: Path
) -> None:
    pki = Pki(tmp_path / "tofu")
    pki.create_own("urn:edgegw:test:tofu", hostnames=("localhost",))
    batch = await read_once(secure_device(secure_plant, pki.root, trust="trust_on_first_use"))
    assert batch[0][3] is Quality.GOOD
    assert pki.trusted_certificates() == [(pki_root / "server" / "cert.der").read_bytes()]
    # a different certificate for the same ApplicationUri is a changed server: refused even under TOFU
    other = tmp_path / "other.der"
    shutil.copy(pki_root / "user" / "cert.der", other)
    for p in pki.trusted.iterdir():
        p.unlink()
    from drivers.opcua.certs import create_certificate

    create_certificate(tmp_path / "imp.der", tmp_path / "imp.pem", application_uri="urn:edgegw:sim:server")
    pki.trust((tmp_path / "imp.der").read_bytes())
    with pytest.raises(ConnectError, match="differs from the one trusted"):
        await read_once(secure_device(secure_plant, pki.root, trust="trust_on_first_use"))


async def test_missing_application_certificate_names_the_command(secure_plant: PlantServer, tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="edgegw certs create"):
        await read_once(secure_device(secure_plant, tmp_path / "empty"))


async def test_no_security_client_against_secure_only_server(secure_plant: PlantServer, pki_root: Path) -> None:
    dev = secure_device(secure_plant, pki_root / "gw", security_policy="None", security_mode="None",
                        allow_no_security=True)
    with pytest.raises(ConnectError, match="opc1"):
        await read_once(dev)


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"security_policy": "Basic128Rsa15"}, "deprecated"),
        ({"security_policy": "Basic256"}, "deprecated"),
        ({"security_policy": "None", "security_mode": "None"}, "allow_no_security"),
        ({"security_mode": "None"}, "needs security_mode"),
        ({"identity": "username", "username": "x"}, "password_env or password_file"),
        ({"identity": "certificate"}, "user_certificate"),
        ({"endpoint": "http://x"}, "opc.tcp://"),
    ],
)
async def test_bad_security_config_is_a_located_error(edits: dict[str, Any], message: str) -> None:
    dev = device("opc.tcp://127.0.0.1:4840", [{"name": "a", "node_id": "ns=2;s=A"}])
    for k in ("security_policy", "security_mode", "allow_no_security"):
        dev.pop(k)
    dev.update(edits)
    with pytest.raises(ConfigError) as info:
        catalog_for(dev)
    assert any(message in str(i) and str(i).startswith("devices[0]") for i in info.value.issues), info.value.issues


async def test_bad_node_id_syntax_is_a_located_error() -> None:
    with pytest.raises(ConfigError, match=r"devices\[0\]\.points\[0\]"):
        catalog_for(device("opc.tcp://127.0.0.1:4840", [{"name": "a", "node_id": "ns=x;q=1"}]))


async def test_deprecated_policy_allowed_explicitly_passes_validation() -> None:
    dev = device("opc.tcp://127.0.0.1:4840", [{"name": "a", "node_id": "ns=2;s=A"}],
                 security_policy="Basic256", security_mode="Sign", allow_deprecated_policies=True)
    catalog_for(dev)


async def test_corrupt_application_certificate_is_a_clear_error(secure_plant: PlantServer, tmp_path: Path) -> None:
    pki = Pki(tmp_path / "corrupt")
    pki.create_own("urn:edgegw:test:corrupt", hostnames=("localhost",), key_size=1024)
    pki.own_cert.write_bytes(b"not a certificate")
    with pytest.raises(ConnectError, match="unusable certificate or key"):
        await read_once(secure_device(secure_plant, pki.root))


async def test_browse_logs_in_with_a_user_name_or_an_x509_identity(secure_plant: PlantServer, pki_root: Path) -> None:
    from drivers.opcua.config import SecurityMode, SecurityPolicy
    from drivers.opcua.driver import SecuritySettings, browse

    sec = SecuritySettings(SecurityPolicy("Basic256Sha256"), SecurityMode("SignAndEncrypt"), str(pki_root / "gw"))
    ep = secure_plant.endpoint
    found = await browse(ep, depth=4, security=sec, username="operator", password=USERS["operator"])
    assert found
    with pytest.raises(ConnectError, match=r"Bad(UserAccessDenied|IdentityTokenRejected)"):
        await browse(ep, depth=4, security=sec, username="operator", password="wrong")
    found = await browse(ep, depth=4, security=sec, user_certificate=str(pki_root / "user" / "cert.der"),
                         user_private_key=str(pki_root / "user" / "key.pem"))
    assert found
