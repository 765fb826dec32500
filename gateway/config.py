"""The typed root config, TOML loading and located error messages.

The ``[[devices]]`` union (driver config models, discriminated by ``type``) and the known device
types derive from the driver registry (gateway/driver_registry.py): no string imports, no plugins
discovered at run time.  Loading does no I/O beyond reading the file; connecting does no
validation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit

from gateway.catalog import Catalog, build_catalog
from gateway.core import tomlread
from gateway.core.clock import RELEASE_DATE, ns_of_date
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.models import Field, PrivateAttr, TypeAdapter, ValidationError, field_validator, model_validator
from gateway.core.schema import DeviceBase, Key, StrictModel, check_code, check_name_text, check_tags, error_message
from gateway.driver_registry import DEVICE_TYPES, DRIVERS, device_union, spec_of
from gateway.listen import is_loopback, parse_listen

if TYPE_CHECKING:
    from gateway.startup import StartupProgress

__all__ = [
    "BufferConfig",
    "Config",
    "DataPolicy",
    "DeviceConfig",
    "Durability",
    "ForwardPolicy",
    "GatewaySection",
    "HttpSection",
    "InfluxConfig",
    "IngestSection",
    "MqttConfig",
    "RegistrySection",
    "UplinkConfig",
    "WatchConfig",
    "WhenFull",
    "format_location",
    "is_loopback",
    "load",
    "parse",
    "parse_listen",
    "policy_issues",
    "redacted",
    "security_warnings",
    "uplink_uses_tls",
    "uplink_verifies_tls",
    "url_without_password",
]

log = logging.getLogger("edgegw.config")
_unset_warned: set[str] = set()


def _env_password(name: str) -> str | None:
    """The variable's value; a variable that is not set is said once (a missing EnvironmentFile, a
    typo) instead of showing up only as a broker's or resolution node's "not authorised"."""
    value = os.environ.get(name)
    if value is None and name not in _unset_warned:
        _unset_warned.add(name)
        log.warning("password_env names %s, which is not set in the environment: the password is empty.", name)
    return value


if TYPE_CHECKING:
    DeviceConfig = DeviceBase  # every device model derives from it; narrow with isinstance
else:
    DeviceConfig = device_union()  # the registered drivers' models, discriminated by ``type``


class GatewaySection(StrictModel):
    id: Key = Field(description="gateway key, unique per site; used in MQTT topics and as client id")
    site: Key
    code: str | None = Field(default=None, description="identifier code of the gateway itself")
    enterprise_prefix: str | None = Field(
        default=None, description="e.g. 88.608.5288: codes of points without one are minted from it"
    )
    display_name: str = Field(
        default="", max_length=200, description="the gateway's name in any language (status page, CLI)"
    )
    description: str = Field(default="", max_length=1000, description="free text in any language")
    site_display_name: str = Field(
        default="", max_length=200,
        description="the site's name in any language (e.g. 包头某煤矿): status page, CLI, the InfluxDB tag "
        "`site_display_name`",
    )
    site_description: str = Field(
        default="", max_length=1000, description="any language: status page, the InfluxDB tag `site_description`"
    )
    tags: dict[str, str] = Field(default_factory=dict)
    future_tolerance_ms: int = Field(
        default=2000, ge=0, description="a sample stamped further ahead of this gateway's clock is flagged"
    )
    clock_jump_ms: int = Field(
        default=2000, ge=1, description="a wall-clock step larger than this between batches is flagged (NTP jump)"
    )
    clock_min_valid_time: dt.date | dt.datetime = Field(
        default=RELEASE_DATE,
        description="samples stamped earlier, and all samples while the gateway's clock reads earlier, are "
        "flagged clock_unsynced (the clock has not been set); default: the release date of this version",
    )

    _check_code = field_validator("code")(check_code)
    _check_tags = field_validator("tags")(check_tags)
    _check_names = field_validator("display_name", "description", "site_display_name", "site_description")(
        check_name_text
    )

    @field_validator("clock_min_valid_time")
    @classmethod
    def _min_valid(cls, v: dt.date | dt.datetime) -> dt.date | dt.datetime:
        if isinstance(v, dt.datetime) and v.tzinfo is None:
            raise ValueError("give a UTC offset (e.g. 2026-12-05T00:00:00Z) or a date (2026-12-05)")
        if not dt.date(1970, 1, 1) <= (v.date() if isinstance(v, dt.datetime) else v) <= dt.date(2262, 1, 1):
            raise ValueError("must lie between 1970 and 2262 (the range of a timestamp in ns)")
        return v

    @property
    def clock_min_valid_ns(self) -> int:
        return ns_of_date(self.clock_min_valid_time)

    @field_validator("enterprise_prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is not None:
            check_code(v + "/x")
        return v


class ForwardPolicy(enum.StrEnum):
    """What leaves the site for a data grade (GB/T 43697 core / important / general)."""

    FORWARD = "forward"  # over the configured uplink, whatever its transport
    TLS_ONLY = "tls_only"  # only over a TLS uplink: the gateway refuses to start otherwise
    KEEP_ON_SITE = "keep_on_site"  # never forwarded (nor its alarm events)


class DataPolicy(StrictModel):
    general: ForwardPolicy = ForwardPolicy.FORWARD
    important: ForwardPolicy = ForwardPolicy.FORWARD
    core: ForwardPolicy = ForwardPolicy.TLS_ONLY

    def for_grade(self, grade: str) -> ForwardPolicy:
        return ForwardPolicy(getattr(self, grade))


class Durability(enum.StrEnum):
    FSYNC = "fsync"  # every accepted batch survives kill -9 and power loss
    INTERVAL = "interval"  # survives kill -9; power loss may lose the last checkpoint interval


class WhenFull(enum.StrEnum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class BufferConfig(StrictModel):
    path: str = "edgegw-buffer.db"
    durability: Durability = Durability.FSYNC
    sync_interval_ms: int = Field(
        default=500, ge=10, le=60_000, description="interval durability: power loss loses at most this window"
    )
    max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    max_age_s: float | None = Field(
        default=None, gt=0, description="batches older than this are dropped and counted as expired_*; none = keep"
    )
    disk_reserve_bytes: int = Field(
        default=16 << 20,
        ge=1 << 16,
        description="free space kept on the buffer's filesystem; below it the buffer counts as full",
    )
    when_full: WhenFull = WhenFull.DROP_OLDEST
    alarm_max_bytes: int = Field(
        default=1 << 30, ge=1 << 16, description="alarm buffer (<stem>-alarms.db) size; beyond it oldest dropped"
    )
    alarm_max_age_s: float | None = Field(
        default=None, gt=0, description="alarm events older than this are dropped (expired_*); none = keep"
    )
    startup_check: Literal["after_crash", "always", "never"] = Field(
        default="after_crash", description="SQLite quick_check of the whole file at start-up"
    )
    batch_max_points: int = Field(default=1000, ge=1, le=100_000)
    linger_ms: int = Field(default=200, ge=0, le=60_000)


class MqttConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    servers: list[str] = Field(
        default_factory=list,
        description="HOST:PORT of each broker (cluster nodes or sites), tried in order on failure; "
                    "instead of host / port",
    )
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = Field(default=None, description="fixed client id (persistent session); default edgegw-<id>")
    username: str | None = None
    password_env: str | None = Field(default=None, description="name of the environment variable with the password")
    password_file: str | None = Field(default=None, description="file whose first line is the password")
    tls: bool = Field(default=False, description="connect with TLS (port 8883 by convention)")
    ca_file: str | None = Field(default=None, description="PEM trust anchors; default: the system store")
    cert_file: str | None = Field(default=None, description="PEM client certificate (mutual TLS)")
    key_file: str | None = Field(default=None, description="PEM private key of cert_file")
    tls_verify: Literal["full", "chain", "off"] = Field(
        default="full", description="full: chain and host name; chain: chain only; off: lab use only"
    )
    topic_prefix: Key = "edgegw"
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=86_400, ge=0)
    max_inflight: int = Field(default=20, ge=1, le=1000)
    timeout_s: float = Field(default=10.0, gt=0)
    shutdown_drain_s: float = Field(default=5.0, ge=0, description="on stop, time allowed to deliver the buffer")

    @model_validator(mode="after")
    def _tls_and_secrets(self) -> Self:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        given = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if given and not self.tls:
            raise ValueError(f"{', '.join(given)} set but tls = false")
        return self

    @field_validator("servers")
    @classmethod
    def _servers(cls, v: list[str]) -> list[str]:
        for text in v:
            if parse_listen(text)[1] == 0:
                raise ValueError(f"{text!r}: a broker needs a port")
        if len(set(v)) != len(v):
            raise ValueError("a broker is listed twice")
        return v

    def server_list(self) -> list[tuple[str, int]]:
        """The brokers to try, in order: ``servers``, or ``host`` / ``port``."""
        return [parse_listen(s) for s in self.servers] or [(self.host, self.port)]

    def password(self) -> str | None:
        if self.password_file:
            return _read_secret(self.password_file, "password_file")
        return _env_password(self.password_env) if self.password_env else None


class UplinkConfig(MqttConfig):
    """The edge role's broker connection: MQTT settings plus what goes on the wire and how the
    backlog shares the link."""

    payload_format: Literal["msgpack", "json"] = Field(default="msgpack", description="wire format v1 encoding")
    no_subscribers: Literal["keep", "accept"] = Field(
        default="keep",
        description="PUBACK 0x10 (no matching subscribers): keep the batch buffered and retry, with the "
                    "publish_refused alarm (default), or count it delivered (a broker that nobody reads on purpose)",
    )
    wire_format: Literal[1, 2] = Field(
        default=2,
        description="2: batches refer to the retained point catalog, typed columns (docs/wire-format.md); "
                    "1: self-contained batches, for an ingest older than wire format v2",
    )
    compression: Literal["auto", "none", "zlib", "zstd"] = Field(
        default="auto", description="auto: zstd with the shipped dictionary for wire format 2, none for 1",
    )
    backlog_share: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="share of the in-flight window given to backlog batches while live data is flowing",
    )

    @model_validator(mode="after")
    def _wire(self) -> Self:
        if self.wire_format == 2 and self.payload_format == "json":
            raise ValueError("payload_format = \"json\" needs wire_format = 1 (wire format 2 is msgpack only)")
        if self.wire_format == 1 and self.compression == "zstd":
            raise ValueError("compression = \"zstd\" needs wire_format = 2 (v1 decoders know zlib only)")
        return self

    @property
    def codec_compression(self) -> Literal["none", "zlib", "zstd"]:
        if self.compression == "auto":
            return "zstd" if self.wire_format == 2 else "none"
        return self.compression


def _read_secret(path: str, location: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError) as err:
        raise ConfigError([ConfigIssue(location, f"cannot read a secret from {path}: {err}")]) from None


class InfluxConfig(StrictModel):
    api: Literal["v1", "v2", "file"] = Field(
        description="v1: /write (InfluxDB 1.x); v2: /api/v2/write via influxdb-client; file: line protocol"
    )
    dialect: Literal["influxdb", "victoriametrics"] = Field(
        default="influxdb",
        description="the store's line-protocol reading: backslashes, string fields and size limits differ",
    )
    url: str | None = None
    database: str = "edgegw"  # v1
    retention_policy: str | None = None  # v1
    username: str | None = None  # v1
    password_env: str | None = Field(default=None, description="v1: environment variable holding the password")
    password_file: str | None = Field(default=None, description="v1: file whose first line is the password")
    org: str = "edgegw"  # v2
    bucket: str = "edgegw"  # v2
    token_env: str | None = None  # v2: name of the environment variable holding the token
    token_file: str | None = Field(default=None, description="v2: file whose first line is the token")
    path: str | None = None  # file
    measurement: Key = "telemetry"
    alarm_measurement: Key = "alarm"
    timeout_s: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(
        default=8 << 20, ge=1024, description="bodies are cut below this (InfluxDB 1.x max-body-size is 25 MB)"
    )

    @model_validator(mode="after")
    def _target(self) -> Self:
        if self.api == "file":
            if not self.path:
                raise ValueError("api = 'file' needs path")
        elif not self.url:
            raise ValueError(f"api = '{self.api}' needs url")
        elif not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {url_without_password(self.url)!r} must start with http:// or https://")
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        if self.token_env and self.token_file:
            raise ValueError("give token_env or token_file, not both")
        if (self.password_env or self.password_file) and not self.username:
            raise ValueError("password_env / password_file need username")
        return self

    def password(self) -> str | None:
        if self.password_file:
            return _read_secret(self.password_file, "ingest.influx.password_file")
        return _env_password(self.password_env) if self.password_env else None

    def token(self) -> str:
        if self.token_file:
            return _read_secret(self.token_file, "ingest.influx.token_file")
        return (_env_password(self.token_env) or "") if self.token_env else ""


class IngestSection(StrictModel):
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    share_group: Key | None = Field(
        default="ingest", description="MQTT 5 shared-subscription group; none for MQTT 3.1.1 brokers"
    )
    influx: InfluxConfig
    batch_max_points: int = Field(default=5000, ge=1, le=1_000_000)
    linger_ms: int = Field(default=200, ge=0, le=60_000)
    receive_maximum: int = Field(
        default=200, ge=1, le=65535,
        description="MQTT 5: messages the broker may have unacknowledged towards this ingest; it holds the rest",
    )
    writes_in_flight: int = Field(
        default=3, ge=1, le=16,
        description="bodies being written to the store at once while the next is prepared; acknowledgements "
                    "to the broker stay in the order the messages came",
    )
    catalog_wait_s: float = Field(
        default=30.0, gt=0, le=3600,
        description="wire format v2: how long a batch waits for its gateway's catalog (asked again from the "
                    "broker meanwhile) before it is dead-lettered",
    )
    dead_letter_path: str = Field(default="edgegw-dead-letters.db", description="SQLite file of dead letters")
    dead_letter_max_bytes: int = Field(
        default=1 << 30, ge=1 << 20, description="when full, nothing more is acknowledged until it is emptied"
    )


class WatchConfig(StrictModel):
    """Bounds of the overload warnings (gateway.watch): above them the gateway says so at WARNING."""

    lag_warn_s: float = Field(default=60.0, gt=0, description="warn while the oldest undelivered batch is older")
    poll_miss_share: float = Field(
        default=0.1, ge=0, le=1, description="warn while more than this share of devices miss poll deadlines"
    )
    loop_block_ms: int = Field(default=500, ge=10, description="warn when the event loop is blocked longer")
    report_every_s: float = Field(default=60.0, ge=1, description="period of the lines while a condition lasts")


class RegistrySection(StrictModel):
    """The resolution node where this gateway's codes are registered (off the hot path)."""

    api: Literal["snms", "doip"] = Field(description="snms: /identity/token + /identityv2/...; doip: /api/v1/doip")
    url: str = Field(description="base URL of the node's HTTP API, e.g. http://idis.example:3000")
    identity: str = Field(description="application identity (SNMS username / DOIP app handle), e.g. 88.608.5288/App_gw")
    password_env: str | None = Field(default=None, description="snms: environment variable holding the password")
    private_key_file: str | None = Field(default=None, description="doip: PEM RSA key of the application identity")
    template_version: str = Field(default="1.0", max_length=128, description="snms: the data template's version")
    type_handle: str | None = Field(default=None, description="doip: metadata template handle (META_...)")
    batch_size: int = Field(default=1500, ge=1, le=1500)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retries_504: int = Field(default=3, ge=0, le=10)
    cache_ttl_s: float = Field(default=86_400.0, gt=0)
    register_on_start: bool = Field(default=False, description="register every code in the background at start")
    update_on_start: bool = Field(
        default=False,
        description="with register_on_start: also read back existing records and update changed attributes "
        "(one read per code at every start); `edgegw ids register` always does",
    )

    _check_identity = field_validator("identity", "type_handle")(check_code)

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {url_without_password(self.url)!r} must start with http:// or https://")
        if self.api == "snms" and not self.password_env:
            raise ValueError("api = 'snms' needs password_env")
        if self.api == "doip" and not (self.private_key_file and self.type_handle):
            raise ValueError("api = 'doip' needs private_key_file and type_handle")
        return self

    def password(self) -> str:
        return (_env_password(self.password_env) or "") if self.password_env else ""


