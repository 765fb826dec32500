"""An OPC UA server that sends GBK where the standard says UTF-8 (issue #11), against ``edgegw run``.

A real asyncua server on 127.0.0.1 serves a String node whose bytes are GBK-encoded ``甲烷``
(older servers in Chinese plants do this) next to ordinary numeric nodes.  ``edgegw run`` runs as
its own process, publishing to mosquitto; a subscriber decodes what arrives.  Before the fix the
process exited 1 at the first batch (``UnicodeEncodeError: surrogates not allowed``), and at every
restart.  Now: with ``string_encoding = "gbk"`` the point arrives as ``甲烷``, good; with the
default (UTF-8) it arrives bad with reason ``encoding_error`` while the device's other points
arrive good; the process keeps running and stops cleanly.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Server, ua

from gateway.codec import decode
from gateway.core.point import Point, Quality
from gateway.core.values import ENCODING_ERROR
from hil.opcua_server import free_port
from hil.services import Mosquitto
from tests.collector import collect
from tests.conftest import eventually
from tests.gateway_process import start_gateway, stop_gateway

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

METHANE = "甲烷"
# the GBK bytes as asyncua holds a String that is not UTF-8 (surrogateescape): it sends them back unchanged
METHANE_GBK_AS_STR = METHANE.encode("gbk").decode("utf-8", "surrogateescape")


@pytest_asyncio.fixture(loop_scope="session")
async def gbk_server() -> AsyncIterator[str]:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/gbk/"
    srv = Server()
    await srv.init()
    srv.set_endpoint(endpoint)
    srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await srv.register_namespace("urn:edgegw:test:gbk")
    gas = await srv.nodes.objects.add_folder(ua.NodeId("Gas", ns), "Gas")
    await gas.add_variable(ua.NodeId("Gas.Name", ns), "Name", ua.Variant(METHANE_GBK_AS_STR, ua.VariantType.String))
    await gas.add_variable(ua.NodeId("Gas.CH4", ns), "CH4", ua.Variant(0.42, ua.VariantType.Double))
    await gas.add_variable(ua.NodeId("Gas.Count", ns), "Count", ua.Variant(7, ua.VariantType.Int32))
    await gas.add_variable(
        ua.NodeId("Gas.Names", ns), "Names", ua.Variant([METHANE_GBK_AS_STR, "CO"], ua.VariantType.String)
    )
    await srv.start()
    try:
        yield endpoint
    finally:
        await srv.stop()


def _device(name: str, endpoint: str, points: list[tuple[str, str, str]], **extra: str | int) -> str:
    """A ``[[devices]]`` block; ``points``: (name, node id, extra TOML lines)."""
    head = [
        "[[devices]]", 'type = "opcua"', f"name = {json.dumps(name)}", f"endpoint = {json.dumps(endpoint)}",
        'security_policy = "None"', 'security_mode = "None"', "allow_no_security = true",
        "publishing_interval_ms = 100", "sampling_interval_ms = 50",
    ]
    head += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    for pname, node, more in points:
        head += ["[[devices.points]]", f"name = {json.dumps(pname)}", f'node_id = "ns=2;s={node}"']
        head += [more] if more else []
    return "\n".join(head) + "\n"


async def test_gbk_string_from_a_real_server_spoils_only_its_own_point(
    gbk_server: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = tmp_path / "gw.toml"
    log = tmp_path / "gateway.log"
    cfg.write_text(
        '[gateway]\nid = "gw-gbk"\nsite = "ordos-plant-02"\nenterprise_prefix = "88.608.5288"\n'
        f'[buffer]\npath = {json.dumps((tmp_path / "buffer.db").as_posix())}\nlinger_ms = 20\n'
        f'[uplink]\nport = {mosquitto.port}\ntopic_prefix = "gbk"\nclient_id = "gw-gbk"\ntimeout_s = 3\n'
        "shutdown_drain_s = 5\n"
        # a device that declares its code page, one point of it overriding back to the standard's UTF-8
        + _device("plc_gbk", gbk_server, [
            ("name", "Gas.Name", ""),
            ("name_utf8", "Gas.Name", 'string_encoding = "utf-8"'),
            ("names", "Gas.Names", 'array_mode = "json"'),
            ("ch4", "Gas.CH4", ""),
        ], string_encoding="gbk")
        # the default: the same bytes are not UTF-8; polled, so the Read path is covered too
        + _device("plc_default", gbk_server, [
            ("name", "Gas.Name", ""),
            ("ch4", "Gas.CH4", ""),
            ("count", "Gas.Count", ""),
        ], mode="polling", poll_interval_ms=200)
    )
    latest: dict[str, Point] = {}
    async with collect(mosquitto.port, "gbk/+/+/data", "gbk-subscriber") as received:
        proc = await start_gateway(cfg, log)
        seen: list[bytes] = []
        try:
            def arrived() -> bool:
                assert proc.returncode is None, f"edgegw run exited {proc.returncode}:\n{log.read_text()[-3000:]}"
                for payload in received[len(seen):]:
                    seen.append(payload)
                    for p in decode(payload).points:
                        latest[p.key] = p
                return len(latest) == 7

            await eventually(arrived, timeout=30, what="every point of both devices delivered")
            got = {k: (p.value, p.quality, p.reason) for k, p in latest.items()}
            assert got["plc_gbk.name"] == (METHANE, Quality.GOOD, None)
            assert got["plc_gbk.name_utf8"] == (None, Quality.BAD, ENCODING_ERROR)
            assert got["plc_gbk.names"][1:] == (Quality.GOOD, None)
            assert json.loads(str(got["plc_gbk.names"][0])) == [METHANE, "CO"]
            assert got["plc_gbk.ch4"] == (0.42, Quality.GOOD, None)
            assert got["plc_default.name"] == (None, Quality.BAD, ENCODING_ERROR)
            assert got["plc_default.ch4"] == (0.42, Quality.GOOD, None)
            assert got["plc_default.count"] == (7, Quality.GOOD, None)
            # still running after further polls of the bad point (the old crash came at the first batch)
            n = len(received)
            await eventually(lambda: len(received) >= n + 3, timeout=15, what="three more batches")
            assert proc.returncode is None
        finally:
            if proc.returncode is None:
                await stop_gateway(proc, log, timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in log.read_text()
