"""Interop with an independent implementation: c104 (Python bindings of lib60870-C, MZ Automation).

Both ways: our driver reads a c104 *server* (lib60870 encodes what our codec decodes: interrogation,
counter interrogation, spontaneous data, quality, time tags), and a c104 *client* reads our simulated
substation (lib60870 decodes what our codec encodes).  c104 runs its own threads, so the test waits
on its state by polling under a timeout.  Skipped where c104 cannot be installed (it ships binary
wheels for common platforms only).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.iec104.config import Iec104Device
from drivers.iec104.driver import Iec104Driver
from firmware_stubs.iec104_substation import POINTS
from gateway.core.point import Quality, SampleBatch
from hil.iec104_server import Substation104
from hil.services import free_port
from tests.conftest import eventually

c104: Any = pytest.importorskip("c104")


@contextlib.contextmanager
def c104_server(port: int) -> Iterator[tuple[Any, dict[str, Any]]]:
    srv = c104.Server(ip="127.0.0.1", port=port, tick_rate_ms=50)
    st = srv.add_station(common_address=47)
    pts = {
        "feeder_a": st.add_point(io_address=16401, type=c104.Type.M_ME_NC_1),
        "breaker": st.add_point(io_address=1, type=c104.Type.M_DP_TB_1),
        "trip": st.add_point(io_address=101, type=c104.Type.M_SP_NA_1),
        "energy": st.add_point(io_address=25601, type=c104.Type.M_IT_NA_1),
        "temp": st.add_point(io_address=16417, type=c104.Type.M_ME_NA_1),
        "current": st.add_point(io_address=16402, type=c104.Type.M_ME_NB_1),
    }
    pts["feeder_a"].value = 10.5
    pts["breaker"].info = c104.DoubleInfo(
        state=c104.Double.ON, recorded_at=dt.datetime(2026, 12, 5, 8, 30, 15, 250_000, tzinfo=dt.UTC))
    pts["trip"].value = True
    pts["trip"].quality = c104.Quality.Invalid
    pts["energy"].info = c104.BinaryCounterInfo(
        counter=123_456, sequence=c104.UInt5(0), quality=c104.BinaryCounterQuality())
    pts["temp"].value = c104.NormalizedFloat(0.5)
    pts["current"].info = c104.ScaledInfo(actual=c104.Int16(-1234), quality=c104.Quality.NonTopical)
    srv.start()
    try:
        yield srv, pts
    finally:
        srv.stop()


NAMES = ["feeder_a", "breaker", "trip", "energy", "temp", "current"]


@pytest.mark.integration
async def test_our_driver_reads_a_c104_station() -> None:
    port = free_port()
    dev = Iec104Device.model_validate({
        "type": "iec104", "name": "c104", "host": "127.0.0.1", "port": port, "common_address": 47,
        "points": [
            {"name": "feeder_a", "ioa": 16401, "type_id": "M_ME_NC_1"},
            {"name": "breaker", "ioa": 1, "type_id": "M_DP_NA_1"},
            {"name": "trip", "ioa": 101, "type_id": "M_SP_NA_1"},
            {"name": "energy", "ioa": 25601, "type_id": "M_IT_NA_1"},
            {"name": "temp", "ioa": 16417, "type_id": "M_ME_NA_1"},
            {"name": "current", "ioa": 16402, "type_id": "M_ME_NB_1"},
        ],
    })
    with c104_server(port) as (srv, pts):
        await eventually(lambda: srv.is_running, what="c104 server")
        drv = Iec104Driver(dev, 0)
        got: SampleBatch = []

        async def consume() -> None:
            async for batch in drv.stream():
                got.extend(batch)

        def latest() -> dict[str, Any]:
            return {NAMES[s[0]]: s for s in got}

        async with drv:
            task = asyncio.create_task(consume())
            try:
                await eventually(lambda: len(latest()) == len(NAMES), what="interrogation answers")
                s = latest()
                assert s["feeder_a"][2:] == (10.5, Quality.GOOD, None)
                assert s["breaker"][2:] == (2, Quality.GOOD, None)
                assert s["breaker"][1] == int(dt.datetime(2026, 12, 5, 8, 30, 15, tzinfo=dt.UTC).timestamp()) * 10**9 \
                    + 250_000_000  # the station's time tag is the source time
                assert s["trip"][2:] == (None, Quality.BAD, "invalid")
                assert s["energy"][2:] == (123_456, Quality.GOOD, None)
                assert s["temp"][2:] == (0.5, Quality.GOOD, None)
                assert s["current"][2:] == (-1234, Quality.UNCERTAIN, "not_topical")
                # spontaneous
                pts["feeder_a"].value = 11.25
                assert pts["feeder_a"].transmit(cause=c104.Cot.SPONTANEOUS)
                await eventually(lambda: latest()["feeder_a"][2] == 11.25, what="the spontaneous value")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        stats = drv.stats()
        assert stats["done_C_IC_NA_1"] == 1
        assert stats.get("malformed_asdu", 0) == 0 and stats.get("unknown_type", 0) == 0


@pytest.mark.integration
async def test_c104_client_reads_our_station() -> None:
    async with Substation104(tick_s=0, seed=2) as st:
        st.stub.tick = 13  # the methanol feeder's breaker is open, its protection tripped
        client = c104.Client(tick_rate_ms=50)
        con = client.add_connection(ip="127.0.0.1", port=st.port, init=c104.Init.ALL)
        station = con.add_station(common_address=1)
        types = {"M_SP_NA_1": c104.Type.M_SP_NA_1, "M_DP_NA_1": c104.Type.M_DP_NA_1,
                 "M_ME_NA_1": c104.Type.M_ME_NA_1, "M_ME_NB_1": c104.Type.M_ME_NB_1,
                 "M_ME_NC_1": c104.Type.M_ME_NC_1, "M_IT_NA_1": c104.Type.M_IT_NA_1}
        theirs = {p.name: station.add_point(io_address=p.ioa, type=types[p.type_id]) for p in POINTS}
        want = st.stub.wire_reading()
        client.start()
        try:
            def value(name: str) -> Any:
                v = theirs[name].value
                if name.startswith("e_"):
                    return int(v)
                if isinstance(v, c104.Double):
                    return {c104.Double.OFF: 1, c104.Double.ON: 2, c104.Double.INTERMEDIATE: 0}.get(v, 3)
                return float(v) if not isinstance(v, bool) else v

            await eventually(lambda: con.is_connected and st.counters["interrogations"] >= 1,
                             what="c104's general interrogation (its Init.ALL)")
            # c104 asks for integrated totals only when told; its call blocks until our station confirms
            assert await asyncio.to_thread(con.counter_interrogation, 1)
            await eventually(lambda: all(value(p.name) == want[p.name] for p in POINTS), timeout=30,
                             what="c104 to hold every value of our station")
            assert st.counters["counter_interrogations"] == 1
        finally:
            client.stop()
