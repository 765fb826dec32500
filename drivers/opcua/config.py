"""Config models of the OPC UA driver (pure pydantic, no I/O).

Names follow OPC UA Part 4 (``sampling_interval``, ``queue_size``, ``discard_oldest``, ``trigger``,
``deadband_type``) so an engineer can match them against the server's documentation.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Literal, Self

from gateway.core.models import Field, model_validator
from gateway.core.schema import DeviceBase, PointBase
from gateway.core.values import StringEncoding

__all__ = [
    "DEPRECATED_POLICIES",
    "ArrayMode",
    "DeadbandType",
    "Identity",
    "Mode",
    "OpcUaDevice",
    "OpcUaPoint",
    "SecurityMode",
    "SecurityPolicy",
    "TimestampSource",
    "Trigger",
    "TrustPolicy",
]


class Mode(enum.StrEnum):
    SUBSCRIPTION = "subscription"  # the server pushes changes (monitored items)
    POLLING = "polling"  # batched Read calls every poll_interval_ms


class SecurityPolicy(enum.StrEnum):
    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"
    AES128_SHA256_RSAOAEP = "Aes128_Sha256_RsaOaep"
    AES256_SHA256_RSAPSS = "Aes256_Sha256_RsaPss"
    BASIC128RSA15 = "Basic128Rsa15"  # deprecated by OPC UA 1.04: SHA-1, PKCS#1 v1.5
    BASIC256 = "Basic256"  # deprecated by OPC UA 1.04: SHA-1


DEPRECATED_POLICIES = frozenset({SecurityPolicy.BASIC128RSA15, SecurityPolicy.BASIC256})


class SecurityMode(enum.StrEnum):
    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class Identity(enum.StrEnum):
    ANONYMOUS = "anonymous"
    USERNAME = "username"
    CERTIFICATE = "certificate"  # X.509 user identity token


class TrustPolicy(enum.StrEnum):
    """How an unknown server certificate is treated: refused unless the operator chose otherwise."""

    TRUST_LIST = "trust_list"  # only certificates in <pki_dir>/trusted
    TRUST_ON_FIRST_USE = "trust_on_first_use"  # first certificate seen is stored in the trust list


class Trigger(enum.StrEnum):
    """DataChangeTrigger (Part 4 §7.22.2)."""

    STATUS = "status"
    STATUS_VALUE = "status_value"
    STATUS_VALUE_TIMESTAMP = "status_value_timestamp"


class DeadbandType(enum.StrEnum):
    NONE = "none"
    ABSOLUTE = "absolute"
    PERCENT = "percent"  # of the EURange of an AnalogItem (server-side)


class TimestampSource(enum.StrEnum):
    SOURCE = "source"  # the device's time (SourceTimestamp); gateway receive time if the server sent none
    SERVER = "server"  # the server's time (ServerTimestamp)
    GATEWAY = "gateway"  # the gateway's receive time


class ArrayMode(enum.StrEnum):
    ELEMENT = "element"  # one point is one element: array_index picks it
    JSON = "json"  # the whole array is one value, encoded as a JSON string


class OpcUaPoint(PointBase):
    node_id: str = Field(description="e.g. 'ns=2;s=Gasifier.T101' or 'ns=3;i=1001'")
    sampling_interval_ms: float | None = Field(default=None, ge=0, description="default: the device's")
    queue_size: int | None = Field(default=None, ge=0, le=65_535)
    discard_oldest: bool | None = None
    trigger: Trigger | None = None
    deadband_type: DeadbandType | None = None
    deadband_value: float | None = Field(default=None, ge=0)
    timestamp: TimestampSource | None = None
    array_index: int | None = Field(default=None, ge=0, description="take one element of an array value")
    array_mode: ArrayMode = ArrayMode.ELEMENT
    string_encoding: StringEncoding | None = Field(
        default=None, description="overrides the device's string_encoding for this node"
    )

    @model_validator(mode="after")
    def _node_id(self) -> Self:
        if not self.node_id.strip():
            raise ValueError("node_id must not be empty")
        if not _looks_like_node_id(self.node_id):
            raise ValueError(f"node_id {self.node_id!r} is not 'ns=<n>;<i|s|g|b>=<id>' or '<i|s|g|b>=<id>'")
        if self.deadband_type is DeadbandType.PERCENT and self.deadband_value is not None and self.deadband_value > 100:
            raise ValueError("a percent deadband must be between 0 and 100")
        return self


def _looks_like_node_id(text: str) -> bool:
    parts = text.split(";", 1)
    head = parts[0]
    if len(parts) == 2:
        if not head.startswith(("ns=", "nsu=")):
            return False
        if head.startswith("ns=") and not head[3:].isdigit():
            return False
        head = parts[1]
    kind, sep, ident = head.partition("=")
    if not sep or kind not in ("i", "s", "g", "b") or ident == "":
        return False
    return not (kind == "i" and not ident.isdigit())


class OpcUaDevice(DeviceBase):
    type: Literal["opcua"]
    endpoint: str = Field(description="opc.tcp://host:port[/path]")
    mode: Mode = Mode.SUBSCRIPTION

    # subscription
    publishing_interval_ms: float = Field(default=1000, gt=0, le=3_600_000)
    sampling_interval_ms: float = Field(default=1000, ge=0)
    queue_size: int = Field(default=1, ge=0, le=65_535)
    discard_oldest: bool = True
    trigger: Trigger = Trigger.STATUS_VALUE
    deadband_type: DeadbandType = DeadbandType.NONE
    deadband_value: float = Field(default=0.0, ge=0)
    keepalive_count: int = Field(default=10, ge=1, le=10_000)
    lifetime_count: int = Field(default=60, ge=3, le=100_000)
    max_notifications_per_publish: int = Field(
        default=0, ge=0, le=1_000_000, description="cap per PublishResponse; 0 = as many as the server allows"
    )
    publish_requests: int = Field(
        default=3, ge=1, le=20, description="PublishRequests kept in flight, so a server never waits for the next one"
    )
    max_items_per_request: int = Field(
        default=1000, ge=1, le=100_000, description="cap when the server does not advertise its own limits"
    )
    timestamp: TimestampSource = TimestampSource.SOURCE
    string_encoding: StringEncoding = Field(
        default=StringEncoding.UTF_8,
        description="how the server's String bytes are read: utf-8 (the OPC UA rule), gbk, gb18030, latin-1",
    )

    # security
    security_policy: SecurityPolicy = SecurityPolicy.BASIC256SHA256
    security_mode: SecurityMode = SecurityMode.SIGN_AND_ENCRYPT
    allow_no_security: bool = Field(default=False, description="security_policy = 'None' must be chosen explicitly")
    allow_deprecated_policies: bool = False
    pki_dir: str = Field(
        default="pki",
        description="own/cert.der, own/private/key.pem (edgegw certs create), trusted/*.der, rejected/",
    )
    trust: TrustPolicy = TrustPolicy.TRUST_LIST
    identity: Identity = Identity.ANONYMOUS
    username: str | None = None
    password_env: str | None = Field(default=None, description="environment variable holding the password")
    password_file: str | None = None
    user_certificate: str | None = Field(default=None, description="DER or PEM certificate of the X.509 identity")
    user_private_key: str | None = None

    points: list[OpcUaPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if not self.endpoint.startswith("opc.tcp://"):
            raise ValueError(f"endpoint {self.endpoint!r} must start with opc.tcp://")
        pol, mode = self.security_policy, self.security_mode
        if pol is SecurityPolicy.NONE:
            if mode is not SecurityMode.NONE:
                raise ValueError("security_policy 'None' needs security_mode 'None'")
            if not self.allow_no_security:
                raise ValueError("security_policy 'None' sends everything in clear: set allow_no_security = true")
        elif mode is SecurityMode.NONE:
            raise ValueError(f"security_policy {pol.value!r} needs security_mode 'Sign' or 'SignAndEncrypt'")
        if pol in DEPRECATED_POLICIES and not self.allow_deprecated_policies:
            raise ValueError(
                f"security_policy {pol.value!r} is deprecated (SHA-1); use Basic256Sha256 or an Aes policy, "
                "or set allow_deprecated_policies = true"
            )
        if self.identity is Identity.USERNAME:
            if not self.username:
                raise ValueError("identity 'username' needs username")
            if not (self.password_env or self.password_file):
                raise ValueError("identity 'username' needs password_env or password_file")
        if self.identity is Identity.CERTIFICATE and not (self.user_certificate and self.user_private_key):
            raise ValueError("identity 'certificate' needs user_certificate and user_private_key")
        seen: set[str] = set()
        for p in self.points:
            if p.name in seen:
                raise ValueError(f"two points are named {p.name!r}")
            seen.add(p.name)
        return self

    def password(self) -> str | None:
        """Read at connect time, so a rotated secret is picked up on the next reconnect; never logged."""
        if self.password_env:
            return os.environ.get(self.password_env)
        if self.password_file:
            return Path(self.password_file).read_text(encoding="utf-8").rstrip("\n")
        return None
