"""Overload in the open: the one place that turns counters into WARNING lines.

Pushed past what it can carry, the gateway degrades correctly (drops are counted, polls are
skipped, the backlog waits on disk), but a counter nobody reads is silence.  :class:`Watch` reads
the buffer's persistent counters, its fill and the age of its oldest batch, the devices' missed
poll deadlines and how late the event loop woke up, about once a second (the app's upkeep task
calls :meth:`Watch.check`), and says what it sees:

- a **condition** (drops by the full-buffer policy, by age, quarantine; uplink lag above a bound;
  more than a share of the devices missing poll deadlines; the event loop blocked longer than a
  bound) is logged at WARNING when it starts, once a minute while it lasts (counts and rate since
  the previous line), and when it stops (what it came to in all), also when the gateway stops
  while it lasts;
- the buffer's fill is logged at WARNING when it rises past 75 % and past 90 %, and at INFO once
  it is back below (with a margin, so a fill hovering at a level does not chatter);
- the **disk** is logged at WARNING when it, not ``max_bytes``, will bound the buffer: the
  filesystem's free space minus ``disk_reserve_bytes`` is less than the room left to ``max_bytes``,
  so drops start before the fill reaches 100 % (and at INFO when that is no longer so); a drop line
  names which of the two bounds made the room (``bound max_bytes`` / ``bound the disk``);
- the **alarm buffer** (when alarms are configured) is watched for drops the same way as the
  telemetry buffer, with conditions named ``alarm_buffer_*``.

Each drop line carries, in structured fields, ``points`` / ``batches`` (since the previous line
of the same condition) and ``total_points`` / ``total_batches`` (since it started): the lines of
one condition add up exactly to the change of the buffer's counters.  :meth:`Watch.facts` gives
the conditions in force for the retained state message and for metrics; :attr:`Watch.version`
changes whenever they start, stop or are reported again.

Time is the clock's monotonic time (:mod:`gateway.core.clock`), so tests drive a controlled clock.
SQL paths never log overload themselves: they count, this module speaks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.buffer import SqliteBuffer
from gateway.core.clock import SYSTEM_CLOCK, Clock

__all__ = ["DROP_KINDS", "FILL_LEVELS", "Watch"]

log = logging.getLogger("edgegw.watch")

S = 1_000_000_000
FILL_LEVELS = (0.75, 0.90)
_FILL_MARGIN = 0.05  # back below a level only under level - margin
_POLL_WINDOW_NS = 10 * S  # missed deadlines are judged per 10 s window

# counter prefix -> (condition name, what the line says)
DROP_KINDS: dict[str, tuple[str, str]] = {
    "dropped_oldest": ("buffer_drop_oldest", "Buffer full: {verb} the oldest batches to make room"),
    "dropped_newest": ("buffer_drop_newest", "Buffer full: {verb} new batches away"),
    "expired": ("buffer_expired", "Buffer: {verb} batches older than max_age_s"),
    "quarantined": ("buffer_quarantined", "Buffer: {verb} damaged batches into quarantine"),
}
_VERBS = {
    "dropped_oldest": ("started dropping", "dropped", "stopped dropping"),
    "dropped_newest": ("started turning", "turned", "stopped turning"),
    "expired": ("started expiring", "expired", "stopped expiring"),
    "quarantined": ("started moving", "moved", "stopped moving"),
}


@dataclass(slots=True)
class _Episode:
    """A condition that starts, lasts and stops, reported at each of the three."""

    started: int | None = None  # monotonic ns, None while the condition is not in force
    last_seen: int = 0
    last_report: int = 0
    # what accumulated since the previous line, and since the start
    since_report: dict[str, float] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)

    def add(self, **amounts: float) -> None:
        for k, v in amounts.items():
            self.since_report[k] = self.since_report.get(k, 0) + v
            self.total[k] = self.total.get(k, 0) + v

    def step(self, now: int, active: bool, every_ns: int, quiet_ns: int) -> str | None:
        """``start`` / ``repeat`` / ``stop`` when a line is due, else None."""
        if active:
            self.last_seen = now
            if self.started is None:
                self.started = self.last_report = now
                return "start"
        if self.started is None:
            return None
        if not active and now - self.last_seen >= quiet_ns:
            return "stop"
        if now - self.last_report >= every_ns:
            return "repeat"
        return None

    def reported(self, now: int) -> dict[str, float]:
        """What the line just logged covered; the next line counts from here."""
        out, self.since_report = self.since_report, {}
        self.last_report = now
        return out

    def reset(self) -> None:
        self.started = None
        self.since_report, self.total = {}, {}


def _n(x: float) -> str:
    return f"{int(x):,}"


def _dur(ns: int) -> str:
    s = ns / S
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class Watch:
    """Reads counters and gauges periodically and logs overload conditions (see the module doc).

    ``deadline_misses`` returns, per polled device, its running count of missed poll deadlines.
    Bounds: ``lag_warn_s`` (age of the oldest undelivered batch), ``poll_miss_share`` (share of the
    devices that missed a deadline within a 10 s window), ``loop_block_s`` (how late the event loop
    may wake up).  ``every_s``: the period of the lines while a condition lasts; ``quiet_s``: how long
    a condition must be absent before it counts as stopped.
    """

    def __init__(
        self,
        buffer: SqliteBuffer,
        *,
        alarm_buffer: SqliteBuffer | None = None,
        clock: Clock = SYSTEM_CLOCK,
        deadline_misses: Callable[[], Sequence[int]] | None = None,
        lag_warn_s: float = 60.0,
        poll_miss_share: float = 0.1,
        loop_block_s: float = 0.5,
        every_s: float = 60.0,
        quiet_s: float = 10.0,
    ) -> None:
        self.buffer = buffer
        self.clock = clock
        self.deadline_misses = deadline_misses
        self.lag_warn_ns = int(lag_warn_s * S)
        self.poll_miss_share = poll_miss_share
        self.loop_block_ns = int(loop_block_s * S)
        self.every_ns = int(every_s * S)
        self.quiet_ns = int(quiet_s * S)
        self.version = 0
        self.fill = 0.0
        self.fill_level = 0.0  # the highest level of FILL_LEVELS the fill is above (0: none)
        self.lag_ns: int | None = None
        self.disk_bound = False
        # (condition prefix, buffer, its counters at the previous check): the telemetry and alarm buffers
        self._drop_sources: list[tuple[str, SqliteBuffer, dict[str, int]]] = [("", buffer, buffer.counters())]
        if alarm_buffer is not None:
            self._drop_sources.append(("alarm_", alarm_buffer, alarm_buffer.counters()))
        self._episodes: dict[str, _Episode] = {
            label + name: _Episode() for label, _, _ in self._drop_sources for name, _ in DROP_KINDS.values()
        }
        for name in ("uplink_lag", "poll_behind", "loop_blocked"):
            self._episodes[name] = _Episode()
        now = clock.mono_ns()
        self._poll_window_start = now
        self._poll_base = list(deadline_misses()) if deadline_misses is not None else []
        self._poll_last: tuple[int, int, int] | None = None  # devices late, devices, deadlines missed
        self._loop_worst = 0
        self._loop_count = 0

    def restart_poll_window(self) -> None:
        """The devices changed (a config reload): count missed deadlines afresh from now."""
        self._poll_window_start = self.clock.mono_ns()
        self._poll_base = list(self.deadline_misses()) if self.deadline_misses is not None else []

    # -- inputs --------------------------------------------------------------------------------
    def loop_late(self, late_ns: int) -> None:
        """The event loop woke up ``late_ns`` after it was due (measured by the upkeep task)."""
        if late_ns > self.loop_block_ns:
            self._loop_count += 1
            self._loop_worst = max(self._loop_worst, late_ns)

    def check(self) -> None:
        """Read everything once and log what started, lasts (once a minute) or stopped."""
        now = self.clock.mono_ns()
        self._check_drops(now)
        self._check_fill()
        self._check_disk()
        self._check_lag(now)
        self._check_polls(now)
        self._check_loop(now)

    def close(self) -> None:
        """The gateway stops: every condition still in force gets its final line."""
        self._check_drops(self.clock.mono_ns(), final=True)
        now = self.clock.mono_ns()
        for name in ("uplink_lag", "poll_behind", "loop_blocked"):
            ep = self._episodes[name]
            if ep.started is not None:
                log.warning("At stop: %s had lasted %s.", name.replace("_", " "), _dur(now - ep.started),
                            extra={"condition": name, "phase": "stop"})
                ep.reset()

    def conditions(self) -> list[str]:
        """Every condition the watch can report (the keys of :meth:`facts` when in force)."""
        return list(self._episodes)

    def facts(self) -> dict[str, object]:
        """The conditions in force (empty when none), for the retained state message and metrics."""
        out: dict[str, object] = {}
        now = self.clock.mono_ns()
        for name, ep in self._episodes.items():
            if ep.started is not None:
                detail: dict[str, object] = {"since_s": round((now - ep.started) / S, 1)}
                detail.update({k: round(v, 3) if k == "worst_s" else int(v) for k, v in ep.total.items()})
                out[name] = detail
        if self.fill_level:
            out["buffer_fill_level_pct"] = int(self.fill_level * 100)
        if self.disk_bound:
            out["buffer_disk_bound"] = True
        if out:
            out["buffer_fill_pct"] = round(self.fill * 100, 1)
            if self.lag_ns is not None:
                out["oldest_age_s"] = round(self.lag_ns / S, 1)
        return out

    # -- drops ---------------------------------------------------------------------------------
    def _check_drops(self, now: int, final: bool = False) -> None:
        for i, (label, buf, before) in enumerate(self._drop_sources):
            counters = buf.counters()
            for prefix, (kind, text) in DROP_KINDS.items():
                ep = self._episodes[label + kind]
                points = counters[f"{prefix}_points"] - before[f"{prefix}_points"]
                batches = counters[f"{prefix}_batches"] - before[f"{prefix}_batches"]
                if batches or points:
                    ep.add(points=points, batches=batches)
                phase = ep.step(now, bool(batches or points), self.every_ns, self.quiet_ns)
                if phase is not None:
                    self._drop_line(buf, prefix, label + kind, text, ep, phase, now, label)
                if final and ep.started is not None:
                    self._drop_line(buf, prefix, label + kind, text, ep, "stop", now, label)
            self._drop_sources[i] = (label, buf, counters)

    def _drop_line(self, buf: SqliteBuffer, prefix: str, name: str, text: str, ep: _Episode, phase: str, now: int,
                   label: str) -> None:
        assert ep.started is not None
        since_ns = now - ep.last_report
        part = ep.reported(now)
        p, b = part.get("points", 0), part.get("batches", 0)
        tp, tb = ep.total.get("points", 0), ep.total.get("batches", 0)
        start, middle, stop = _VERBS[prefix]
        if prefix.startswith("dropped"):
            bound = "the disk" if buf.full_cause == "disk" else "max_bytes"
            policy = f"policy {buf.when_full}, bound {bound}"
        else:
            policy = "counters " + prefix + "_*"
        if label:  # the alarm buffer's lines: "Alarm buffer full: ..."
            text = "Alarm b" + text[1:]
        extra = {"condition": name, "phase": phase, "points": int(p), "batches": int(b),
                 "total_points": int(tp), "total_batches": int(tb)}
        if phase == "start":
            log.warning("%s (%s): %s points in %s batches so far.", text.format(verb=start), policy, _n(p), _n(b),
                        extra=extra)
        elif phase == "repeat":
            rate = p / (since_ns / S) if since_ns > 0 else 0.0
            log.warning(
                "%s: %s points (%s batches) in the last %s, %s points/s (%s); %s points since it started %s ago.",
                text.format(verb=middle), _n(p), _n(b), _dur(since_ns), _n(rate), policy, _n(tp),
                _dur(now - ep.started), extra=extra,
            )
        else:
            log.warning(
                "%s after %s: %s points (%s batches) in all, %s points (%s batches) since the previous line (%s).",
                text.format(verb=stop), _dur(now - ep.started), _n(tp), _n(tb), _n(p), _n(b), policy, extra=extra,
            )
            ep.reset()
        self.version += 1

    # -- fill ----------------------------------------------------------------------------------
    def _check_fill(self) -> None:
        buf = self.buffer
        self.fill = buf.pending_bytes / buf.max_bytes if buf.max_bytes else 0.0
        level = max((lv for lv in FILL_LEVELS if self.fill >= lv), default=0.0)
        if level > self.fill_level:
            log.warning(
                "Buffer %d %% full: %s of %s bytes, %s batches waiting (at 100 %% the policy %s applies).",
                int(level * 100), _n(buf.pending_bytes), _n(buf.max_bytes), _n(buf.pending_batches), buf.when_full,
                extra={"condition": "buffer_fill", "phase": "start", "level_pct": int(level * 100)},
            )
            self.fill_level = level
            self.version += 1
        elif self.fill_level and self.fill < self.fill_level - _FILL_MARGIN:
            below = max((lv for lv in FILL_LEVELS if self.fill >= lv - _FILL_MARGIN), default=0.0)
            log.info("Buffer back below %d %% full (%.1f %%).", int(self.fill_level * 100), self.fill * 100,
                     extra={"condition": "buffer_fill", "phase": "stop", "level_pct": int(below * 100)})
            self.fill_level = below
            self.version += 1

    # -- disk ----------------------------------------------------------------------------------
    def _check_disk(self) -> None:
        buf = self.buffer
        free = buf.disk_free_bytes()
        if free is None:
            return
        by_disk = free - buf.disk_reserve_bytes
        by_bound = buf.max_bytes - buf.pending_bytes
        if not self.disk_bound and by_disk < by_bound:
            log.warning(
                "Buffer bound by the disk, not by max_bytes: %s bytes free on the filesystem of %s, of which "
                "disk_reserve_bytes (%s) stay free, is less than the %s bytes left to max_bytes (%s); the policy %s "
                "applies when the disk is full, before the fill reaches 100 %%.",
                _n(free), buf.path.parent, _n(buf.disk_reserve_bytes), _n(by_bound), _n(buf.max_bytes),
                buf.when_full, extra={"condition": "buffer_disk_bound", "phase": "start", "free_bytes": free},
            )
            self.disk_bound = True
            self.version += 1
        elif self.disk_bound and by_disk > by_bound * 1.05 + (1 << 20):
            log.info("The disk no longer bounds the buffer: %s bytes free, %s bytes left to max_bytes.",
                     _n(free), _n(by_bound),
                     extra={"condition": "buffer_disk_bound", "phase": "stop", "free_bytes": free})
            self.disk_bound = False
            self.version += 1

    # -- uplink lag ----------------------------------------------------------------------------
    def _check_lag(self, now: int) -> None:
        self.lag_ns = self.buffer.oldest_age_ns()
        lag = self.lag_ns or 0
        ep = self._episodes["uplink_lag"]
        over = lag > self.lag_warn_ns
        if over:
            ep.total["worst_s"] = max(ep.total.get("worst_s", 0.0), lag / S)
        phase = ep.step(now, over, self.every_ns, 0)
        if phase is None:
            return
        bound = _dur(self.lag_warn_ns)
        extra = {"condition": "uplink_lag", "phase": phase, "lag_s": round(lag / S, 1)}
        if phase == "stop":
            log.warning("Uplink lag back under %s after %s (worst %s).", bound, _dur(now - (ep.started or now)),
                        _dur(int(ep.total.get("worst_s", 0) * S)), extra=extra)
            ep.reset()
        else:
            log.warning(
                "Uplink lag: the oldest undelivered batch is %s old (bound %s); %s batches (%s points) wait.",
                _dur(lag), bound, _n(self.buffer.pending_batches), _n(self.buffer.pending_points), extra=extra,
            )
            ep.reported(now)
        self.version += 1

    # -- polling -------------------------------------------------------------------------------
    def _check_polls(self, now: int) -> None:
        if self.deadline_misses is None or now - self._poll_window_start < _POLL_WINDOW_NS:
            return
        misses = list(self.deadline_misses())
        base = self._poll_base + [0] * (len(misses) - len(self._poll_base))
        late = sum(1 for m, b in zip(misses, base, strict=False) if m > b)
        missed = sum(m - b for m, b in zip(misses, base, strict=False))
        self._poll_base, self._poll_window_start = misses, now
        devices = len(misses)
        over = devices > 0 and late / devices > self.poll_miss_share
        ep = self._episodes["poll_behind"]
        if over:
            ep.add(deadlines_missed=missed)
            self._poll_last = (late, devices, missed)
        phase = ep.step(now, over, self.every_ns, 0)
        if phase is None:
            return
        extra = {"condition": "poll_behind", "phase": phase, "devices_late": late, "devices": devices}
        share = f"{self.poll_miss_share * 100:.0f} %"
        if phase == "stop":
            log.warning("Polling keeps its deadlines again after %s (%s deadlines missed in all).",
                        _dur(now - (ep.started or now)), _n(ep.total.get("deadlines_missed", 0)), extra=extra)
            ep.reset()
        else:
            part = ep.reported(now)
            log.warning(
                "Polling falls behind: %d of %d devices (%.0f %%, bound %s) missed poll deadlines in the last %s; "
                "%s deadlines missed since the previous line.",
                late, devices, 100 * late / devices, share, _dur(_POLL_WINDOW_NS), _n(part.get("deadlines_missed", 0)),
                extra=extra,
            )
        self.version += 1

    # -- event loop ----------------------------------------------------------------------------
    def _check_loop(self, now: int) -> None:
        count, worst = self._loop_count, self._loop_worst
        self._loop_count = self._loop_worst = 0
        ep = self._episodes["loop_blocked"]
        if count:
            ep.add(times=count)
            ep.total["worst_s"] = max(ep.total.get("worst_s", 0.0), worst / S)
            ep.since_report["worst_s"] = max(ep.since_report.get("worst_s", 0.0), worst / S)
        phase = ep.step(now, bool(count), self.every_ns, self.every_ns)
        if phase is None:
            return
        bound = f"{self.loop_block_ns / S:.3g} s"
        extra = {"condition": "loop_blocked", "phase": phase}
        if phase == "stop":
            log.warning("The event loop has not been blocked longer than %s for %s (%s times in all, worst %.3f s).",
                        bound, _dur(self.every_ns), _n(ep.total.get("times", 0)), ep.total.get("worst_s", 0.0),
                        extra=extra)
            ep.reset()
        else:
            part = ep.reported(now)
            log.warning(
                "The event loop was blocked longer than %s: %s times, worst %.3f s, since the previous line; polling, "
                "commits and the uplink all waited meanwhile.",
                bound, _n(part.get("times", 0)), part.get("worst_s", 0.0), extra=extra,
            )
        self.version += 1
