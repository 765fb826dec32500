"""Prometheus exposition of the live objects, read at scrape time (a custom collector).

No counter is kept twice: device health lives in the runners, buffer counters in the buffer file,
uplink figures in the forwarder, ingest figures in :class:`gateway.ingest.IngestStats`; this module
only names them.  Names follow the Prometheus conventions (``edgegw_<subsystem>_<what>_<unit>``,
counters end in ``_total``, base units: seconds, bytes).  The full list is in docs/operations.md.

A scrape runs on the event loop's thread, between two steps of the gateway, so it reads consistent
values without locks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.buffer import SqliteBuffer
from gateway.forwarder import ForwarderStats
from gateway.status import Check, LiveTable, buffer_stats, device_state, gateway_readiness, ingest_readiness

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.ingest import IngestCore

__all__ = ["DEVICE_STATES", "GatewayCollector", "make_registry"]

DEVICE_STATES = ("connecting", "up", "degraded", "down")
# buffer counter -> the `policy` label of edgegw_buffer_dropped_points_total
_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily)
_DROPS = {
    "drop_oldest": "dropped_oldest",
    "drop_newest": "dropped_newest",
    "max_age": "expired",
    "quarantine": "quarantined",
    "corrupt_file": "lost_corrupt",
}


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _one(family: _Family, value: float) -> _Family:
    """``family`` with its one unlabelled sample."""
    family.add_metric([], value)
    return family


def _counters(rows: Iterable[tuple[str, float, str]]) -> Iterator[Metric]:
    """Unlabelled counters, one per (name, value, doc)."""
    for name, value, doc in rows:
        yield _one(_counter(name, doc), value)


def _by_key(family: _Family, prefix: list[str], counts: Mapping[str, int]) -> _Family:
    """``family`` with one sample per key of ``counts`` (a reason, a code, a kind), in key order,
    labelled ``prefix`` + the key."""
    for key, n in sorted(counts.items()):
        family.add_metric([*prefix, key], n)
    return family


class GatewayCollector(Collector):
    """Everything of one process: the edge gateway, the ingest, or both (``edgegw demo``)."""

    def __init__(
        self, gateway: Gateway | None = None, live: LiveTable | None = None, ingest: IngestCore | None = None
    ) -> None:
        self.gateway = gateway
        self.live = live
        self.ingest = ingest

    def collect(self) -> Iterator[Metric]:
        role = "+".join(r for r, o in (("gateway", self.gateway), ("ingest", self.ingest)) if o is not None)
        info = _gauge("edgegw_build_info", "Version and role of this process (always 1).", ["version", "role"])
        info.add_metric([__version__, role], 1)
        yield info
        if self.gateway is not None:
            yield from self._devices(self.gateway)
            yield from self._pipeline(self.gateway)
            buffers = [("data", self.gateway.buffer)]
            uplinks = [("data", self.gateway.forwarder.stats, self.gateway.buffer)]
            if self.gateway.alarms is not None:
                buffers.append(("alarms", self.gateway.alarms.buffer))
                uplinks.append(("alarms", self.gateway.alarms.forwarder.stats, self.gateway.alarms.buffer))
            yield from self._buffers(buffers)
            yield from self._uplinks(uplinks)
            yield from self._overload(self.gateway)
            yield from self._reloads(self.gateway)
            yield _readiness("edgegw_ready", gateway_readiness(self.gateway))
        if self.ingest is not None:
            yield from self._ingest(self.ingest)

    def _overload(self, gw: Gateway) -> Iterator[Metric]:
        """The conditions the overload watch says in the log and the retained state message (#18)."""
        watch = getattr(gw, "watch", None)
        if watch is None:
            return
        facts = watch.facts()
        active = _gauge("edgegw_overload_active",
                        "1 while the condition lasts (drops by policy, expiry, quarantine, uplink lag, missed "
                        "polls, loop blocks), as logged at WARNING.", ["condition"])
        for name in watch.conditions():
            active.add_metric([name], int(isinstance(facts.get(name), dict)))
        active.add_metric(["buffer_disk_bound"], int(watch.disk_bound))
        yield active
        yield _one(_gauge("edgegw_buffer_fill_ratio", "Buffered bytes over buffer.max_bytes (warnings at 0.75 and "
                          "0.9)."), float(watch.fill))

    def _reloads(self, gw: Gateway) -> Iterator[Metric]:
        rs = getattr(gw, "reload_status", None)
        if rs is None:
            return
        total = _counter("edgegw_config_reloads", "Config reloads (SIGHUP, edgegw reload), by result.", ["result"])
        total.add_metric(["applied"], rs.applied)
        total.add_metric(["refused"], rs.refused)
        yield total
        last = _gauge("edgegw_config_last_reload_success", "1 when the last reload was applied, 0 when refused "
                      "(absent before the first).")
        when = _gauge("edgegw_config_last_reload_timestamp_seconds", "Time of the last reload (applied or refused).")
        if rs.last_result:
            last.add_metric([], int(rs.last_result == "applied"))
            when.add_metric([], rs.last_time_ns / 1e9)
        yield last
        yield when
        yield _one(_gauge("edgegw_config_restart_pending_settings",
                          "Changed settings that wait for a restart (named in the reload's WARNING line)."),
                   len(rs.not_applied))

    def _devices(self, gw: Gateway) -> Iterator[Metric]:
        polls = _counter("edgegw_device_reads", "Successful polls (or pushed notification bursts).", ["device"])
        errors = _counter("edgegw_device_read_errors", "Failed polls and connects, by reason.", ["device", "reason"])
        retries = _counter("edgegw_device_read_retries", "Reads retried at once after a failure.", ["device"])
        connects = _counter("edgegw_device_connects", "Connections opened.", ["device"])
        misses = _counter("edgegw_device_poll_deadline_misses", "Poll instants missed (poll ran late).", ["device"])
        points = _counter("edgegw_device_points", "Samples acquired, by quality.", ["device", "quality"])
        up = _gauge("edgegw_device_up", "1 while the device answers.", ["device"])
        state = _gauge("edgegw_device_state", "1 for the device's current state.", ["device", "state"])
        bad = _gauge("edgegw_device_bad_points", "Points whose last sample is quality bad.", ["device"])
        age = _gauge("edgegw_device_last_data_age_seconds", "Age of the newest good sample.", ["device"])
        wall = time.time_ns()
        for r in gw.runners:
            name, h = r.driver.name, r.health
            polls.add_metric([name], h.polls)
            _by_key(errors, [name], h.errors)
            retries.add_metric([name], h.retries)
            connects.add_metric([name], h.connects)
            misses.add_metric([name], h.deadline_misses)
            up.add_metric([name], int(h.up))
            n_bad = 0
            if self.live is not None:
                for q, n in self.live.device_counts(name).items():
                    points.add_metric([name, q], n)
                n_bad, _missing, data_age = self.live.device_summary(name, wall)
                bad.add_metric([name], n_bad)
                if data_age is not None:
                    age.add_metric([name], data_age)
            current = device_state(h.up, h.failed_polls, n_bad, h.state)
            for s in DEVICE_STATES:
                state.add_metric([name, s], int(s == current))
        yield from (polls, errors, retries, connects, misses, points, up, state, bad, age)

    def _pipeline(self, gw: Gateway) -> Iterator[Metric]:
        c = gw.batcher.pipeline.counters
        yield from _counters((
            ("edgegw_pipeline_samples_in", c.samples_in, "Samples into the pipeline."),
            ("edgegw_pipeline_samples_out", c.samples_out, "Samples to the buffer (after deadband)."),
            ("edgegw_pipeline_kept_on_site", c.kept_on_site, "Samples of grades kept on site (not forwarded)."),
            ("edgegw_pipeline_alarm_events", c.alarm_events, "Alarm events raised."),
        ))

    def _buffers(self, buffers: list[tuple[str, SqliteBuffer]]) -> Iterator[Metric]:
        L = ["buffer"]
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "batches": _gauge("edgegw_buffer_batches", "Batches waiting for a PUBACK.", L),
            "points": _gauge("edgegw_buffer_points", "Points waiting for a PUBACK.", L),
            "bytes": _gauge("edgegw_buffer_bytes", "Payload bytes waiting.", L),
            "max_bytes": _gauge("edgegw_buffer_max_bytes", "Configured max_bytes.", L),
            "oldest": _gauge("edgegw_buffer_oldest_age_seconds", "Age of the oldest pending batch.", L),
            "unsynced": _gauge("edgegw_buffer_unsynced_points", "Points committed but not yet fsynced.", L),
            "disk_free": _gauge("edgegw_buffer_disk_free_bytes", "Free bytes on the buffer's file system.", L),
            "file": _gauge("edgegw_buffer_file_bytes", "Size of the buffer file (without WAL).", L),
            "open": _gauge("edgegw_buffer_open", "1 while the buffer answers.", L),
            "accepted": _counter("edgegw_buffer_accepted_points", "Points accepted into the buffer.", L),
            "delivered": _counter("edgegw_buffer_delivered_points", "Points confirmed by PUBACK and deleted.", L),
            "dropped": _counter("edgegw_buffer_dropped_points", "Points lost, by policy.", [*L, "policy"]),
            "refused": _counter("edgegw_buffer_full_refusals", "Puts refused under when_full = block.", L),
        }
        for label, buf in buffers:
            st, _why = buffer_stats(buf)
            fams["open"].add_metric([label], int(st is not None))
            if st is None:
                continue
            fams["batches"].add_metric([label], st.batches)
            fams["points"].add_metric([label], st.points)
            fams["bytes"].add_metric([label], st.bytes)
            fams["max_bytes"].add_metric([label], st.max_bytes)
            fams["oldest"].add_metric([label], st.oldest_age_s or 0.0)
            fams["unsynced"].add_metric([label], st.unsynced_points)
            fams["disk_free"].add_metric([label], st.disk_free_bytes)
            fams["file"].add_metric([label], st.file_bytes)
            fams["accepted"].add_metric([label], st.counters["accepted_points"])
            fams["delivered"].add_metric([label], st.counters["delivered_points"])
            for policy, key in _DROPS.items():
                fams["dropped"].add_metric([label, policy], st.counters[f"{key}_points"])
            fams["refused"].add_metric([label], buf.full_refusals)
        yield from fams.values()

    def _uplinks(self, uplinks: list[tuple[str, ForwarderStats, SqliteBuffer]]) -> Iterator[Metric]:
        L = ["uplink"]
        connected = _gauge("edgegw_uplink_connected", "1 while connected to the broker.", L)
        inflight = _gauge("edgegw_uplink_inflight_batches", "Batches published, PUBACK not yet handled.", L)
        batches = _counter("edgegw_uplink_published_batches", "Batches confirmed by PUBACK.", L)
        points = _counter("edgegw_uplink_published_points", "Points confirmed by PUBACK.", L)
        hist = _counter("edgegw_uplink_historical_points", "Of those, published as backlog (historical).", L)
        reconnects = _counter("edgegw_uplink_reconnects", "Lost or failed broker connections.", L)
        refused = _counter("edgegw_uplink_puback_failures", "PUBACKs refusing a batch, by reason code.",
                           [*L, "reason_code"])
        latency = HistogramMetricFamily(
            "edgegw_uplink_publish_latency_seconds", "Publish to successful PUBACK.", labels=L
        )
        for label, st, buf in uplinks:
            connected.add_metric([label], int(st.connected))
            inflight.add_metric([label], buf.inflight_batches)
            batches.add_metric([label], st.published_batches)
            points.add_metric([label], st.published_points)
            hist.add_metric([label], st.historical_points)
            reconnects.add_metric([label], st.reconnects)
            _by_key(refused, [label], st.refused_by_code)
            h = st.publish_latency
            latency.add_metric(
                [label], [(_le(bound), n) for bound, n in h.cumulative()], sum_value=h.sum
            )
        yield from (connected, inflight, batches, points, hist, reconnects, refused, latency)

    def _ingest(self, ingest: IngestCore) -> Iterator[Metric]:
        s = ingest.stats
        yield _one(_gauge("edgegw_ingest_connected", "1 while subscribed at the broker."), int(s.connected))
        yield from _counters((
            ("edgegw_ingest_messages", s.messages, "Messages received (data and alarm)."),
            ("edgegw_ingest_points", s.points, "Points in decoded telemetry messages."),
            ("edgegw_ingest_written_points", s.written_points, "Telemetry rows the store confirmed."),
            ("edgegw_ingest_written_alarms", s.alarms, "Alarm rows the store confirmed."),
            ("edgegw_ingest_dead_letter_messages", s.dead_letter_messages, "Whole messages dead-lettered."),
            ("edgegw_ingest_dead_letter_points", s.dead_letter_points, "Points dead-lettered singly."),
            ("edgegw_ingest_undecodable_messages", s.undecodable, "Messages that did not decode."),
            ("edgegw_ingest_write_requests", s.write_requests, "Write requests sent to the store."),
            ("edgegw_ingest_write_retries", s.write_retries, "Writes retried after a store failure."),
            ("edgegw_ingest_write_splits", s.write_splits, "Bodies split to isolate refused rows or to fit."),
        ))
        yield _by_key(_counter("edgegw_ingest_dead_letters", "Dead letters by reason.", ["reason"]), [],
                      s.dead_letter_reasons)
        yield _by_key(_counter("edgegw_ingest_store_errors", "Store failures by kind.", ["kind"]), [], s.store_errors)
        yield _one(_gauge("edgegw_ingest_store_down_seconds", "How long the store has been failing (0: writing)."),
                   0.0 if s.store_down_since is None else time.monotonic() - s.store_down_since)
        if s.newest_written_ns:
            yield _one(_gauge("edgegw_ingest_lag_seconds", "Now minus the source time of the newest point written."),
                       max(0.0, (time.time_ns() - s.newest_written_ns) / 1e9))
        yield _readiness("edgegw_ingest_ready", ingest_readiness(ingest))


def _readiness(name: str, checks: Iterable[Check]) -> GaugeMetricFamily:
    ready = _gauge(name, "1 when /readyz says ready; per check.", ["check"])
    for c in checks:
        ready.add_metric([c.name], int(c.ok))
    return ready


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def make_registry(collector: GatewayCollector) -> CollectorRegistry:
    """A registry of its own per server (tests run several gateways in one process): the collector and
    the process's CPU, memory and file descriptors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry
