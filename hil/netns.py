"""A Linux network namespace of a HIL campaign's own, joined to the host by a veth pair, for link
faults that a TCP proxy cannot make: ``tc netem`` (loss, delay, reorder, duplicate) and link down.

Only the namespace and its veth pair are ever touched: names carry the campaign's PID, addresses
are a /30 of 10.213.0.0/16 not in use on the host, and :meth:`Netns.delete` removes both (also
after an interrupted run).  Needs root (CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["NETEM_TOKEN", "HilUnavailable", "Netns", "NetnsUnavailable"]

NETEM_TOKEN = re.compile(r"^[A-Za-z0-9.%]+$")


class HilUnavailable(RuntimeError):
    """The scenario needs something this machine lacks (root, iproute2, sch_netem, libfaketime): one line."""


class NetnsUnavailable(HilUnavailable):
    """Not root, or no iproute2: the scenario's namespace faults cannot run here."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def _used_subnets() -> set[int]:
    out = _run("ip", "-4", "-o", "addr", check=False).stdout
    return {int(m.group(1)) for m in re.finditer(r"inet 10\.213\.(\d+)\.", out)}


@dataclass
class Netns:
    index: int  # the gateway's number: one namespace per gateway

    def __post_init__(self) -> None:
        tag = f"{os.getpid() % 100000}g{self.index}"
        self.name = f"edgegw-hil-{tag}"
        self.host_if = f"ehh{tag}"[:15]
        self.ns_if = f"ehn{tag}"[:15]
        self.host_ip = ""
        self.ns_ip = ""
        self.created = False

    def create(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
            raise NetnsUnavailable("network namespaces need root and iproute2 (ip, tc)")
        used = _used_subnets()
        third = next(n for n in range(1 + (os.getpid() + self.index) % 200, 255) if n not in used)
        self.host_ip, self.ns_ip = f"10.213.{third}.1", f"10.213.{third}.2"
        _run("ip", "netns", "add", self.name)
        self.created = True
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _run("ip", "link", "set", self.ns_if, "netns", self.name)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        for args in (("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if), ("link", "set", self.ns_if, "up"),
                     ("link", "set", "lo", "up")):
            _run("ip", "-n", self.name, *args)

    def check_netem(self) -> None:
        """Raise NetnsUnavailable unless this kernel has the netem qdisc (module sch_netem)."""
        probe = _run("ip", "netns", "exec", self.name, "tc", "qdisc", "add", "dev", self.ns_if, "root", "netem",
                     "delay", "0ms", check=False)
        if probe.returncode != 0:
            raise NetnsUnavailable(f"tc netem is not available on this kernel (sch_netem): {probe.stderr.strip()}")
        self.clear_netem()

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def netem(self, spec: str) -> None:
        """Both directions: the namespace side (gateway -> broker) and the host side (broker -> gateway)."""
        tokens = spec.split()
        if not tokens or not all(NETEM_TOKEN.match(t) for t in tokens):
            raise ValueError(f"netem {spec!r}: words of letters, digits, '.' and '%' only")
        _run("ip", "netns", "exec", self.name, "tc", "qdisc", "replace", "dev", self.ns_if, "root", "netem", *tokens)
        _run("tc", "qdisc", "replace", "dev", self.host_if, "root", "netem", *tokens)

    def clear_netem(self) -> None:
        _run("ip", "netns", "exec", self.name, "tc", "qdisc", "del", "dev", self.ns_if, "root", check=False)
        _run("tc", "qdisc", "del", "dev", self.host_if, "root", check=False)

    def link(self, up: bool) -> None:
        _run("ip", "link", "set", self.host_if, "up" if up else "down")

    def delete(self) -> None:
        if not self.created:
            return
        _run("ip", "link", "del", self.host_if, check=False)
        _run("ip", "netns", "del", self.name, check=False)
        self.created = False
