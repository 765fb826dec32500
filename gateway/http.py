"""The local status endpoint: ``/healthz``, ``/readyz``, ``/metrics``, the status page ``/`` and its data.

On aiohttp (no HTTP parsing of our own).  Read-only: every route is a GET.  Bounded: at most
``MAX_CONCURRENT`` requests are handled at once (the others get 503 at once), request bodies are
refused, and the status data carries at most a few thousand points per response (a filter narrows
it).  The server is one task of the gateway's (or the ingest's) supervision: it ends only when
cancelled, and closes its connections on the way out.

An occupied port does not stop the telemetry: the endpoint is auxiliary, so the error is logged and
binding retried with backoff while acquisition and the uplink carry on (a probe meanwhile gets
"connection refused", which is loud enough).

The page (``gateway/static/``) is plain HTML, CSS and JavaScript shipped in the package: no CDN, no
build step, works on an air-gapped control-room PC.  It polls ``/api/status`` and writes every
server string through ``textContent``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.listen import parse_listen
from gateway.metrics import GatewayCollector, make_registry
from gateway.status import (
    POINTS_LIMIT,
    LiveTable,
    gateway_readiness,
    gateway_status,
    ingest_readiness,
    ingest_status,
)

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.ingest import IngestCore

__all__ = ["MAX_CONCURRENT", "StatusServer"]

log = logging.getLogger("edgegw.http")

MAX_CONCURRENT = 8
_STATIC = {
    "index.html": "text/html",
    "status.js": "text/javascript",
    "status.css": "text/css",
}
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    # nothing but our own assets; no inline script: server strings can never run as code
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StatusServer:
    """Serves one process's gateway, ingest, or both (``edgegw demo``)."""

    def __init__(
        self,
        listen: str,
        *,
        gateway: Gateway | None = None,
        live: LiveTable | None = None,
        ingest: IngestCore | None = None,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.gateway = gateway
        self.live = live
        self.ingest = ingest
        self.started = asyncio.Event()
        self.url = ""
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._collector = GatewayCollector(gateway, live, ingest)
        self._registry = make_registry(self._collector)
        self._assets = {name: (files("gateway") / "static" / name).read_bytes() for name in _STATIC}

    def add_ingest(self, ingest: IngestCore) -> None:
        """Serve an ingest of the same process too (``edgegw demo``: both roles on one page)."""
        self.ingest = self._collector.ingest = ingest

    # -- app ------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._bounded], client_max_size=1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/static/{name}", self._static)
        return app

    @web.middleware
    async def _bounded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._slots.locked():
            return web.json_response({"error": "busy"}, status=503, headers=_HEADERS)
        if request.content_length:
            return web.json_response({"error": "read-only endpoint: no request body"}, status=413, headers=_HEADERS)
        async with self._slots:
            response = await handler(request)
        response.headers.update({k: v for k, v in _HEADERS.items() if k not in response.headers})
        return response

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._assets["index.html"], content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC or name == "index.html":
            raise web.HTTPNotFound()
        return web.Response(body=self._assets[name], content_type=_STATIC[name], charset="utf-8")

    async def _healthz(self, request: web.Request) -> web.Response:
        """The process is alive and its event loop answers (nothing else: restarts are for a hung loop)."""
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = []
        if self.gateway is not None:
            checks += [("gateway", c) for c in gateway_readiness(self.gateway)]
        if self.ingest is not None:
            checks += [("ingest", c) for c in ingest_readiness(self.ingest)]
        ready = all(c.ok for _, c in checks)
        body = {
            "ready": ready,
            "checks": [{"role": role, **c.as_dict()} for role, c in checks],
            "not_ready": [f"{role}.{c.name}: {c.detail}" for role, c in checks if not c.ok],
        }
        return web.json_response(body, status=200 if ready else 503, dumps=_dumps)

    async def _metrics(self, request: web.Request) -> web.Response:
        # the collector reads SQLite and the stats objects: on this thread, between two steps of the gateway
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status(self, request: web.Request) -> web.Response:
        q = request.query
        body: dict[str, Any] = {}
        if self.gateway is not None:
            try:
                limit = max(1, min(int(q.get("limit", POINTS_LIMIT)), POINTS_LIMIT))
            except ValueError:
                raise web.HTTPBadRequest(text="limit must be an integer") from None
            body = gateway_status(
                self.gateway, self.live, text=q.get("q", ""), device=q.get("device", ""),
                quality=q.get("quality", ""), limit=limit,
            )
        if self.ingest is not None:
            body["ingest"] = ingest_status(self.ingest)
            body.setdefault("role", "ingest")
        return web.json_response(body, dumps=_dumps)

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until cancelled."""
        backoff = 1.0
        while True:
            # idle keep-alive connections close after 15 s: a forgotten browser tab holds at most one
            runner = web.AppRunner(
                self._app(), access_log=None, handle_signals=False, shutdown_timeout=1.0, keepalive_timeout=15.0
            )
            await runner.setup()
            try:
                await web.TCPSite(runner, self.host, self.port, backlog=32).start()
                break
            except OSError as err:
                await runner.cleanup()
                log.error(
                    "Status endpoint cannot listen on %s:%d: %s; retrying in %.0f s (telemetry is not affected).",
                    self.host, self.port, err.strerror or err, backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
        try:
            host, port = runner.addresses[0][:2]
            self.port = int(port)
            self.url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"
            log.info("Status page on %s/ (also /healthz, /readyz, /metrics).", self.url)
            self.started.set()
            await asyncio.Event().wait()  # until cancelled
        finally:
            self.started.clear()
            await runner.cleanup()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)
