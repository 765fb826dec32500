"""The IEC 104 driver against the simulated substation (a real TCP station on loopback, built on the
codec; the interop test uses c104 instead): interrogation, spontaneous data with time tags, quality,
session parameters, and bad input on the wire (garbage, truncated APDUs, wrong sequence numbers,
unknown types, a station that goes silent) with reconnection through the stream runner."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.iec104.codec import (
    FLAG_IV,
    FLAG_NT,
    FLAG_SB,
    SEQ_MOD,
    Asdu,
    Cot,
    IFrame,
    TypeId,
    encode_asdu,
    encode_frame,
)
from drivers.iec104.config import Iec104Device
from drivers.iec104.driver import Iec104Driver
from firmware_stubs.iec104_substation import POINTS, point_config
from gateway.catalog import build_catalog
from gateway.config import parse
from gateway.core.errors import ConnectError, ReadError
from gateway.core.point import Quality, SampleBatch
from gateway.runner import StreamRunner
from hil.iec104_server import Substation104
from tests.conftest import eventually

NAMES = [p.name for p in POINTS]
INDEX = {n: i for i, n in enumerate(NAMES)}


def device(port: int, **kw: Any) -> Iec104Device:
    return Iec104Device.model_validate(
        {"type": "iec104", "name": "sub", "host": "127.0.0.1", "port": port, "points": point_config(), **kw}
    )


class Collector:
    """Consumes a driver's stream in a task, keeping every sample and the error that ended it."""

    def __init__(self, driver: Iec104Driver) -> None:
        self.driver = driver
        self.samples: SampleBatch = []
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            async for batch in self.driver.stream():
                self.samples += batch
        except ReadError as err:
            self.error = err

    def latest(self) -> dict[str, tuple[Any, ...]]:
        return {NAMES[s[0]]: s for s in self.samples}


@contextlib.asynccontextmanager
async def streaming(driver: Iec104Driver) -> AsyncIterator[Collector]:
    c = Collector(driver)
    async with driver:
        c.task = asyncio.create_task(c._run())
        try:
            yield c
        finally:
            c.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await c.task


@pytest.mark.integration
async def test_interrogation_at_start_gives_every_point_with_its_value() -> None:
    async with Substation104(tick_s=0, seed=3) as st:
        st.stub.tick = 5
        async with streaming(Iec104Driver(device(st.port), 0)) as c:
            await eventually(lambda: len(c.latest()) == len(NAMES), what="every point")
            want = st.stub.wire_reading()
            for name, s in c.latest().items():
                assert s[3] is Quality.GOOD and s[2] == want[name], (name, s, want[name])
            assert isinstance(c.latest()["prot_trip"][2], bool)
            assert c.latest()["q12_breaker"][2] == 2
        assert st.counters["interrogations"] == 1 and st.counters["counter_interrogations"] == 1
        assert st.counters["clock_syncs"] == 0  # off by default


@pytest.mark.integration
async def test_spontaneous_changes_carry_the_station_time() -> None:
    async with Substation104(tick_s=0) as st, streaming(Iec104Driver(device(st.port), 0)) as c:
        await eventually(lambda: len(c.latest()) == len(NAMES), what="interrogation")
        for _ in range(13):  # through the methanol feeder's trip at tick 12
            await st.advance()
            await eventually(lambda: any(s[1] == st.stub.time_ns() for s in c.samples), what="the tick's data")
        by_time: dict[int, dict[str, Any]] = {}
        for s in c.samples:
            by_time.setdefault(s[1], {})[NAMES[s[0]]] = s
        for tick in range(1, 14):
            got = by_time[st.stub.time_ns(tick)]
            want = st.stub.wire_reading(tick)
            for name, s in got.items():
                if name == "q12_breaker" and want[name] == 0:
                    assert s[2:] == (0, Quality.UNCERTAIN, "intermediate")  # breaker moving
                else:
                    assert (s[2], s[3]) == (want[name], Quality.GOOD), (tick, name)
        assert by_time[st.stub.time_ns(12)]["prot_trip"][2] is True


