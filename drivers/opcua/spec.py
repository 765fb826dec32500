"""The OPC UA driver's registration (gateway/driver_registry.py lists it): subscriptions push their
samples, polling mode is read on the device's cadence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.opcua.config import DEPRECATED_POLICIES, Identity, Mode, OpcUaDevice, SecurityPolicy, TrustPolicy
from gateway.core.driver import DriverSpec, RunnerKind
from gateway.core.errors import ConfigIssue

if TYPE_CHECKING:
    from drivers.opcua.driver import OpcUaDriver

__all__ = ["SPEC", "security_warnings"]


def _make(dev: OpcUaDevice, first_index: int, shared: Any) -> OpcUaDriver:
    # imported only when an OPC UA device is configured: asyncua alone costs ~30 MB of RSS
    from drivers.opcua.driver import OpcUaDriver

    return OpcUaDriver(dev, first_index)


def _lean(dev: OpcUaDevice, shared: Any) -> tuple[OpcUaDevice, object]:
    from drivers.opcua.driver import lean_device

    return lean_device(dev)


def _make_lean(dev: OpcUaDevice, form: Any, first_index: int, shared: Any) -> OpcUaDriver:
    from drivers.opcua.driver import OpcUaDriver

    return OpcUaDriver(dev, first_index, form=form)


def _runner(dev: OpcUaDevice) -> RunnerKind:
    return RunnerKind.PUSHED if dev.mode is Mode.SUBSCRIPTION else RunnerKind.POLLED


def security_warnings(dev: OpcUaDevice, where: str) -> list[ConfigIssue]:
    """An unsigned or deprecated session, or a server certificate trusted on first use."""
    if dev.security_policy is SecurityPolicy.NONE:
        msg = ("'None': the OPC UA session is neither signed nor encrypted: the server is not "
               "authenticated and anyone on the network can read or forge its values")
        if dev.identity is Identity.USERNAME:
            msg += "; the user name and password may travel in clear"
        return [ConfigIssue(f"{where}.security_policy", msg + " (use Basic256Sha256 or an Aes policy)")]
    if dev.security_policy in DEPRECATED_POLICIES:
        return [ConfigIssue(
            f"{where}.security_policy",
            f"{dev.security_policy.value!r} is deprecated (SHA-1): use Basic256Sha256 or an Aes policy",
        )]
    if dev.trust is TrustPolicy.TRUST_ON_FIRST_USE:
        return [ConfigIssue(
            f"{where}.trust",
            "'trust_on_first_use': the first certificate the server presents is trusted unchecked, so an "
            "impostor present at the first connection is trusted from then on; once the server is known, "
            "set trust = 'trust_list'",
        )]
    return []


SPEC: DriverSpec[OpcUaDevice] = DriverSpec(
    name="opcua",
    models=(OpcUaDevice,),
    make=_make,
    lean=_lean,
    make_lean=_make_lean,
    runner=_runner,
    security_warnings=security_warnings,
)
