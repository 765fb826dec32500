"""The stages in their order, built once from the point table.

normalise (fault limits, scaling, units, NaN / Inf / range) -> clock checks -> plausibility
(spike, stuck) -> alarms (side output) -> forwarding policy (grades kept on site) -> deadband.
Alarms see every sample, before the deadband thins the stream; stages with nothing configured
are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.core.clock import DEFAULT_MIN_VALID_NS
from gateway.core.point import SampleBatch
from pipelines.alarms import AlarmEvent, AlarmStage
from pipelines.deadband import Deadband
from pipelines.normalise import Normalise
from pipelines.spec import PointSpec
from pipelines.validate import ClockCheck, Plausibility

__all__ = ["Pipeline", "PipelineCounters"]


@dataclass(slots=True)
class PipelineCounters:
    samples_in: int = 0
    samples_out: int = 0
    kept_on_site: int = 0
    alarm_events: int = 0


class Pipeline:
    def __init__(
        self,
        specs: Sequence[PointSpec],
        *,
        future_tolerance_ns: int = 2_000_000_000,
        clock_jump_ns: int = 2_000_000_000,
        min_valid_ns: int = DEFAULT_MIN_VALID_NS,
    ) -> None:
        """``min_valid_ns``: samples stamped earlier (and all samples while the wall clock reads
        earlier) are ``clock_unsynced``; 0 switches the check off (tests with small timestamps)."""
        self.normalise = Normalise(specs)
        self.clock = ClockCheck(future_tolerance_ns, clock_jump_ns, min_valid_ns)
        self.plausibility = Plausibility(specs)
        self.alarms = AlarmStage(specs)
        self.deadband = Deadband(specs)
        self._keep = frozenset(i for i, s in enumerate(specs) if not s.forward)
        self.counters = PipelineCounters()
        # sees every sample after the checks, before the forwarding policy and the deadband (the
        # status page's last values: kept-on-site points, and unchanged values with their true age)
        self.tap: Callable[[SampleBatch], None] | None = None

    def __call__(self, batch: SampleBatch, wall_ns: int, mono_ns: int) -> tuple[SampleBatch, list[AlarmEvent]]:
        """The batch to buffer and the alarm events it raised (events of kept-on-site points included:
        the caller decides what leaves the site)."""
        c = self.counters
        c.samples_in += len(batch)
        batch, earliest, latest = self.normalise.run(batch)
        jumps = self.clock.jumps
        batch = self.clock(batch, wall_ns, mono_ns, earliest, latest)
        if self.clock.jumps != jumps:
            self.plausibility.clock_stepped()
        batch = self.plausibility(batch)
        if self.tap is not None:
            self.tap(batch)
        events = self.alarms(batch)
        if self._keep:
            n = len(batch)
            keep = self._keep
            batch = [s for s in batch if s[0] not in keep]
            c.kept_on_site += n - len(batch)
        batch = self.deadband(batch)
        c.samples_out += len(batch)
        c.alarm_events += len(events)
        return batch, events

    def carry(self, old: Pipeline, indices: Iterable[int]) -> None:
        """A config reload built this pipeline from the new point table: take over the old one's state for the
        points at ``indices`` (devices whose config did not change keep their indices), its clock check,
        counters and tap, so that a reload neither re-sends deadbanded values nor re-raises alarms."""
        keep = list(indices)
        self.deadband.carry(old.deadband, keep)
        self.plausibility.carry(old.plausibility, keep)
        self.alarms.carry(old.alarms, keep)
        self.clock = old.clock
        self.counters = old.counters
        self.tap = old.tap

    def is_forwarded(self, index: int) -> bool:
        return index not in self._keep