class HttpSection(StrictModel):
    """The local status endpoint (/healthz, /readyz, /metrics, status page): on when the section is there."""

    listen: str = Field(
        default="127.0.0.1:9180",
        description="HOST:PORT; loopback by default: the page and /metrics have no authentication",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class Config(StrictModel):
    gateway: GatewaySection | None = None
    devices: list[DeviceConfig] = Field(default_factory=list)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    uplink: UplinkConfig | None = None
    ingest: IngestSection | None = None
    data_policy: DataPolicy = Field(default_factory=DataPolicy)
    registry: RegistrySection | None = None
    http: HttpSection | None = Field(
        default=None, description="local status endpoint; off unless configured here or with --http"
    )
    watch: WatchConfig = Field(default_factory=WatchConfig)

    # the point table, with the sections it was built from (a copy with other devices builds its own)
    _catalog: tuple[tuple[object, ...], Catalog] | None = PrivateAttr(default=None)

    def catalog(self) -> Catalog:
        """The point table of this config, built once: :func:`parse` builds it to check the codes, and
        the gateway (and every other user) then takes the same object."""
        key = (self.gateway, self.devices, self.data_policy)
        cached = self._catalog
        if cached is None or any(a is not b for a, b in zip(cached[0], key, strict=True)):
            self._catalog = (key, build_catalog(self))
            cached = self._catalog
        return cached[1]

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        if self.devices and self.gateway is None:
            raise ValueError("devices need a [gateway] section (id, site)")
        return self


def format_location(loc: tuple[int | str, ...]) -> str:
    """``('devices', 0, 'modbus_tcp', 'points', 3, 'address')`` -> ``devices[0].points[3].address``."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in DEVICE_TYPES and i > 0 and isinstance(loc[i - 1], int):
            continue  # the discriminator tag pydantic inserts after a union member
        else:
            out += f".{part}" if out else str(part)
    return out


def _issues(err: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[ConfigIssue]:
    issues = []
    for e in err.errors(include_url=False):
        e["loc"] = prefix + tuple(e["loc"])
        if e["type"] == "union_tag_invalid":
            msg = f"unknown device type {e['input'].get('type')!r}; known: {', '.join(sorted(DEVICE_TYPES))}"
        elif e["type"] == "union_tag_not_found":
            msg = f"missing 'type' (one of: {', '.join(sorted(DEVICE_TYPES))})"
        else:
            msg = error_message(e, Config)
        issues.append(ConfigIssue(format_location(tuple(e["loc"])), msg))
    return issues


def uplink_uses_tls(m: MqttConfig) -> bool:
    """Whether the uplink is encrypted (``uplink.tls``)."""
    return m.tls


def uplink_verifies_tls(m: MqttConfig) -> bool:
    """Whether the uplink is encrypted *and* knows whom it talks to: TLS that verifies the broker's
    certificate chain and host name.  TLS without it is encryption to whoever answers."""
    return m.tls and m.tls_verify == "full"


def policy_issues(cfg: Config) -> list[ConfigIssue]:
    """A point whose grade may only leave over TLS must not be configured next to an uplink that is
    plain, or whose TLS does not verify the broker (``tls_verify`` other than ``full``)."""
    if cfg.uplink is None or uplink_verifies_tls(cfg.uplink):
        return []
    why = (
        "but the uplink is plain MQTT: configure uplink TLS"
        if not uplink_uses_tls(cfg.uplink)
        else f"but the uplink's TLS does not verify the broker (uplink.tls_verify = '{cfg.uplink.tls_verify}'; "
        "tls_only needs verified TLS): set tls_verify = 'full'"
    )
    issues = []
    for d, dev in enumerate(cfg.devices):
        for p, pt in enumerate(dev.points):
            grade = pt.data_grade.value
            if cfg.data_policy.for_grade(grade) is ForwardPolicy.TLS_ONLY:
                issues.append(ConfigIssue(
                    f"devices[{d}].points[{p}].data_grade",
                    f"{grade} data may only leave the site over TLS (data_policy.{grade} = 'tls_only'), "
                    f"{why}, or change the grade or the policy",
                ))
    return issues


def _mqtt_warnings(m: MqttConfig, where: str) -> list[ConfigIssue]:
    out = []
    if m.tls and m.tls_verify == "off":
        out.append(ConfigIssue(
            f"{where}.tls_verify",
            "'off': the broker's certificate is not verified at all, so anyone on the path can pose as the broker "
            "and read or alter everything, credentials included (lab use only; set 'full')",
        ))
    elif m.tls and m.tls_verify == "chain":
        out.append(ConfigIssue(
            f"{where}.tls_verify",
            "'chain': the certificate chain is verified but not the host name, so any certificate the CA ever "
            "issued (another broker's, another gateway's) is accepted for this broker (set 'full')",
        ))
    if not m.tls and (m.password_env or m.password_file):
        key = "password_env" if m.password_env else "password_file"
        out.append(ConfigIssue(
            f"{where}.{key}",
            f"the MQTT password goes over a plain connection to {m.host}:{m.port}: anyone on the path can read it "
            "(set tls = true)",
        ))
    return out


def security_warnings(cfg: Config, role: Literal["edge", "ingest"] | None = None) -> list[ConfigIssue]:
    """Settings that work but weaken security, each with its location: said by `edgegw check` and once
    at start-up of the role that uses them (``role``: the edge gateway, the ingest; None: both).

    Pure: what the config says, not what the network does (a broker behind a TLS-terminating proxy
    still gets the warning: say so in the config's comments, not by switching the check off)."""
    out: list[ConfigIssue] = []
    if cfg.http is not None and not is_loopback(cfg.http.address[0]):
        out.append(ConfigIssue(
            "http.listen",
            f"{cfg.http.listen} is reachable from other machines, and the status page and /metrics have no "
            "authentication: anyone who reaches it sees every point's live value (keep 127.0.0.1 and use an "
            "authenticating reverse proxy or an SSH tunnel)",
        ))
    if role in (None, "edge"):
        if cfg.uplink is not None:
            out += _mqtt_warnings(cfg.uplink, "uplink")
        for d, dev in enumerate(cfg.devices):
            warn = spec_of(dev).security_warnings  # e.g. an OPC UA session that is not signed
            if warn is not None:
                out += warn(dev, f"devices[{d}]")
        reg = cfg.registry
        if reg is not None and reg.password_env and reg.url.startswith("http://"):
            out.append(ConfigIssue(
                "registry.password_env",
                f"the resolution node password goes over plain http ({_without_password(reg.url)}): anyone on "
                "the path can read it (use an https:// url)",
            ))
        if reg is not None:
            out += _url_password_warning(reg.url, "registry.url")
    if role in (None, "ingest") and cfg.ingest is not None:
        out += _mqtt_warnings(cfg.ingest.mqtt, "ingest.mqtt")
        influx = cfg.ingest.influx
        if influx.token_env and influx.url and influx.url.startswith("http://"):
            out.append(ConfigIssue(
                "ingest.influx.token_env",
                f"the InfluxDB token goes over plain http ({_without_password(influx.url)}): anyone on the path "
                "can read it (use an https:// url)",
            ))
        if influx.url:
            out += _url_password_warning(influx.url, "ingest.influx.url")
    return out


def url_without_password(url: str) -> str:
    """A url as it may be said in a message: a password in it (``user:secret@``) becomes ``***``, also in a
    url too malformed to parse (the message that says it is malformed must not carry the secret)."""
    head, at, rest = url.rpartition("@")
    if not at:
        return url
    scheme, sep, userinfo = head.rpartition("//")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{sep}{user}{colon}{'***' if colon else ''}@{rest}"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


REDACTED = "***"
# a key holding a secret itself (none does today: secrets come from *_env and *_file keys); a
# future inline one is redacted by its name
_SECRET_KEYS = ("password", "passphrase", "secret", "token", "api_key", "private_key")


def redacted(cfg: Config) -> dict[str, Any]:
    """The effective config (defaults filled in) as plain data, secrets redacted: what
    ``edgegw check --print-config`` prints.

    ``*_env`` keys name a variable and ``*_file`` keys a path: kept (they are what an operator
    checks); a url's password and any key named like a secret become ``***``.  The values the
    variables and files hold are never read here."""
    out: dict[str, Any] = _redact(cfg.model_dump(mode="python", by_alias=True, exclude_none=True))
    return out


def _redact(v: Any, key: str = "") -> Any:
    if isinstance(v, dict):
        return {k: _redact(x, str(k)) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_redact(x, key) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, str):
        if key.endswith(_SECRET_KEYS) and not key.endswith(("_env", "_file")):
            return REDACTED
        if "@" in v and "://" in v:
            return _without_password(v)  # user:***@host
    return v


def _url_password_warning(url: str, where: str) -> list[ConfigIssue]:
    """``http://user:secret@host``: a password in the config file itself (and, over http, on the wire)."""
    if urlsplit(url).password is None:
        return []
    plain = " and goes over plain http" if url.startswith("http://") else ""
    return [ConfigIssue(
        where, f"the url carries a password{plain}: keep secrets out of the config file (token_env, password_env)"
    )]


def _semantic_issues(cfg: Config) -> list[ConfigIssue]:
    """Checks across the whole tree: every point gets a code, no two points share one, and the
    forwarding policy of every grade can be kept."""
    issues: list[ConfigIssue] = []
    names: dict[str, int] = {}
    for d, dev in enumerate(cfg.devices):
        if dev.name in names:
            issues.append(ConfigIssue(f"devices[{d}].name",
                                      f"device name {dev.name!r} is already used by devices[{names[dev.name]}]"))
        names.setdefault(dev.name, d)
    for spec in DRIVERS:  # checks across devices of one driver (devices sharing a Modbus line agree)
        if spec.config_issues is not None:
            issues.extend(spec.config_issues(cfg.devices))
    issues.extend(policy_issues(cfg))
    try:
        cfg.catalog()
    except ConfigError as err:
        issues.extend(err.issues)
    return issues


@functools.cache
def _device_adapter() -> TypeAdapter[Any]:
    """Made on first use (an invalid config's errors): a gateway's own process never validates (#17)."""
    return TypeAdapter(DeviceConfig)

_LOC_INDEX = re.compile(r"^devices\[(\d+)\](?:\.points\[(\d+)\])?")


def _salvaged(data: dict[str, Any]) -> tuple[list[ConfigIssue], Config | None, dict[int, tuple[int, list[int]]]]:
    """The part of an invalid config that validates, so that the checks across the tree (device
    names, shared lines, identifier codes, forwarding policies) still run in the same pass as the
    field errors: a user then sees every mistake at once, not one layer per ``edgegw check``.

    A top-level section that fails is left out; a device whose only faults are in some points is
    kept without those points (its own checks across points then run); any other failing device is
    left out.  Returns the new issues this uncovers (located in the original file's indices), the
    salvaged config (None when even that fails) and the map salvaged device index -> (original
    device index, original index of each kept point)."""
    issues: list[ConfigIssue] = []
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key == "devices":
            continue
        with contextlib.suppress(ValidationError):
            Config.model_validate({key: value})
            kept[key] = value
    devices: list[Any] = []
    index: dict[int, tuple[int, list[int]]] = {}
    raw_devices = data.get("devices")
    for d, dev in enumerate(raw_devices if isinstance(raw_devices, list) else []):
        if not isinstance(dev, dict):
            continue
        points = list(range(len(dev["points"]))) if isinstance(dev.get("points"), list) else []
        for attempt in range(3):
            try:
                _device_adapter().validate_python(dev)
                break
            except ValidationError as err:
                if attempt == 2:
                    dev = None
                    break
                if attempt == 1:  # what remains after the faulty keys went: hidden checks across points
                    found = _relocated(_issues(err, ("devices", 0)), {0: (d, points)})
                    issues += found
                dev, points = _without_faults(dev, points, err, drop_points=attempt == 1)
                if dev is None:
                    break
        if dev is None:
            continue
        index[len(devices)] = (d, points)
        devices.append(dev)
    if devices:
        kept["devices"] = devices
    if "gateway" in data and "gateway" not in kept:
        return issues, None, index  # codes are minted from it: checks across the tree would mislead
    try:
        cfg = Config.model_validate(kept)
    except ValidationError as err:
        issues += _relocated(_issues(err), index)
        return issues, None, index
    return issues, cfg, index


def _without_faults(dev: dict[str, Any], points: list[int], err: ValidationError, *, drop_points: bool
                    ) -> tuple[dict[str, Any] | None, list[int]]:
    """The device without the keys that failed (first pass: defaults apply), or without the points
    that still fail (second pass); None when the device itself cannot be salvaged."""
    dev = dict(dev)
    raw_points = [dict(p) if isinstance(p, dict) else p for p in dev.get("points", [])] \
        if isinstance(dev.get("points"), list) else []
    bad_points: set[int] = set()
    for e in err.errors(include_url=False):
        loc = e["loc"][1:]  # after the union tag
        if not loc:
            if not drop_points:
                continue  # a check across the device: may pass once its faulty keys are gone
            return None, points
        if loc[0] == "points" and len(loc) >= 2 and isinstance(loc[1], int) and loc[1] < len(raw_points):
            pt = raw_points[loc[1]]
            if drop_points or len(loc) < 3 or not isinstance(pt, dict) or loc[2] in ("name", "address", "node_id"):
                bad_points.add(loc[1])
            else:
                pt.pop(loc[2], None)
        elif drop_points or loc[0] in ("type", "name") or not isinstance(loc[0], str):
            return None, points
        else:
            dev.pop(loc[0], None)
    kept = [i for i in range(len(raw_points)) if i not in bad_points]
    if "points" in dev:
        dev["points"] = [raw_points[i] for i in kept]
    return dev, [points[i] for i in kept]


def _relocated(issues: list[ConfigIssue], index: dict[int, tuple[int, list[int]]]) -> list[ConfigIssue]:
    """Issues of a salvaged config, located by the original file's device and point indices."""
    out = []
    for issue in issues:
        m = _LOC_INDEX.match(issue.location)
        if m and int(m.group(1)) in index:
            d, points = index[int(m.group(1))]
            head = f"devices[{d}]"
            if m.group(2) is not None and int(m.group(2)) < len(points):
                head += f".points[{points[int(m.group(2))]}]"
            issue = ConfigIssue(head + issue.location[m.end():], issue.message)
        out.append(issue)
    return out


def _all_issues(err: ValidationError, data: dict[str, Any]) -> list[ConfigIssue]:
    issues = _issues(err)
    extra, cfg, index = _salvaged(data)
    if cfg is not None:
        extra += _relocated(_semantic_issues(cfg), index)
    seen = {(i.location, i.message) for i in issues}
    for issue in extra:
        if (issue.location, issue.message) not in seen:
            seen.add((issue.location, issue.message))
            issues.append(issue)
    return issues


def parse(data: dict[str, Any], source: str = "", progress: StartupProgress | None = None) -> Config:
    return _parse([data], source, progress)


def _parse(box: list[dict[str, Any]], source: str, progress: StartupProgress | None) -> Config:
    """``box``: the parsed TOML, handed over: once it is validated and no longer needed for error
    locations, it is let go (where the caller holds no other reference), before the point table is
    built.  Its memory (about 0.6 KB per point of small dicts and strings) is then reused for the
    table instead of the table going to fresh memory and the holes staying behind (#17)."""
    phase = progress.phase if progress is not None else _no_phase
    data = box.pop()
    try:
        with phase("config validated"):
            cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_all_issues(err, data), source) from None
    del data
    if progress is not None:
        progress.points = sum(len(d.points) for d in cfg.devices)
    with phase("points checked (codes, tags, lines, policies)"):
        issues = _semantic_issues(cfg)
    if issues:
        raise ConfigError(issues, source)
    return cfg


@contextlib.contextmanager
def _no_phase(name: str) -> Iterator[None]:
    yield


def load(path: str | os.PathLike[str], progress: StartupProgress | None = None) -> Config:
    """Read, validate and check a config file; ``progress`` logs each phase (large configs take a while)."""
    p = Path(path)
    phase = progress.phase if progress is not None else _no_phase
    with phase("file read and TOML parsed"):
        try:
            raw = p.read_bytes()
        except OSError as err:
            raise ConfigError([ConfigIssue("", f"cannot read config file: {err.strerror}")], str(p)) from None
        try:
            box = [tomlread.loads(raw.decode("utf-8"))]
        except UnicodeDecodeError as err:
            raise ConfigError([ConfigIssue("", f"not UTF-8 text ({err.reason} at byte {err.start})")], str(p)) from None
        except tomlread.TOMLDecodeError as err:
            raise ConfigError([ConfigIssue("", f"TOML syntax error: {err}")], str(p)) from None
    try:
        return _parse(box, str(p), progress)
    except ConfigError as err:
        from gateway.core.config_source import key_positions

        err.positions = key_positions(raw.decode("utf-8"))
        raise
