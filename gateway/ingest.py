"""The central ingest role: MQTT subscriber -> decode -> InfluxDB, or a dead letter; never lost.

Every message that reaches the ingest ends in exactly one of three places: written to InfluxDB,
committed to the dead-letter store with its reason (:mod:`gateway.deadletter`), or still
unacknowledged at the broker.  A message is acknowledged (PUBACK) only after all of its rows are
one or the other, so a crash of this process loses nothing: the broker redelivers what was not
acknowledged (persistent session, fixed client id), and a redelivered row lands on the same
(series, time) in InfluxDB.

- **Nothing from one message can stop the others.**  Decoding, identity, encoding
  (:mod:`gateway.core.lineproto`) and the store's verdict are per message and per row: what cannot be
  written as sent is dead-lettered with the reason, the rest is written.
- **The topic is the identity.**  ``<prefix>/<site>/<gateway>/data|alarm`` is what the broker's
  ACL authenticates; a payload naming another site or gateway is dead-lettered, and every row
  carries the topic's ``site`` and ``gateway`` tags.
- **Store failures are not the data's.**  Network, 5xx, 401 / 403, 404: nothing is acknowledged, the
  same body is tried again with capped backoff, an ERROR at once and every minute while it lasts.
  Messages then wait at the broker: the MQTT 5 Receive Maximum bounds how many this process
  holds, none is ever discarded client-side (the broker's queue limits must hold the rest:
  ``deploy/mosquitto/mosquitto.conf``).
- **Refused rows are found, not guessed.**  A 400 / 422 splits the body until the refused rows are
  isolated (rewriting a row is idempotent); a 413 or a reset on a large body splits it too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiomqtt

from gateway.codec import (
    FLAG_HISTORICAL,
    Batch,
    CatalogCache,
    CatalogMissingError,
    CatRow,
    Columns,
    decode_alarm,
    decode_columns,
    is_catalog_topic,
    points_payload,
    row_tags,
)
from gateway.config import IngestSection
from gateway.core.errors import (
    BodyTooLargeError,
    BufferStorageError,
    CodecError,
    DataRejectedError,
    StoreUnavailableError,
)
from gateway.core.lineproto import (
    MAX_TIMESTAMP_NS,
    VM_MAX_FUTURE_NS,
    LineError,
    alarm_line,
    check_timestamp,
    line,
    telemetry_fields,
    telemetry_series,
)
from gateway.core.point import Point, now_ns
from gateway.deadletter import DeadLetter, DeadLetterFullError, DeadLetterStore
from gateway.names import NO_NAMES, Names
from gateway.sinks.influx import LineWriter, make_writer
from gateway.sinks.mqtt import MqttClient

if TYPE_CHECKING:
    from gateway.http import StatusServer

__all__ = ["Ingest", "IngestCore", "IngestStats", "Prepared", "fetch_catalogs"]

log = logging.getLogger("edgegw.ingest")
_LOUD_EVERY_S = 60.0
_BACKOFF_MAX_S = 5.0
_HELD_WRITE_S = 10.0  # after losing the broker: how long the messages held here may take to be written
_INT_FAST = 2**63  # integers within this become floats without any check (far below float's overflow)
_SERIES_CACHE = 200_000  # catalog rows whose series text is kept (cleared, not grown, beyond)


@dataclass(slots=True)
class IngestStats:
    messages: int = 0
    points: int = 0  # points in decoded telemetry messages
    written_points: int = 0  # telemetry rows InfluxDB confirmed
    alarms: int = 0  # alarm rows InfluxDB confirmed
    dead_letter_messages: int = 0  # whole messages dead-lettered
    dead_letter_points: int = 0  # points dead-lettered (of messages whose other points were written)
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    undecodable: int = 0
    write_requests: int = 0
    write_retries: int = 0
    write_splits: int = 0  # bodies split to isolate refused rows or to fit the store's size limit
    store_errors: Counter[str] = field(default_factory=Counter)  # by kind: network, auth, not_found, server, ...
    store_down_since: float | None = None  # monotonic time of the first failure of the current outage
    newest_written_ns: int = 0  # source time of the newest point written (the lag metric)
    connected: bool = False
    catalogs: int = 0  # wire format v2 catalog messages learnt
    bad_catalogs: int = 0  # catalog messages refused (malformed, forged origin)
    catalog_waits: int = 0  # v2 batches that arrived before their catalog (held until it came)
    catalog_missing: int = 0  # v2 batches dead-lettered: their catalog did not come within catalog_wait_s


@dataclass(slots=True)
class Prepared:
    """One message turned into rows: what to write, and what is already known to be a dead letter."""

    topic: str
    rows: list[bytes] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)  # the sample of each row in ``cols`` (-1: an alarm event)
    cols: Columns | None = None
    dead: list[DeadLetter] = field(default_factory=list)
    site: str = ""
    gateway: str = ""
    payload: bytes = b""
    refused: list[tuple[int, str]] = field(default_factory=list)  # row index, reason (filled by the write)
    missing: str | None = None  # a v2 batch whose catalog (this id) has not arrived yet: held, not written


def _plain_numbers(values: list[Any]) -> bool:
    """Every value a float, or an int that a float holds exactly (the samples of the fast path)."""
    types = set(map(type, values))
    if types <= {float}:
        return True
    if not types <= {float, int}:
        return False
    # ints within the bound (a float beyond it only sends the message the per-sample way)
    return bool(min(values) >= -_INT_FAST and max(values) <= _INT_FAST)


def _short_reason(reason: str) -> str:
    """A counter label: the reason up to its first detail."""
    return reason.split(":", 1)[0][:60]


class IngestCore:
    """Messages in, rows written or dead-lettered out: everything of the ingest except MQTT."""

    def __init__(
        self,
        cfg: IngestSection,
        writer: LineWriter | None = None,
        dead_letters: DeadLetterStore | None = None,
        observer: Callable[[Batch], None] | None = None,
        alarm_observer: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.writer = writer or make_writer(cfg.influx)
        self.dead_letters = dead_letters or DeadLetterStore(cfg.dead_letter_path, cfg.dead_letter_max_bytes)
        self.observer = observer
        self.alarm_observer = alarm_observer
        self.stats = IngestStats()
        self._prefix = cfg.mqtt.topic_prefix
        self._dialect = cfg.influx.dialect
        self._last_loud = 0.0
        self._series_cache: dict[tuple[Any, ...], str | LineError] = {}
        self._catalogs = CatalogCache()
        self._last_prefixes: dict[tuple[str, str], tuple[dict[int, CatRow], dict[int, str | LineError]]] = {}
        self._plain_prefixes: dict[int, str | LineError] | None = None
        self.names: dict[tuple[str, str], Names] = {}  # (site, gateway) -> the names of its newest catalog
        # None: wait out a store outage for ever (the service); a number: give up after that many
        # seconds with StoreUnavailableError (an operator's command such as a dead-letter replay)
        self.give_up_after_s: float | None = None

    # -- decoding: per message, never raises -------------------------------------------------
    def prepare(self, topic: str, payload: bytes) -> Prepared:
        self.stats.messages += 1
        prep = Prepared(topic, payload=payload)
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != self._prefix or parts[3] not in ("data", "alarm") or not all(parts):
            return self._dead_message(prep, f"unexpected topic: not {self._prefix}/<site>/<gateway>/data|alarm")
        prep.site, prep.gateway = parts[1], parts[2]
        if parts[3] == "alarm":
            self._prepare_alarm(prep)
        else:
            self._prepare_batch(prep)
        return prep

    def prepare_again(self, prep: Prepared) -> Prepared:
        """A held batch (``missing``) decoded again, now that a catalog arrived."""
        fresh = Prepared(prep.topic, payload=prep.payload, site=prep.site, gateway=prep.gateway)
        self._prepare_batch(fresh)
        return fresh

    def _catalog_missing(self, prep: Prepared) -> Prepared:
        self.stats.catalog_missing += 1
        self.stats.undecodable += 1
        cid, prep.missing = prep.missing, None
        return self._dead_message(prep, f"undecodable: its catalog {cid} (topic {self._prefix}/{prep.site}/"
                                        f"{prep.gateway}/catalog/{cid}) never arrived; replay it once the "
                                        "gateway published it (is the gateway allowed to publish there?)")

    def _dead_message(self, prep: Prepared, reason: str, points: int = 0) -> Prepared:
        prep.rows.clear()
        prep.samples.clear()
        prep.dead.append(DeadLetter(prep.topic, reason, prep.payload, "message", points))
        return prep

    def _prepare_alarm(self, prep: Prepared) -> None:
        try:
            doc = decode_alarm(prep.payload)
        except CodecError as err:
            self.stats.undecodable += 1
            self._dead_message(prep, f"undecodable alarm: {err}")
            return
        if (doc["site"], doc["gw"]) != (prep.site, prep.gateway):
            self._dead_message(prep, f"forged origin: alarm names site {doc['site']!r} gateway {doc['gw']!r}, "
                                     f"topic is site {prep.site!r} gateway {prep.gateway!r}", 1)
            return
        try:
            names = self.names.get((prep.site, prep.gateway), NO_NAMES)
            row = alarm_line(doc, self.cfg.influx.alarm_measurement, prep.site, prep.gateway, self._dialect,
                             now_ns(), names.tags(str(doc["point"]), str(doc["device"])))
        except LineError as err:
            self._dead_message(prep, f"cannot be stored: {err}", 1)
            return
        prep.rows.append(row)
        prep.samples.append(-1)
        if self.alarm_observer is not None:
            self.alarm_observer(doc)

    def learn_catalog(self, topic: str, payload: bytes) -> str | None:
        """A wire format v2 catalog message (retained, ``<prefix>/<site>/<gateway>/catalog/<id>``):
        kept for the batches that refer to it.  Returns its id, or None (refused, logged)."""
        parts = topic.split("/")
        if not payload:
            return None  # a retained catalog cleared
        try:
            _gw, _site, cid = self._catalogs.learn(payload, (parts[1], parts[2]))
        except CodecError as err:
            self.stats.bad_catalogs += 1
            log.error("Refused the catalog message on %s: %s", topic, err)
            return None
        if cid != parts[4]:
            log.warning("The catalog on %s has id %s (topic says %s); kept under its own id.", topic, cid, parts[4])
        self.stats.catalogs += 1
        names = self._catalogs.names(cid)
        self.names[(parts[1], parts[2])] = names  # the newest: alarm events name their point with it
        if names.dropped:
            log.warning("The catalog on %s has names no store keeps as a tag (left out): %s", topic,
                        ", ".join(names.dropped[:5]))
        return cid

    def _prepare_batch(self, prep: Prepared) -> None:
        try:
            cols = decode_columns(prep.payload, self._catalogs, (prep.site, prep.gateway))
        except CatalogMissingError as err:
            prep.missing = err.catalog_id  # held until the catalog arrives (Ingest._consume)
            return
        except CodecError as err:
            self.stats.undecodable += 1
            self._dead_message(prep, f"undecodable: {err}")
            return
        n = len(cols.idx)
        self.stats.points += n
        if (cols.site, cols.gateway) != (prep.site, prep.gateway):
            self._dead_message(prep, f"forged origin: batch names site {cols.site!r} gateway {cols.gateway!r}, "
                                     f"topic is site {prep.site!r} gateway {prep.gateway!r}", n)
            return
        prep.cols = cols
        now, dialect, hist_all = now_ns(), self._dialect, cols.historical
        prefixes = self._prefixes(prep, cols.cat, cols.names)
        refused: list[tuple[Point, str]] = []
        rows, samples = prep.rows, prep.samples
        ts_max = MAX_TIMESTAMP_NS if dialect == "influxdb" else min(MAX_TIMESTAMP_NS, now + VM_MAX_FUTURE_NS)
        if n and not hist_all and prefixes is self._plain_prefixes and not any(cols.flags) \
                and cols.rsn.count(None) == n and min(cols.ts) >= -MAX_TIMESTAMP_NS and max(cols.ts) <= ts_max \
                and _plain_numbers(cols.val):
            # the whole message is common samples (the usual case): one comprehension, no per-sample checks.
            # An int is written as its digits: without an ``i`` suffix both stores parse a float field, the
            # same float as the per-sample way's ``float(v)`` (``7`` and ``7.0`` are one value)
            rows.extend([f"{prefixes[i]} value={v!r},quality={q}i {ts}".encode()
                         for i, ts, v, q in zip(cols.idx, cols.ts, cols.val, cols.q, strict=True)])
            samples.extend(range(n))
            if self.observer is not None:
                self.observer(Batch(cols.gateway, cols.site, cols.seq, cols.created_ns, cols.points(), False))
            return
        for k, (i, ts, v, q, r, f) in enumerate(zip(cols.idx, cols.ts, cols.val, cols.q, cols.rsn, cols.flags,
                                                   strict=True)):
            prefix = prefixes[i]
            tv = type(v)
            # the common sample, inline: a number (finite: checked at decode), no reason, live, a plausible time
            if (tv is float or (tv is int and -_INT_FAST <= v <= _INT_FAST)) and r is None and not f \
                    and not hist_all and -MAX_TIMESTAMP_NS <= ts <= ts_max and type(prefix) is str:
                rows.append(f"{prefix} value={float(v)!r},quality={q}i {ts}".encode())
                samples.append(k)
                continue
            try:
                if isinstance(prefix, LineError):
                    raise prefix
                check_timestamp(ts, dialect, now)
                rows.append(line(prefix, telemetry_fields(v, q, r, hist_all or bool(f & FLAG_HISTORICAL), dialect),
                                 ts))
                samples.append(k)
            except LineError as err:
                refused.append((cols.point(k), f"cannot be stored: {err}"))
        if refused:
            prep.dead.append(self._points_letter(prep, refused))
        if self.observer is not None:
            self.observer(Batch(cols.gateway, cols.site, cols.seq, cols.created_ns, cols.points(), cols.historical))

    def _prefixes(self, prep: Prepared, cat: dict[int, CatRow], names: Names = NO_NAMES) -> dict[int, str | LineError]:
        """The series text of every catalog row of a batch; the same validated catalog (the codec's
        cache hands out the same object) reuses the last map it got."""
        last = self._last_prefixes.get((prep.site, prep.gateway))
        if last is not None and last[0] is cat:
            if self._plain_prefixes is not last[1] and all(type(p) is str for p in last[1].values()):
                self._plain_prefixes = last[1]
            return last[1]
        # (the names are the catalog's: the same catalog object has the same names)
        prefixes = {i: self._series(prep, row, names) for i, row in cat.items()}
        if len(self._last_prefixes) >= _SERIES_CACHE // 100:
            self._last_prefixes.clear()
        self._last_prefixes[(prep.site, prep.gateway)] = (cat, prefixes)
        # a map with no refused series may take the fast path of _prepare_batch (identity marks it)
        self._plain_prefixes = prefixes if all(type(p) is str for p in prefixes.values()) else None
        return prefixes

    def _series(self, prep: Prepared, row: CatRow, names: Names = NO_NAMES) -> str | LineError:
        """The series text of a catalog row, from a bounded cache (rows repeat in every message),
        with the name tags of its catalog (display names in any language)."""
        key = (prep.site, prep.gateway, names.id, *row[:6], *row[6].items())
        hit = self._series_cache.get(key)
        if hit is None:
            try:
                hit = telemetry_series(self.cfg.influx.measurement, row[0], row[1], row[2], row[3], row[4],
                                       row_tags(row), prep.site, prep.gateway, self._dialect,
                                       names.tags(row[0], row[3]))
            except LineError as err:
                hit = err
            if len(self._series_cache) >= _SERIES_CACHE:
                self._series_cache.clear()
            self._series_cache[key] = hit
        return hit

    def _points_letter(self, prep: Prepared, refused: list[tuple[Point, str]]) -> DeadLetter:
        reasons = Counter(r for _, r in refused)
        text = "; ".join(f"{n} x {r}" if n > 1 else r for r, n in reasons.most_common(5))
        payload = points_payload(prep.gateway, prep.site, [p for p, _ in refused])
        return DeadLetter(prep.topic, f"{len(refused)} of the message's points: {text}", payload, "points",
                          len(refused))

    # -- writing: returns once every row is written or dead-lettered -----------------------------
    async def settle(self, prepared: list[Prepared], *, replaces: list[int] | None = None) -> None:
        """Write every row, isolate what the store refuses, and commit the dead letters.

        Returns only when each message is fully written or dead-lettered: the caller may then
        acknowledge them all.  Store outages are waited out here (backpressure, never loss).
        ``replaces``: dead-letter ids these messages came from (a replay); they are deleted in the
        transaction that commits what is refused again.
        """
        for j, prep in enumerate(prepared):
            if prep.missing is not None:  # never written unseen: what waited in vain is a dead letter
                prepared[j] = self._catalog_missing(prep)
        for chunk in self._chunks(prepared):
            await self._write_rows(prepared, chunk)
        letters: list[DeadLetter] = []
        for prep in prepared:
            if prep.refused:
                refused_samples = [(prep.samples[i], reason) for i, reason in prep.refused]
                pts = [(prep.cols.point(k), r) for k, r in refused_samples if k >= 0 and prep.cols is not None]
                if pts:
                    letters.append(self._points_letter(prep, pts))
                if len(pts) < len(refused_samples):  # an alarm row: dead-letter the event itself
                    reason = next(r for k, r in refused_samples if k < 0)
                    letters.append(DeadLetter(prep.topic, reason, prep.payload, "message", 1))
            letters.extend(prep.dead)
        if letters or replaces:
            await self._dead_letter(letters, replaces)
        for prep in prepared:
            samples = prep.samples
            if prep.refused:
                bad = {i for i, _ in prep.refused}
                samples = [k for i, k in enumerate(samples) if i not in bad]
            alarms = samples.count(-1)  # an alarm event's row; the others are samples
            self.stats.alarms += alarms
            self.stats.written_points += len(samples) - alarms
            if prep.cols is not None and prep.samples:
                newest = max(prep.cols.ts)  # (a refused sample's time counts too: lag is approximate)
                if newest > self.stats.newest_written_ns:
                    self.stats.newest_written_ns = newest

    def _chunks(self, prepared: list[Prepared]) -> list[list[tuple[int, int, int]]]:
        """Bodies bounded by points and by bytes (below the store's body limit), as segments
        (message, first row, end row): whole messages where they fit, a large one cut by rows."""
        max_points, max_bytes = self.cfg.batch_max_points, self.cfg.influx.max_body_bytes
        chunks: list[list[tuple[int, int, int]]] = []
        cur: list[tuple[int, int, int]] = []
        points = size = 0
        for m, prep in enumerate(prepared):
            n = len(prep.rows)
            if not n:
                continue
            nbytes = sum(map(len, prep.rows)) + n
            if cur and (points + n > max_points or size + nbytes > max_bytes):
                chunks.append(cur)
                cur, points, size = [], 0, 0
            if n <= max_points and nbytes <= max_bytes:
                cur.append((m, 0, n))
                points, size = points + n, size + nbytes
                continue
            start = 0  # one message larger than a body: cut it by rows
            for r, row in enumerate(prep.rows):
                k = len(row) + 1
                if r > start and (r - start >= max_points or size + k > max_bytes):
                    chunks.append([(m, start, r)])
                    start, size = r, 0
                size += k
            cur, points = [(m, start, n)], n - start
        if cur:
            chunks.append(cur)
        return chunks

    async def _write_rows(self, prepared: list[Prepared], chunk: list[tuple[int, int, int]]) -> None:
        # (the empty last item ends the body with a newline without copying it again)
        body = b"\n".join(itertools.chain(itertools.chain.from_iterable(prepared[m].rows[a:b] for m, a, b in chunk),
                                           (b"",)))
        try:
            await self._write_body(body)
            return
        except (DataRejectedError, BodyTooLargeError):
            pass  # find the refused rows: row by row references from here on (rare)
        self.stats.write_splits += 1
        refs = [(m, r) for m, a, b in chunk for r in range(a, b)]
        if len(refs) > 1:
            half = len(refs) // 2
            stack = [refs[half:], refs[:half]]
        else:
            stack = [refs]
        while stack:
            part = stack.pop()
            body = b"\n".join(prepared[m].rows[r] for m, r in part) + b"\n"
            try:
                await self._write_body(body)
                continue
            except DataRejectedError as err:
                if len(part) > 1 and err.echoed:
                    echoed = set(err.echoed)
                    hit = [ref for ref in part if prepared[ref[0]].rows[ref[1]] in echoed]
                    if hit and len(hit) < len(part):
                        for m, r in hit:
                            prepared[m].refused.append((r, f"refused by InfluxDB: {err}"))
                        stack.append([ref for ref in part if ref not in hit])
                        self.stats.write_splits += 1
                        continue
                reason = f"refused by InfluxDB: {err}"
            except BodyTooLargeError as err:
                reason = f"too large for InfluxDB on its own: {err}"
            if len(part) == 1:
                m, r = part[0]
                prepared[m].refused.append((r, reason))
                continue
            self.stats.write_splits += 1
            half = len(part) // 2
            stack.extend((part[half:], part[:half]))

    async def _write_body(self, body: bytes) -> None:
        backoff = 0.2
        while True:
            self.stats.write_requests += 1
            try:
                await self.writer.write(body)
            except StoreUnavailableError as err:
                self.stats.write_retries += 1
                self.stats.store_errors[err.kind] += 1
                self._outage(f"InfluxDB cannot take writes ({err.kind}): {err}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            if self.stats.store_down_since is not None:
                down = time.monotonic() - self.stats.store_down_since
                log.warning("InfluxDB takes writes again after %.0f s; the held messages are being written.", down)
                self.stats.store_down_since = None
            return

    def _outage(self, what: str) -> None:
        now = time.monotonic()
        if self.stats.store_down_since is None:
            self.stats.store_down_since = now
            self._last_loud = now
            log.error("%s. Nothing is acknowledged: messages wait at the broker; retrying.", what)
        elif now - self._last_loud >= _LOUD_EVERY_S:
            self._last_loud = now
            log.error("%s, for %.0f s now; messages wait at the broker.", what, now - self.stats.store_down_since)
        if self.give_up_after_s is not None and now - self.stats.store_down_since >= self.give_up_after_s:
            self.stats.store_down_since = None
            raise StoreUnavailableError(f"{what} (gave up after {self.give_up_after_s:g} s)", "gave_up")

    async def _dead_letter(self, letters: list[DeadLetter], replaces: list[int] | None = None) -> None:
        backoff = 0.5
        while True:
            try:
                self.dead_letters.add(letters, replaces=replaces)
                break
            except (DeadLetterFullError, BufferStorageError) as err:
                self._outage(f"Cannot dead-letter {len(letters)} messages: {err}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
        if self.stats.store_down_since is not None:
            self.stats.store_down_since = None
        for d in letters:
            if d.kind == "message":
                self.stats.dead_letter_messages += 1
            else:
                self.stats.dead_letter_points += d.points
            self.stats.dead_letter_reasons[_short_reason(d.reason)] += 1
            log.error("Dead-lettered %s on %s (%s): %s", "a message" if d.kind == "message" else f"{d.points} points",
                      d.topic, f"{d.points} points" if d.kind == "message" else "the rest written", d.reason[:300],
                      extra={"topic": d.topic, "kind": d.kind, "points": d.points, "reason": d.reason[:300]})

    def close(self) -> None:
        self.writer.close()
        self.dead_letters.close()


class Ingest(IngestCore):
    """The ingest on an MQTT 5 (or 3.1.1) broker with manual acknowledgement."""

    def __init__(
        self,
        cfg: IngestSection,
        writer: LineWriter | None = None,
        observer: Callable[[Batch], None] | None = None,
        alarm_observer: Callable[[dict[str, Any]], None] | None = None,
        dead_letters: DeadLetterStore | None = None,
        http_listen: str | None = None,
    ) -> None:
        """``observer`` sees each decoded batch, ``alarm_observer`` each decoded alarm event (the
        demo shows them; both are called before the write is confirmed).  ``http_listen``: serve the
        status endpoint (/healthz, /readyz, /metrics) on HOST:PORT while running."""
        super().__init__(cfg, writer, dead_letters, observer, alarm_observer)
        self.http: StatusServer | None = None
        if http_listen is not None:
            from gateway.http import StatusServer

            self.http = StatusServer(http_listen, ingest=self)
        self.client_id = cfg.mqtt.client_id or f"edgegw-ingest-{socket.gethostname()}"
        share = f"$share/{cfg.share_group}/" if cfg.share_group and cfg.mqtt.protocol == "5" else ""
        self.topic_filter = f"{share}{cfg.mqtt.topic_prefix}/+/+/data"
        self.catalog_filter = f"{cfg.mqtt.topic_prefix}/+/+/catalog/+"  # every ingest process needs them all
        self.alarm_filter = f"{share}{cfg.mqtt.topic_prefix}/+/+/alarm"
        self.subscribed = asyncio.Event()

    def _say_limits(self) -> None:
        rm = self.cfg.receive_maximum if self.cfg.mqtt.protocol == "5" else "the broker's max_inflight_messages"
        log.info(
            "Ingest %s: at most %s unacknowledged messages held here; the broker must queue the rest for this "
            "session without dropping (mosquitto: max_queued_messages 0 or above the worst backlog, "
            "max_queued_bytes 0, persistence true; EMQX: mqtt.max_mqueue_len, session expiry %d s). "
            "See deploy/mosquitto/mosquitto.conf.", self.client_id, rm, self.cfg.mqtt.session_expiry_s)

    async def run(self) -> None:
        if self.http is None:
            return await self._run()
        async with asyncio.TaskGroup() as tg:  # the endpoint lives and dies with the ingest
            tg.create_task(self.http.run(), name="http")
            tg.create_task(self._run(), name="ingest")

    async def _run(self) -> None:
        self._say_limits()
        backoff = 0.2
        failures = 0
        last_said = 0.0
        ever = False
        servers = self.cfg.mqtt.server_list()
        current = 0  # the broker of the last success; the next ones in turn after a failure
        while True:
            host, port = servers[current]
            client = MqttClient(self.cfg.mqtt, self.client_id, manual_ack=True, max_queued_incoming=0,
                                receive_maximum=self.cfg.receive_maximum, server=(host, port))
            try:
                async with client:
                    # the retained catalogs first: they arrive before the batches that refer to them
                    await client.subscribe(self.catalog_filter, qos=1)
                    await client.subscribe(self.topic_filter, qos=1)
                    await client.subscribe(self.alarm_filter, qos=1)
                    self.stats.connected = True
                    self.subscribed.set()
                    ever = True
                    log.info("Ingest subscribed to %s and %s on %s:%d%s.", self.topic_filter, self.alarm_filter,
                             host, port,
                             f" after {failures} failed attempts" if failures else "")
                    backoff, failures = 0.2, 0
                    await self._consume(client)
            except aiomqtt.MqttError as err:
                failures += 1
                now = time.monotonic()
                if self.stats.connected:
                    log.warning("Ingest lost the broker: %s", err)
                elif failures == 1 or now - last_said >= _LOUD_EVERY_S:
                    last_said = now
                    log.error("Ingest cannot %s the broker %s:%d: %s (attempt %d; retrying).",
                              "reach or log in to" if not ever else "reconnect to", host, port, err, failures)
                if not self.stats.connected:
                    current = (current + 1) % len(servers)  # a cluster's other node, or the next site
                self.stats.connected = False
                self.subscribed.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)  # back within seconds once the broker is

    async def _consume(self, client: MqttClient) -> None:
        it = client.messages
        pending: list[aiomqtt.Message] = []
        prepared: list[Prepared] = []
        n_rows = 0
        deadline: float | None = None
        linger = self.cfg.linger_ms / 1000
        # The wait for the next message is never cancelled by the linger timeout: aiomqtt's
        # iterator loses a message that was dequeued just as its wait was cancelled, and an
        # unacknowledged message is not redelivered before the next reconnect (it was seen: a
        # batch or an alarm event stuck at the broker).  One pending task, reused across timeouts.
        nxt: asyncio.Future[aiomqtt.Message] | None = None
        writing: collections.deque[asyncio.Future[None]] = collections.deque()  # oldest first
        waiting_since: float | None = None  # since when a batch waits for its catalog
        asked: dict[tuple[str, str], float] = {}  # (site, gateway) -> when its catalogs were last asked for
        try:
            while True:
                while writing and writing[0].done():
                    writing.popleft().result()  # a failure of a write task ends this connection's loop
                if nxt is None:
                    nxt = asyncio.ensure_future(anext(it))
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, _ = await asyncio.wait({nxt}, timeout=timeout)
                if done:
                    msg = nxt.result()
                    nxt = None
                    payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                    if is_catalog_topic(msg.topic.value):
                        # a catalog is state, not data: learnt and acknowledged at once; held batches retried
                        if self.learn_catalog(msg.topic.value, payload) is not None:
                            for j, p in enumerate(prepared):
                                if p.missing is not None:
                                    prepared[j] = self.prepare_again(p)
                                    n_rows += len(prepared[j].rows)
                        client.ack(msg.mid, msg.qos)
                        continue
                    prep = self.prepare(msg.topic.value, payload)
                    if prep.missing is not None:
                        self.stats.catalog_waits += 1
                    pending.append(msg)
                    prepared.append(prep)
                    n_rows += len(prep.rows)
                    if deadline is None:
                        deadline = time.monotonic() + linger
                if not done or n_rows >= self.cfg.batch_max_points:
                    held = [p for p in prepared if p.missing is not None]
                    if held:
                        now = time.monotonic()
                        waiting_since = now if waiting_since is None else waiting_since
                        if now - waiting_since < self.cfg.catalog_wait_s:
                            await self._ask_catalogs(client, held, asked)
                            deadline = now + 0.5  # look again soon; everything after it waits in order
                            continue
                    waiting_since = None
                    # up to writes_in_flight writes while the next batch is prepared: decoding overlaps
                    # the store's work; each write acknowledges its messages only after the one before it
                    # (PUBACKs in the order the messages came), and at most writes_in_flight + 1 are held
                    if len(writing) >= self.cfg.writes_in_flight:
                        await asyncio.wait({writing[0]})
                        writing.popleft().result()
                    before = writing[-1] if writing else None
                    writing.append(asyncio.ensure_future(self._settle_and_ack(client, prepared, pending, before)))
                    pending, prepared, n_rows, deadline = [], [], 0, None
        except aiomqtt.MqttError:
            # The broker is gone.  What this process holds is written all the same, unacknowledged: a
            # broker killed before it saved its state (mosquitto: every autosave_interval) has lost
            # these messages, and these copies are the last ones; a redelivered copy is an identical
            # row.  Found by the HIL campaign (hil/scenarios/broker_kill.toml).
            await self._write_held(list(writing), prepared)
            raise
        finally:
            if nxt is not None:
                nxt.cancel()
            for task in writing:
                task.cancel()  # not acknowledged: the broker redelivers (a no-op for a finished one)
            await asyncio.gather(*writing, return_exceptions=True)  # (their outcomes are retrieved)

    async def _write_held(self, writing: list[asyncio.Future[None]], prepared: list[Prepared]) -> None:
        """After losing the broker: finish the writes in flight and write the messages received since,
        without acknowledging them (they are settled again if the broker redelivers them).  Bounded by
        ``_HELD_WRITE_S``: a store that does not answer leaves them to the redelivery."""
        try:
            async with asyncio.timeout(_HELD_WRITE_S):
                for task in writing:
                    with contextlib.suppress(aiomqtt.MqttError):
                        await task  # its acknowledgements go nowhere: harmless
                ready = [p for p in prepared if p.missing is None]  # the others wait for their catalog
                for chunk in self._chunks(ready):
                    await self._write_rows(ready, chunk)
        except TimeoutError:
            log.warning("Ingest lost the broker with %d messages not yet written; the store did not take them "
                        "within %g s: they are left to the broker's redelivery.", len(prepared), _HELD_WRITE_S)
        except (DataRejectedError, BodyTooLargeError, OSError) as err:
            log.warning("Ingest lost the broker; writing the %d messages it held failed (%s): they are left to "
                        "the broker's redelivery.", len(prepared), err)

    async def _ask_catalogs(self, client: MqttClient, held: list[Prepared],
                            asked: dict[tuple[str, str], float]) -> None:
        """Subscribe again to the catalogs of the gateways whose batches wait: the broker then sends
        their retained catalogs again (one this process missed or forgot).  At most every 2 s each."""
        now = time.monotonic()
        for key in {(p.site, p.gateway) for p in held}:
            if now - asked.get(key, -1e9) < 2.0:
                continue
            asked[key] = now
            if len(asked) > 10_000:
                asked.clear()
            missing = sorted({p.missing for p in held if (p.site, p.gateway) == key and p.missing})
            log.warning("Batches of %s/%s wait for catalog %s; asking the broker for it again.", key[0], key[1],
                        ", ".join(missing))
            await client.subscribe(f"{self._prefix}/{key[0]}/{key[1]}/catalog/+", qos=1)

    async def _settle_and_ack(self, client: MqttClient, prepared: list[Prepared],
                              pending: list[aiomqtt.Message], before: asyncio.Future[None] | None) -> None:
        """Settle (write or dead-letter) the messages, then acknowledge them once ``before`` (the write
        of the messages that came earlier) has: MQTT wants PUBACKs in the order of the PUBLISHes, and a
        failed earlier write fails this one unacknowledged too (the broker redelivers both)."""
        await self.settle(prepared)
        if before is not None:
            await before
        for m in pending:
            client.ack(m.mid, m.qos)


async def fetch_catalogs(core: IngestCore, quiet_s: float = 1.0, timeout_s: float = 10.0) -> int:
    """Teach ``core`` the retained wire format v2 catalogs of every gateway on its broker (what a
    dead-letter replay needs for v2 batches); returns how many were learnt.  A short session of its
    own (no session kept on the broker): the retained messages arrive on subscribe; it stops after
    ``quiet_s`` without one, at most after ``timeout_s``."""
    cfg = core.cfg.mqtt.model_copy(update={"session_expiry_s": 0})
    learnt = 0
    client = MqttClient(cfg, f"{cfg.client_id or 'edgegw-ingest'}-catalogs-{socket.gethostname()}")
    async with client:
        await client.subscribe(f"{cfg.topic_prefix}/+/+/catalog/+", qos=1)
        end = time.monotonic() + timeout_s
        it = client.messages
        while time.monotonic() < end:
            try:
                msg = await asyncio.wait_for(anext(it), min(quiet_s, max(0.0, end - time.monotonic())))
            except TimeoutError:
                break
            payload = msg.payload if isinstance(msg.payload, bytes) else b""
            if is_catalog_topic(msg.topic.value) and core.learn_catalog(msg.topic.value, payload) is not None:
                learnt += 1
    return learnt
