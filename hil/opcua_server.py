"""Serve firmware-stub plants (or N benchmark items) on a real asyncua server bound to 127.0.0.1.

In-process for tests (``async with PlantServer(...) as srv``; ``await srv.tick()`` steps the plant
by hand) or as a separate process for benchmarks and restart tests::

    python -m hil.opcua_server --port 4840 --items 10000 --tick-s 1     # prints "READY <port>"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from firmware_stubs.opcua_plants import PLANTS, UNITS, NodeSpec, unit_id
from hil.services import free_port

__all__ = ["NAMESPACE", "PlantServer", "bench_node_id", "eu_information", "free_port"]

NAMESPACE = "urn:edgegw:sim"
UNECE_UNITS = "http://www.opcfoundation.org/UA/units/un/cefact"  # EUInformation.NamespaceUri (Part 8)
_VT = {
    "Double": ua.VariantType.Double,
    "Float": ua.VariantType.Float,
    "Int32": ua.VariantType.Int32,
    "UInt16": ua.VariantType.UInt16,
    "Boolean": ua.VariantType.Boolean,
    "String": ua.VariantType.String,
}
_ALL_POLICIES = [
    ua.SecurityPolicyType.NoSecurity,
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]

for _n in ("asyncua",):
    logging.getLogger(_n).setLevel(logging.ERROR)


def _bench_value(i: int) -> Callable[[int], float]:
    return lambda t: float(t * 100_000 + i)


def bench_node_id(i: int, ns: int = 2) -> str:
    return f"ns={ns};s=Bench.G{i // 100:03d}.Item{i:05d}"


def eu_information(unit: str) -> ua.EUInformation:
    """The EngineeringUnits of a stub unit: UNECE Rec 20 code where there is one (UnitId -1 where not)."""
    code, description = UNITS.get(unit, ("", unit))
    return ua.EUInformation(
        NamespaceUri=UNECE_UNITS,
        UnitId=unit_id(code),
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(description),
    )


class _Users:
    """Username/password and X.509 users for identity tests; anonymous is a plain user."""

    def __init__(self, passwords: dict[str, str], cert_ders: Sequence[bytes]) -> None:
        self.passwords = passwords
        self.cert_ders = list(cert_ders)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is not None:
            return User(role=UserRole.User, name=username) if self.passwords.get(username) == password else None
        if certificate is not None and not isinstance(certificate, bytes | str):
            from cryptography.hazmat.primitives.serialization import Encoding

            if certificate.public_bytes(Encoding.DER) in self.cert_ders:
                return User(role=UserRole.User, name="x509")
        # asyncua passes the channel's certificate for anonymous tokens too: anything else is anonymous
        return User(role=UserRole.User, name="anonymous")


class PlantServer:
    """One asyncua server with the chosen plants under Objects/, values stepped by :meth:`tick`."""

    def __init__(
        self,
        plants: Sequence[str] = ("coal_gasifier", "hot_stove", "ree_cell_line"),
        *,
        port: int = 0,
        items: int = 0,
        security: bool = False,
        allow_none: bool = True,
        cert: Path | None = None,
        key: Path | None = None,
        users: dict[str, str] | None = None,
        user_certs: Sequence[bytes] = (),
        max_nodes_per_read: int = 0,
        max_monitored_items_per_call: int = 0,
        tick_s: float = 0.0,
    ) -> None:
        self.port = port or free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/edgegw/"
        self.plants = list(plants)
        self.items = items
        self.security = security
        self.allow_none = allow_none
        self.cert, self.key = cert, key
        self.users = users or {}
        self.user_certs = user_certs
        self.limits = (max_nodes_per_read, max_monitored_items_per_call)
        self.tick_s = tick_s
        self.t = 0
        self.specs: list[NodeSpec] = []
        self.node_ids: list[ua.NodeId] = []
        self._vts: list[ua.VariantType] = []
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.ns = 2
        self._plant_nodes = 0

    def node_id(self, spec_or_id: NodeSpec | str) -> str:
        sid = spec_or_id if isinstance(spec_or_id, str) else spec_or_id.string_id
        return f"ns={self.ns};s={sid}"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        srv = Server(user_manager=_Users(self.users, self.user_certs))
        await srv.init()
        srv.set_endpoint(self.endpoint)
        srv.set_server_name("edgegw simulated plant")
        await srv.set_application_uri("urn:edgegw:sim:server")
        policies = list(_ALL_POLICIES) if self.security else [ua.SecurityPolicyType.NoSecurity]
        if not self.allow_none:
            policies.remove(ua.SecurityPolicyType.NoSecurity)
        srv.set_security_policy(policies)
        tokens: list[type] = [ua.AnonymousIdentityToken, ua.UserNameIdentityToken, ua.X509IdentityToken]
        srv.set_identity_tokens(tokens)
        if self.security:
            assert self.cert and self.key, "a secured server needs cert and key"
            await srv.load_certificate(str(self.cert))
            await srv.load_private_key(str(self.key))
        self.ns = await srv.register_namespace(NAMESPACE)
        folders: dict[tuple[str, ...], Any] = {}
        self.specs, self.node_ids, self._vts = [], [], []  # a restart builds a fresh address space
        for plant in self.plants:
            self.specs += PLANTS[plant]()
        self._plant_nodes = len(self.specs)
        if self.items:
            self.specs += [
                # 100 items per folder: asyncua's add_variable slows down quadratically in one big folder
                NodeSpec(("Bench", f"G{i // 100:03d}", f"Item{i:05d}"), "Double", "", _bench_value(i))
                for i in range(self.items)
            ]
        for spec in self.specs:
            parent = srv.nodes.objects
            for depth in range(1, len(spec.path)):
                key = spec.path[:depth]
                if key not in folders:
                    folders[key] = await parent.add_folder(ua.NodeId(".".join(key), self.ns), key[-1])
                parent = folders[key]
            nid = ua.NodeId(spec.string_id, self.ns)
            vt = _VT[spec.data_type]
            var = await parent.add_variable(nid, spec.name, ua.Variant(spec.value(0), vt))
            if spec.unit:  # Part 8: an EUInformation, its DisplayName the symbol
                await var.add_property(
                    ua.NodeId(spec.string_id + ".EngineeringUnits", self.ns),
                    "EngineeringUnits",
                    eu_information(spec.unit),
                    datatype=ua.ObjectIds.EUInformation,
                )
            for prop, rng in (("EURange", spec.eu_range), ("InstrumentRange", spec.instrument_range)):
                if rng is not None:  # Part 8 Range properties
                    await var.add_property(
                        ua.NodeId(f"{spec.string_id}.{prop}", self.ns), prop, ua.Range(Low=rng[0], High=rng[1]),
                        datatype=ua.ObjectIds.Range,
                    )
            self.node_ids.append(nid)
            self._vts.append(vt)
        # an array variable for array tests
        await srv.nodes.objects.add_variable(
            ua.NodeId("Arrays.Temps", self.ns), "Temps", ua.Variant([1.5, 2.5, 3.5], ua.VariantType.Double)
        )
        await self._set_limits(srv)
        await srv.start()
        self._server = srv
        await self._write_all()
        if self.tick_s > 0:
            self._task = asyncio.create_task(self._ticker())

    async def _set_limits(self, srv: Server) -> None:
        for ident, value in zip(
            (
                ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
                ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            ),
            self.limits,
            strict=True,
        ):
            with contextlib.suppress(ua.UaError):
                await srv.write_attribute_value(
                    ua.NodeId(ident, 0), ua.DataValue(ua.Variant(value, ua.VariantType.UInt32))
                )

    async def _ticker(self) -> None:
        """Ticks on a fixed grid: writing 10,000 values takes a good part of a second itself."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.tick_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            await self.tick()

    async def tick(self, steps: int = 1) -> None:
        self.t += steps
        await self._write_all()

    async def _write_all(self) -> None:
        srv = self._server
        assert srv is not None
        t = self.t
        # the device's sample time for plant nodes; none for benchmark items, where asyncua's per-change
        # deepcopy of an aware datetime halved the server's throughput
        stamp = datetime.datetime.now(datetime.UTC)
        for i, (spec, nid, vt) in enumerate(zip(self.specs, self.node_ids, self._vts, strict=True)):
            status = spec.status(t)
            code = getattr(ua.StatusCodes, status)
            dv = ua.DataValue(
                ua.Variant(spec.value(t), vt),
                StatusCode=ua.StatusCode(code),
                SourceTimestamp=stamp if i < self._plant_nodes else None,
            )
            await srv.write_attribute_value(nid, dv)

    async def set_status(self, node_id: str, status: str) -> None:
        """Force one node's status (fault injection beyond the stub's schedule)."""
        assert self._server is not None
        nid = ua.NodeId.from_string(node_id)
        dv = ua.DataValue(StatusCode=ua.StatusCode(getattr(ua.StatusCodes, status)))
        await self._server.write_attribute_value(nid, dv)

    async def delete_node(self, node_id: str) -> None:
        """Delete a node while clients monitor it, as a re-engineered PLC program would.

        asyncua 2.1 means to tell each subscription monitoring it with a StatusChangeNotification
        (BadNodeIdUnknown) but calls the coroutine without awaiting it, so nothing is sent; this
        does what it intends, so clients see the asyncua server's designed behaviour.
        """
        assert self._server is not None
        nid = ua.NodeId.from_string(node_id)
        subs = [
            sub.monitored_item_srv
            for sub in self._server.iserver.subscription_service.subscriptions.values()
            if any(
                m.read_value_id is not None and m.read_value_id.NodeId == nid
                for m in sub.monitored_item_srv._monitored_items.values()
            )
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "coroutine ... was never awaited", see above
            await self._server.delete_nodes([self._server.get_node(nid)])
            gc.collect()
        for mis in subs:
            await mis.trigger_statuschange(ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown))
        gone = [i for i, n in enumerate(self.node_ids) if n == nid]  # stop writing it on tick()
        for i in reversed(gone):
            del self.specs[i], self.node_ids[i], self._vts[i]
            if i < self._plant_nodes:
                self._plant_nodes -= 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            with contextlib.suppress(OSError, ua.UaError):
                await self._server.stop()
            self._server = None


async def _main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--items", type=int, default=0)
    ap.add_argument("--plants", default="coal_gasifier,hot_stove,ree_cell_line", help="comma list, or ''")
    ap.add_argument("--tick-s", type=float, default=1.0)
    args = ap.parse_args(argv)
    plants = [p for p in args.plants.split(",") if p]
    async with PlantServer(plants, port=args.port, items=args.items, tick_s=args.tick_s) as srv:
        print(f"READY {srv.port}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(sys.argv[1:]))
