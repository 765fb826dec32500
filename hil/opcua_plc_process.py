"""One simulated PLC serving a gas substation stub over OPC UA (asyncua, security None), for HIL campaigns.

``python -m hil.opcua_plc_process --port P --seed S --tick-ms T --counts FILE``

The same stub as the Modbus PLCs (``firmware_stubs.gas_substation``), served as engineering values:
variables ``ns=2;s=GasSubstation.<point>`` (seq, ch4, co, o2, wind, temp, status, ch4_alarm), all
Double, computed on demand from the current tick, so the values of one Read all come from one tick
(a Read is served in one step of the event loop).  Each Read of ``seq`` counts as one poll (key
``ua`` of the counts file: 8 points), as the Modbus PLCs count their answers.  SIGTERM stops it;
a restart (a PLC reboot) starts again at tick 0 and continues the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
from pathlib import Path
from typing import Any

from asyncua import Server, ua

from firmware_stubs.gas_substation import GasSubstation, expected_values, point_config
from hil.plc_process import read_counts

__all__ = ["NODE_PREFIX", "OPCUA_POINTS", "node_id"]

NODE_PREFIX = "GasSubstation"
OPCUA_POINTS = tuple(str(p["name"]) for p in point_config())


def node_id(point: str) -> str:
    return f"ns=2;s={NODE_PREFIX}.{point}"


async def _main(args: argparse.Namespace) -> None:
    for name in ("asyncua",):
        logging.getLogger(name).setLevel(logging.ERROR)
    stub = GasSubstation(args.seed)
    counts_path = Path(args.counts)
    counts = read_counts(counts_path)
    state = {"tick": 0}
    srv = Server()
    await srv.init()
    srv.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/edgegw/")
    srv.set_server_name("edgegw HIL OPC UA PLC")
    srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await srv.register_namespace("urn:edgegw:hil")
    folder = await srv.nodes.objects.add_folder(ua.NodeId(NODE_PREFIX, ns), NODE_PREFIX)
    cache: dict[int, dict[str, float | int]] = {}

    def values() -> dict[str, float | int]:
        t = state["tick"]
        if t not in cache:
            cache.clear()
            cache[t] = expected_values(stub.reading(t))
        return cache[t]

    def callback(point: str) -> Any:
        def read(_nodeid: Any, _attr: Any) -> ua.DataValue:
            if point == "seq":
                counts["ua"] = counts.get("ua", 0) + 1
            return ua.DataValue(ua.Variant(float(values()[point]), ua.VariantType.Double),
                                SourceTimestamp=datetime.datetime.now(datetime.UTC))
        return read

    for point in OPCUA_POINTS:
        var = await folder.add_variable(ua.NodeId(f"{NODE_PREFIX}.{point}", ns), point, 0.0, ua.VariantType.Double)
        srv.iserver.set_attribute_value_callback(var.nodeid, callback(point))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def save() -> None:
        tmp = counts_path.with_suffix(".tmp")
        tmp.write_text(__import__("json").dumps(counts))
        tmp.replace(counts_path)

    async with srv:
        print(f"OPC UA PLC seed {args.seed} serving on 127.0.0.1:{args.port}", flush=True)
        t0 = loop.time()
        while not stop.is_set():
            state["tick"] = int((loop.time() - t0) * 1000 // args.tick_ms)
            save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(0.2, args.tick_ms / 2000))
    save()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tick-ms", type=int, default=100)
    p.add_argument("--counts", required=True)
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
