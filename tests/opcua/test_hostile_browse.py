"""`edgegw browse --emit-config` against a hostile server: whatever text the server supplies (its name,
node ids, browse names, data-type ids, units, descriptions) the emitted block parses to exactly the
intended keys and values, and `edgegw check` accepts it or names the point."""

from __future__ import annotations

import asyncio
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Server, ua

from hil.opcua_server import free_port

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]

INJECT = '"\n]\nscale = 1000.0\n[[devices]]\ntype = "modbus_tcp"\n# '
HOSTILE = [
    'T"101' + INJECT,
    "scale = 1000.0",
    'name = "pwn"\r\nscale = 1000.0',
    "]]\n[[devices.points]]\nname = \"extra\"\nnode_id = \"ns=2;s=x\"",
    "# comment\u2028scale = 2.0",
    "tab\tand \\ backslash '''\"\"\"",
    "esc\x1b[2J\x1b]0;owned\x07",
]
DATA_TYPE_ID = "Evil" + INJECT + "scale = 1000.0"
UNIT = "°C" + INJECT
DESCRIPTION = "desc" + INJECT


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hostile() -> AsyncIterator[tuple[str, list[str]]]:
    srv = Server()
    await srv.init()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/hostile/"
    srv.set_endpoint(endpoint)
    srv.set_server_name('Plant "A"' + INJECT)
    srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await srv.register_namespace("urn:hostile" + INJECT)
    folder = await srv.nodes.objects.add_object(ua.NodeId("Folder" + INJECT, ns), ua.QualifiedName("F]#" + INJECT, ns))
    node_ids = []
    for i, sid in enumerate(HOSTILE):
        nid = ua.NodeId(sid, ns)
        var = await folder.add_variable(nid, ua.QualifiedName(f"V{i}" + INJECT, ns), 20.0 + i)
        await srv.write_attribute_value(
            nid, ua.DataValue(ua.Variant(ua.NodeId(DATA_TYPE_ID, ns), ua.VariantType.NodeId)), ua.AttributeIds.DataType
        )
        await srv.write_attribute_value(
            nid, ua.DataValue(ua.Variant(ua.LocalizedText(DESCRIPTION))), ua.AttributeIds.Description
        )
        await var.add_property(ua.NodeId(f"{sid}.EngineeringUnits", ns), "EngineeringUnits",
                               ua.EUInformation(DisplayName=ua.LocalizedText(UNIT)))
        await var.add_property(ua.NodeId(f"{sid}.EURange", ns), "EURange", ua.Range(Low=0.0, High=100.0 + i))
        node_ids.append(nid.to_string())
    async with srv:
        yield endpoint, node_ids


async def edgegw(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


GATEWAY = '[gateway]\nid = "gw1"\nsite = "ordos-01"\nenterprise_prefix = "88.608.5288"\n\n'


@SESSION_LOOP
@pytest.mark.parametrize("range_check", [False, True])
async def test_hostile_server_text_stays_data(
    hostile: tuple[str, list[str]], tmp_path: Path, range_check: bool
) -> None:
    endpoint, node_ids = hostile
    rc, out, err = await edgegw("browse", endpoint, "--depth", "4", "--emit-config",
                                *(["--range-check"] if range_check else []))
    assert rc == 0, err
    doc = tomllib.loads(out)
    assert list(doc) == ["devices"]
    (dev,) = doc["devices"]
    assert dev == {
        "type": "opcua", "name": "opcua-1", "endpoint": endpoint, "security_policy": "None",
        "security_mode": "None", "allow_no_security": True, "points": dev["points"],
    }
    assert sorted(p["node_id"] for p in dev["points"]) == sorted(node_ids)
    for p in dev["points"]:
        i = node_ids.index(p["node_id"])
        expected = {"name": p["name"], "node_id": node_ids[i], "unit": UNIT.strip()}
        if range_check:
            expected |= {"min": 0.0, "max": 100.0 + i}
        assert p == expected  # no scale, no extra key, no value changed
        assert p["name"].startswith("F_") and "\n" not in p["name"]
    # every comment stayed one comment line: the data-type id is there, escaped
    assert '  # ns=2;s=Evil"\\u000a]\\u000ascale = 1000.0' in out

    path = tmp_path / "browsed.toml"
    path.write_text(GATEWAY + out, encoding="utf-8")
    rc, cout, cerr = await edgegw("check", "-c", str(path))
    assert "Traceback" not in cerr
    assert rc == 0, cerr
    assert "(1 device, 7 points" in cout
    # security None is said, located
    assert "warning: devices[0].security_policy: 'None'" in cerr


@SESSION_LOOP
async def test_the_browse_table_keeps_server_text_on_its_row(hostile: tuple[str, list[str]]) -> None:
    """Without --emit-config: one line per variable, and no control character (an escape sequence
    would drive the operator's terminal) reaches the output."""
    endpoint, node_ids = hostile
    rc, out, err = await edgegw("browse", endpoint, "--depth", "4")
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 + len(node_ids), out
    assert all(c.isprintable() for line in lines for c in line), out
