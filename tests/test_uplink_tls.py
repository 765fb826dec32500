"""TLS, mutual TLS and username / password against a real mosquitto on loopback.

One mosquitto with two TLS listeners (server authentication only, and mutual TLS requiring a
client certificate) and a password file; the CA and certificates are made by the test.
Verification is on by default: a gateway that trusts another CA must not connect.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import MqttConfig, UplinkConfig
from gateway.core.errors import RetryableError
from gateway.sinks.mqtt import MqttUplink
from hil.pki import LoopbackPki, make_pki
from hil.services import Mosquitto, free_port
from tests.conftest import _start

__all__: list[str] = []


@dataclass
class TlsBroker:
    svc: Mosquitto
    mtls_port: int
    pki: LoopbackPki
    other: LoopbackPki  # a CA the broker does not trust


@pytest.fixture(scope="module")
def tls_broker(services_dir: Path) -> Iterator[TlsBroker]:
    work = services_dir / "mosquitto-tls"
    work.mkdir(exist_ok=True)
    pki = make_pki(work / "pki")
    other = make_pki(work / "other", "other")
    passwd = work / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "gw", "s3cret"], check=True, capture_output=True)
    passwd.chmod(0o644)
    tls = f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
    mtls_port = free_port()
    svc = Mosquitto(
        workdir=work,
        extra_config=(
            f"{tls}"
            f"listener {mtls_port} 127.0.0.1\n{tls}require_certificate true\n"
            f"password_file {passwd}\nallow_anonymous false\n"
        ),
    )
    _start(svc)
    yield TlsBroker(svc, mtls_port, pki, other)
    svc.stop()


async def _publish(cfg: MqttConfig) -> None:
    uplink = MqttUplink(cfg, "s1", "tls-gw")
    async with uplink.connect() as conn:
        await conn.write(b"hello over TLS")


def _cfg(b: TlsBroker, **over: object) -> MqttConfig:
    base: dict[str, object] = {"port": b.svc.port, "tls": True, "ca_file": str(b.pki.ca), "username": "gw",
                               "password_file": None, "timeout_s": 5,
                               "no_subscribers": "accept"}  # nothing subscribes: 0x10 counts as delivered
    base.update(over)
    return UplinkConfig.model_validate(base)


@pytest.fixture
def password(tmp_path: Path) -> str:
    p = tmp_path / "pw"
    p.write_text("s3cret\n")
    return str(p)


async def test_tls_with_verification(tls_broker: TlsBroker, password: str) -> None:
    await _publish(_cfg(tls_broker, password_file=password))


async def test_tls_by_host_name(tls_broker: TlsBroker, password: str) -> None:
    await _publish(_cfg(tls_broker, host="localhost", password_file=password))


async def test_untrusted_broker_is_refused(tls_broker: TlsBroker, password: str) -> None:
    with pytest.raises(RetryableError, match="cannot connect"):
        await _publish(_cfg(tls_broker, ca_file=str(tls_broker.other.ca), password_file=password))


async def test_wrong_password_is_refused(tls_broker: TlsBroker, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    with pytest.raises(RetryableError, match="cannot connect"):
        await _publish(_cfg(tls_broker, password_file=str(wrong)))


async def test_mutual_tls(tls_broker: TlsBroker, password: str) -> None:
    pki = tls_broker.pki
    await _publish(_cfg(tls_broker, port=tls_broker.mtls_port, cert_file=str(pki.client_cert),
                        key_file=str(pki.client_key), password_file=password))


async def test_mutual_tls_without_or_with_a_foreign_client_certificate_is_refused(
    tls_broker: TlsBroker, password: str
) -> None:
    with pytest.raises(RetryableError):
        await _publish(_cfg(tls_broker, port=tls_broker.mtls_port, password_file=password, timeout_s=2))
    other = tls_broker.other
    with pytest.raises(RetryableError):
        await _publish(_cfg(tls_broker, port=tls_broker.mtls_port, cert_file=str(other.client_cert),
                            key_file=str(other.client_key), password_file=password, timeout_s=2))


def test_tls_settings_are_checked_without_io() -> None:
    with pytest.raises(ValueError, match="tls = false"):
        MqttConfig(ca_file="ca.pem")
    with pytest.raises(ValueError, match="go together"):
        MqttConfig(tls=True, cert_file="c.pem")
    with pytest.raises(ValueError, match="not both"):
        MqttConfig(password_env="X", password_file="f")
    assert MqttConfig(tls=True).tls_verify == "full"  # verification is on unless switched off
