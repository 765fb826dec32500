"""InfluxDB writers for the ingest role, and the one place where a failed write is classified.

Three targets: ``v1`` posts line protocol to ``/write`` (InfluxDB 1.x, which has no v2 API before
1.8; credentials by HTTP Basic); ``v2`` uses the official influxdb-client against
``/api/v2/write`` (InfluxDB 2.x / 3.x and compatible stores such as VictoriaMetrics; token from the
environment or a file); ``file`` appends line protocol to a local file (the demo without a database).

A writer takes one body of line protocol (bytes, built by :mod:`gateway.core.lineproto`) and either
returns once the store confirmed it, or raises what :func:`classify` decides:

- :class:`~gateway.core.errors.DataRejectedError`: the store refused rows for what they hold (400 / 422:
  parse error, type conflict, retention); the ingest splits the body to find them;
- :class:`~gateway.core.errors.BodyTooLargeError`: 413, or a reset while a large body was sent (InfluxDB
  answers 413 with ``Connection: close`` and a client that sends the whole body first only sees the
  reset); the ingest splits the body;
- :class:`~gateway.core.errors.StoreUnavailableError`: anything that is not the data's fault (network,
  5xx, 401 / 403 credentials, 404 database missing, 400 "database is required"): nothing is
  acknowledged and the same body is tried again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Protocol

from gateway.config import InfluxConfig
from gateway.core.errors import BodyTooLargeError, DataRejectedError, SinkError, StoreUnavailableError

__all__ = ["FileWriter", "InfluxV1Writer", "InfluxV2Writer", "LineWriter", "classify", "classify_network",
           "make_writer"]

_LARGE_BODY = 1 << 20  # a reset while sending at least this much is read as "too large"
# 400s that are the configuration's fault, not the data's: retried, never dead-lettered
_CONFIG_400 = ("database is required", "database not found", "bucket not found", "organization not found",
               "retention policy not found")
_ECHO = re.compile(r"unable to parse '(.*?)': ", re.S)


def classify(status: int, detail: str) -> SinkError:
    """The error of a failed HTTP write: the one place where a status becomes an outcome."""
    try:  # InfluxDB wraps the message in {"error": "..."}, JSON-escaped
        doc = json.loads(detail)
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            detail = doc["error"]
    except ValueError:
        pass
    text = detail.strip()[:500]
    low = text.lower()
    if status in (400, 422) and not any(m in low for m in _CONFIG_400):
        echoed = tuple(m.encode() for m in _ECHO.findall(detail))
        return DataRejectedError(f"HTTP {status}: {text}", echoed)
    if status == 413:
        return BodyTooLargeError(f"HTTP 413: {text}")
    kind = {401: "auth", 403: "auth", 404: "not_found"}.get(status, "server" if status >= 500 else "http")
    if status == 400:
        kind = "config"
    return StoreUnavailableError(f"HTTP {status}: {text}", kind)


def classify_network(err: BaseException, body_len: int) -> SinkError:
    """A connection that broke: too large when it broke while a large body was on its way."""
    if body_len >= _LARGE_BODY and isinstance(err, BrokenPipeError | ConnectionResetError):
        return BodyTooLargeError(f"connection reset while sending {body_len} bytes ({err})")
    return StoreUnavailableError(f"InfluxDB unreachable: {err}", "network")


class LineWriter(Protocol):
    async def write(self, body: bytes) -> None:
        """Durably write one body of line protocol, or raise what :func:`classify` decides."""

    def close(self) -> None: ...


class InfluxV1Writer:
    def __init__(self, cfg: InfluxConfig) -> None:
        assert cfg.url is not None
        query = {"db": cfg.database, "precision": "ns"}
        if cfg.retention_policy:
            query["rp"] = cfg.retention_policy
        self._url = cfg.url.rstrip("/") + "/write?" + urllib.parse.urlencode(query)
        self._parts = urllib.parse.urlsplit(self._url)
        self._path = self._parts.path + "?" + self._parts.query
        self._timeout = cfg.timeout_s
        self._idle: list[http.client.HTTPConnection] = []  # kept alive; list pop / append are atomic
        self._auth: str | None = None
        if cfg.username:
            pair = f"{cfg.username}:{cfg.password() or ''}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode()

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle kept-alive connection (True) or a new one (False): each write in flight has its own."""
        try:
            return self._idle.pop(), True
        except IndexError:
            u = self._parts
            cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
            return cls(u.hostname or "localhost", u.port, timeout=self._timeout), False

    def _post(self, body: bytes) -> None:
        """One POST on a kept-alive connection of a small pool (the ingest may have several writes in
        flight).  A connection the store closed while idle is replaced once, before anything is judged."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._auth:
            headers["Authorization"] = self._auth
        for attempt in (0, 1):
            conn, reused = self._take()
            try:
                conn.request("POST", self._path, body=body, headers=headers)
                resp = conn.getresponse()
                detail = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
                conn.close()
                if reused and attempt == 0:
                    self.close()  # the store closed its idle connections (restarted?): all of them, likely
                    continue  # say nothing yet, try a fresh one
                raise classify_network(err, len(body)) from None
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                raise classify_network(err if isinstance(err, OSError) else ConnectionError(str(err)), len(body)
                                       ) from None
            if resp.will_close:
                conn.close()
            else:
                self._idle.append(conn)
            if resp.status >= 300:
                raise classify(resp.status, detail.decode("utf-8", "replace") or resp.reason)
            return

    async def write(self, body: bytes) -> None:
        if body:
            await asyncio.to_thread(self._post, body)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class InfluxV2Writer:
    def __init__(self, cfg: InfluxConfig) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(url=cfg.url, token=cfg.token(), org=cfg.org, timeout=int(cfg.timeout_s * 1000))
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = cfg.bucket
        self._org = cfg.org

    def _write(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError, ProtocolError

        try:
            self._api.write(bucket=self._bucket, org=self._org, record=body, write_precision=WritePrecision.NS)  # type: ignore[arg-type]
        except ApiException as err:
            raw = err.body
            detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or err.reason or "")
            raise classify(int(err.status or 0), detail) from None
        except ProtocolError as err:
            inner = next((a for a in err.args if isinstance(a, BaseException)), err)
            raise classify_network(inner, len(body)) from None
        except (HTTPError, OSError) as err:
            raise classify_network(err, len(body)) from None

    async def write(self, body: bytes) -> None:
        if body:
            await asyncio.to_thread(self._write, body)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class FileWriter:
    """Line protocol appended to a file, flushed and fsynced per write (the demo's database)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        assert cfg.path is not None
        self.path = Path(cfg.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")

    async def write(self, body: bytes) -> None:
        start = self._fh.tell()
        try:
            self._fh.write(body)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as err:
            with contextlib.suppress(OSError):  # no half line before the retry
                self._fh.truncate(start)
            raise StoreUnavailableError(f"cannot write {self.path}: {err.strerror}", "disk") from err

    def close(self) -> None:
        self._fh.close()


def make_writer(cfg: InfluxConfig) -> LineWriter:
    if cfg.api == "v1":
        return InfluxV1Writer(cfg)
    if cfg.api == "v2":
        return InfluxV2Writer(cfg)
    return FileWriter(cfg)
