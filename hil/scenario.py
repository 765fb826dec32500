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


# the kinds whose target is one of several processes of the scenario, and the target's prefix
TARGET_PREFIX = {FaultKind.GATEWAY_KILL: "gateway", FaultKind.INGEST_KILL: "ingest", FaultKind.PLC_REBOOT: "plc",
                 FaultKind.PLC_SILENT: "plc", FaultKind.LINK_CUT: "gateway", FaultKind.NETEM: "gateway",
                 FaultKind.LINK_DOWN: "gateway"}
NETNS_KINDS = (FaultKind.NETEM, FaultKind.LINK_DOWN)


class PlcSection(StrictModel):
    count: int = Field(default=1, ge=1, le=50)
    seed: int = 1
    poll_interval_ms: int = Field(default=100, ge=10, le=60_000)
    tick_ms: int = Field(default=100, ge=10, le=60_000, description="the stub advances one tick per tick_ms")


class GatewaySection(StrictModel):
    count: int = Field(default=1, ge=1, le=10, description="PLCs are shared round-robin among the gateways")
    buffer: dict[str, Any] = Field(default_factory=dict, description="[buffer] keys of the gateway config")
    uplink: dict[str, Any] = Field(default_factory=dict, description="[uplink] keys (host, port set by the runner)")
    netns: bool = Field(default=False, description="each gateway and its PLCs in a network namespace of their own, "
                        "joined to the broker by a veth pair (root): for netem and link_down faults")

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

    @model_validator(mode="after")
    def _loop(self) -> Self:
        if (self.kind == FaultKind.NETEM) != (self.netem is not None):
            raise ValueError("netem (the tc netem arguments) goes with kind 'netem', and only with it")
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
        for f in self.faults:
            if f.kind in NETNS_KINDS and not self.gateway.netns:
                raise ValueError(f"fault {f.kind.value} needs [gateway] netns = true (and root)")
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
