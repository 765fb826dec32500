"""OPC UA fixtures: asyncua plant servers shared per session (Server.init() takes ~2 s each)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from drivers.opcua.certs import Pki, create_certificate
from gateway.catalog import Catalog, build_catalog
from gateway.config import parse
from gateway.core.point import Sample, SampleBatch
from gateway.runner import StreamRunner
from hil.opcua_server import PlantServer

USERS = {"operator": "s3cret-pass"}


@pytest.fixture(scope="session")
def pki_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Server cert, client (gateway) PKI with the server trusted, and an X.509 user identity."""
    root = tmp_path_factory.mktemp("pki")
    create_certificate(
        root / "server" / "cert.der",
        root / "server" / "key.pem",
        application_uri="urn:edgegw:sim:server",
        hostnames=("localhost",),
        server=True,
    )
    pki = Pki(root / "gw")
    pki.create_own("urn:edgegw:test:gateway", hostnames=("localhost",))
    pki.trust((root / "server" / "cert.der").read_bytes())
    create_certificate(root / "user" / "cert.der", root / "user" / "key.pem", application_uri="urn:edgegw:test:user")
    return root


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def plant() -> AsyncIterator[PlantServer]:
    """Unsecured plant server; tests step it by hand (tick_s = 0) so values are the stub's oracle."""
    async with PlantServer(max_nodes_per_read=4, max_monitored_items_per_call=5) as srv:
        yield srv


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def secure_plant(pki_root: Path) -> AsyncIterator[PlantServer]:
    async with PlantServer(
        ["hot_stove"],
        security=True,
        allow_none=False,
        cert=pki_root / "server" / "cert.der",
        key=pki_root / "server" / "key.pem",
        users=USERS,
        user_certs=[(pki_root / "user" / "cert.der").read_bytes()],
    ) as srv:
        yield srv


def device(endpoint: str, points: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "opcua",
        "name": "opc1",
        "endpoint": endpoint,
        "security_policy": "None",
        "security_mode": "None",
        "allow_no_security": True,
        "publishing_interval_ms": 100,
        "sampling_interval_ms": 50,
        "points": points,
    }
    base.update(kw)
    return base


def catalog_for(*devices: dict[str, Any]) -> tuple[Any, Catalog]:
    cfg = parse(
        {"gateway": {"id": "gw1", "site": "ordos-01", "enterprise_prefix": "88.608.5288"}, "devices": list(devices)}
    )
    return cfg, build_catalog(cfg)


class Collector:
    """The runner's sink in tests: every sample, in arrival order."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []

    async def __call__(self, batch: SampleBatch) -> None:
        self.samples.extend(batch)

    def latest(self, idx: int) -> Sample | None:
        for s in reversed(self.samples):
            if s[0] == idx:
                return s
        return None


@contextlib.asynccontextmanager
async def streaming(
    dev: dict[str, Any], connect_timeout_s: float = 15
) -> AsyncIterator[tuple[Any, StreamRunner, Collector]]:
    """A device's driver run by a StreamRunner into a Collector, for the duration of the block."""
    from drivers.opcua.driver import OpcUaDriver

    cfg, cat = catalog_for(dev)
    drv = OpcUaDriver(cfg.devices[0], 0)
    out = Collector()
    runner = StreamRunner(drv, cat, out, connect_timeout_s=connect_timeout_s, backoff_max_s=1)
    task = asyncio.create_task(runner.run())
    try:
        yield drv, runner, out
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
