"""The S7 driver against a CPU that misbehaves (hil/s7_peer.py, asyncio, on loopback): garbage,
truncated answers, wrong references, refused items and requests, a CPU that goes silent, a refused
connection.  Quality and reasons as the Modbus driver: the poll fails for transport faults, only the
affected points are bad for item errors, and nothing raises past the driver but DeviceError."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from drivers.s7.config import S7Device
from drivers.s7.driver import S7Driver
from gateway.core.errors import ConnectError, ReadError
from gateway.core.point import Quality, SampleBatch
from hil.s7_peer import S7Peer

DB, M = 0x84, 0x83


def device(port: int, points: list[dict[str, Any]], **extra: Any) -> S7Device:
    return S7Device.model_validate({"type": "s7", "name": "cpu", "host": "127.0.0.1", "port": port,
                                    "family": "s7-300", "timeout_ms": 300, "points": points, **extra})


POINTS = [
    {"name": "speed", "address": "DB10.DBD4", "data_type": "real"},
    {"name": "count", "address": "DB10.DBW8", "data_type": "int"},
    {"name": "flag", "address": "DB10.DBX10.2"},
    {"name": "wrong", "address": "DB10.DBD40"},  # runs past the end of DB10 (42 bytes)
    {"name": "heartbeat", "address": "MW2"},
]


@pytest_asyncio.fixture(loop_scope="function")
async def peer() -> AsyncIterator[S7Peer]:
    db = bytearray(42)
    struct.pack_into(">fh", db, 4, 12.5, -3)
    db[10] = 0b100
    m = bytearray(8)
    m[2:4] = b"\x01\x02"
    async with S7Peer({(DB, 10): db, (M, 0): m}) as p:
        yield p


def by_name(dev: S7Device, batch: SampleBatch) -> dict[str, tuple[Any, Quality, str | None]]:
    return {dev.points[s[0]].name: (s[2], s[3], s[4]) for s in batch}


async def test_good_points_and_one_wrong_address(peer: S7Peer) -> None:
    dev = device(peer.port, POINTS)
    async with S7Driver(dev, 0) as drv:
        assert drv.pdu_size == 480 and drv.requests_per_poll == 1
        first = by_name(dev, await drv.read())
        # the wrong address spoiled its shared item once: the item's points were re-read one by one at once
        assert first == {
            "speed": (12.5, Quality.GOOD, None), "count": (-3, Quality.GOOD, None), "flag": (True, Quality.GOOD, None),
            "wrong": (None, Quality.BAD, "s7_address_out_of_range"), "heartbeat": (258, Quality.GOOD, None),
        }
        sent = peer.requests
        again = by_name(dev, await drv.read())
        assert again == first
        assert peer.requests - sent == 1  # from then on one request still reads everything
        assert drv.alone == {0, 1, 2, 3}


async def test_item_error_codes_map_to_reasons(peer: S7Peer) -> None:
    dev = device(peer.port, [*POINTS[:3], {"name": "missing_db", "address": "DB99.DBW0"}, POINTS[4]])
    peer.item_errors[M, 0] = 0x03
    async with S7Driver(dev, 0) as drv:
        got = by_name(dev, await drv.read())
    assert got["missing_db"] == (None, Quality.BAD, "s7_object_does_not_exist")
    assert got["heartbeat"] == (None, Quality.BAD, "s7_access_denied")
    assert got["speed"] == (12.5, Quality.GOOD, None)


async def test_request_refused_as_a_whole(peer: S7Peer) -> None:
    dev = device(peer.port, POINTS[:2])
    async with S7Driver(dev, 0) as drv:
        peer.fault = "header_error"
        got = by_name(dev, await drv.read())
    assert got == {"speed": (None, Quality.BAD, "s7_error_8104"), "count": (None, Quality.BAD, "s7_error_8104")}


@pytest.mark.parametrize(("fault", "reason"), [
    ("garbage", "malformed_response"),
    ("truncated", "malformed_response"),
    ("wrong_ref", "malformed_response"),
    ("silent", "timeout"),
])
async def test_transport_faults_fail_the_poll(peer: S7Peer, fault: str, reason: str) -> None:
    dev = device(peer.port, POINTS[:3])
    async with S7Driver(dev, 0) as drv:
        assert len(await drv.read()) == 3
        peer.fault = fault
        with pytest.raises(ReadError) as err:
            await drv.read()
        assert err.value.reason == reason and err.value.disconnect
        assert "\n" not in str(err.value)
    peer.fault = None
    async with S7Driver(dev, 0) as drv:  # what the runner does next: a new connection reads again
        assert {s[3] for s in await drv.read()} == {Quality.GOOD}


async def test_connection_closed_mid_poll(peer: S7Peer) -> None:
    dev = device(peer.port, POINTS[:3])
    async with S7Driver(dev, 0) as drv:
        await drv.read()
        await peer.__aexit__(None, None, None)
        with pytest.raises(ReadError) as err:
            await drv.read()
        assert err.value.reason == "disconnected"


async def test_nobody_listening() -> None:
    async with S7Peer({}) as p:
        port = p.port
    with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1:"):
        await S7Driver(device(port, POINTS[:1]), 0).__aenter__()


async def test_connection_refused_by_cotp() -> None:
    """A CPU that answers the connection request with a disconnect request (wrong rack / slot)."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(22)
        writer.write(b"\x03\x00\x00\x0b" + bytes((6, 0x80, 0, 1, 0, 1, 0)))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectError, match=r"rack / slot or TSAP \(TSAPs 0100 -> 0302\)"):
            await S7Driver(device(port, POINTS[:1]), 0).__aenter__()
    finally:
        server.close()


