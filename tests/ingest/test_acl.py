"""The shipped broker ACL (deploy/mosquitto/acl) makes the topic an identity: a real mosquitto,
two gateways' credentials, the real ingest, InfluxDB 1.x.

- Gateway A publishing on site B's topics is refused by the broker (MQTT 5 PUBACK 0x87, which the
  uplink reports as RejectedError): the ingest never sees it, nothing of it reaches InfluxDB.
- Gateway A publishing on its own topic a batch (or an alarm) that claims site B is dead-lettered by
  the ingest as "forged origin".
- Both gateways' legitimate data arrives tagged with its own site and gateway.
- Nobody connects anonymously; a gateway cannot read the fleet's data; the ingest cannot publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.codec import points_payload
from gateway.config import IngestSection, MqttConfig
from gateway.core.errors import RejectedError
from gateway.core.point import Point, Quality, now_ns
from gateway.ingest import Ingest
from gateway.sinks.mqtt import MqttClient, MqttUplink
from hil.services import Influx1, Mosquitto
from tests.conftest import IN_CI, _start, eventually

__all__: list[str] = []

SHIPPED_ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl"
# the identities the shipped file names
A_SITE, A_GW = "baotou-mine-01", "bt-mine-01-gw1"
B_SITE, B_GW = "ordos-plant-01", "ordos-plant-01-gw1"
INGEST_USER = "edgegw-ingest"
PASSWORDS = {A_GW: "pw-a", B_GW: "pw-b", INGEST_USER: "pw-ingest"}


def _mosquitto_passwd() -> str:
    path = shutil.which("mosquitto_passwd")
    if path is None:
        if IN_CI:
            pytest.fail("mosquitto_passwd is not installed: CI must install the mosquitto package")
        pytest.skip("mosquitto_passwd is not installed (package mosquitto)")
    return path


@pytest.fixture
def fleet_broker(services_dir: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """mosquitto with the shipped ACL, a password file made by mosquitto_passwd, no anonymous access."""
    work = services_dir / "mosquitto-fleet"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    secrets = work / "secrets"
    secrets.mkdir()
    passwd = work / "passwd"
    tool = _mosquitto_passwd()
    for i, (user, pw) in enumerate(PASSWORDS.items()):
        subprocess.run([tool, "-b", *(["-c"] if i == 0 else []), str(passwd), user, pw], check=True,
                       capture_output=True)
        (secrets / user).write_text(pw + "\n")
    passwd.chmod(0o644)  # mosquitto started as root reads it as user 'mosquitto'
    acl = work / "acl"
    shutil.copyfile(SHIPPED_ACL, acl)
    acl.chmod(0o644)
    svc = Mosquitto(workdir=work, extra_config=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")
    _start(svc)
    yield svc, secrets
    svc.stop()


def mqtt(broker: Mosquitto, secrets: Path, user: str | None) -> MqttConfig:
    if user is None:
        return MqttConfig(port=broker.port, timeout_s=5)
    return MqttConfig(port=broker.port, username=user, password_file=str(secrets / user), timeout_s=5)


def point(key: str, ts_ns: int, value: float) -> Point:
    return Point(key, f"88.608.5288/{key}", ts_ns, value, Quality.GOOD, None, "%", "gas-sub-01", "dev-1")


def alarm(site: str, gw: str, ts_ns: int) -> bytes:
    doc = {"v": 1, "kind": "alarm", "gw": gw, "site": site, "point": "gas-sub-01.ch4", "code": "88.608.5288/ch4",
           "device": "gas-sub-01", "device_code": "dev-1", "class": "gas", "data_grade": "", "data_domain": "",
           "unit": "%", "ts_ns": ts_ns, "level": "hh", "previous": "normal", "active": True, "value": 9.9,
           "threshold": 1.5, "tags": {}}
    return json.dumps(doc).encode()


@contextlib.asynccontextmanager
async def running(ingest: Ingest) -> AsyncIterator[None]:
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.wait_for(ingest.subscribed.wait(), 15)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def telemetry(influx: Influx1, db: str) -> list[dict[str, Any]]:
    res: Any = influx.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0].get("series", [])
    if not series:
        return []
    cols = series[0]["columns"]
    return [dict(zip(cols, v, strict=True)) for v in series[0]["values"]]


def alarms(influx: Influx1, db: str) -> list[dict[str, Any]]:
    res: Any = influx.query('SELECT * FROM "alarm"', db=db)
    series = res["results"][0].get("series", [])
    return [dict(zip(series[0]["columns"], v, strict=True)) for v in series[0]["values"]] if series else []


async def test_broker_acl_and_ingest_make_the_topic_the_identity(
    fleet_broker: tuple[Mosquitto, Path], influx1: Influx1, tmp_path: Path
) -> None:
    broker, secrets = fleet_broker
    db = "acl_fleet"
    influx1.create_database(db)
    section = IngestSection.model_validate({
        "mqtt": {**mqtt(broker, secrets, INGEST_USER).model_dump(exclude_none=True), "client_id": "ingest-acl-1"},
        "influx": {"api": "v1", "url": influx1.url, "database": db},
        "linger_ms": 20,
        "dead_letter_path": str(tmp_path / "dead-letters.db"),
    })
    ingest = Ingest(section)
    assert ingest.topic_filter == "$share/ingest/edgegw/+/+/data"  # the ACL must allow the shared subscription
    t0 = now_ns()
    a_cfg = mqtt(broker, secrets, A_GW).model_copy(update={"client_id": "gw-a"})
    b_cfg = mqtt(broker, secrets, B_GW).model_copy(update={"client_id": "gw-b"})

    # no anonymous access at all
    with pytest.raises(aiomqtt.MqttError):
        async with MqttClient(mqtt(broker, secrets, None), "anon"):
            pass

    async with running(ingest), MqttClient(a_cfg, "gw-a-rogue") as rogue:
        # gateway A claiming to be gateway B: its birth message on B's state topic is refused ...
        with pytest.raises(RejectedError, match="0x87"):
            async with MqttUplink(a_cfg, B_SITE, B_GW).connect():
                pass
        # ... and so is a batch on B's data topic (and on B's alarm topic)
        with pytest.raises(RejectedError, match="0x87"):
            await rogue.publish_checked(f"edgegw/{B_SITE}/{B_GW}/data",
                                        points_payload(B_GW, B_SITE, [point("ch4", t0, 666.0)]), timeout=5)
        with pytest.raises(RejectedError, match="0x87"):
            await rogue.publish_checked(f"edgegw/{B_SITE}/{B_GW}/alarm", alarm(B_SITE, B_GW, t0), timeout=5)
        # mosquitto 2.0 grants a gateway's SUBSCRIBE but withholds every message it may not read (below)
        await rogue.subscribe("edgegw/#", qos=1)
        # the ingest's credentials cannot publish
        async with MqttClient(mqtt(broker, secrets, INGEST_USER), "ingest-rogue") as ingest_rogue:
            with pytest.raises(RejectedError, match="0x87"):
                await ingest_rogue.publish_checked(f"edgegw/{A_SITE}/{A_GW}/data",
                                                   points_payload(A_GW, A_SITE, [point("ch4", t0, 667.0)]), timeout=5)

        # both gateways' own data, through the real uplink (birth message and all)
        async with MqttUplink(a_cfg, A_SITE, A_GW).connect() as conn_a, \
                MqttUplink(b_cfg, B_SITE, B_GW).connect() as conn_b:
            for i in range(3):
                await conn_a.write(points_payload(A_GW, A_SITE, [point("ch4", t0 + i, 0.5 + i)]))
                await conn_b.write(points_payload(B_GW, B_SITE, [point("ch4", t0 + i, 1.5 + i)]))
            # A on its own topic, with a payload that claims site B: the broker lets it through,
            # the ingest dead-letters it
            await conn_a.write(points_payload(B_GW, B_SITE, [point("ch4", t0 + 10, 999.0)]))
        async with MqttUplink(a_cfg, A_SITE, A_GW, kind="alarm").connect() as alarm_a:
            await alarm_a.write(alarm(B_SITE, B_GW, t0 + 11))

        await eventually(lambda: ingest.stats.written_points >= 6 and ingest.stats.dead_letter_messages >= 2,
                         what="6 points written and 2 messages dead-lettered")
        assert ingest.stats.messages == 8  # nothing the broker refused ever reached the ingest
        # the rogue subscriber got none of the fleet's messages: the PUBACK of its own publish comes
        # on the same connection after anything the broker had queued for it
        await rogue.publish_checked(f"edgegw/{A_SITE}/{A_GW}/state", b"probe", timeout=5)
        assert len(rogue.messages) == 0
        # the ingest's credentials may read the gateways' state (central monitoring): the retained
        # state of each gateway, written by that gateway alone
        async with MqttClient(mqtt(broker, secrets, INGEST_USER), "ingest-monitor") as monitor:
            await monitor.subscribe("edgegw/+/+/state", qos=1)
            states = {}
            async with asyncio.timeout(10):
                async for msg in monitor.messages:
                    assert isinstance(msg.payload, bytes)
                    states[msg.topic.value] = json.loads(msg.payload)["state"]
                    if len(states) == 2:
                        break
        assert states == {f"edgegw/{A_SITE}/{A_GW}/state": "offline", f"edgegw/{B_SITE}/{B_GW}/state": "offline"}

    rows = telemetry(influx1, db)
    got = sorted((r["site"], r["gateway"], r["time"] - t0, r["value"]) for r in rows)
    want = [(A_SITE, A_GW, i, 0.5 + i) for i in range(3)] + [(B_SITE, B_GW, i, 1.5 + i) for i in range(3)]
    assert got == sorted(want)
    assert alarms(influx1, db) == []
    letters = list(ingest.dead_letters.entries())
    assert len(letters) == 2
    assert {d.topic for d in letters} == {f"edgegw/{A_SITE}/{A_GW}/data", f"edgegw/{A_SITE}/{A_GW}/alarm"}
    for d in letters:
        assert d.reason.startswith("forged origin") and repr(B_SITE) in d.reason and d.kind == "message"
    ingest.close()


def _mosquitto_grants(text: str) -> set[tuple[str, str, str]]:
    grants: set[tuple[str, str, str]] = set()
    user = None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            user = words[1]
        else:
            assert words[0] == "topic" and user is not None, line  # no anonymous or pattern grants
            grants.add((user, {"write": "publish", "read": "subscribe"}[words[1]], words[2]))
    return grants


def _emqx_grants(text: str) -> tuple[set[tuple[str, str, str]], list[str]]:
    statements = [s.strip() for s in re.sub(r"%%[^\n]*", "", text).split("}.") if s.strip()]
    grants: set[tuple[str, str, str]] = set()
    for s in statements[:-1]:
        m = re.fullmatch(r'\{allow, \{username, "([^"]+)"\}, (publish|subscribe), \[((?:"[^"]+"(?:, )?)+)\]', s)
        assert m, s
        grants |= {(m[1], m[2], t) for t in re.findall(r'"([^"]+)"', m[3])}
    return grants, statements


def test_emqx_acl_grants_what_the_mosquitto_acl_grants() -> None:
    """The EMQX file cannot be run here (no EMQX): it must say exactly what the tested mosquitto file says."""
    mosquitto = _mosquitto_grants(SHIPPED_ACL.read_text())
    emqx, statements = _emqx_grants((SHIPPED_ACL.parent.parent / "emqx" / "acl.conf").read_text())
    assert emqx == mosquitto
    assert statements[-1] == "{deny, all"  # the last rule refuses everything else
    assert {(A_GW, "publish", f"edgegw/{A_SITE}/{A_GW}/#"), (B_GW, "publish", f"edgegw/{B_SITE}/{B_GW}/#")} <= emqx