@pytest.mark.integration
async def test_quality_descriptors_reach_the_samples() -> None:
    async with Substation104(tick_s=0) as st:
        st.stub.faults = {"u_10kv_bus2": FLAG_IV, "i_air_sep": FLAG_NT, "t1_oil_temp": FLAG_SB}
        async with streaming(Iec104Driver(device(st.port), 0)) as c:
            await eventually(lambda: len(c.latest()) == len(NAMES), what="interrogation")
            got = c.latest()
            assert got["u_10kv_bus2"][2:] == (None, Quality.BAD, "invalid")
            assert got["i_air_sep"][3:] == (Quality.UNCERTAIN, "not_topical")
            assert got["t1_oil_temp"][3:] == (Quality.UNCERTAIN, "substituted")
            assert got["u_110kv_bus"][3] is Quality.GOOD


@pytest.mark.integration
async def test_periodic_interrogation_and_clock_sync_when_asked() -> None:
    async with Substation104(tick_s=0) as st:
        drv = Iec104Driver(device(st.port, interrogation_period_s=0.3, clock_sync="on_connect"), 0)
        async with streaming(drv):
            await eventually(lambda: st.counters["interrogations"] >= 3, what="three interrogations")
        assert st.counters["clock_syncs"] == 1


@pytest.mark.integration
async def test_received_frames_are_acknowledged_by_w() -> None:
    async with Substation104(tick_s=0, k=4) as st:
        drv = Iec104Driver(device(st.port, w=2, k=4), 0)
        async with streaming(drv) as c:
            await eventually(lambda: len(c.latest()) == len(NAMES), what="interrogation")
            for _ in range(10):
                await st.advance()
            # the station stops at k = 4 unacknowledged: everything arriving proves the acknowledgements
            await eventually(lambda: any(s[1] == st.stub.time_ns(10) for s in c.samples), what="tick 10")
            assert drv.stats()["s_sent"] >= drv.stats()["i_received"] // 2 - 2


@pytest.mark.integration
async def test_station_refusing_the_connection_is_a_connect_error() -> None:
    async with Substation104(tick_s=0) as st:
        port = st.port
    with pytest.raises(ConnectError, match="cannot connect"):
        async with Iec104Driver(device(port), 0):
            pass


# ---------------------------------------------------------------- bad input on the wire
async def _failure(st: Substation104, drv: Iec104Driver, act: Any) -> ReadError:
    async with streaming(drv) as c:
        await eventually(lambda: len(c.latest()) == len(NAMES), what="interrogation")
        act()
        await eventually(lambda: c.error is not None, timeout=30, what="the stream to fail")
        assert isinstance(c.error, ReadError)
        return c.error


@pytest.mark.integration
@pytest.mark.parametrize(("raw", "why"), [
    (b"\x00\x01\x02garbage", "start octet"),
    (bytes.fromhex("68 04 0F 00 00 00"), "U-format"),
    (bytes.fromhex("68 02 01 00"), "length 2"),
])
async def test_garbage_closes_the_connection_with_a_reason(raw: bytes, why: str) -> None:
    async with Substation104(tick_s=0) as st:
        err = await _failure(st, Iec104Driver(device(st.port), 0), lambda: st.inject(raw))
        assert err.reason == "malformed_response" and why in str(err)


@pytest.mark.integration
async def test_a_good_frame_before_garbage_still_counts() -> None:
    async with Substation104(tick_s=0) as st:

        def good_then_garbage() -> None:
            c = st.conns[0]
            frame = encode_frame(IFrame(c.vs, c.vr, encode_asdu(
                Asdu(TypeId.M_ME_NC_1, Cot.SPONTANEOUS, 1, ((16388, 49.75, 0, None),)))))
            c.vs = (c.vs + 1) % SEQ_MOD
            st.inject(frame + b"\xff\xff")

        drv = Iec104Driver(device(st.port), 0)
        async with streaming(drv) as c:
            await eventually(lambda: len(c.latest()) == len(NAMES), what="interrogation")
            good_then_garbage()
            await eventually(lambda: c.error is not None, what="the stream to fail")
            assert isinstance(c.error, ReadError) and c.error.reason == "malformed_response"
            assert c.latest()["freq"][2] == 49.75