async def test_silent_at_connect() -> None:
    """A port that accepts and never answers (a firewall's tarpit, a CPU without ISO-on-TCP)."""
    held: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectError, match=r"no answer from 127\.0\.0\.1:\d+ within 0\.3 s"):
            await S7Driver(device(port, POINTS[:1]), 0).__aenter__()
    finally:
        for w in held:
            w.close()
        server.close()


async def test_pdu_negotiated_down_changes_the_plan() -> None:
    """A CPU granting PDU 240 (S7-300): 120 REALs (480 bytes) take three requests, not one."""
    points = [{"name": f"r{i}", "address": f"DB1.DBD{4 * i}", "data_type": "real"} for i in range(120)]
    db = bytearray(480)
    for i in range(120):
        struct.pack_into(">f", db, 4 * i, i / 4)
    async with S7Peer({(DB, 1): db}, pdu_size=240) as p:
        dev = device(p.port, points, pdu_size=960)
        async with S7Driver(dev, 0) as drv:
            assert drv.pdu_size == 240 and drv.requests_per_poll == 3
            got = await drv.read()
    assert sorted((s[0], s[2]) for s in got) == [(i, i / 4) for i in range(120)]
    assert p.requests == 3


async def test_a_cpu_that_goes_silent_through_the_runner(peer: S7Peer) -> None:
    """The real runner: a silent CPU turns every point bad with `timeout` (device down), and the
    first answers after it speaks again bring the good values back on a new connection."""
    from gateway.catalog import build_catalog
    from gateway.config import parse
    from gateway.runner import DeviceRunner
    from tests.conftest import eventually, stop_tasks

    cfg = parse({"gateway": {"id": "gw", "site": "s", "enterprise_prefix": "88.608.5288"},
                 "devices": [{"type": "s7", "name": "cpu", "host": "127.0.0.1", "port": peer.port,
                              "family": "s7-300", "timeout_ms": 300, "poll_interval_ms": 100,
                              "backoff_max_ms": 200, "points": POINTS[:3]}]})
    catalog = build_catalog(cfg)
    batches: list[SampleBatch] = []

    async def emit(batch: SampleBatch) -> None:
        batches.append(batch)

    dev = cfg.devices[0]
    assert isinstance(dev, S7Device)
    runner = DeviceRunner(S7Driver(dev, 0), catalog, emit, poll_interval_s=0.1, timeout_s=0.3, backoff_max_s=0.2)
    task = asyncio.create_task(runner.run())
    try:
        await eventually(lambda: runner.health.polls >= 2, what="two good polls")
        peer.fault = "silent"
        await eventually(lambda: runner.health.state == "down", what="device down")
        bad = batches[-1]
        assert {(s[3], s[4]) for s in bad} == {(Quality.BAD, "timeout")} and len(bad) == 3
        assert runner.health.reason == "timeout"
        peer.fault = None
        connects = peer.connections
        await eventually(lambda: runner.health.up and runner.health.state == "up", what="device up again")
        assert peer.connections > connects  # a new connection, not the stream that was out of step
        assert by_name(dev, batches[-1])["speed"] == (12.5, Quality.GOOD, None)
    finally:
        await stop_tasks(task)


