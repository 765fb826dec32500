"""A HIL campaign scenario: the plant, the chain, a fault timeline and the pass rule (TOML, validated
like the gateway's own config: unknown keys are errors, every problem printed with its location).

::

    name = "broker killed and restarted"
    duration_s = 30

    [plcs]
    count = 2
    seed = 7            # PLC i serves a gas substation seeded seed + i
    poll_interval_ms = 100

    [[faults]]
    at_s = 8
    kind = "broker_kill"
    duration_s = 5

    [pass]
    max_lost = 0

See docs/hil.md.
"""

from __future__ import annotations

import enum
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, model_validator

from gateway.config import _issues
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.schema import StrictModel
from hil.netns import NETEM_TOKEN

__all__ = ["FaultKind", "Scenario", "load_scenario", "parse_scenario"]


class FaultKind(enum.StrEnum):
    BROKER_KILL = "broker_kill"  # mosquitto SIGKILL, restarted after duration_s
    BROKER_RESTART = "broker_restart"  # mosquitto SIGTERM (saves its persistence), restarted after duration_s
    GATEWAY_KILL = "gateway_kill"  # edgegw run SIGKILL, restarted after duration_s
    INGEST_KILL = "ingest_kill"  # edgegw ingest SIGKILL, restarted after duration_s
    STORE_DOWN = "store_down"  # InfluxDB / VictoriaMetrics stopped for duration_s
    PLC_REBOOT = "plc_reboot"  # the PLC process stopped for duration_s, then starts again at tick 0
    PLC_SILENT = "plc_silent"  # the PLC stops answering (requests time out) for duration_s, connection kept
    LINK_CUT = "link_cut"  # gateway <-> broker through a loopback proxy: blackholed for duration_s
    NETEM = "netem"  # [gateway] netns: tc netem (loss, delay, reorder, duplicate) on the gateway's veth
    LINK_DOWN = "link_down"  # [gateway] netns: the gateway's veth down (carrier lost)
    PLC_SLOW = "plc_slow"  # Modbus TCP: every answer delay_ms late (polls miss their instants)
    PLC_TIMEOUTS = "plc_timeouts"  # Modbus TCP: every drop_every-th request never answered
    PLC_EXCEPTIONS = "plc_exceptions"  # Modbus TCP: every request answered with exception exception_code
    CLOCK_STEP = "clock_step"  # the gateway's wall clock steps by step_s (libfaketime), back after duration_s


# the kinds whose target is one of several processes of the scenario, and the target's prefix
TARGET_PREFIX = {FaultKind.GATEWAY_KILL: "gateway", FaultKind.INGEST_KILL: "ingest", FaultKind.PLC_REBOOT: "plc",
                 FaultKind.PLC_SILENT: "plc", FaultKind.LINK_CUT: "gateway", FaultKind.NETEM: "gateway",
                 FaultKind.LINK_DOWN: "gateway", FaultKind.PLC_SLOW: "plc", FaultKind.PLC_TIMEOUTS: "plc",
                 FaultKind.PLC_EXCEPTIONS: "plc", FaultKind.CLOCK_STEP: "gateway"}
NETNS_KINDS = (FaultKind.NETEM, FaultKind.LINK_DOWN)
FRONT_KINDS = (FaultKind.PLC_SLOW, FaultKind.PLC_TIMEOUTS, FaultKind.PLC_EXCEPTIONS)  # the PLC's TCP front end
# the parameter each kind needs, and only it
PARAMS = {FaultKind.NETEM: "netem", FaultKind.PLC_SLOW: "delay_ms", FaultKind.PLC_TIMEOUTS: "drop_every",
          FaultKind.PLC_EXCEPTIONS: "exception_code", FaultKind.CLOCK_STEP: "step_s"}


