"""InfluxDB writers for the ingest role, and the line-protocol encoding they share.

Three targets: ``v1`` posts line protocol to ``/write`` (InfluxDB 1.x, which has no v2 API before
1.8); ``v2`` uses the official influxdb-client against ``/api/v2/write`` (InfluxDB 2.x / 3.x and
compatible stores such as VictoriaMetrics); ``file`` appends line protocol to a local file (the
demo without a database).

Schema: one measurement (``telemetry`` by default); tags ``code`` (the point's identifier),
``device``, ``device_code``, ``point``, ``unit``, ``site``, ``data_grade`` and the configured tags;
fields ``value`` (float) or ``value_bool`` / ``value_str``, ``quality`` (0 good, 1 uncertain,
2 bad), ``reason`` when the point is not good, and ``historical=true`` on replayed backlog (a
field, so a replay lands on the same series).  A bad point carries no value field.  Numbers are
always written as floats: InfluxDB fixes a field's type per measurement and shard, so mixing
integer and float points in one measurement would be refused.
"""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from gateway.config import InfluxConfig
from gateway.errors import RejectedError, RetryableError
from gateway.point import Point

__all__ = ["FileWriter", "InfluxV1Writer", "InfluxV2Writer", "LineWriter", "esc_key", "make_writer", "to_line"]


def esc_key(s: str) -> str:
    """Measurement, tag keys and tag values: escape ``\\``, ``,``, ``=`` and space; drop newlines."""
    return (
        s.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
        .replace("\n", " ")
        .replace("\r", " ")
    )


def _esc_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_line(p: Point, measurement: str, site: str = "") -> str:
    tags = {"code": p.code, "device": p.device, "device_code": p.device_code, "point": p.key, "unit": p.unit}
    if site:
        tags["site"] = site
    tags.update(p.tags)
    tag_part = ",".join(f"{esc_key(k)}={esc_key(v)}" for k, v in sorted(tags.items()) if v)
    fields = []
    v = p.value
    if isinstance(v, bool):
        fields.append(f"value_bool={'true' if v else 'false'}")
    elif isinstance(v, int | float):
        fields.append(f"value={float(v)!r}")
    elif isinstance(v, str):
        fields.append(f"value_str={_esc_str(v)}")
    fields.append(f"quality={int(p.quality)}i")
    if p.reason:
        fields.append(f"reason={_esc_str(p.reason)}")
    if p.historical:  # a field, not a tag: a replay must land on the same series as the live point
        fields.append("historical=true")
    return f"{esc_key(measurement)},{tag_part} {','.join(fields)} {p.ts_ns}"


class LineWriter(Protocol):
    async def write(self, lines: list[str]) -> None:
        """Durably write the lines or raise RetryableError / RejectedError."""

    def close(self) -> None: ...


class InfluxV1Writer:
    def __init__(self, cfg: InfluxConfig) -> None:
        assert cfg.url is not None
        query = {"db": cfg.database, "precision": "ns"}
        if cfg.retention_policy:
            query["rp"] = cfg.retention_policy
        self._url = cfg.url.rstrip("/") + "/write?" + urllib.parse.urlencode(query)
        self._timeout = cfg.timeout_s

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self._url, data=body, method="POST")
        req.add_header("Content-Type", "text/plain; charset=utf-8")
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace")
            if 400 <= err.code < 500 and err.code not in (408, 429):
                raise RejectedError(f"InfluxDB refused the write (HTTP {err.code}): {detail}") from None
            raise RetryableError(f"InfluxDB write failed (HTTP {err.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            raise RetryableError(f"InfluxDB unreachable: {err}") from None

    async def write(self, lines: list[str]) -> None:
        if lines:
            await asyncio.to_thread(self._post, ("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        pass


class InfluxV2Writer:
    def __init__(self, cfg: InfluxConfig) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        token = os.environ.get(cfg.token_env, "") if cfg.token_env else ""
        self._client = InfluxDBClient(url=cfg.url, token=token, org=cfg.org, timeout=int(cfg.timeout_s * 1000))
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = cfg.bucket
        self._org = cfg.org

    def _write(self, lines: list[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._api.write(bucket=self._bucket, org=self._org, record=lines, write_precision=WritePrecision.NS)  # type: ignore[arg-type]
        except ApiException as err:
            status = int(err.status or 0)
            if 400 <= status < 500 and status not in (408, 429):
                raise RejectedError(f"InfluxDB refused the write (HTTP {status}): {err.body!r:.300}") from None
            raise RetryableError(f"InfluxDB write failed (HTTP {status})") from None
        except (HTTPError, OSError) as err:
            raise RetryableError(f"InfluxDB unreachable: {err}") from None

    async def write(self, lines: list[str]) -> None:
        if lines:
            await asyncio.to_thread(self._write, lines)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class FileWriter:
    """Line protocol appended to a file, flushed and fsynced per write (the demo's database)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        assert cfg.path is not None
        self.path = Path(cfg.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    async def write(self, lines: list[str]) -> None:
        try:
            self._fh.write("".join(line + "\n" for line in lines))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as err:
            raise RetryableError(f"cannot write {self.path}: {err.strerror}") from err

    def close(self) -> None:
        self._fh.close()


def make_writer(cfg: InfluxConfig) -> LineWriter:
    if cfg.api == "v1":
        return InfluxV1Writer(cfg)
    if cfg.api == "v2":
        return InfluxV2Writer(cfg)
    return FileWriter(cfg)


def lines_for(points: Iterable[Point], measurement: str, site: str = "") -> list[str]:
    return [to_line(p, measurement, site) for p in points]
