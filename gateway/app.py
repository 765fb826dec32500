"""Composition root of the edge role: drivers -> pipeline stages -> batcher -> buffer -> forwarder.

The stages (normalise, clock, plausibility, alarms, forwarding policy, deadband; see
:mod:`pipelines.pipeline`) run in the batcher, once per poll batch.  Alarm events go to their own
publisher (:mod:`gateway.alarms`) on their own topic.

Every hand-off is bounded: device runners put poll batches into a bounded queue (a full queue
slows polling rather than growing memory); the batcher commits encoded batches to the durable
buffer; the forwarder publishes them.  Supervision is one TaskGroup: a fatal error (a disk error
in the buffer) stops the gateway with a non-zero exit, so systemd restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import aiomqtt

from gateway.alarms import AlarmPublisher
from gateway.buffer import SqliteBuffer, open_buffer
from gateway.buffer.writer import BufferWriter
from gateway.catalog import Catalog, relayout
from gateway.catalog_archive import KEEP, archive, archive_dir, archived, messages
from gateway.codec import Compression, Encoder, zstd_available
from gateway.config import BufferConfig, Config, DeviceConfig, UplinkConfig, policy_issues
from gateway.core.clock import SYSTEM_CLOCK, Clock, describe_step
from gateway.core.contracts import PollingDriver, Stage, StreamingDriver
from gateway.core.driver import PollSettings, RunnerKind
from gateway.core.errors import BufferFullError, ConfigError, ConfigIssue, RejectedError, RetryableError
from gateway.core.point import SampleBatch, now_ns
from gateway.driver_registry import DriverFactory, spec_of
from gateway.forwarder import Forwarder
from gateway.prebuild import Prebuilt, prepare_reload
from gateway.registry import RegistrySync, make_client, records
from gateway.reload import (
    ReloadPlan,
    ReloadStatus,
    config_error_lines,
    device_digests,
    plan_reload,
    running_config,
)
from gateway.runner import DeviceRunner, StreamRunner
from gateway.sinks.mqtt import MqttUplink, UplinkConnection
from gateway.startup import StartupProgress
from gateway.watch import Watch
from pipelines.alarms import AlarmEvent
from pipelines.pipeline import Pipeline

if TYPE_CHECKING:
    from drivers.dlt645.driver import Dlt645Driver
    from drivers.modbus.driver import ModbusTcpDriver
    from gateway.buffer import Outcome, Transaction
    from gateway.http import StatusServer
    from gateway.sinks.mqtt import UplinkConnection
    from gateway.status import LiveTable
    from pipelines.normalise import Normalise

__all__ = ["GROUP_MAX_BATCHES", "Batcher", "Gateway", "release_free_memory", "tune_gc", "uplink_encoder"]

log = logging.getLogger("edgegw.app")

# group commit: at most this many buffered batches (MQTT messages), and about this many points, per
# buffer transaction and sync (what the batcher holds in memory while it gathers a group)
GROUP_MAX_BATCHES = 64
GROUP_MAX_POINTS = 50_000
# how often the running gateway hands freed memory back to the system (under 1 ms each time)
RELEASE_EVERY_NS = 30_000_000_000


def tune_gc() -> None:
    """Make the cyclic garbage collector fit a stream of short-lived tuples.

    The hot path allocates a tuple per sample; with the default threshold (700 allocations) the
    collector ran every few hundred samples and re-scanned the pending batches: py-spy put half of
    the pipeline's time in the lines that allocate.  The objects made at start-up (config, point
    table) are frozen out of the scans and the first generation is made larger; cycles are still
    collected, memory stays bounded.
    """
    gc.collect()
    release_free_memory()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def release_free_memory() -> None:
    """Hand the memory freed since start-up back to the system where the C library can (glibc's
    ``malloc_trim``; elsewhere nothing happens).

    Reading a config of N points allocates about 2 KB per point of parsed models, released once the
    point table is built; glibc keeps such freed memory in the process (the models' dicts are too
    large for Python's own allocator), so without this the resident size stays at the start-up peak:
    about 40 MB more at 50,000 points (#17)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return  # not glibc (musl, macOS): the allocator decides
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


def _compression(up: UplinkConfig) -> Compression:
    """The uplink's compression; ``auto`` falls back to zlib where the zstandard package has no build
    (an unusual architecture), an explicit ``zstd`` is then a config error."""
    c = up.codec_compression
    if c == "zstd" and not zstd_available():
        if up.compression == "zstd":
            raise ConfigError([ConfigIssue("uplink.compression", "zstd needs the zstandard package, which is not "
                                                                 "installed here: use \"auto\" or \"zlib\"")])
        log.warning("The zstandard package is not installed: compressing with zlib (about the same bytes at "
                    "1,000-point batches, larger small batches).")
        return "zlib"
    return c


def uplink_encoder(catalog: Catalog, up: UplinkConfig) -> Encoder:
    """The encoder of the uplink's settings (wire format, payload format, compression), as the gateway
    builds it at start and on every reload (and ``edgegw bench`` with the default settings)."""
    return Encoder(catalog, up.payload_format, _compression(up), version=up.wire_format)


class Batcher:
    """Runs the stages over poll batches and commits them to the buffer in batches of up to N points."""

    def __init__(
        self,
        catalog: Catalog,
        buffer: SqliteBuffer,
        cfg: BufferConfig,
        wake: asyncio.Event,
        observer: Callable[[SampleBatch], None] | None = None,
        encoder: Encoder | None = None,
        *,
        pipeline: Pipeline | None = None,
        on_alarms: Callable[[list[AlarmEvent]], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        link_free: Callable[[], bool] | None = None,
    ) -> None:
        """``link_free``: true while the uplink could publish a batch at once. Then what has
        accumulated is committed as soon as no poll is waiting (natural batching: small batches and
        low latency at low rates, batches that grow with the rate); ``linger_ms`` stays the upper
        bound while the link is busy."""
        self.catalog = catalog
        self.clock = clock
        self.link_free = link_free
        self.encoder = encoder or Encoder(catalog)
        self.buffer = buffer
        self.writer = BufferWriter.of(buffer)  # commits and syncs run on the buffer's own thread
        self._commit_lock = asyncio.Lock()  # one group in flight: run() and a reload's swap() take turns
        # the group handed over by _commit_ahead and not yet settled: (its commit, its samples, seq before)
        self._ahead: tuple[asyncio.Future[list[bool]], list[SampleBatch], int] | None = None
        self.max_points = cfg.batch_max_points
        self.linger = cfg.linger_ms / 1000
        self.wake = wake
        self.pipeline = pipeline or Pipeline(catalog.specs)
        self.on_alarms = on_alarms
        self.queue: asyncio.Queue[SampleBatch] = asyncio.Queue(maxsize=64)
        self.observer = observer
        # never reused after a restart, kill -9 or power cut (see SqliteBuffer.last_seq)
        self.seq = buffer.last_seq
        self.pending: SampleBatch = []
        self.group_points = self.max_points * max(1, min(GROUP_MAX_BATCHES, GROUP_MAX_POINTS // self.max_points))

    async def submit(self, batch: SampleBatch) -> None:
        await self.queue.put(batch)

    async def swap(self, catalog: Catalog, pipeline: Pipeline, encoder: Encoder) -> None:
        """A config reload: from now on, stages and encoding of the new point table.

        Every sample already handed over (queued, or pending in memory) is run through the old stages
        and committed with the old catalog rows first, so each stored batch names its points as they
        were when polled (the devices that were stopped for the reload may have their indices reused).
        Only under when_full = block does this wait, for room in the buffer, like polling does."""
        while not self.queue.empty():
            self._take(self.queue.get_nowait())
        await self.flush()
        self.catalog, self.pipeline, self.encoder = catalog, pipeline, encoder

    async def run(self) -> None:
        deadline: float | None = None
        try:
            while True:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                batch = await self._get(timeout)
                if batch is None:
                    if self._ahead is not None and self._ahead[0].done():
                        # the group committing ahead is done: settle it (a disk error is raised here)
                        # and start the next one if whole batches are waiting
                        await self._settle_ahead()
                        if len(self.pending) >= self.max_points:
                            await self._commit_ahead()
                        continue
                    await self.flush()
                    deadline = None
                    continue
                self._take(batch)
                if self.pending and self.link_free is not None and self.queue.empty() and self.link_free():
                    await self.flush()
                    deadline = None
                    continue
                if self.pending and deadline is None:
                    deadline = time.monotonic() + self.linger
                if len(self.pending) >= self.max_points:
                    # polls waiting in the queue mean the commits fall behind the incoming rate: take
                    # them too and commit up to group_points in one transaction (one sync)
                    while len(self.pending) < self.group_points and not self.queue.empty():
                        self._take(self.queue.get_nowait())
                    if self.buffer.when_full == "block":
                        await self.flush(whole_only=True)  # waits for room when refused, nothing overtakes
                    else:
                        await self._commit_ahead()
                    deadline = time.monotonic() + self.linger if self.pending else None
        finally:
            # graceful stop: what was polled but not yet committed goes to the buffer too
            while not self.queue.empty():
                self.pending.extend(self.process(self.queue.get_nowait()))
            if self.pending:
                self._hand_over_all()

    async def _get(self, timeout: float | None) -> SampleBatch | None:
        """The next poll; None after ``timeout`` or once the group committing ahead is done."""
        if not self.queue.empty():
            # what ``await queue.get()`` returns without waiting, without a timer or a task per poll
            return self.queue.get_nowait()
        ahead = self._ahead[0] if self._ahead is not None and not self._ahead[0].done() else None
        if ahead is None:
            try:
                async with asyncio.timeout(timeout):
                    return await self.queue.get()
            except TimeoutError:
                return None
        getter = asyncio.ensure_future(self.queue.get())
        try:
            waiters: set[asyncio.Future[Any]] = {getter, ahead}
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
                await asyncio.gather(getter, return_exceptions=True)
        if getter.done() and not getter.cancelled():
            return getter.result()  # taken, even if it completed while being cancelled
        return None

    def _take(self, batch: SampleBatch) -> None:
        batch = self.process(batch)
        if not batch:
            return  # all of it stayed on site or inside a deadband
        if self.observer is not None:
            self.observer(batch)
        self.pending.extend(batch)

    def process(self, batch: SampleBatch) -> SampleBatch:
        check = self.pipeline.clock
        jumps, valid = check.jumps, check.clock_valid
        wall = self.clock.wall_ns()
        batch, events = self.pipeline(batch, wall, self.clock.mono_ns())
        if check.jumps != jumps or check.clock_valid != valid:
            self._log_clock(wall, jumps != check.jumps, valid)
        if events and self.on_alarms is not None:
            self.on_alarms(events)
        return batch

    def _log_clock(self, wall_ns: int, stepped: bool, was_valid: bool | None) -> None:
        """Once per step, and once per change between an unset and a plausible clock."""
        check = self.pipeline.clock
        now = datetime.fromtimestamp(wall_ns / 1e9, UTC).isoformat(timespec="seconds")
        if stepped:
            log.warning(
                "The wall clock stepped %s (NTP or a manual change; it now reads %s). The samples of this "
                "batch are flagged clock_jump; buffer ages and timeouts are monotonic and not affected.",
                describe_step(check.last_step_ns), now,
                extra={"clock_step_ns": check.last_step_ns},
            )
        floor = datetime.fromtimestamp(check.min_valid / 1e9, UTC).isoformat(timespec="seconds")
        if check.clock_valid is False and was_valid is not False:
            log.warning(
                "The gateway's clock reads %s, before clock_min_valid_time (%s): it has not been set. Samples are "
                "flagged clock_unsynced until it is; check NTP (timedatectl status, chronyc tracking).",
                now, floor,
            )
        elif check.clock_valid and was_valid is False:
            log.info("The gateway's clock is set (%s): samples are no longer flagged clock_unsynced.", now)

    def _group(self, whole_only: bool) -> list[SampleBatch]:
        """The next group (one transaction) of the pending samples: batches of ``batch_max_points``, up
        to GROUP_MAX_BATCHES; ``whole_only`` keeps a last, partial batch pending (it may still fill up)."""
        mp = self.max_points
        pending = self.pending
        n = min(len(pending) // mp if whole_only else -(-len(pending) // mp), self.group_points // mp)
        if n == 1 and len(pending) <= mp:
            return [pending]  # all of it is the one batch: the list itself, no copy (_encode starts a new one)
        return [pending[i * mp:(i + 1) * mp] for i in range(n)]

    def _encode(self, chunks: list[SampleBatch]) -> list[tuple[bytes, int]]:
        """Encode a group with the next sequence numbers, and hand its samples over (out of ``pending``)."""
        created = now_ns()
        encoded = [(self.encoder.encode(c, self.seq + 1 + k, created), len(c)) for k, c in enumerate(chunks)]
        self.seq += len(chunks)
        taken = sum(len(c) for c in chunks)
        if taken == len(self.pending):
            self.pending = []  # not cleared in place: it may be the group's one batch (_group)
        else:
            del self.pending[:taken]
        return encoded

    async def _commit_ahead(self) -> None:
        """Hand the whole batches pending to the writer thread and return without waiting, so that the
        next polls are run through the stages while the commit and its sync run.  One group at a time:
        while it is in flight the samples gather (the next group), and only when they reach twice a
        group does this wait.  Not under when_full = block (a refused batch must be offered again before
        anything after it: there each group is awaited, see :meth:`flush`)."""
        if self._commit_lock.locked():
            return  # a flush (a reload's) is committing: the samples wait for the next turn
        async with self._commit_lock:
            ahead = self._ahead
            if ahead is not None:
                if not ahead[0].done() and len(self.pending) < 2 * self.group_points:
                    return
                await self._settle_ahead()
            chunks = self._group(whole_only=True)
            if chunks:
                base = self.seq
                fut = asyncio.wrap_future(self.writer.submit_put_many(self._encode(chunks)))
                fut.add_done_callback(lambda _f: self.wake.set())  # committed: the forwarder may send it
                self._ahead = (fut, chunks, base)

    async def _settle_ahead(self) -> None:
        """Wait for the group handed over by :meth:`_commit_ahead`; refused batches back to ``pending``."""
        ahead = self._ahead
        if ahead is None:
            return
        fut, chunks, base = ahead
        try:
            done = len(await asyncio.shield(fut))
        except BufferFullError:
            done = 0
        self._ahead = None
        if done < len(chunks):
            # nothing of the samples taken since: they are behind the refused ones in ``pending``
            self.pending[:0] = [s for c in chunks[done:] for s in c]
            self.seq = base + done
            raise BufferFullError(f"buffer {self.buffer.path} is full")

    async def _commit_all(self, whole_only: bool = False) -> None:
        """Commit the pending samples, one group per transaction, on the buffer's writer thread: the
        event loop keeps polling and publishing while the commit and its sync run.  A group is awaited
        before the next is offered, so under when_full = block a refused batch comes back first (to
        ``pending``, with its sequence number) and nothing overtakes it."""
        async with self._commit_lock:
            await self._settle_ahead()
            while self.pending:
                chunks = self._group(whole_only)
                if not chunks:
                    return
                base = self.seq
                encoded = self._encode(chunks)
                try:
                    done = len(await self.writer.put_many(encoded))
                except BufferFullError:
                    done = 0
                if done < len(chunks):
                    self.pending[:0] = [s for c in chunks[done:] for s in c]
                    self.seq = base + done
                    raise BufferFullError(f"buffer {self.buffer.path} is full")

    def _hand_over_all(self) -> None:
        """Stopping: hand every pending sample to the writer thread without waiting (it commits them in
        order, after anything already submitted, before the buffer closes)."""
        while self.pending:
            self.writer.submit_put_many(self._encode(self._group(whole_only=False)))

    async def flush(self, whole_only: bool = False) -> None:
        blocked = False
        while True:
            try:
                await self._commit_all(whole_only)
                break
            except BufferFullError as err:
                if not blocked:
                    log.warning("%s; when_full = block: polling is held back until the uplink frees room.", err)
                    blocked = True
                self.wake.set()
                await asyncio.sleep(0.5)
        if blocked:
            log.info("Buffer has room again; polling resumes.")
        self.wake.set()


async def _cancel(tasks: list[asyncio.Task[None]], rounds: int = 40) -> None:
    """Cancel tasks and wait for them to end.

    A library may swallow a cancellation: ``asyncio.wait_for`` on Python 3.11 does when the awaited
    future completes at the same moment (pymodbus awaits every response that way), and the device
    task then simply polls on, so the gateway never stopped.  Ask again until each task has ended.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.25)
    if pending:
        log.error("Tasks %s ignore cancellation; stopping without them.", sorted(t.get_name() for t in pending))
    await asyncio.gather(*(t for t in tasks if t.done()), return_exceptions=True)



class Gateway:
    def __init__(
        self, cfg: Config | Prebuilt, observer: Callable[[SampleBatch], None] | None = None,
        clock: Clock = SYSTEM_CLOCK, progress: StartupProgress | None = None,
        reload_source: Callable[[], Config | Prebuilt] | None = None,
    ) -> None:
        """``cfg``: a parsed config, or what a child process made of one (:mod:`gateway.prebuild`: no
        parsed point model in this process).  ``clock``: the wall and monotonic clocks and boot id of
        the buffers and the pipeline (tests and HIL scenarios hand in a controlled one).  ``progress``
        logs the phases of the start.  ``reload_source`` reads the config again (SIGHUP, ``edgegw
        reload``): see :meth:`request_reload`; it runs in a worker thread and raises
        :class:`ConfigError` for a config that cannot run; it may return :meth:`prepare_reload`'s
        result, made in a child process."""
        forms: Mapping[str, object] = {}
        digests: Mapping[str, bytes] | None = None
        if isinstance(cfg, Prebuilt):
            forms, digests = cfg.forms, cfg.digests
            progress = progress or StartupProgress(cfg.points)
            cfg = cfg.cfg
        progress = progress or StartupProgress(sum(len(d.points) for d in cfg.devices))
        if cfg.gateway is None or cfg.uplink is None or not cfg.devices:
            missing = [n for n, v in (("gateway", cfg.gateway), ("uplink", cfg.uplink)) if v is None]
            if not cfg.devices:
                missing.append("devices")
            raise ConfigError([ConfigIssue(m, "required to run a gateway") for m in missing])
        refused = policy_issues(cfg)  # also for configs built in code, which skip parse()
        if refused:
            raise ConfigError(refused)
        self.cfg = cfg
        with progress.phase("point table built"):
            self.catalog = cfg.catalog()  # built once, when the config was parsed
        self.wake = asyncio.Event()
        bc = cfg.buffer
        with progress.phase("buffer opened"):
            self.buffer = open_buffer(bc, clock=clock)
        up = cfg.uplink
        gw = cfg.gateway
        with progress.phase("stages compiled"):
            encoder = uplink_encoder(self.catalog, up)
            pipeline = Pipeline(
                self.catalog.specs,
                future_tolerance_ns=gw.future_tolerance_ms * 1_000_000,
                clock_jump_ns=gw.clock_jump_ms * 1_000_000,
                min_valid_ns=gw.clock_min_valid_ns,
            )
        self.encoder = encoder
        self.catalog_dir = archive_dir(bc.path)
        # wire format 2: the catalogs this process's batches refer to (a reload adds one), newest last; the
        # message where it could not be archived, else None: read back from the archive when published (a
        # catalog message is ~8 B a point, and a run of reloads would keep one each)
        self.catalogs_used: dict[str, bytes | None] = {}
        if up.wire_format == 2:
            self._use_catalog(encoder)
        self.alarms: AlarmPublisher | None = None
        if pipeline.alarms.active:
            forwarded = frozenset(i for i in range(len(self.catalog.points)) if pipeline.is_forwarded(i))
            self.alarms = AlarmPublisher(
                up, self.catalog, open_buffer(bc, alarms=True, clock=clock), forwarded=forwarded
            )
        self.batcher = Batcher(
            self.catalog, self.buffer, bc, self.wake, observer, encoder,
            pipeline=pipeline, on_alarms=self.alarms.submit if self.alarms else None, clock=clock,
            link_free=self._link_free,
        )
        # the status endpoint ([http] or --http): its live table is a tap on the pipeline, absent when off
        self.live: LiveTable | None = None
        self.http: StatusServer | None = None
        if cfg.http is not None:
            from gateway.http import StatusServer
            from gateway.status import LiveTable

            self.live = LiveTable(self.catalog)
            self.http = StatusServer(cfg.http.listen, gateway=self, live=self.live)
        self.registry_sync: RegistrySync | None = None
        if cfg.registry is not None and cfg.registry.register_on_start:
            self.registry_sync = RegistrySync(
                make_client(cfg.registry), records(self.catalog, gw.code), compare=cfg.registry.update_on_start
            )
        self.uplink = MqttUplink(up, gw.site, gw.id)
        self.runners: list[DeviceRunner | StreamRunner] = []
        wc = cfg.watch
        self.clock = clock
        self.watch = Watch(
            self.buffer,
            alarm_buffer=self.alarms.buffer if self.alarms is not None else None,
            clock=clock,
            deadline_misses=lambda: [r.health.deadline_misses for r in self.runners if isinstance(r, DeviceRunner)],
            lag_warn_s=wc.lag_warn_s,
            poll_miss_share=wc.poll_miss_share,
            loop_block_s=wc.loop_block_ms / 1000,
            every_s=wc.report_every_s,
        )
        self.forwarder = Forwarder(
            self.buffer, self.uplink, self.wake, max_inflight=up.max_inflight, backlog_share=up.backlog_share,
            state_facts=self._state_facts, on_connect=self._publish_catalogs if up.wire_format == 2 else None,
        )
        self.health_changed = asyncio.Event()  # a device's health changed: republish the state message
        self.uplink.detail = self.device_health
        self._final_counters: dict[str, int] | None = None
        self._drivers = DriverFactory()  # makes each device's driver; holds what a package's devices share
        self.reload_source = reload_source
        self.reload_status = ReloadStatus()
        self._reload_wanted = asyncio.Event()
        self._device_tasks: dict[str, asyncio.Task[None]] = {}
        self._device_failed: asyncio.Future[None] | None = None
        with progress.phase("devices planned"):
            self.runners = [self._make_runner(dev, self.catalog, forms.get(dev.name))
                            for dev in cfg.devices if dev.enabled]
        self._runners_by_name = {r.driver.name: r for r in self.runners}
        self.batcher.pipeline.tap = self._health_tap
        # the point table is built: keep the sections and device settings, not the parsed point models
        # (about 1.2 KB per point); a reload compares each device's digest (gateway.reload)
        self.cfg, self._device_digests = running_config(cfg, digests, settings=self._driver_settings())

    def _driver_settings(self) -> dict[str, object]:
        """The device settings each driver keeps (the Modbus driver keeps them without the points), for
        :func:`gateway.reload.running_config` to share instead of copying again."""
        return {r.driver.name: getattr(r.driver, "config", None) for r in self.runners}

    def _make_runner(self, dev: DeviceConfig, catalog: Catalog, form: object = None) -> DeviceRunner | StreamRunner:
        """The device's driver, in the runner its package registered (polled or pushed); ``form``: the
        compact form of its points where ``dev`` is a lean device (:mod:`gateway.prebuild`)."""
        spec = spec_of(dev)
        driver = self._drivers.make(dev, catalog.by_device[dev.name].start, form)
        runner: DeviceRunner | StreamRunner
        if spec.runner_kind(dev) is RunnerKind.PUSHED:
            runner = StreamRunner(
                cast(StreamingDriver, driver),
                catalog,
                self.batcher.submit,
                connect_timeout_s=max(dev.timeout_ms / 1000, 10.0),
                backoff_max_s=dev.backoff_max_ms / 1000,
            )
            runner.on_health = self.health_changed.set
        else:
            ps = spec.poll_settings(dev, driver) if spec.poll_settings is not None else PollSettings()
            runner = DeviceRunner(
                cast(PollingDriver, driver),
                catalog,
                self.batcher.submit,
                poll_interval_s=dev.poll_interval_ms / 1000,
                timeout_s=dev.timeout_ms / 1000,
                backoff_max_s=dev.backoff_max_ms / 1000,
                schedules=ps.schedules,
                retries=ps.retries,
                watchdog=ps.watchdog,
                on_health=self.health_changed.set,
                suspend_after=ps.suspend_after,
                suspended_interval_s=ps.suspended_interval_s,
            )
        runner.observe_polls = False  # judged after the pipeline (_health_tap)
        return runner

    def _health_tap(self, batch: SampleBatch) -> None:
        """The pipeline's tap: the live table (status page) and the devices' health both judge the
        samples after the range and plausibility checks (a swapped byte order shows as out_of_range)."""
        if self.live is not None:
            self.live(batch)
        points = self.catalog.points
        by_device: dict[str, SampleBatch] = {}
        for s in batch:
            by_device.setdefault(points[s[0]].device, []).append(s)
        for name, samples in by_device.items():
            runner = self._runners_by_name.get(name)
            if runner is not None:
                runner.observe_checked(name, samples)

    def device_health(self) -> dict[str, object]:
        """The devices' health for the retained state message: state, dominant reason, bad points."""
        return {"devices": {
            r.driver.name: {"state": r.health.state, "reason": r.health.reason, "bad_points": r.health.bad_points,
                            "points": r.health.points, **({"suspended": True} if r.health.suspended else {})}
            for r in self.runners
        }}

    async def _publish_health(self) -> None:
        """Republish the retained state message whenever a device's health changes."""
        while True:
            await self.health_changed.wait()
            self.health_changed.clear()
            await self.uplink.refresh_state()

    @property
    def buffer_counters(self) -> dict[str, int]:
        """Live buffer counters; after :meth:`run` returned, their values at shutdown."""
        return self._final_counters if self._final_counters is not None else self.buffer.counters()

    def _link_free(self) -> bool:
        """The uplink is connected and has room in its window for one more batch right now."""
        return self.forwarder.stats.connected and self.buffer.pending_batches < self.forwarder.max_inflight

    async def run(self) -> None:
        """Run until cancelled; then stop gracefully: acquisition first, then commit what was
        polled, then give the uplink up to ``uplink.shutdown_drain_s`` to deliver the buffer."""
        log.info(
            "Gateway %s starting: %d devices, %d points, buffer %s (durability %s, %d batches pending).",
            self.catalog.gateway_id,
            len(self.runners),
            len(self.catalog.points),
            self.buffer.path,
            self.buffer.durability_label,
            self.buffer.pending_batches,
        )
        tune_gc()
        forwarder = asyncio.create_task(self.forwarder.run(), name="forwarder")
        upkeep = asyncio.create_task(self._upkeep(), name="buffer-upkeep")
        batcher = asyncio.create_task(self.batcher.run(), name="batcher")
        self._device_failed = asyncio.get_running_loop().create_future()
        for r in self.runners:
            self._start_device(r)
        health = asyncio.create_task(self._publish_health(), name="device-health")
        reloads = asyncio.create_task(self._reloads(), name="config-reload")
        everything = [forwarder, upkeep, batcher, health, reloads]
        if self.alarms is not None:
            everything.append(asyncio.create_task(self.alarms.run(), name="alarms"))
        if self.registry_sync is not None:
            everything.append(asyncio.create_task(self.registry_sync.run(), name="registry"))
        if self.http is not None:  # stopped with the rest, before the buffer closes
            everything.append(asyncio.create_task(self.http.run(), name="http"))
        try:
            done, _ = await asyncio.wait([*everything, self._device_failed], return_when=asyncio.FIRST_COMPLETED)
            for task in done:  # these tasks only end by failing
                exc = task.exception()
                if exc is not None:
                    raise exc
                raise RuntimeError(f"task {getattr(task, 'get_name', lambda: 'device')()} stopped unexpectedly")
        except asyncio.CancelledError:
            await self._stop_gracefully(list(self._device_tasks.values()), batcher)
            raise
        finally:
            await _cancel([*everything, *self._device_tasks.values()])
            self.watch.close()
            self.buffer.close()  # first its writer thread commits what was handed over (in order)
            self._final_counters = self.buffer.counters()
            pending = self.buffer.pending_batches
            if self.alarms is not None:
                log.info("%d alarm event(s) stay buffered.", self.alarms.pending)
                self.alarms.buffer.close()
            log.info("Gateway %s stopped; %d batches stay buffered.", self.catalog.gateway_id, pending)

    async def _publish_catalogs(self, conn: UplinkConnection, backlog: bool) -> None:
        """Wire format v2: the catalogs of this run (the current one, and those of reloads before it),
        retained, before any batch on this connection; while batches are buffered also the archived
        ones (a backlog may predate a config change or a restart)."""
        enc = self.encoder
        stored = dict(messages(self.catalog_dir)) if backlog else {}  # every archived one, read once
        out = {enc.catalog_id: enc.catalog_message}
        for cid, kept in reversed(self.catalogs_used.items()):
            if cid not in out:
                message = kept or stored.get(cid) or archived(self.catalog_dir, cid)
                if message is None:
                    log.warning("The point catalog %s of a config used before (this run) is no longer archived: "
                                "batches of it still buffered cannot be decoded by an ingest that missed it.", cid)
                else:
                    out[cid] = message
        for cid, message in stored.items():
            out.setdefault(cid, message)
        for cid, message in out.items():
            try:
                await conn.publish_catalog(cid, message)
            except RejectedError as err:
                log.error("The broker refused the point catalog %s (%s): the ingest cannot decode this gateway's "
                          "batches until it takes it. Check the ACL for <prefix>/<site>/<gateway>/catalog/#.", cid, err)
                return
        log.info("Published the point catalog %s (%d bytes)%s.", enc.catalog_id, len(enc.catalog_message),
                 f" and {len(out) - 1} archived" if len(out) > 1 else "")

    def _use_catalog(self, encoder: Encoder) -> None:
        """``encoder``'s catalog archived and noted as used by this run (the newest KEEP of a long run of
        reloads; older ones are in the archive, published with a backlog); kept in memory only where it
        could not be archived."""
        try:
            archive(self.catalog_dir, encoder.catalog_id, encoder.catalog_message)
            kept = None
        except OSError as err:
            log.warning("Cannot keep the point catalog %s in %s (%s): batches buffered now may not decode after "
                        "a later config change and restart.", encoder.catalog_id, self.catalog_dir, err)
            kept = encoder.catalog_message
        self.catalogs_used.pop(encoder.catalog_id, None)
        self.catalogs_used[encoder.catalog_id] = kept
        while len(self.catalogs_used) > KEEP:
            del self.catalogs_used[next(iter(self.catalogs_used))]

    async def _announce_catalog(self, encoder: Encoder) -> None:
        """A reload's new catalog on the live connection (if any; otherwise the next connection
        publishes it).  Best effort: a connection lost meanwhile republishes it when it is back."""
        conn = self.uplink.current
        if conn is None:
            return
        try:
            await conn.publish_catalog(encoder.catalog_id, encoder.catalog_message)
            log.info("Published the reloaded point catalog %s (%d bytes).", encoder.catalog_id,
                     len(encoder.catalog_message))
        except (RetryableError, RejectedError, aiomqtt.MqttError) as err:
            log.warning("Could not publish the reloaded point catalog %s now (%s); it is published on the "
                        "next connection.", encoder.catalog_id, err)

    def _start_device(self, runner: DeviceRunner | StreamRunner) -> None:
        name = runner.driver.name
        task = asyncio.create_task(runner.run(), name=f"device:{name}")
        self._device_tasks[name] = task

        def ended(t: asyncio.Task[None]) -> None:
            # a device task ends only when cancelled (stop, reload) or by a bug: that stops the gateway
            failed = self._device_failed
            if t.cancelled() or failed is None or failed.done():
                return
            exc = t.exception()
            failed.set_exception(exc if exc is not None else RuntimeError(f"task device:{name} stopped unexpectedly"))

        task.add_done_callback(ended)

    def request_reload(self) -> None:
        """SIGHUP: read the config again and apply it (one reload at a time; requests made meanwhile
        are served by one more reload)."""
        self._reload_wanted.set()

    async def _reloads(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            if self.reload_source is None:
                log.warning("Reload requested, but this gateway was not started from a config file: ignored.")
                continue
            await self._reload_once(self.reload_source)
            # the parsed configs (the new one's point models, the old running one) are gone by now
            release_free_memory()

    async def _reload_once(self, source: Callable[[], Config | Prebuilt]) -> None:
        try:
            try:
                # a large config takes a while to read and check: off the event loop, so polling keeps its cadence
                new = await asyncio.to_thread(source)
            except ConfigError:
                raise
            except Exception as err:  # the read failed: its process crashed, hung or ran out of memory
                # nothing was applied yet: the gateway carries on with the running config
                log.exception("Reload failed: the config could not be read (%s); still running the config read "
                              "before.", err, extra={"reason": "reload_failed"})
                self._count_refused(f"the config could not be read: {err}")
                return
            if isinstance(new, Prebuilt):
                await self.reload(new)
            else:
                # each device's digest costs a few microseconds a point: off the loop too
                await self.reload(new, await asyncio.to_thread(device_digests, new))
        except ConfigError as err:
            self._refused(err)

    def prepare_reload(self, new: Config) -> Prebuilt:
        """What :meth:`reload` needs of ``new``, without its point models: the config as it would be
        applied (the sections that wait for a restart kept from the running one), its point table,
        device digests and drivers' compact forms.  Pure: ``edgegw run`` calls it in a child process
        (:func:`gateway.prebuild.in_child`), so the new config's models never exist in the gateway's
        heap.  Raises :class:`ConfigError` as :meth:`reload` would."""
        return prepare_reload(self.cfg, self._device_digests, new)

    def reload_basis(self) -> tuple[Config, Mapping[str, bytes]]:
        """What :meth:`prepare_reload` needs of this gateway, for a process of its own
        (:func:`gateway.prebuild.prepare_reload`): the running config and its devices' digests."""
        return self.cfg, self._device_digests

    def _refused(self, err: ConfigError) -> None:
        lines = config_error_lines(err, limit=50)
        log.error("Reload refused: %s; still running the config read before.", lines[0],
                  extra={"reason": "config", "source": err.source})
        for line, issue in zip(lines[1:], err.issues, strict=False):
            log.error("Reload refused: %s", line.strip(), extra={"reason": "config", "location": issue.location})
        self._count_refused(lines[0])

    def _count_refused(self, summary: str) -> None:
        rs = self.reload_status
        rs.refused += 1
        rs.last_result, rs.last_time_ns, rs.last_summary = "refused", time.time_ns(), summary

    async def reload(self, new: Config | Prebuilt, digests: Mapping[str, bytes] | None = None) -> ReloadPlan:
        """Apply a new (validated) config without a gap: devices whose config is equal keep running,
        untouched (same task, same connection, same point indices); changed devices restart, added ones
        start, removed ones stop.  What cannot change live (identity, buffer, uplink, ...) is named in a
        warning and keeps its old value.  Raises :class:`ConfigError` (nothing changed) when the new
        devices cannot run with the sections kept.  ``digests``: :func:`gateway.reload.device_digests` of
        ``new`` where already computed.  ``new`` may be :meth:`prepare_reload`'s result."""
        forms: Mapping[str, object] = {}
        table: Catalog | None = None
        waiting: tuple[str, ...] = ()
        rows_kept: frozenset[str] = frozenset()
        if isinstance(new, Prebuilt):
            # made by prepare_reload against the running config: its sections are the ones kept, and
            # its point table is that of the full config (its lean devices could not build it again)
            # without the rows of the devices that keep theirs
            forms, digests, waiting, rows_kept, new = new.forms, new.digests, new.not_applied, new.rows_kept, new.cfg
            table = new.catalog()
        plan = plan_reload(self.cfg, new, self._device_digests, digests)
        eff = plan.effective
        if table is not None and (eff is not new or not rows_kept <= plan.same_layout):
            raise RuntimeError("a prepared reload was planned against another running config")
        if waiting:
            plan = dataclasses.replace(plan, not_applied=waiting)
        refused = policy_issues(eff)
        if refused:
            raise ConfigError(refused, "the new config with the settings kept until a restart")
        catalog = relayout(self.catalog, table if table is not None else eff.catalog(), plan.same_layout)
        by_name = {d.name: d for d in eff.devices}
        # what the kept devices share stays theirs (Modbus: a line stays open for the devices kept on it);
        # everything else is made afresh (its settings may have changed with all the devices on it)
        self._drivers = self._drivers.for_reload([d for d in eff.devices if d.name in plan.unchanged])
        # drivers are made before anything stops: a device that cannot be made leaves the old config running
        starting = [self._make_runner(by_name[n], catalog, forms.get(n)) for n in (*plan.changed, *plan.added)]
        stopping = [n for n in (*plan.changed, *plan.removed)]
        await _cancel([self._device_tasks.pop(n) for n in stopping if n in self._device_tasks])
        gw = eff.gateway
        assert gw is not None and eff.uplink is not None
        pipeline = Pipeline(catalog.specs, future_tolerance_ns=gw.future_tolerance_ms * 1_000_000,
                            clock_jump_ns=gw.clock_jump_ms * 1_000_000, min_valid_ns=gw.clock_min_valid_ns)
        old = self.batcher.pipeline
        pipeline.carry(old, [i for n in plan.same_layout for i in catalog.by_device[n]])
        up = eff.uplink
        encoder = uplink_encoder(catalog, up)
        if encoder.version == 2 and encoder.catalog_id != self.encoder.catalog_id:
            # the new catalog is archived and published before the first batch that refers to it exists
            self._use_catalog(encoder)
            await self._announce_catalog(encoder)
        not_applied = list(plan.not_applied)
        if self.alarms is None and pipeline.alarms.active:
            not_applied.append("alarm thresholds (the gateway started without any; their publisher starts with it)")
        await self.batcher.swap(catalog, pipeline, encoder)
        self.encoder = encoder
        if self.live is not None:
            self.live.rebase(catalog, plan.same_layout)
        if self.alarms is not None:
            self.alarms.catalog = catalog
            self.alarms.set_forwarded(frozenset(i for i in range(len(catalog.points)) if pipeline.is_forwarded(i)))
        self.catalog = catalog
        kept = {n: r for n, r in self._runners_by_name.items() if n in plan.unchanged}
        for r in kept.values():
            r.catalog = catalog
        for r in starting:
            kept[r.driver.name] = r
            self._start_device(r)
        self.runners = [kept[d.name] for d in eff.devices if d.name in kept]
        self._runners_by_name = {r.driver.name: r for r in self.runners}
        self.cfg, self._device_digests = running_config(eff, plan.digests, self._driver_settings())
        self.watch.restart_poll_window()
        self.health_changed.set()  # the retained state message lists the devices
        if not_applied:
            log.warning("Config reloaded; not applied until restart: %s (the running values stay).",
                        ", ".join(not_applied), extra={"not_applied": not_applied})
        summary = plan.summary()
        log.info("Reloaded config: %s.", summary, extra={
            "changed": list(plan.changed), "added": list(plan.added), "removed": list(plan.removed),
            "unchanged": len(plan.unchanged)})
        rs = self.reload_status
        rs.applied += 1
        rs.last_result, rs.last_time_ns, rs.last_summary = "applied", time.time_ns(), summary
        rs.not_applied = not_applied
        return plan

    def _state_facts(self) -> tuple[int, dict[str, object]]:
        """What the retained state message says about overload (see gateway.watch)."""
        return self.watch.version, self.watch.facts()

    async def _upkeep(self) -> None:
        """Sync the buffer when due (interval durability), expire batches past max_age_s, and once a
        second let the watch say what overloads the gateway.  How late each 100 ms tick wakes up is
        how long something else held the event loop."""
        tick_ns = 100_000_000
        last_check = last_release = self.clock.mono_ns()
        while True:
            before = self.clock.mono_ns()
            await asyncio.sleep(tick_ns / 1e9)
            now = self.clock.mono_ns()
            self.watch.loop_late(now - before - tick_ns)
            # a sync when due, expiry: on each buffer's writer thread, never on the event loop
            await BufferWriter.of(self.buffer).maintain()
            if self.alarms is not None:
                await BufferWriter.of(self.alarms.buffer).maintain()
            if now - last_check >= 1_000_000_000:
                last_check = now
                self.watch.check()
            if now - last_release >= RELEASE_EVERY_NS:
                # the run's own allocations reuse (and so touch again) the memory the start-up freed:
                # hand back what is free again, or the resident size creeps back to the start-up peak
                last_release = now
                release_free_memory()

    async def _stop_gracefully(self, devices: list[asyncio.Task[None]], batcher: asyncio.Task[None]) -> None:
        await _cancel(devices)
        await _cancel([batcher])  # its cleanup hands every polled sample to the buffer's writer thread
        # a barrier: everything handed over before it is committed once it has run (the writer is a FIFO)
        await BufferWriter.of(self.buffer).call(lambda: None)
        if self.alarms is not None:
            await BufferWriter.of(self.alarms.buffer).call(lambda: None)
        self.wake.set()
        assert self.cfg.uplink is not None
        deadline = time.monotonic() + self.cfg.uplink.shutdown_drain_s
        # polled, bounded by the deadline: the buffer has no "drained" notification
        alarms = self.alarms
        from gateway.progress import progress_bar

        left = self.buffer.pending_batches
        # a bar on a terminal (`edgegw run` stopped with Ctrl-C), nothing under systemd
        bar = progress_bar("stopping: delivering the buffer", left, "batches") if left and \
            self.forwarder.stats.connected else contextlib.nullcontext(lambda n: None)
        with bar as step:
            while (self.buffer.pending_batches and self.forwarder.stats.connected) or (
                alarms is not None and alarms.pending and alarms.stats.connected
            ):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
                now = self.buffer.pending_batches
                if now < left:
                    step(left - now)
                    left = now


if TYPE_CHECKING:  # static conformance checks of the implementations against the interfaces, no runtime cost
    from typing import Protocol

    class _Buffer(Protocol):
        def put(self, payload: bytes, npoints: int, created_ns: int | None = None) -> bool: ...
        def begin(self, max_batches: int) -> Transaction: ...
        def end(self, tx: Transaction, outcomes: list[Outcome]) -> None: ...
        @property
        def pending_batches(self) -> int: ...

    class _Sink(Protocol):
        async def write(self, payload: bytes) -> None: ...

    def _conforms(
        d: ModbusTcpDriver, s: Normalise, b: SqliteBuffer, k: UplinkConnection, m: Dlt645Driver
    ) -> None:
        _d: PollingDriver = d
        _m: PollingDriver = m
        _s: Stage = s
        _b: _Buffer = b
        _k: _Sink = k