@pytest.mark.integration
async def test_wrong_sequence_number_closes_the_connection() -> None:
    async with Substation104(tick_s=0) as st:

        def skip() -> None:
            st.skip_sequence()
            asyncio.get_running_loop().create_task(st.advance())

        err = await _failure(st, Iec104Driver(device(st.port), 0), skip)
        assert err.reason == "sequence_error" and "expected" in str(err)


@pytest.mark.integration
async def test_unknown_types_and_malformed_asdus_are_skipped_and_counted() -> None:
    async with Substation104(tick_s=0) as st:
        drv = Iec104Driver(device(st.port), 0)
        async with streaming(drv) as c:
            await eventually(lambda: len(c.latest()) == len(NAMES), what="interrogation")
            conn = st.conns[0]
            # M_BO_NA_1 (bitstring, not read), then an ASDU whose object is cut short, then a good one
            conn.send_i(bytes([7, 1, 3, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]))
            conn.send_i(bytes([13, 2, 3, 0, 1, 0, 0x01, 0x40, 0, 0, 0, 0x20, 0x41, 0]))
            conn.send_i(encode_asdu(Asdu(TypeId.M_ME_NC_1, Cot.SPONTANEOUS, 1, ((16388, 49.5, 0, None),))))
            await conn.writer.drain()
            await eventually(lambda: c.latest()["freq"][2] == 49.5, what="the good ASDU after the bad ones")
            assert c.error is None
        assert drv.stats()["unknown_type"] == 1 and drv.stats()["malformed_asdu"] == 1


@pytest.mark.integration
async def test_truncated_apdu_then_silence_is_a_timeout() -> None:
    """An APDU cut short (the length octet promises more) leaves the client waiting: t3 sends
    TESTFR, which the silent station never confirms, and t1 ends the connection."""
    async with Substation104(tick_s=0) as st:

        def cut() -> None:
            frame = encode_frame(IFrame(st.conns[0].vs, st.conns[0].vr, encode_asdu(
                Asdu(TypeId.M_ME_NC_1, Cot.SPONTANEOUS, 1, ((16388, 50.0, 0, None),)))))
            st.inject(frame[:9])
            st.silence()

        drv = Iec104Driver(device(st.port, t1_s=0.6, t2_s=0.3, t3_s=0.5), 0)
        err = await _failure(st, drv, cut)
        assert err.reason == "timeout" and "TESTFR" in str(err)
        assert drv.stats()["testfr_sent"] == 1


@pytest.mark.integration
async def test_silent_station_times_out_and_the_runner_reconnects() -> None:
    async with Substation104(tick_s=0) as st:
        cfg = parse({"gateway": {"id": "gw", "site": "s", "enterprise_prefix": "88.608.5288"},
                     "devices": [{"type": "iec104", "name": "sub", "host": "127.0.0.1", "port": st.port,
                                  "t1_s": 0.6, "t2_s": 0.3, "t3_s": 0.5, "backoff_max_ms": 500,
                                  "points": point_config()}]})
        catalog = build_catalog(cfg)
        dev = cfg.devices[0]
        assert isinstance(dev, Iec104Device)
        drv = Iec104Driver(dev, 0)
        got: list[SampleBatch] = []

        async def emit(batch: SampleBatch) -> None:
            got.append(batch)

        runner = StreamRunner(drv, catalog, emit, connect_timeout_s=drv.connect_timeout_s, backoff_max_s=0.5)
        task = asyncio.create_task(runner.run())
        try:
            await eventually(lambda: runner.health.state == "up" and len(got) > 0, what="the device up")
            st.silence()
            await eventually(lambda: runner.health.state == "down", what="the silent station to be noticed")
            assert runner.health.reason == "timeout"
            bad = got[-1]
            assert len(bad) == len(NAMES) and all(s[3] is Quality.BAD and s[4] == "timeout" for s in bad)
            st.drop_all()  # the station restarts: silent no more, and its old connection is gone
            st.revive()
            await eventually(lambda: runner.health.state == "up" and runner.health.connects >= 2,
                             what="reconnected")
            await eventually(lambda: st.counters["interrogations"] >= 2, what="interrogated again")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.integration