async def test_random_bytes_from_the_cpu_never_escape_as_anything_but_read_error() -> None:
    """Whatever a broken device or a wrong port sends after a good connect, the poll fails with one
    ReadError (malformed_response, timeout or disconnected), never another exception."""
    import random

    rng = random.Random(7)
    replies: list[bytes] = []
    for _ in range(40):
        kind = rng.randrange(4)
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        if kind == 0:  # a TPKT header announcing any length, then junk
            junk = b"\x03\x00" + rng.randrange(0, 65536).to_bytes(2, "big") + junk
        elif kind == 1:  # a COTP data TPDU with an S7 header of any content
            body = b"\x02\xf0\x80\x32\x03" + junk
            junk = b"\x03\x00" + (len(body) + 4).to_bytes(2, "big") + body
        replies.append(junk)

    for reply in replies:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bytes = reply) -> None:
            await reader.readexactly(22)
            writer.write(b"\x03\x00\x00\x0b" + bytes((6, 0xD0, 0, 1, 0, 1, 0)))
            head = await reader.readexactly(4)
            await reader.readexactly(int.from_bytes(head[2:], "big") - 4)
            setup = struct.pack(">BBHHHHBB", 0x32, 3, 0, 1, 8, 0, 0, 0) + struct.pack(">BBHHH", 0xF0, 0, 1, 1, 480)
            writer.write(b"\x03\x00" + (len(setup) + 7).to_bytes(2, "big") + b"\x02\xf0\x80" + setup)
            await reader.readexactly(4)
            writer.write(reply)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with S7Driver(device(port, POINTS[:2], timeout_ms=200), 0) as drv:
                with pytest.raises(ReadError) as err:
                    await drv.read()
                assert err.value.reason in ("malformed_response", "timeout", "disconnected"), err.value
        finally:
            server.close()


async def test_poll_groups_are_planned_and_polled_apart(peer: S7Peer) -> None:
    """Points in a fast group and the rest: each group its own requests and its own cadence through
    the runner's schedules; a refused item in one group does not spoil the other."""
    from gateway.catalog import build_catalog
    from gateway.config import parse
    from gateway.runner import DeviceRunner
    from tests.conftest import eventually, stop_tasks

    points = [{**POINTS[0], "group": "fast"}, {**POINTS[1], "group": "fast"}, POINTS[2], POINTS[3], POINTS[4]]
    cfg = parse({"gateway": {"id": "gw", "site": "s", "enterprise_prefix": "88.608.5288"},
                 "devices": [{"type": "s7", "name": "cpu", "host": "127.0.0.1", "port": peer.port,
                              "family": "s7-300", "timeout_ms": 300, "poll_interval_ms": 2000,
                              "poll_groups": {"fast": 50}, "points": points}]})
    dev = cfg.devices[0]
    assert isinstance(dev, S7Device)
    drv = S7Driver(dev, 0)
    assert {name: g.points for name, g in drv.groups.items()} == {"": [2, 3, 4], "fast": [0, 1]}
    assert [interval for interval, _ in drv.schedules()] == [2.0, 0.05]
    seen: list[set[str]] = []

    async def emit(batch: SampleBatch) -> None:
        seen.append({dev.points[s[0]].name for s in batch})

    runner = DeviceRunner(drv, build_catalog(cfg), emit, poll_interval_s=2.0, timeout_s=0.3, backoff_max_s=0.2,
                          schedules=drv.schedules())
    task = asyncio.create_task(runner.run())
    try:
        slow = {"flag", "wrong", "heartbeat"}
        await eventually(lambda: slow in seen, timeout=10, what="a poll of the slow group, on its own")
        fast_before = seen.count({"speed", "count"})
        await eventually(lambda: seen.count({"speed", "count"}) >= fast_before + 5, what="five more fast polls")
        assert all(batch in ({"speed", "count"}, slow) for batch in seen)  # never one group's points mixed
        assert drv.requests_per_poll == 2  # one request per group
    finally:
        await stop_tasks(task)


async def test_closed_during_the_handshake() -> None:
    """A CPU whose connections are all in use accepts TCP and closes it on the connection request."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(22)
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectError, match=r"closed the connection during the S7 handshake \(its connections all"
                                               r" in use, or rack / slot / TSAP 0100 -> 0302 wrong\)"):
            await S7Driver(device(port, POINTS[:1]), 0).__aenter__()
    finally:
        server.close()
