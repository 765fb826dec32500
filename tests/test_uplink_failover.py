"""The uplink takes a list of brokers and fails over when the active one dies (#14).

Two mosquittos with the shipped deploy config, a real gateway polling a simulated PLC, one ingest per
broker into one InfluxDB. Broker A goes away under load (SIGTERM: it saves what it queued, as a broker
node that is stopped or drained does): the gateway goes on with broker B, nothing it accepted is lost
(what was in flight to A is resent to B: a duplicate overwrites its own row), and when A is back the
ingest on A writes what A had queued. The PLC's firmware stub is the oracle: every accepted point is
in InfluxDB with the stub's values, and no row more.

A broker that *crashes* (SIGKILL) loses what it acknowledged since its last save (``autosave_interval``,
1 s in the shipped config) and had not yet handed to its ingest: broker-caused loss, outside what the
gateway can hold (shared/reference/reliability.md section 4.3; docs/central.md).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import parse
from gateway.ingest import Ingest
from hil.modbus_server import SimulatedPlc
from hil.services import Influx1, Mosquitto
from tests.conftest import eventually
from tests.ingest.test_flow_control import SHIPPED, own
from tests.test_e2e import check_rows, config_dict, running, step


@pytest.mark.integration
async def test_broker_killed_under_load_fails_over_and_loses_nothing(tmp_path: Path, influx1: Influx1) -> None:
    db = "failover"
    influx1.create_database(db)
    with own(Mosquitto, shipped=SHIPPED) as a, own(Mosquitto, shipped=SHIPPED) as b:
        async with SimulatedPlc(tick_s=0, seed=5) as plc:
            data = config_dict(plc.port, a.port, tmp_path, {"api": "v1", "url": influx1.url, "database": db},
                               "failover", "edgegw")
            data["uplink"]["servers"] = [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]
            data["uplink"]["timeout_s"] = 3
            cfg = parse(data)
            assert cfg.ingest is not None
            ingests = []
            for k, broker in enumerate((a, b)):
                section = cfg.ingest.model_copy(update={
                    "mqtt": cfg.ingest.mqtt.model_copy(update={"port": broker.port, "client_id": f"ingest-fo-{k}"}),
                    "dead_letter_path": str(tmp_path / f"dl-{k}.db")})
                ingests.append(Ingest(section))
            gw = Gateway(cfg)
            async with running(*(i.run() for i in ingests)):
                for i in ingests:
                    await asyncio.wait_for(i.subscribed.wait(), 10)
                async with running(gw.run()):
                    await step(gw, plc, range(0, 4))
                    await eventually(lambda: ingests[0].stats.written_points > 0, what="rows through broker A")
                    a.stop(signal.SIGTERM)
                    await step(gw, plc, range(4, 8))
                    await eventually(lambda: ingests[1].stats.written_points > 0, what="rows through broker B")
                    assert gw.forwarder.uplink.failovers >= 1
                    assert gw.forwarder.uplink.server == ("127.0.0.1", b.port)
                    a.start()  # A comes back with what it had queued for its ingest
                    await step(gw, plc, range(8, 10))
                accepted = gw.buffer_counters["accepted_points"]
                await eventually(lambda: sum(i.stats.written_points for i in ingests) >= accepted, timeout=30,
                                 what="every accepted point written")
    res = influx1.query('SELECT * FROM "telemetry"', db=db)
    series = res["results"][0]["series"][0]  # type: ignore[index]
    rows = [{**dict(zip(series["columns"], v, strict=True)), "ts": v[0]} for v in series["values"]]
    assert len(rows) == accepted  # every accepted point once: a resent batch overwrote its own rows
    check_rows(rows, plc.stub, ticks=9)