async def test_sequence_numbers_wrap_over_a_long_session() -> None:
    """N(S) runs past 32767 back to 0 without the client calling it a sequence error."""
    async with Substation104(tick_s=0) as st:
        drv = Iec104Driver(device(st.port), 0)
        async with streaming(drv) as c:
            await eventually(lambda: len(c.latest()) == len(NAMES), what="interrogation")
            conn = st.conns[0]
            session = drv._session
            assert session is not None
            # jump both ends near the wrap, as after a long session
            conn.vs = session.vr = SEQ_MOD - 2
            for v in (1.0, 2.0, 3.0, 4.0):
                conn.send_i(encode_asdu(Asdu(TypeId.M_ME_NC_1, Cot.SPONTANEOUS, 1, ((16388, v, 0, None),))))
            await eventually(lambda: c.latest()["freq"][2] == 4.0, what="frames across the wrap")
            assert c.error is None and session.vr == 2


@pytest.mark.integration
async def test_points_missing_from_the_interrogation_turn_bad_with_a_reason() -> None:
    """A wrong IOA (or a point the station leaves out of interrogations) must not stay silently empty."""
    async with Substation104(tick_s=0) as st:
        points = [*point_config(), {"name": "typo", "ioa": 16399, "type_id": "M_ME_NC_1"},
                  {"name": "typo_total", "ioa": 25699, "type_id": "M_IT_NA_1"}]
        drv = Iec104Driver(Iec104Device.model_validate(
            {"type": "iec104", "name": "sub", "host": "127.0.0.1", "port": st.port, "points": points}), 0)
        got: SampleBatch = []

        async def consume() -> None:
            async for batch in drv.stream():
                got.extend(batch)

        async with drv:
            task = asyncio.create_task(consume())
            try:
                await eventually(lambda: drv.stats().get("done_C_CI_NA_1", 0) == 1
                                 and drv.stats().get("done_C_IC_NA_1", 0) == 1, what="both interrogations done")
                by_index = {s[0]: s for s in got}
                assert by_index[len(NAMES)][2:] == (None, Quality.BAD, "not_in_interrogation")
                assert by_index[len(NAMES) + 1][2:] == (None, Quality.BAD, "not_in_interrogation")
                assert all(by_index[i][3] is Quality.GOOD for i in range(len(NAMES)))
                assert drv.stats()["not_in_interrogation"] == 2
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


@pytest.mark.integration
async def test_a_port_that_never_confirms_startdt_is_a_connect_error_after_t1() -> None:
    """Something that accepts TCP but is not a 104 station: the connect fails with the reason, after t1,
    without spinning (the wait is the session's timer, not a busy loop)."""
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        await reader.read(100)  # ends when the client gives up
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        drv = Iec104Driver(device(port, t1_s=0.5, t2_s=0.2, interrogation_period_s=0.1), 0)
        drv._next_gi = 0.0  # as after an earlier connection whose next interrogation is past due
        waits = 0
        receive = drv._receive_once

        async def counted() -> SampleBatch:
            nonlocal waits
            waits += 1
            return await receive()

        drv._receive_once = counted  # type: ignore[method-assign]
        with pytest.raises(ConnectError, match=r"STARTDT failed: sub: no STARTDT con within t1 = 0\.5 s"):
            async with drv:
                pass
        assert waits <= 3  # one wait until t1 (a busy loop would wait thousands of times)


@pytest.mark.integration
async def test_a_common_address_the_station_does_not_have_turns_its_points_bad() -> None:
    async with Substation104(tick_s=0) as st:
        points = [*point_config(), {"name": "other_ca", "ca": 7, "ioa": 1, "type_id": "M_SP_NA_1"}]
        drv = Iec104Driver(Iec104Device.model_validate(
            {"type": "iec104", "name": "sub", "host": "127.0.0.1", "port": st.port, "points": points}), 0)
        async with streaming(drv) as c:
            await eventually(lambda: len(c.samples) > len(NAMES) and any(s[0] == len(NAMES) for s in c.samples),
                             what="the refusal for CA 7")
            assert next(s for s in c.samples if s[0] == len(NAMES))[2:] == (None, Quality.BAD,
                                                                              "unknown_common_address")
            await eventually(lambda: {s[0] for s in c.samples} >= set(range(len(NAMES))), what="CA 1 answered as usual")
        assert drv.stats()["negative_C_IC_NA_1"] == 1 and c.error is None
