"""A broker that accepts the connection but never acknowledges data: in-flight stays bounded.

The "broker" is a tiny asyncio MQTT 5 server on 127.0.0.1: it answers CONNECT with a CONNACK
advertising Receive Maximum 3, acknowledges the gateway's retained state messages (so the
connection is fully up) and swallows every data PUBLISH without a PUBACK.  The real gateway polls
a simulated PLC meanwhile.  It must never have more unacknowledged data publishes on the wire than
the window allows, must time out and reconnect rather than pile up, must keep every batch in the
buffer (nothing counted delivered), and must not grow its task set with each reconnect.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from firmware_stubs.gas_substation import point_config
from gateway.app import Gateway
from gateway.config import parse
from hil.modbus_server import SimulatedPlc
from tests.conftest import eventually
from tests.test_e2e import running

__all__: list[str] = []

RECEIVE_MAXIMUM = 3
MAX_INFLIGHT = 8


@dataclass
class SilentBroker:
    connections: int = 0
    data_publishes: int = 0
    max_unacked: int = 0  # per connection, data publishes only
    unacked_now: list[int] = field(default_factory=list)
    port: int = 0

    async def _read_packet(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        while True:
            b = (await reader.readexactly(1))[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return head, await reader.readexactly(length)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        slot = len(self.unacked_now)
        self.unacked_now.append(0)
        try:
            head, _ = await self._read_packet(reader)
            assert head >> 4 == 1, "first packet must be CONNECT"
            # CONNACK: no session, success, properties: Receive Maximum = 3
            writer.write(bytes([0x20, 6, 0, 0, 3, 0x21, 0, RECEIVE_MAXIMUM]))
            while True:
                head, body = await self._read_packet(reader)
                kind = head >> 4
                if kind == 3:  # PUBLISH
                    tlen = int.from_bytes(body[:2], "big")
                    topic = body[2 : 2 + tlen].decode()
                    qos = (head >> 1) & 3
                    pid = body[2 + tlen : 4 + tlen] if qos else b""
                    if topic.endswith("/state"):
                        if qos:
                            writer.write(bytes([0x40, 2]) + pid)  # PUBACK, success
                    else:
                        self.data_publishes += 1
                        self.unacked_now[slot] += 1
                        self.max_unacked = max(self.max_unacked, self.unacked_now[slot])
                elif kind == 12:  # PINGREQ
                    writer.write(bytes([0xD0, 0]))
                elif kind == 14:  # DISCONNECT
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.integration
async def test_broker_that_never_acks_keeps_in_flight_bounded(tmp_path: Path) -> None:
    broker = SilentBroker()
    server = await asyncio.start_server(broker.handle, "127.0.0.1", 0)
    broker.port = server.sockets[0].getsockname()[1]
    async with server, SimulatedPlc(tick_s=0.02, seed=4) as plc:
        cfg = parse(
            {
                "gateway": {"id": "gw-silent", "site": "baotou-mine-05", "enterprise_prefix": "88.608.5288"},
                "devices": [
                    {"type": "modbus_tcp", "name": "gas-sub-3", "host": "127.0.0.1", "port": plc.port,
                     "poll_interval_ms": 20, "points": point_config()}
                ],
                "buffer": {"path": str(tmp_path / "buffer.db"), "batch_max_points": 20, "linger_ms": 10},
                "uplink": {"port": broker.port, "client_id": "gw-silent", "timeout_s": 0.5, "keepalive_s": 5,
                           "max_inflight": MAX_INFLIGHT},
            }
        )
        gw = Gateway(cfg)
        inflight_seen: list[int] = []
        tasks_seen: list[int] = []

        async def sample() -> None:
            while True:
                inflight_seen.append(gw.buffer.inflight_batches)
                tasks_seen.append(len(asyncio.all_tasks()))
                await asyncio.sleep(0.01)

        async with running(gw.run(), sample()):
            await eventually(lambda: broker.connections >= 2, what="a first reconnect")
            tasks_after_first = max(tasks_seen)
            await eventually(lambda: broker.connections >= 6 and gw.buffer.pending_batches > 30, timeout=60,
                             what="five reconnects and a backlog")
            pending = gw.buffer.pending_batches
            assert max(tasks_seen[len(tasks_seen) // 2 :]) <= tasks_after_first + 2  # no task per reconnect
        counters = gw.buffer_counters
    print(f"\nsilent broker: {broker.connections} connections, {broker.data_publishes} data publishes, "
          f"max unacked on the wire {broker.max_unacked}, max in flight in the buffer {max(inflight_seen)}, "
          f"{pending} batches kept")
    assert broker.data_publishes > 0
    assert broker.max_unacked <= RECEIVE_MAXIMUM  # the broker's Receive Maximum is honoured
    assert max(inflight_seen) <= RECEIVE_MAXIMUM
    assert counters["delivered_points"] == 0  # nothing unacknowledged ever leaves the buffer
    assert counters["dropped_oldest_points"] == counters["dropped_newest_points"] == 0
    assert counters["accepted_batches"] >= pending > 30  # all of it is kept on disk, not in memory
    assert gw.forwarder.stats.published_batches == 0