class PlcSection(StrictModel):
    count: int = Field(default=1, ge=1, le=50)
    seed: int = 1
    poll_interval_ms: int = Field(default=100, ge=10, le=60_000)
    tick_ms: int = Field(default=100, ge=10, le=60_000, description="the stub advances one tick per tick_ms")
    protocol: Literal["modbus_tcp", "modbus_rtu", "opcua"] = Field(
        default="modbus_tcp", description="modbus_rtu: over a socat pty pair per PLC; opcua: asyncua, polled")


class GatewaySection(StrictModel):
    count: int = Field(default=1, ge=1, le=10, description="PLCs are shared round-robin among the gateways")
    buffer: dict[str, Any] = Field(default_factory=dict, description="[buffer] keys of the gateway config")
    uplink: dict[str, Any] = Field(default_factory=dict, description="[uplink] keys (host, port set by the runner)")
    netns: bool = Field(default=False, description="each gateway and its PLCs in a network namespace of their own, "
                        "joined to the broker by a veth pair (root): for netem and link_down faults")
    buffer_tmpfs_kb: int | None = Field(default=None, ge=256, le=1_048_576,
                                        description="each gateway's buffer on a tmpfs of this size (root): disk full")

    @model_validator(mode="after")
    def _runner_keys(self) -> Self:
        for section, keys, given in (("buffer", ("path",), self.buffer),
                                     ("uplink", ("host", "port", "servers", "client_id"), self.uplink)):
            taken = sorted(set(given) & set(keys))
            if taken:
                raise ValueError(f"{section}: {', '.join(taken)} set by the runner (its own files and ports)")
        return self


class IngestSection(StrictModel):
    count: int = Field(default=1, ge=1, le=10, description="processes sharing one subscription")


class StoreSection(StrictModel):
    kind: Literal["influxdb1", "victoriametrics"] = Field(
        default="influxdb1", description="victoriametrics: /api/v2/write, deduplicated per millisecond as in deploy/")



class Fault(StrictModel):
    at_s: float = Field(ge=0)
    kind: FaultKind
    duration_s: float = Field(default=5.0, ge=0, description="how long the fault lasts (down time)")
    target: str | None = Field(default=None, description="e.g. gateway-0, ingest-1, plc-2; default: the first")
    repeat: int = Field(default=1, ge=1, le=1000, description="play the fault this many times ...")
    every_s: float | None = Field(default=None, gt=0, description="... this far apart (start to start)")
    netem: str | None = Field(default=None, description='netem: tc netem arguments, e.g. "delay 50ms 10ms loss 20%"')
    delay_ms: int | None = Field(default=None, ge=1, le=60_000, description="plc_slow: each answer this late")
    drop_every: int | None = Field(default=None, ge=2, le=1000,
                                   description="plc_timeouts: every N-th request unanswered")
    exception_code: int | None = Field(default=None, ge=1, le=255,
                                       description="plc_exceptions: 4 server device failure, 6 server busy, ...")
    step_s: float | None = Field(default=None, description="clock_step: signed step of the gateway's wall clock")

    @model_validator(mode="after")
    def _loop(self) -> Self:
        for kind, key in PARAMS.items():
            if (self.kind == kind) != (getattr(self, key) is not None):
                raise ValueError(f"{key} goes with kind '{kind.value}', and only with it (it needs it)")
        if self.step_s == 0:
            raise ValueError("step_s: a step of 0 s is no step")
        if self.netem is not None and not all(NETEM_TOKEN.match(t) for t in self.netem.split() or ["!"]):
            raise ValueError(f"netem {self.netem!r}: words of letters, digits, '.' and '%' only")
        if self.repeat > 1 and self.every_s is None:
            raise ValueError("repeat > 1 needs every_s")
        if self.every_s is not None and self.every_s <= self.duration_s:
            raise ValueError("every_s must be longer than duration_s")
        prefix = TARGET_PREFIX.get(self.kind)
        if self.target is not None and (prefix is None or not self.target.startswith(f"{prefix}-")):
            want = f"'{prefix}-N'" if prefix else "no target (there is one)"
            raise ValueError(f"target {self.target!r} does not fit {self.kind.value}: {want}")
        return self

    def windows(self) -> list[tuple[float, float]]:
        """(start, end) of each play, seconds from the start of the run."""
        step = self.every_s or 0.0
        return [(self.at_s + i * step, self.at_s + i * step + self.duration_s) for i in range(self.repeat)]


