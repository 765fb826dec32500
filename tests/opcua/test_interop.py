"""Interop with an independent implementation: node-opcua (npm), including Basic256Sha256 SignAndEncrypt."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.opcua.browse import emit_config
from drivers.opcua.certs import Pki
from drivers.opcua.driver import OpcUaDriver, browse
from gateway.core.point import Quality, SampleBatch, now_ns
from gateway.runner import StreamRunner
from hil.node_opcua_peer import NodeOpcuaPeer, PeerUnavailable
from tests.conftest import IN_CI, eventually
from tests.opcua.conftest import Collector, catalog_for, device, streaming

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeOpcuaPeer]:
    p = NodeOpcuaPeer(tmp_path_factory.mktemp("node-opcua"))
    try:
        p.start()
    except PeerUnavailable as err:
        if IN_CI:
            pytest.fail(f"{err}: scripts/test.sh installs it")
        pytest.skip(str(err))
    yield p
    p.stop()


POINTS: list[dict[str, Any]] = [
    {"name": "temp", "node_id": "ns=1;s=Kiln.Temperature", "unit": "degC"},
    {"name": "count", "node_id": "ns=1;s=Kiln.Count"},
    {"name": "probe", "node_id": "ns=1;s=Kiln.Probe"},
    {"name": "label", "node_id": "ns=1;s=Kiln.Name"},
    {"name": "zone2", "node_id": "ns=1;s=Kiln.Zones", "array_index": 2},
    {"name": "ghost", "node_id": "ns=1;s=Kiln.Nope"},
]


async def test_polling_without_security(peer: NodeOpcuaPeer) -> None:
    cfg, _ = catalog_for(device(peer.endpoint, POINTS, mode="polling"))
    batches: list[SampleBatch] = []
    async with OpcUaDriver(cfg.devices[0], 0) as drv:

        async def stepped() -> bool:  # the values below are those of a step with a good probe
            batches.append(await drv.read())
            count = batches[-1][1][2]
            return isinstance(count, int) and count > 0 and count % 10 >= 3

        await eventually(stepped, what="a read after a step with a good probe")
    bad = [b for b in batches if isinstance(b[1][2], int) and b[1][2] % 10 < 3 and b[1][2] > 0]
    # the peer's values are known (hil/node_opcua/server.js): each 200 ms step sets Count = tick,
    # Temperature = 1000 + tick, Probe = tick / 10, or bad with BadSensorFailure when tick % 10 < 3
    for batch in [*bad, batches[-1]]:
        count = batch[1][2]
        assert isinstance(count, int) and batch[1][3] is Quality.GOOD, batch[1]
        assert batch[0][2:4] == (1000.0 + count, Quality.GOOD), batch[0]
        if count % 10 < 3:
            assert batch[2][2:] == (None, Quality.BAD, "BadSensorFailure"), batch[2]
        else:
            assert batch[2][2:4] == (count / 10, Quality.GOOD), batch[2]
        assert batch[3][2] == "kiln-1"
        assert batch[4][2] == 1000.5
        assert batch[5][2:] == (None, Quality.BAD, "BadNodeIdUnknown")


async def test_subscription_signandencrypt_with_bad_status_and_unknown_node(
    peer: NodeOpcuaPeer, pki_root: Path, tmp_path: Path
) -> None:
    pki = Pki(tmp_path / "pki")
    shutil.copytree(pki_root / "gw" / "own", pki.root / "own")
    assert peer.cert_der is not None
    pki.trust(peer.cert_der.read_bytes())
    dev = device(peer.endpoint, POINTS, pki_dir=str(pki.root), security_policy="Basic256Sha256",
                 security_mode="SignAndEncrypt", allow_no_security=False, sampling_interval_ms=100)
    cfg, cat = catalog_for(dev)
    drv = OpcUaDriver(cfg.devices[0], 0)
    out = Collector()
    runner = StreamRunner(drv, cat, out, connect_timeout_s=15, backoff_max_s=1)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: out.latest(5) is not None, what="unknown node reported")
        assert out.latest(5)[2:] == (None, Quality.BAD, "BadNodeIdUnknown")  # type: ignore[index]
        first = None

        def count_advanced() -> bool:
            nonlocal first
            s = out.latest(1)
            if s is None:
                return False
            first = s[2] if first is None else first
            return s[2] != first

        await eventually(count_advanced, what="count changes arriving")
        await eventually(lambda: (s := out.latest(2)) is not None and s[4] == "BadSensorFailure", what="bad probe")
        assert out.latest(2)[2] is None  # type: ignore[index]
        await eventually(lambda: (s := out.latest(2)) is not None and s[3] is Quality.GOOD, what="probe recovers")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_browse_finds_the_peer_variables(peer: NodeOpcuaPeer) -> None:
    found = await browse(peer.endpoint, depth=3, pattern="Objects/Kiln/*")
    by_path = {v.browse_path: v for v in found}
    assert by_path["Objects/Kiln/Temperature"].data_type == "Double"
    assert by_path["Objects/Kiln/Temperature"].node_id == "ns=1;s=Kiln.Temperature"
    assert by_path["Objects/Kiln/Zones"].array
    assert "r" in by_path["Objects/Kiln/Count"].access
    # an AnalogItem's properties (HasProperty: EURange, InstrumentRange, EngineeringUnits) are not points; its
    # EUInformation gives the unit, its EURange and InstrumentRange (Ranges) the limits
    assert not [p for p in by_path if p.startswith("Objects/Kiln/Level/")], sorted(by_path)
    assert by_path["Objects/Kiln/Level"].unit == "%"
    assert by_path["Objects/Kiln/Level"].eu_range == (0.0, 100.0)
    assert by_path["Objects/Kiln/Level"].instrument_range == (-20.0, 120.0)
    assert by_path["Objects/Kiln/Temperature"].unit == ""
    assert by_path["Objects/Kiln/Temperature"].eu_range is None
    assert by_path["Objects/Kiln/Temperature"].instrument_range is None
    # and the emitted point carries the InstrumentRange as active min/max (the EURange as a comment), which
    # `edgegw check` accepts
    text = emit_config(peer.endpoint, found)
    level = next(p for p in tomllib.loads(text)["devices"][0]["points"] if p["node_id"] == "ns=1;s=Kiln.Level")
    assert (level["unit"], level["min"], level["max"]) == ("%", -20.0, 120.0)
    assert "# EURange (normal operation, for information): 0.0 .. 100.0" in text
    cfg, _ = catalog_for(device(peer.endpoint, [level], mode="polling"))  # the config model takes them
    async with OpcUaDriver(cfg.devices[0], 0) as drv:  # and the peer's values are inside them
        batch = await drv.read()
    level = batch[0][2]
    assert batch[0][3] is Quality.GOOD and isinstance(level, float) and -20.0 <= level <= 120.0, batch


async def test_percent_deadband_against_an_analog_item(peer: NodeOpcuaPeer) -> None:
    """Level moves 1 % of its EURange per tick; a 5 % deadband reports only moves of 5 or more."""
    points: list[dict[str, Any]] = [
        {"name": "level_db", "node_id": "ns=1;s=Kiln.Level", "deadband_type": "percent", "deadband_value": 5.0},
        {"name": "level", "node_id": "ns=1;s=Kiln.Level"},
    ]
    cfg, cat = catalog_for(device(peer.endpoint, points, sampling_interval_ms=50))
    drv = OpcUaDriver(cfg.devices[0], 0)
    out = Collector()
    runner = StreamRunner(drv, cat, out, connect_timeout_s=15, backoff_max_s=1)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: sum(1 for s in out.samples if s[0] == 1) >= 20, what="20 undamped changes")
        damped = [s[2] for s in out.samples if s[0] == 0]
        assert all(s[3] is Quality.GOOD for s in out.samples if s[0] == 0), "server refused the percent filter"
        assert 1 <= len(damped) <= 6
        assert all(abs(b - a) >= 5 for a, b in itertools.pairwise(damped))  # type: ignore[operator]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_node_deleted_at_run_time_turns_bad_and_the_others_keep_flowing(peer: NodeOpcuaPeer) -> None:
    """node-opcua reports a deleted node on its own monitored item (BadNodeIdInvalid)."""
    points = [
        {"name": "doomed", "node_id": "ns=1;s=Kiln.Doomed1"},
        {"name": "count", "node_id": "ns=1;s=Kiln.Count"},
    ]
    async with streaming(device(peer.endpoint, points)) as (drv, runner, out):
        await eventually(lambda: all((s := out.latest(i)) is not None and s[3] is Quality.GOOD for i in (0, 1)),
                         what="first values")
        peer.delete_node("ns=1;s=Kiln.Doomed1")
        await eventually(lambda: (s := out.latest(0)) is not None and s[3] is Quality.BAD, what="deleted node bad")
        assert out.latest(0)[2:] == (None, Quality.BAD, "BadNodeIdInvalid")  # type: ignore[index]
        after = len(out.samples)
        await eventually(lambda: any(s[0] == 1 and s[3] is Quality.GOOD for s in out.samples[after:]),
                         what="count still flowing")
        assert drv.counters.sessions == 1 and runner.health.up


async def test_server_and_source_timestamps_with_picoseconds(peer: NodeOpcuaPeer) -> None:
    """node-opcua sends both timestamps with picoseconds (DataValue mask 0x3D); in Part 6 order the
    SourcePicoseconds come before the ServerTimestamp, which asyncua 2.1 misreads (year 9999)."""
    points = [
        {"name": "by_source", "node_id": "ns=1;s=Kiln.Count", "timestamp": "source"},
        {"name": "by_server", "node_id": "ns=1;s=Kiln.Count", "timestamp": "server"},
    ]
    cfg, _ = catalog_for(device(peer.endpoint, points, mode="polling"))
    async with OpcUaDriver(cfg.devices[0], 0) as polling:
        before = now_ns()
        read = await polling.read()
        after = now_ns()
    # the peer stamps Count at each 200 ms step: the source time is at most one step (plus scheduling
    # slack) before the read; the server time is when the peer wrote or served it; both on this clock
    slack = 2 * 10**9
    for s in read:
        assert s[3] is Quality.GOOD
        assert before - slack <= s[1] <= after, f"point {s[0]}: time {s[1]} is not within [{before - slack}, {after}]"
    async with streaming(device(peer.endpoint, points)) as (_, _, out):
        start = now_ns()
        await eventually(lambda: all((s := out.latest(i)) is not None and s[1] >= start for i in (0, 1)),
                         what="both points, changed since the subscription started")
        now = now_ns()
        for i in (0, 1):
            got = out.latest(i)
            assert got is not None and got[3] is Quality.GOOD
            assert start <= got[1] <= now, f"point {got[0]}: time {got[1]} is not within [{start}, {now}]"
