"""Listen addresses (``[http] listen``, ``--http``): parsed without the config models, so that
``edgegw run`` can check its command line before it starts its config reader (gateway.core.plain)."""

from __future__ import annotations

__all__ = ["is_loopback", "parse_listen"]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); port 0 takes any free port (tests)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9180, [::1]:9180)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9180")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port must be within 0..65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
