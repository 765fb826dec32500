"""One flat error hierarchy.

Library exceptions are translated at the boundary (``raise ConnectError(...) from err``):
nothing above a driver or sink sees pymodbus, asyncua, paho or HTTP-client types.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BodyTooLargeError",
    "BufferCorruptError",
    "BufferFullError",
    "BufferStorageError",
    "CodecError",
    "ConfigError",
    "ConfigIssue",
    "ConfigReadFailed",
    "ConnectError",
    "DataRejectedError",
    "DeviceError",
    "GatewayError",
    "IdentifierError",
    "PartialWriteError",
    "ReadError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryUnavailable",
    "RejectedError",
    "RetryableError",
    "SinkError",
    "StoreUnavailableError",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    location: str  # e.g. "devices[0].points[3].address"
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(GatewayError):
    """A user mistake in configuration: printed as located lines, never as a traceback."""

    def __init__(self, issues: list[ConfigIssue], source: str = "") -> None:
        self.issues = issues
        self.source = source
        self.positions: dict[str, tuple[int, int]] = {}  # location -> (line, column) in the source file
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(str(i) for i in issues))


class ConfigReadFailed(GatewayError, RuntimeError):
    """The process reading the config gave no answer (crashed, killed, hung): not a config error,
    nothing about the file is known; ``edgegw run`` says so in one line and exits 1."""


class IdentifierError(GatewayError, ValueError):
    """A malformed industrial-internet identifier code."""


class DeviceError(GatewayError):
    """Base for field-device problems; ``device`` names the device in config."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"{device}: {message}")


class ConnectError(DeviceError):
    """The device cannot be reached (refused, timed out, link down)."""


class ReadError(DeviceError):
    """The device answered, but not with data (exception code, malformed frame, timeout mid-poll)."""

    def __init__(self, device: str, message: str, *, reason: str, disconnect: bool = False) -> None:
        super().__init__(device, message)
        self.reason = reason  # short machine-friendly reason copied into the points' quality
        self.disconnect = disconnect  # the connection is unusable and must be re-opened


class SinkError(GatewayError):
    """Base for errors of a sink (MQTT uplink, InfluxDB writer)."""


class RetryableError(SinkError):
    """Transient: keep the batch, back off, try again (network down, 5xx, timeout)."""


class RejectedError(SinkError):
    """The receiver refused the batch (PUBACK reason >= 0x80, HTTP 4xx): keep it and raise an alarm.

    ``code`` is the MQTT reason code when the broker gave one (the metrics count refusals by it)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class StoreUnavailableError(RetryableError):
    """The store cannot take writes now, whatever the data: network, 5xx, 401 / 403 (credentials), 404
    (database missing).  ``kind`` names the class for counters and logs."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class DataRejectedError(RejectedError):
    """The store refused rows of this body for what they hold (parse error, type conflict, retention):
    the body is split until the refused rows are found.  ``echoed`` are the lines the store quoted."""

    def __init__(self, message: str, echoed: tuple[bytes, ...] = ()) -> None:
        super().__init__(message)
        self.echoed = echoed


class BodyTooLargeError(RejectedError):
    """The body exceeds what the store accepts (413, or a reset while a large body was sent): split it."""


class PartialWriteError(SinkError):
    """Part of the batch was written; ``written`` points are done, the rest must be retried."""

    def __init__(self, message: str, written: int) -> None:
        super().__init__(message)
        self.written = written


class CodecError(GatewayError, ValueError):
    """A wire-format payload that cannot be decoded (garbage, truncated, unknown version)."""


class BufferFullError(GatewayError):
    """The buffer is at its size bound and the policy is ``block``."""


class BufferCorruptError(GatewayError):
    """The buffer file cannot be opened safely; the message tells the operator what to do."""


class BufferStorageError(GatewayError):
    """A disk error in the buffer (ENOSPC, EIO): fatal by design, systemd restarts the gateway."""


class RegistryError(GatewayError):
    """A resolution node refused a request (bad parameters, not found, not authorised)."""


class RegistryAuthError(RegistryError):
    """Login to a resolution node failed (wrong identity, password or key)."""


class RegistryUnavailable(RegistryError):
    """The resolution node is down, timed out, or answered something that is not its API (garbage)."""