class PassRule(StrictModel):
    """The scenario passes when every bound holds (None: not checked)."""

    max_lost: int | None = Field(default=0, ge=0, description="accepted points neither stored nor counted as dropped")
    max_duplicates: int | None = Field(default=0, ge=0, description="rows disagreeing with the oracle, or extra")
    max_dropped: int | None = Field(default=0, ge=0, description="points the buffer dropped (counted)")
    max_recovery_s: float | None = Field(default=None, gt=0, description="per fault, end -> stored rate back")
    min_delivered_ratio: float = Field(default=0.5, ge=0, le=1, description="delivered / produced, sanity floor")
    min_dropped: int | None = Field(default=None, ge=0, description="points the buffer dropped, at least (it filled)")
    max_unaccounted: int | None = Field(
        default=None, ge=0, description="points the PLCs answered that are neither accepted nor counted as dropped")
    min_missed_polls: int | None = Field(default=None, ge=0,
                                         description="poll instants the gateways reported missed (the fault was felt)")


class Scenario(StrictModel):
    name: str
    description: str = ""
    duration_s: float = Field(gt=0, le=86_400)
    drain_timeout_s: float = Field(default=45.0, gt=0)
    plcs: PlcSection = Field(default_factory=PlcSection)
    gateway: GatewaySection = Field(default_factory=GatewaySection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    store: StoreSection = Field(default_factory=StoreSection)
    faults: list[Fault] = Field(default_factory=list)
    pass_rule: PassRule = Field(default_factory=PassRule, alias="pass")

    @model_validator(mode="after")
    def _targets(self) -> Self:
        counts = {"gateway": self.gateway.count, "ingest": self.ingest.count, "plc": self.plcs.count}
        if self.plcs.protocol != "modbus_tcp" and self.gateway.netns:
            raise ValueError("[gateway] netns takes Modbus TCP PLCs (the namespace's own loopback)")
        for f in self.faults:
            if f.kind in NETNS_KINDS and not self.gateway.netns:
                raise ValueError(f"fault {f.kind.value} needs [gateway] netns = true (and root)")
            if f.kind in FRONT_KINDS and self.plcs.protocol != "modbus_tcp":
                raise ValueError(f"fault {f.kind.value} is played by the Modbus TCP front end: [plcs] protocol "
                                 f"'modbus_tcp'")
            if f.kind in (FaultKind.PLC_SILENT,) and self.plcs.protocol == "opcua":
                raise ValueError("plc_silent is a Modbus fault: use plc_reboot with OPC UA PLCs")
            if f.kind == FaultKind.LINK_CUT and self.gateway.netns:
                raise ValueError("link_cut goes through the loopback proxy: with [gateway] netns use link_down")
            if f.target is not None:
                prefix, _, n = f.target.partition("-")
                if not n.isdigit() or int(n) >= counts[prefix]:
                    raise ValueError(f"fault target {f.target!r}: the scenario has {counts[prefix]} {prefix}(s), "
                                     f"numbered from 0")
        return self

    def with_duration(self, duration_s: float) -> Scenario:
        """A soak: the same timeline stretched (fault times scaled) to ``duration_s``."""
        k = duration_s / self.duration_s
        data = self.model_dump(by_alias=True, mode="json")
        data["duration_s"] = duration_s
        for f in data["faults"]:
            f["at_s"] *= k
            if f["every_s"]:
                f["every_s"] *= k
        return parse_scenario(data, f"{self.name} stretched to {duration_s:g} s")


def parse_scenario(data: dict[str, Any], source: str = "") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_issues(err), source) from None


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError([ConfigIssue("", f"cannot read scenario: {err.strerror}")], str(p)) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError([ConfigIssue("", f"not a TOML file: {err}")], str(p)) from None
    return parse_scenario(data, str(p))
