"""Registration and resolution against the simulated resolution node (hil/resolution_node.py).

A real node cannot be reached from here; the simulator follows the documented request and
response shapes and injects 504s, garbage and downtime.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.app import Gateway
from gateway.catalog import build_catalog
from gateway.cli import main
from gateway.config import parse
from gateway.core.errors import RegistryAuthError, RegistryError, RegistryUnavailable
from gateway.registry import make_client, records
from hil.modbus_server import SimulatedPlc
from hil.resolution_node import ResolutionNode
from pipelines.registry import DoipClient, Record, RegisterReport, ResolutionCache, Resolved, Resolver, SnmsClient
from tests.conftest import eventually, stop_tasks

APP = "88.608.5288/App_edgegw"
PASSWORD = "s3cret"


def recs(n: int, prefix: str = "88.608.5288/DEV.t.") -> list[Record]:
    return [Record(f"{prefix}{i:05d}", ((2000, "name", f"p{i}"), (2001, "kind", "point"))) for i in range(n)]


@pytest.fixture
def node() -> Iterator[ResolutionNode]:
    with ResolutionNode(users={APP: PASSWORD}) as n:
        yield n


def snms(node: ResolutionNode, **kw: Any) -> SnmsClient:
    return SnmsClient(node.url, APP, PASSWORD, timeout_s=5, backoff_s=0, **kw)


def test_snms_registers_in_batches_of_at_most_1500_and_again_idempotently(node: ResolutionNode) -> None:
    client = snms(node)
    first = client.register(recs(3200))
    assert node.batch_sizes == [1500, 1500, 200]
    assert len(first.created) == 3200 and first.ok and not first.existed
    again = client.register(recs(3200))
    assert again.ok and len(again.existed) == 3200 and not again.created  # "标识已存在" counts as success
    got = client.resolve("88.608.5288/DEV.t.00042")
    assert got.values == {"name": "p42", "kind": "point"}
    # the prefix is case-insensitive at the node, the suffix is not
    assert client.resolve("88.608.5288/DEV.t.00042").handle == "88.608.5288/DEV.t.00042"
    with pytest.raises(RegistryError, match="没有找到标识"):
        client.resolve("88.608.5288/dev.t.00042")


def test_a_504_is_retried_and_already_exists_on_the_retry_confirms_the_first_call(node: ResolutionNode) -> None:
    node.fail_504 = 2  # the node stored the batch, but the proxy timed out: twice
    report = snms(node).register(recs(10))
    assert report.retries_504 == 2 and report.ok
    assert len(report.existed) == 10 and not report.created
    assert len(node.store) == 10
    node.fail_504, node.commit_on_504 = 1, False  # this time the first call really failed
    report = snms(node).register(recs(5, "88.608.5288/DEV.u."))
    assert report.retries_504 == 1 and len(report.created) == 5
    node.fail_504 = 10
    with pytest.raises(RegistryUnavailable, match="still answered 504 after 3 retries"):
        snms(node).register(recs(1, "88.608.5288/DEV.v."))


def test_refused_records_are_reported_not_hidden(node: ResolutionNode) -> None:
    bad = [Record("88.608.5288/ok.1", ((2000, "name", "x"),)), Record("88.608.5288/idx", ((1001, "name", "x"),))]
    report = snms(node).register(bad)
    assert report.created == ["88.608.5288/ok.1"]
    assert report.failed == [("88.608.5288/idx", "非法操作，标识属性不合法")]


def test_wrong_password_garbage_and_downtime_are_typed_errors(node: ResolutionNode) -> None:
    with pytest.raises(RegistryAuthError, match="用户名或密码错误"):
        SnmsClient(node.url, APP, "wrong", timeout_s=5).register(recs(1))
    node.garbage = True
    with pytest.raises(RegistryUnavailable, match="not JSON"):
        snms(node).register(recs(1))
    node.garbage = False
    node.down()
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        snms(node).resolve("88.608.5288/x")
    node.up()
    assert snms(node).register(recs(1)).ok


def test_resolution_cache_ttl_and_stale_entries_while_the_node_is_down(node: ResolutionNode) -> None:
    client = snms(node)
    client.register(recs(2))
    now = [0.0]
    resolver = Resolver(client, ResolutionCache(ttl_s=60, clock=lambda: now[0]))
    h = "88.608.5288/DEV.t.00001"
    assert resolver.resolve(h).values["name"] == "p1"
    assert resolver.resolve(h.replace("88.608.5288", "88.608.5288")).values["name"] == "p1"
    assert resolver.node_requests == 1  # the second one came from the cache
    now[0] = 61.0
    resolver.resolve(h)
    assert resolver.node_requests == 2  # expired: asked again
    node.down()
    now[0] = 200.0
    assert resolver.resolve(h).values["name"] == "p1" and resolver.stale_served == 1
    with pytest.raises(RegistryUnavailable):
        resolver.resolve("88.608.5288/DEV.t.00000")  # never resolved: nothing to fall back on
    node.up()
    out = resolver.resolve_many(["88.608.5288/DEV.t.00000", "88.608.5288/none"])
    assert not isinstance(out["88.608.5288/DEV.t.00000"], Exception)
    assert isinstance(out["88.608.5288/none"], RegistryError)


def _rsa() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def test_doip_challenge_response_login_register_and_resolve() -> None:
    private, public = _rsa()
    other, _ = _rsa()
    with ResolutionNode(doip_apps={APP: public}) as node:
        client = DoipClient(node.url, APP, private, type_handle="88.608.5288/META_point", timeout_s=5, backoff_s=0)
        node.fail_504 = 1
        report = client.register(recs(3))
        assert report.ok and report.retries_504 == 1 and len(report.created) + len(report.existed) == 3
        assert client.register(recs(3)).existed == [r.handle for r in recs(3)]
        got = client.resolve("88.608.5288/DEV.t.00002")
        assert got.values == {"name": "p2", "kind": "point"}
        with pytest.raises(RegistryError, match="not found"):
            client.resolve("88.608.5288/nothing")
        intruder = DoipClient(node.url, APP, other, type_handle="88.608.5288/META_point", timeout_s=5)
        with pytest.raises(RegistryAuthError, match="signature"):
            intruder.resolve("88.608.5288/DEV.t.00002")


GW_CFG: dict[str, Any] = {
    "gateway": {"id": "gw-reg", "site": "baotou-mine-01", "code": "88.608.5288/GW.baotou-mine-01.gw1",
                "enterprise_prefix": "88.608.5288"},
    "devices": [{"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": 502,
                 "poll_interval_ms": 50,
                 "points": [{"name": "ch4", "address": 2, "table": "input_register", "data_type": "float32",
                             "class": "ch4"},
                            {"name": "co", "address": 4, "table": "input_register", "class": "co"}]}],
    "uplink": {"host": "127.0.0.1", "port": 1},
}


def _config(node_url: str, tmp: Path, plc_port: int = 502, **registry: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(GW_CFG))
    data["devices"][0]["port"] = plc_port
    data["buffer"] = {"path": str(tmp / "buf.db"), "linger_ms": 20}
    data["registry"] = {"api": "snms", "url": node_url, "identity": APP, "password_env": "EDGEGW_TEST_IDIS_PW",
                        **registry}
    return data


def test_catalog_records_cover_gateway_devices_and_points(tmp_path: Path) -> None:
    cat = build_catalog(parse(_config("http://127.0.0.1:1", tmp_path)))
    rs = records(cat, "88.608.5288/GW.baotou-mine-01.gw1")
    assert [r.handle for r in rs] == [
        "88.608.5288/GW.baotou-mine-01.gw1",
        "88.608.5288/DEV.baotou-mine-01.gas-sub-01",
        "88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4",
        "88.608.5288/DEV.baotou-mine-01.gas-sub-01.co",
    ]
    assert dict((t, v) for _, t, v in rs[2].values) == {
        "name": "gas-sub-01.ch4", "kind": "point", "parent": "88.608.5288/DEV.baotou-mine-01.gas-sub-01",
        "site": "baotou-mine-01", "unit": "%CH4", "data_grade": "general", "class": "ch4"}


@pytest.mark.parametrize("fault", ["garbage", "down"])
async def test_a_broken_node_never_blocks_acquisition_or_buffering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    monkeypatch.setenv("EDGEGW_TEST_IDIS_PW", PASSWORD)
    with ResolutionNode(users={APP: PASSWORD}) as node:
        if fault == "garbage":
            node.garbage = True
        else:
            node.down()
        async with SimulatedPlc(tick_s=0) as plc:
            gw = Gateway(parse(_config(node.url, tmp_path, plc.port, register_on_start=True)))
            assert gw.registry_sync is not None
            task = asyncio.create_task(gw.run())
            try:
                await eventually(lambda: gw.registry_sync is not None and gw.registry_sync.stats.failures >= 1,
                                 what="a failed registration")
                accepted = gw.buffer.counters()["accepted_points"]
                await eventually(lambda: gw.buffer.counters()["accepted_points"] >= accepted + 20,
                                 what="buffering to go on")
                assert not gw.registry_sync.stats.done
                if fault == "garbage":
                    node.garbage = False
                else:
                    node.up()
                # the sync retries in the background and gets there once the node is back
                await eventually(lambda: gw.registry_sync is not None and gw.registry_sync.stats.done, timeout=30,
                                 what="registration after the node came back")
            finally:
                await stop_tasks(task)
        assert node.registered("88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4") is not None
        assert len(node.store) == 4


def test_cli_ids_export_register_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EDGEGW_TEST_IDIS_PW", PASSWORD)
    with ResolutionNode(users={APP: PASSWORD}) as node:
        cfg = tmp_path / "gw.toml"
        data = _config(node.url, tmp_path)
        lines = [f"[gateway]\nid = \"gw-reg\"\nsite = \"baotou-mine-01\"\ncode = \"{data['gateway']['code']}\"\n"
                 f"enterprise_prefix = \"88.608.5288\"\n",
                 "[[devices]]\ntype = \"modbus_tcp\"\nname = \"gas-sub-01\"\nhost = \"127.0.0.1\"\n",
                 "[[devices.points]]\nname = \"ch4\"\naddress = 2\nclass = \"ch4\"\n",
                 f"[registry]\napi = \"snms\"\nurl = \"{node.url}\"\nidentity = \"{APP}\"\n"
                 "password_env = \"EDGEGW_TEST_IDIS_PW\"\n"]
        cfg.write_text("".join(lines), encoding="utf-8")

        assert main(["ids", "export", "-c", str(cfg)]) == 0
        exported = json.loads(capsys.readouterr().out)
        assert [r["handle"] for r in exported] == [
            "88.608.5288/GW.baotou-mine-01.gw1",
            "88.608.5288/DEV.baotou-mine-01.gas-sub-01",
            "88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4",
        ]
        assert exported[2]["value"][0] == {"index": 2000, "type": "name", "auth": "",
                                           "data": {"format": "string", "value": "gas-sub-01.ch4"}}
        assert node.requests == []  # export is offline

        assert main(["ids", "register", "-c", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert "3 codes: 3 created, 0 updated, 0 unchanged, 0 failed" in out
        assert main(["ids", "register", "-c", str(cfg)]) == 0
        assert "3 codes: 0 created, 0 updated, 3 unchanged, 0 failed" in capsys.readouterr().out

        code = "88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4"
        assert main(["ids", "resolve", "-c", str(cfg), code, "88.608.5288/unknown"]) == 1
        out = capsys.readouterr().out
        assert f"{code}\tclass=ch4\tdata_grade=general\tkind=point\tname=gas-sub-01.ch4\t" in out
        assert "88.608.5288/unknown\tERROR" in out
        node.down()
        assert main(["ids", "register", "-c", str(cfg)]) == 1
        assert "unreachable" in capsys.readouterr().err


# --- re-registration updates what changed ---------------------------------------------------------

SITE_CFG: dict[str, Any] = {
    "gateway": {"id": "gw-upd", "site": "baotou-steel-01", "code": "88.608.5288/GW.baotou-steel-01.gw1",
                "enterprise_prefix": "88.608.5288"},
    "devices": [
        {"type": "modbus_tcp", "name": f"bf-{d}", "host": "127.0.0.1", "port": 502,
         "points": [{"name": f"t{i}", "address": 2 * i, "unit": "degC"} for i in range(4)]
         + [{"name": "p", "address": 20, "unit": "kPa"}]}
        for d in range(3)
    ],
}
TYPE_HANDLE = "88.608.5288/META_point"


def _site(api: str, node_url: str, tmp: Path, key_file: Path | None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(SITE_CFG))
    data["buffer"] = {"path": str(tmp / "buf.db")}
    if api == "snms":
        data["registry"] = {"api": "snms", "url": node_url, "identity": APP, "password_env": "EDGEGW_TEST_IDIS_PW"}
    else:
        data["registry"] = {"api": "doip", "url": node_url, "identity": APP, "private_key_file": str(key_file),
                            "type_handle": TYPE_HANDLE}
    return data


def _sync(data: dict[str, Any]) -> RegisterReport:
    """What `edgegw ids register` does: the config's records, the config's client."""
    cfg = parse(data)
    assert cfg.registry is not None and cfg.gateway is not None
    return make_client(cfg.registry).register(records(build_catalog(cfg), cfg.gateway.code))


@pytest.fixture(params=["snms", "doip"])
def site_node(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[tuple[str, ResolutionNode, Path | None]]:
    monkeypatch.setenv("EDGEGW_TEST_IDIS_PW", PASSWORD)
    private, public = _rsa()
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(private)
    with ResolutionNode(users={APP: PASSWORD}, doip_apps={APP: public}) as n:
        yield request.param, n, key_file


def test_a_changed_unit_updates_exactly_those_records_and_a_second_run_changes_nothing(
    site_node: tuple[str, ResolutionNode, Path], tmp_path: Path
) -> None:
    api, node, key_file = site_node
    data = _site(api, node.url, tmp_path, key_file)
    first = _sync(data)
    assert len(first.created) == 1 + 3 + 15 and first.ok and not first.updated and not first.unchanged
    assert node.updates == []

    # an engineer fixes the unit of the temperatures on one device
    for pt in data["devices"][1]["points"][:4]:
        pt["unit"] = "K"
    changed = [f"88.608.5288/DEV.baotou-steel-01.bf-1.t{i}" for i in range(4)]
    # and the first update times out at the proxy after the node stored it: sent again
    node.fail_504, node.fail_504_only = 1, "/identityv2/data/batchUpdate" if api == "snms" else "0.DOIP/Op.Update"
    second = _sync(data)
    assert second.ok and not second.created and second.retries_504 == 1
    assert second.updated == changed
    assert len(second.unchanged) == 19 - 4 and not set(second.unchanged) & set(changed)
    assert second.changes == {h: {"unit": ("degC", "K")} for h in changed}
    assert list(dict.fromkeys(node.updates)) == changed  # only those records were written
    if api == "snms":
        assert node.update_batch_sizes == [4, 4]  # the 504, then the retry
    cfg = parse(data)
    assert cfg.registry is not None
    client = make_client(cfg.registry)
    assert client.resolve(changed[2]).values["unit"] == "K"
    assert client.resolve(changed[2]).values["name"] == "bf-1.t2"  # the rest of the record is intact
    assert client.resolve("88.608.5288/DEV.baotou-steel-01.bf-0.t2").values["unit"] == "degC"

    writes = len(node.updates)
    third = _sync(data)
    assert third.ok and len(third.unchanged) == 19 and not third.created and not third.updated
    assert third.update_batches == 0 and len(node.updates) == writes


def test_start_up_registration_creates_only_unless_update_on_start(
    site_node: tuple[str, ResolutionNode, Path], tmp_path: Path
) -> None:
    """A gateway's background registration at start creates what is missing with a few batch requests
    and, unless ``update_on_start``, does not read back every existing record (a restart must not
    cost the node one read per code); ``edgegw ids register`` (compare) always does."""
    api, node, key_file = site_node
    data = _site(api, node.url, tmp_path, key_file)
    _sync(data)
    for pt in data["devices"][1]["points"][:4]:
        pt["unit"] = "K"
    cfg = parse(data)
    assert cfg.registry is not None
    before = len(node.requests)
    quick = make_client(cfg.registry).register(records(build_catalog(cfg), cfg.gateway.code if cfg.gateway else None),
                                                compare=False)
    assert quick.ok and len(quick.not_compared) == 19 and not quick.updated and node.updates == []
    assert "19 already registered (not compared)" in quick.summary()
    quick_requests = len(node.requests) - before
    before = len(node.requests)
    full = _sync(data)
    assert len(full.updated) == 4 and len(full.unchanged) == 15
    assert quick_requests + 19 <= len(node.requests) - before  # compare reads each of the 19 back


def test_name_device_and_grade_changes_and_a_removed_unit_are_updated(
    site_node: tuple[str, ResolutionNode, Path], tmp_path: Path
) -> None:
    api, node, key_file = site_node
    data = _site(api, node.url, tmp_path, key_file)
    _sync(data)
    p = data["devices"][0]["points"][4]
    p["unit"] = ""  # no unit any more: the stale one must go
    p["data_grade"] = "important"
    p["code"] = "88.608.5288/DEV.baotou-steel-01.bf-0.p"  # same code, now given explicitly: nothing changes
    data["devices"][2]["code"] = "88.608.5288/DEV.baotou-steel-01.bf-2"  # same, explicitly
    rep = _sync(data)
    assert rep.ok and rep.updated == ["88.608.5288/DEV.baotou-steel-01.bf-0.p"]
    assert rep.changes["88.608.5288/DEV.baotou-steel-01.bf-0.p"] == {
        "data_grade": ("general", "important"), "unit": ("kPa", "")}
    cfg = parse(data)
    assert cfg.registry is not None
    got = make_client(cfg.registry).resolve("88.608.5288/DEV.baotou-steel-01.bf-0.p")
    assert got.values.get("unit", "") == "" and got.values["data_grade"] == "important"
    assert _sync(data).updated == []


def test_attributes_the_gateway_does_not_manage_survive_an_update(node: ResolutionNode) -> None:
    rec = Record("88.608.5288/DEV.x.1", ((2000, "name", "x1"), (2004, "unit", "degC")))
    client = snms(node, managed_types=("name", "unit"))
    client.register([rec])
    stored = node.registered(rec.handle)
    assert stored is not None
    stored["value"].append({"index": 2100, "type": "location", "auth": "", "data": {"format": "string",
                                                                                   "value": "BF2 tuyere 7"}})
    rep = client.register([Record(rec.handle, ((2000, "name", "x1"), (2004, "unit", "K")))])
    assert rep.updated == [rec.handle] and rep.changes == {rec.handle: {"unit": ("degC", "K")}}
    assert client.resolve(rec.handle).values == {"name": "x1", "unit": "K", "location": "BF2 tuyere 7"}
    assert client.register([Record(rec.handle, ((2000, "name", "x1"), (2004, "unit", "K")))]).unchanged == [rec.handle]


def test_updates_go_in_batches_of_at_most_1500_and_a_504_is_retried(node: ResolutionNode) -> None:
    client = snms(node)
    client.register(recs(3200))
    changed = [Record(r.handle, ((2000, "name", r.values[0][2] + "-renamed"), (2001, "kind", "point")))
               for r in recs(3200)]
    node.fail_504, node.fail_504_only = 1, "/identityv2/data/batchUpdate"  # stored, but the proxy timed out
    rep = client.register(changed)
    assert rep.ok and len(rep.updated) == 3200 and not rep.unchanged and not rep.created
    assert rep.retries_504 == 1
    assert node.update_batch_sizes == [1500, 1500, 1500, 200]  # the first one twice (504, then the retry)
    assert rep.update_batches == 3
    assert client.resolve("88.608.5288/DEV.t.03199").values["name"] == "p3199-renamed"
    again = client.register(changed)
    assert len(again.unchanged) == 3200 and again.update_batches == 0 and node.update_batch_sizes[-1] == 200


def test_a_refused_update_is_a_failure_and_a_node_gone_mid_run_a_typed_error(node: ResolutionNode) -> None:
    client = snms(node)
    client.register(recs(3))
    node.refuse_update["88.608.5288/DEV.t.00001"] = "非法操作，无权限修改"
    rep = client.register([Record(r.handle, ((2000, "name", "new"),)) for r in recs(3)])
    assert rep.updated == ["88.608.5288/DEV.t.00000", "88.608.5288/DEV.t.00002"]
    assert rep.failed == [("88.608.5288/DEV.t.00001", "update refused: 非法操作，无权限修改")]
    assert not rep.ok and "88.608.5288/DEV.t.00001" not in rep.changes
    node.garbage = True
    with pytest.raises(RegistryUnavailable, match="not JSON"):
        client.register(recs(3))


def test_a_node_refusing_the_whole_update_batch_fails_those_records_only(
    node: ResolutionNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = snms(node)
    client.register(recs(4))
    snms_api = node.snms

    def without_batch_update(method: str, path: str, *args: Any) -> tuple[int, Any]:
        if path == "/identityv2/data/batchUpdate":
            return 404, {"status": -2, "message": f"no such API: {method} {path}", "data": None}
        return snms_api(method, path, *args)

    monkeypatch.setattr(node, "snms", without_batch_update)
    renamed = [Record(r.handle, ((2000, "name", "new"),)) for r in recs(4)[2:]]
    rep = client.register(recs(2) + renamed + recs(1, "88.1.1/n"))
    assert rep.created == ["88.1.1/n00000"] and rep.unchanged == [r.handle for r in recs(2)] and not rep.updated
    assert [h for h, _ in rep.failed] == [r.handle for r in recs(4)[2:]]
    assert "node refused the batch: no such API: PUT" in rep.failed[0][1] and not rep.changes


def test_stale_attributes_compares_managed_types_only() -> None:
    from pipelines.registry import stale_attributes

    rec = Record("88.1.1/x", ((2000, "name", "a"), (2004, "unit", "K")))
    node_side = Resolved("88.1.1/x", {"name": "a", "unit": "K", "TEMPLATE": "1.0", "location": "here"})
    assert stale_attributes(rec, node_side, {"name", "unit", "class"}) == {}
    node_side = Resolved("88.1.1/x", {"name": "a", "unit": "", "class": "ch4"})
    assert stale_attributes(rec, node_side, {"name", "unit", "class"}) == {"unit": ("", "K"), "class": ("ch4", "")}


def test_cli_register_prints_updates_and_exits_1_if_any_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGEGW_TEST_IDIS_PW", PASSWORD)
    with ResolutionNode(users={APP: PASSWORD}) as node:
        cfg = tmp_path / "gw.toml"

        def write(unit: str) -> None:
            cfg.write_text(
                "[gateway]\nid = \"gw-reg\"\nsite = \"s1\"\nenterprise_prefix = \"88.608.5288\"\n"
                "[[devices]]\ntype = \"modbus_tcp\"\nname = \"d1\"\nhost = \"127.0.0.1\"\n"
                f"[[devices.points]]\nname = \"t\"\naddress = 2\nunit = \"{unit}\"\n"
                "[[devices.points]]\nname = \"p\"\naddress = 4\nunit = \"kPa\"\n"
                f"[registry]\napi = \"snms\"\nurl = \"{node.url}\"\nidentity = \"{APP}\"\n"
                "password_env = \"EDGEGW_TEST_IDIS_PW\"\n", encoding="utf-8")

        write("degC")
        assert main(["ids", "register", "-c", str(cfg)]) == 0
        assert "3 codes: 3 created, 0 updated, 0 unchanged, 0 failed" in capsys.readouterr().out
        write("K")
        assert main(["ids", "register", "-c", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert "UPDATED\t88.608.5288/DEV.s1.d1.t\tunit 'degC' -> 'K'" in out
        assert "3 codes: 0 created, 1 updated, 2 unchanged, 0 failed" in out
        assert main(["ids", "resolve", "-c", str(cfg), "88.608.5288/DEV.s1.d1.t"]) == 0
        assert "unit=K" in capsys.readouterr().out
        write("degF")
        node.refuse_update["88.608.5288/DEV.s1.d1.t"] = "非法操作，无权限修改"
        assert main(["ids", "register", "-c", str(cfg)]) == 1
        out = capsys.readouterr().out
        assert "FAILED\t88.608.5288/DEV.s1.d1.t\tupdate refused: 非法操作，无权限修改" in out
        assert "3 codes: 0 created, 0 updated, 2 unchanged, 1 failed" in out
