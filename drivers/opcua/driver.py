"""OPC UA client driver: the only module (with certs helpers and hil/) that imports asyncua.

Two modes, both sized under the server's operation limits:

* subscription: one subscription, monitored items created in batches; several PublishRequests stay
  in flight (:class:`_PipelinedSession`), each PublishResponse is decoded by :mod:`drivers.opcua.wire`
  straight into (handle, value, status, times) tuples and routed into one sample batch (no asyncua
  struct, Node object or per-item task: that is what keeps 10,000 notifications/s at a few percent
  of a core), and :meth:`OpcUaDriver.stream` yields those batches;
* polling: :meth:`OpcUaDriver.read` issues batched Read calls.

Reconnecting is not done here: a lost session makes :meth:`stream` / :meth:`read` raise, and the
runner re-enters the driver with capped backoff, which re-creates session, subscription and every
monitored item.  asyncua's own auto-reconnect is off so there is exactly one retry policy.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import struct
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Self

from asyncua import Client, ua
from asyncua.client.ua_session import SessionState, UaSession
from asyncua.common.shortcuts import Shortcuts
from asyncua.common.utils import Buffer
from asyncua.crypto import security_policies
from asyncua.ua.ua_binary import struct_from_binary, variant_from_binary
from asyncua.ua.uaerrors import (
    BadNoSubscription,
    BadTimeout,
    BadTooManyPublishRequests,
    UaError,
    UaStatusCodeError,
)
from asyncua.ua.uatypes import win_epoch_to_datetime
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.opcua.browse import usable_range
from drivers.opcua.certs import AppCertificate, Pki, application_uri_of, thumbprint, validity_problem
from drivers.opcua.config import (
    ArrayMode,
    DeadbandType,
    Identity,
    Mode,
    OpcUaDevice,
    OpcUaPoint,
    SecurityMode,
    SecurityPolicy,
    TimestampSource,
    Trigger,
    TrustPolicy,
)
from drivers.opcua.decode import convert_value, datetime_ns, quality_of
from drivers.opcua.plan import batch_size, chunks
from drivers.opcua.wire import (
    ItemChange,
    PublishFrame,
    ReadResult,
    Unsupported,
    decode_publish_response,
    decode_read_response,
)
from gateway.core.errors import ConnectError, ReadError
from gateway.core.point import Quality, SampleBatch, now_ns
from gateway.core.values import StringEncoding

__all__ = [
    "BrowsedVariable",
    "OpcUaDriver",
    "SecuritySettings",
    "asyncua_variant",
    "browse",
    "decode_publish",
    "frame_of",
    "secure",
    "status_name",
]

for _name in ("asyncua", "asyncua.client", "asyncua.common.subscription"):
    logging.getLogger(_name).setLevel(logging.ERROR)  # it logs every publish at INFO, formatting the payload
# a lost connection is logged once as a state transition by the runner, not as asyncua's traceback
for _name in ("asyncua.client.ua_session", "asyncua.client.client"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

log = logging.getLogger("edgegw.opcua")

_POLICIES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
    SecurityPolicy.AES128_SHA256_RSAOAEP: security_policies.SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicy.AES256_SHA256_RSAPSS: security_policies.SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicy.BASIC128RSA15: security_policies.SecurityPolicyBasic128Rsa15,
    SecurityPolicy.BASIC256: security_policies.SecurityPolicyBasic256,
}
_MODES = {
    SecurityMode.NONE: ua.MessageSecurityMode.None_,
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}
_TRIGGERS = {
    Trigger.STATUS: ua.DataChangeTrigger.Status,
    Trigger.STATUS_VALUE: ua.DataChangeTrigger.StatusValue,
    Trigger.STATUS_VALUE_TIMESTAMP: ua.DataChangeTrigger.StatusValueTimestamp,
}
_DEADBANDS = {
    DeadbandType.NONE: ua.DeadbandType.None_,
    DeadbandType.ABSOLUTE: ua.DeadbandType.Absolute,
    DeadbandType.PERCENT: ua.DeadbandType.Percent,
}
_TS = {TimestampSource.SOURCE: 0, TimestampSource.SERVER: 1, TimestampSource.GATEWAY: 2}
_LIMIT_NODES = (
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
)
_COMM_ERRORS = (OSError, TimeoutError, asyncio.TimeoutError, UaError)
_PLAIN: frozenset[type] = frozenset({float, int, bool, str})
_NUMERIC: frozenset[type] = frozenset({float, int, bool})
_STATUS_NAMES: dict[int, str] = {}


def status_name(code: int) -> str:
    """``BadNodeIdUnknown`` for 0x80340000: the reason operators can look up."""
    name = _STATUS_NAMES.get(code)
    if name is None:
        try:
            name = ua.StatusCode(code).name
        except (KeyError, ValueError, AttributeError):
            name = f"0x{code:08X}"
        _STATUS_NAMES[code] = name
    return name


# Per point, resolved once: (sample index, timestamp choice, array index or -1, array as JSON, string
# encoding, the value types that go as read: str only when the point's strings are UTF-8, whose
# surrogate-escaped bytes the pipeline's first stage turns into encoding_error)
_Route = tuple[int, int, int, bool, StringEncoding, frozenset[type]]
# a monitored item's settings with the device's defaults applied:
# (trigger, deadband type, deadband value, sampling interval ms, queue size, discard oldest)
_ItemSettings = tuple[Trigger, DeadbandType, float, float, int, bool]


def _item_settings(dev: OpcUaDevice, p: OpcUaPoint) -> _ItemSettings:
    return (
        p.trigger or dev.trigger,
        p.deadband_type or dev.deadband_type,
        p.deadband_value if p.deadband_value is not None else dev.deadband_value,
        p.sampling_interval_ms if p.sampling_interval_ms is not None else dev.sampling_interval_ms,
        p.queue_size if p.queue_size is not None else dev.queue_size,
        p.discard_oldest if p.discard_oldest is not None else dev.discard_oldest,
    )


# a point's route without its index: (timestamp source, array index or -1, array as JSON, string
# encoding, the value types taken as they are)
_RouteTail = tuple[int, int, bool, StringEncoding, frozenset[type]]


@dataclass(frozen=True, slots=True)
class OpcUaPoints:
    """What the driver keeps of a device's points, with the device's defaults applied: picklable, so
    that ``edgegw run``'s config-reading child hands over this instead of the point models
    (:func:`lean_device`); equal settings and routes are stored once."""

    node_ids: list[str]
    names: list[str]
    settings: list[_ItemSettings]
    routes: list[_RouteTail]


def points_form(dev: OpcUaDevice) -> OpcUaPoints:
    settings: dict[_ItemSettings, _ItemSettings] = {}
    tails: dict[_RouteTail, _RouteTail] = {}
    routes: list[_RouteTail] = []
    for p in dev.points:
        enc = p.string_encoding or dev.string_encoding
        tail = (_TS[p.timestamp or dev.timestamp], -1 if p.array_index is None else p.array_index,
                p.array_mode is ArrayMode.JSON, enc, _PLAIN if enc is StringEncoding.UTF_8 else _NUMERIC)
        routes.append(tails.setdefault(tail, tail))
    return OpcUaPoints(
        [p.node_id for p in dev.points], [p.name for p in dev.points],
        [settings.setdefault(s, s) for s in map(partial(_item_settings, dev), dev.points)], routes,
    )


def lean_device(dev: OpcUaDevice) -> tuple[OpcUaDevice, OpcUaPoints]:
    """The device without its points, and the compact form the driver is made from (``DriverSpec.lean``)."""
    return dev.model_copy(update={"points": []}), points_form(dev)


# a monitored node deleted at run time; asyncua servers report it as a subscription status change
_NODE_GONE = frozenset({ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid})


def asyncua_variant(b: bytes, pos: int) -> tuple[Any, int]:
    """The wire decoder's fallback for uncommon Variants: asyncua's own decoding."""
    buf = Buffer(b, pos)
    return variant_from_binary(buf).Value, buf.cur_pos


def _dv_parts(dv: ua.DataValue) -> tuple[Any, int, int | None, int | None]:
    """``(value, status, source ns, server ns)`` of an asyncua DataValue, as the wire decoder gives them
    (the null DateTime and MaxDateTime are no timestamp: :func:`drivers.opcua.wire.timestamp_ns`)."""
    return (
        dv.Value.Value if dv.Value is not None else None,
        dv.StatusCode.value if dv.StatusCode is not None else 0,
        _timestamp(dv.SourceTimestamp),
        _timestamp(dv.ServerTimestamp),
    )


_NO_TIME = (datetime_ns(win_epoch_to_datetime(0)), datetime_ns(win_epoch_to_datetime(1 << 62)))


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    ns = datetime_ns(value)
    return None if ns <= _NO_TIME[0] or ns >= _NO_TIME[1] else ns


def frame_of(result: ua.PublishResult) -> PublishFrame:
    """A PublishResult decoded by asyncua, in the wire decoder's shape."""
    msg = result.NotificationMessage
    data = msg.NotificationData or []
    frame = PublishFrame(result.SubscriptionId, msg.SequenceNumber, bool(result.MoreNotifications), len(data))
    for notif in data:
        if isinstance(notif, ua.DataChangeNotification):
            frame.items.extend((i.ClientHandle, *_dv_parts(i.Value)) for i in notif.MonitoredItems)
        elif isinstance(notif, ua.StatusChangeNotification):
            frame.status_changes.append(notif.Status.value)
    return frame


def decode_publish(data: bytes) -> PublishFrame:
    """The lean decoder, or asyncua's generic one for a message it does not read."""
    try:
        return decode_publish_response(data, asyncua_variant)
    except Unsupported:
        return frame_of(struct_from_binary(ua.PublishResponse, Buffer(data)).Parameters)


def _bytes_of(data: Buffer) -> bytes:
    raw = data.read(len(data))
    return raw if isinstance(raw, bytes) else bytes(raw)


class _PipelinedSession(UaSession):  # type: ignore[misc]
    """asyncua's session with a publish loop that keeps several PublishRequests in flight.

    asyncua sends the next PublishRequest only after the previous response was decoded and handled,
    so a server that caps notifications per response (node-opcua: 1,000) waits a full round trip
    between chunks; with N requests queued at the server it answers as fast as it can encode
    (Part 4 §5.13.5 recommends several).  Responses are decoded by :mod:`drivers.opcua.wire`.
    The callback receives a :class:`PublishFrame`, or asyncua's ``PublishResult`` when asyncua
    itself informs subscriptions of a lost session.
    """

    def __init__(self, client: Any, publish_requests: int) -> None:
        super().__init__(client)
        self.publish_requests = publish_requests

    async def read_values(self, params: ua.ReadParameters) -> list[ReadResult]:
        """A Read decoded by :mod:`drivers.opcua.wire` (Part 6 DataValue field order)."""
        request = ua.ReadRequest()
        request.Parameters = params
        raw = _bytes_of(await self._send_request(request))
        try:
            code, results = decode_read_response(raw, asyncua_variant)
        except Unsupported:
            response = struct_from_binary(ua.ReadResponse, Buffer(raw))
            code, results = response.ResponseHeader.ServiceResult.value, [_dv_parts(dv) for dv in response.Results]
        ua.StatusCode(code).check()
        return results

    async def _publish_loop(self) -> None:
        acks: list[ua.SubscriptionAcknowledgement] = []
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.publish_requests):
                tg.create_task(self._publisher(acks))

    async def _publisher(self, acks: list[ua.SubscriptionAcknowledgement]) -> None:
        while self._state not in (SessionState.CLOSING, SessionState.CLOSED):
            request = ua.PublishRequest()
            request.Parameters.SubscriptionAcknowledgements = acks[:]
            acks.clear()
            try:
                data = await self._send_request(request, timeout=0)
            except BadTimeout:
                continue
            except (BadNoSubscription, BadTooManyPublishRequests):
                return  # no subscription left, or the server queues fewer requests: fewer in flight
            except (*_COMM_ERRORS, ConnectionError):
                # the connection-lost callback tells the driver; the session is closed from there
                await asyncio.sleep(1.0)
                continue
            try:
                frame = decode_publish(_bytes_of(data))
            except (struct.error, IndexError, ValueError, UaError) as err:  # as asyncua: skip, keep publishing
                log.warning("Undecodable PublishResponse skipped: %r", err)
                continue
            if not frame.subscription_id:
                return  # Part 4 §5.13.5: no subscriptions
            callback = self._subscription_callbacks.get(frame.subscription_id)
            if callback is not None:
                callback(frame)
            if frame.notification_count:
                acks.append(
                    ua.SubscriptionAcknowledgement(
                        SubscriptionId=frame.subscription_id, SequenceNumber=frame.sequence_number
                    )
                )


class _Client(Client):  # type: ignore[misc]
    def __init__(self, url: str, *, timeout: float, watchdog_intervall: float, publish_requests: int) -> None:
        super().__init__(url, timeout=timeout, watchdog_intervall=watchdog_intervall)
        self.uaclient.session = _PipelinedSession(self.uaclient, publish_requests)
        self.nodes = Shortcuts(self.uaclient.session)


@dataclass(slots=True)
class DriverCounters:
    notifications: int = 0
    publish_responses: int = 0
    keepalives: int = 0
    dropped_batches: int = 0
    sessions: int = 0
    bad_items: int = 0
    create_item_calls: int = 0  # CreateMonitoredItems requests (batched under the server's limit)
    read_calls: int = 0


class OpcUaDriver:
    """One OPC UA session to one server; everything above sees only gateway errors and samples."""

    def __init__(self, config: OpcUaDevice, first_index: int, *, queue_batches: int = 256,
                 form: OpcUaPoints | None = None) -> None:
        """``form``: :func:`lean_device`'s compact form of the points when ``config`` is the device
        without them (``edgegw run`` reads its config in a child process and hands over only that);
        otherwise made here from ``config.points``."""
        # what a point needs after the config is parsed, with the device's defaults applied; the parsed
        # point models (~1.2 KB a point) are not kept (#17), and neither are the protocol objects made
        # from them at each connect (node ids in subscription mode, monitored-item requests)
        if form is None:
            form = points_form(config)
        self._node_id_texts = form.node_ids
        self._point_names = form.names
        self._item_settings = form.settings
        self._first = first_index
        self._routes: list[_Route] = [(first_index + i, *tail) for i, tail in enumerate(form.routes)]
        # the device's settings, shared with the reload
        self.config = config.model_copy(update={"points": []}) if config.points else config
        # ask only for the timestamps some point uses: decoding two DateTimes per notification is a
        # measurable share of the client's CPU at 10,000 notifications/s
        wanted = {r[1] for r in self._routes}
        self._timestamps = (
            ua.TimestampsToReturn.Both if len(wanted - {2}) > 1
            else ua.TimestampsToReturn.Source if wanted - {2} == {0}
            else ua.TimestampsToReturn.Server if wanted - {2} == {1}
            else ua.TimestampsToReturn.Neither
        )
        self._node_ids: list[ua.NodeId] = []  # polling mode: parsed at the first connect, kept
        self._client: Client | None = None
        self._queue: asyncio.Queue[SampleBatch] = asyncio.Queue(maxsize=queue_batches)
        self._lost: asyncio.Event = asyncio.Event()
        self._lost_reason = ""
        self._locate_gone = False
        self._last_publish = 0.0
        self._read_batch = config.max_items_per_request
        self.counters = DriverCounters()
        self.subscription_id: int | None = None
        self.revised_publishing_interval_s = config.publishing_interval_ms / 1000
        self.revised_keepalive_count = config.keepalive_count

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def streaming(self) -> bool:
        return self.config.mode is Mode.SUBSCRIPTION

    # ------------------------------------------------------------------ connect
    async def __aenter__(self) -> Self:
        cfg = self.config
        self._lost.clear()
        self._lost_reason = ""
        self._locate_gone = False
        while not self._queue.empty():
            self._queue.get_nowait()
        node_ids = self._node_ids or self._parse_node_ids()  # checked before anything connects
        # asyncua's liveness probe reads ServerState with a timeout of one watchdog interval: at 1 s a
        # server busy with a 10,000-item publish looked dead.  Our keep-alive watchdog in stream() is
        # the fast detector; this probe only catches a half-open socket.
        client = _Client(
            cfg.endpoint,
            timeout=cfg.timeout_ms / 1000,
            watchdog_intervall=max(5.0, cfg.timeout_ms / 1000),
            publish_requests=cfg.publish_requests,
        )
        client.name = client.description = f"edgegw {cfg.name}"
        client.session_timeout = max(10_000, int(cfg.publishing_interval_ms * cfg.lifetime_count * 2))
        client.connection_lost_callback = self._on_connection_lost
        try:
            await secure(client, cfg.name, cfg.endpoint, SecuritySettings.of(cfg))
            self._identity(client)
            await client.connect()
        except ConnectError:
            await self._close(client)
            raise
        except UaStatusCodeError as err:
            await self._close(client)
            raise ConnectError(cfg.name, f"{cfg.endpoint} refused the session: {status_name(err.code)}") from err
        except _COMM_ERRORS as err:
            await self._close(client)
            raise ConnectError(cfg.name, f"cannot connect to {cfg.endpoint}: {err!r}") from err
        except (ValueError, TypeError) as err:  # a corrupt certificate or key file (cryptography)
            await self._close(client)
            raise ConnectError(cfg.name, f"unusable certificate or key: {err}") from err
        self._client = client
        self.counters.sessions += 1
        try:
            limits = await operation_limits(client)
            self._read_batch = batch_size(limits[0], cfg.max_items_per_request)
            if self.streaming:
                await self._subscribe(client, batch_size(limits[1], cfg.max_items_per_request), node_ids)
            else:
                self._node_ids = node_ids  # polling reads them every cycle: parsed once, kept
        except UaStatusCodeError as err:
            await self.__aexit__(None, None, None)
            raise ConnectError(cfg.name, f"subscription refused: {status_name(err.code)}") from err
        except _COMM_ERRORS as err:
            await self.__aexit__(None, None, None)
            raise ConnectError(cfg.name, f"session setup failed: {err!r}") from err
        return self

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        self.subscription_id = None
        if client is not None:
            await self._close(client)

    @staticmethod
    async def _close(client: Client) -> None:
        try:
            async with asyncio.timeout(2):
                await client.disconnect()
        except (*_COMM_ERRORS, ConnectionError):
            client.disconnect_socket()

    async def _on_connection_lost(self, exc: Exception) -> None:
        self._lost_reason = f"connection lost: {exc!r}"
        self._lost.set()

    def _identity(self, client: Client) -> None:
        cfg = self.config
        if cfg.identity is Identity.USERNAME:
            client.set_user(cfg.username or "")
            try:
                password = cfg.password()
            except OSError as err:
                raise ConnectError(cfg.name, f"cannot read password_file: {err.strerror}") from err
            if password is None:
                raise ConnectError(cfg.name, f"environment variable {cfg.password_env} is not set")
            client.set_password(password)
        elif cfg.identity is Identity.CERTIFICATE:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            assert cfg.user_certificate and cfg.user_private_key  # checked by the config model
            try:
                with open(cfg.user_certificate, "rb") as f:
                    data = f.read()
                with open(cfg.user_private_key, "rb") as f:
                    key = f.read()
            except OSError as err:
                raise ConnectError(cfg.name, f"cannot read the user certificate or key: {err}") from err
            client.user_certificate = (
                x509.load_pem_x509_certificate(data)
                if data.startswith(b"-----")
                else x509.load_der_x509_certificate(data)
            )
            client.user_private_key = load_pem_private_key(key, password=None)

    # ------------------------------------------------------------ subscription
    async def _subscribe(self, client: Client, per_call: int, node_ids: list[ua.NodeId]) -> None:
        cfg = self.config
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=cfg.publishing_interval_ms,
            RequestedLifetimeCount=cfg.lifetime_count,
            RequestedMaxKeepAliveCount=cfg.keepalive_count,
            MaxNotificationsPerPublish=cfg.max_notifications_per_publish,
            PublishingEnabled=True,
            Priority=0,
        )
        result = await client.uaclient.create_subscription(params, self._on_publish)
        self.subscription_id = result.SubscriptionId
        self.revised_publishing_interval_s = result.RevisedPublishingInterval / 1000
        self.revised_keepalive_count = result.RevisedMaxKeepAliveCount
        self._last_publish = time.monotonic()
        bad: SampleBatch = []
        ts = now_ns()
        # the requests of one call at a time (made again at each connect: ~10 us an item, where keeping
        # them all would cost ~0.3 KB a point for the life of the process)
        for chunk in chunks(list(range(len(node_ids))), per_call):
            self.counters.create_item_calls += 1
            results = await client.uaclient.create_monitored_items(
                ua.CreateMonitoredItemsParameters(
                    SubscriptionId=result.SubscriptionId,
                    TimestampsToReturn=self._timestamps,
                    ItemsToCreate=[self._item_request(handle, node_ids[handle]) for handle in chunk],
                )
            )
            for handle, res in zip(chunk, results, strict=True):
                code = res.StatusCode.value
                if quality_of(code) is Quality.BAD:
                    bad.append((self._routes[handle][0], ts, None, Quality.BAD, status_name(code)))
                    self.counters.bad_items += 1
                    self._say_bad_node(handle, "cannot be monitored", code)
        if bad:
            self._queue.put_nowait(bad)

    def _say_bad_node(self, handle: int, what: str, code: int) -> None:
        name = self._point_names[handle]
        log.warning(
            "Device %s: node %s (point %s) %s: %s.", self.name, self._node_id_texts[handle], name, what,
            status_name(code), extra={"device": self.name, "point": name, "reason": status_name(code)},
        )

    def _parse_node_ids(self) -> list[ua.NodeId]:
        try:
            return [ua.NodeId.from_string(text) for text in self._node_id_texts]
        except (UaError, ValueError) as err:
            raise ConnectError(self.name, f"invalid node id: {err}") from err

    def _item_request(self, handle: int, node_id: ua.NodeId) -> ua.MonitoredItemCreateRequest:
        trigger, db_type, db_value, sampling_ms, queue_size, discard_oldest = self._item_settings[handle]
        mfilter = None
        if db_type is not DeadbandType.NONE or trigger is not Trigger.STATUS_VALUE:
            mfilter = ua.DataChangeFilter(
                Trigger=_TRIGGERS[trigger], DeadbandType=_DEADBANDS[db_type], DeadbandValue=db_value,
            )
        mparams = ua.MonitoringParameters(
            ClientHandle=handle,
            SamplingInterval=sampling_ms,
            Filter=mfilter,
            QueueSize=queue_size,
            DiscardOldest=discard_oldest,
        )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=mparams,
        )

    def _on_publish(self, frame: PublishFrame | ua.PublishResult) -> None:
        """Called by the publish loop: keep-alives, data changes and status changes."""
        if not isinstance(frame, PublishFrame):  # asyncua informing of a lost session
            frame = frame_of(frame)
        self._last_publish = time.monotonic()
        self.counters.publish_responses += 1
        if not frame.notification_count:
            self.counters.keepalives += 1
            return
        if frame.items:
            batch = self._samples(frame.items)
            self.counters.notifications += len(frame.items)
            if self._queue.full():  # bounded hand-off: the oldest burst goes, and is counted
                self._queue.get_nowait()
                self.counters.dropped_batches += 1
            self._queue.put_nowait(batch)
        for code in frame.status_changes:
            if code in _NODE_GONE:  # a monitored node was deleted; the server does not say which
                self._locate_gone = True
            elif quality_of(code) is Quality.BAD:
                self._lost_reason = f"subscription status {status_name(code)}"
                self._lost.set()

    def _samples(self, items: Sequence[ItemChange]) -> SampleBatch:
        routes = self._routes
        n_routes = len(routes)
        gw_ts = now_ns()
        good = Quality.GOOD
        out: SampleBatch = []
        append = out.append
        for handle, value, status, source, server in items:
            if handle >= n_routes:
                continue
            idx, ts_mode, arr, as_json, enc, plain = routes[handle]
            if ts_mode == 0:
                t = source if source is not None else server
            elif ts_mode == 1:
                t = server if server is not None else source
            else:
                t = None
            if t is None:
                t = gw_ts
            if not status and arr < 0 and type(value) in plain:  # the common case, inline
                append((idx, t, value, good, None))
            else:
                append(_sample(idx, t, arr, as_json, enc, value, status))
        return out

    async def stream(self) -> AsyncIterator[SampleBatch]:
        """Batches as notifications arrive; raises when the session or subscription is gone.

        The keep-alive watchdog: the server must answer a publish (data or keep-alive) at least every
        publishing interval x keep-alive count; three such periods of silence mean a dead session even
        if the socket still looks open.
        """
        if self._client is None:
            raise ConnectError(self.name, "not connected")
        silence = max(self.revised_publishing_interval_s * self.revised_keepalive_count * 3, 3.0)
        lost_wait: asyncio.Task[bool] = asyncio.create_task(self._lost.wait())
        try:
            while True:
                if self._locate_gone:
                    self._locate_gone = False
                    gone = await self._gone_nodes()
                    if gone:
                        yield gone
                if not self._queue.empty():
                    yield self._queue.get_nowait()
                    continue
                get = asyncio.create_task(self._queue.get())
                done, _ = await asyncio.wait({get, lost_wait}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    yield get.result()
                    continue
                get.cancel()
                if lost_wait in done:
                    raise ReadError(
                        self.name, self._lost_reason or "connection lost", reason="disconnected", disconnect=True
                    )
                if time.monotonic() - self._last_publish > silence:
                    raise ReadError(
                        self.name,
                        f"no publish response for {silence:.0f} s (keep-alive watchdog)",
                        reason="keepalive_timeout",
                        disconnect=True,
                    )
        finally:
            lost_wait.cancel()

    async def _gone_nodes(self) -> SampleBatch:
        """Which monitored nodes no longer exist: one NodeClass Read per batch, only after the server
        reported a deleted node without naming it (asyncua servers do); they turn bad with the reason."""
        client = self._client
        if client is None:
            return []
        ts = now_ns()
        out: SampleBatch = []
        node_ids = self._node_ids or self._parse_node_ids()  # subscription mode keeps none: rare, parsed again
        for chunk in chunks(list(range(len(node_ids))), self._read_batch):
            self.counters.read_calls += 1
            try:
                values = await client.uaclient.read_attributes([node_ids[i] for i in chunk], ua.AttributeIds.NodeClass)
            except (*_COMM_ERRORS, ConnectionError) as err:
                raise ReadError(self.name, f"Read failed: {err!r}", reason="disconnected", disconnect=True) from err
            for i, dv in zip(chunk, values, strict=True):
                code = dv.StatusCode.value if dv.StatusCode is not None else 0
                if code in _NODE_GONE:
                    out.append((self._routes[i][0], ts, None, Quality.BAD, status_name(code)))
                    self._say_bad_node(i, "was deleted from the server", code)
        self.counters.bad_items += len(out)
        return out

    # ----------------------------------------------------------------- polling
    async def read(self) -> SampleBatch:
        client = self._client
        if client is None:
            raise ConnectError(self.name, "not connected")
        if self._lost.is_set():
            raise ReadError(self.name, self._lost_reason, reason="disconnected", disconnect=True)
        out: SampleBatch = []
        ids = list(range(len(self._node_ids)))
        for chunk in chunks(ids, self._read_batch):
            params = ua.ReadParameters(
                MaxAge=0,
                TimestampsToReturn=self._timestamps,
                NodesToRead=[
                    ua.ReadValueId(NodeId=self._node_ids[i], AttributeId=ua.AttributeIds.Value) for i in chunk
                ],
            )
            self.counters.read_calls += 1
            try:
                values = await client.uaclient.session.read_values(params)
            except UaStatusCodeError as err:
                raise ReadError(
                    self.name, f"Read failed: {status_name(err.code)}", reason=status_name(err.code), disconnect=True
                ) from err
            except (*_COMM_ERRORS, ConnectionError) as err:
                raise ReadError(self.name, f"Read failed: {err!r}", reason="disconnected", disconnect=True) from err
            out += self._samples([(i, *v) for i, v in zip(chunk, values, strict=True)])
        return out


def _sample(idx: int, ts: int, arr: int, as_json: bool, enc: StringEncoding, raw: Any, status: int) -> Any:
    quality = quality_of(status) if status else Quality.GOOD
    if quality is Quality.BAD:
        return (idx, ts, None, Quality.BAD, status_name(status))
    value, reason = convert_value(raw, arr, as_json, enc)
    if value is None:
        return (idx, ts, None, Quality.BAD, reason)
    return (idx, ts, value, quality, status_name(status) if status else None)


# ------------------------------------------------------------------ security
@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """What a secured session needs: from a device's config, or from `edgegw browse` options."""

    policy: SecurityPolicy
    mode: SecurityMode
    pki_dir: str = "pki"
    trust: TrustPolicy = TrustPolicy.TRUST_LIST
    certificate: str | None = None  # the gateway's own certificate; default <pki_dir>/own/cert.der
    private_key: str | None = None

    @classmethod
    def of(cls, cfg: OpcUaDevice) -> SecuritySettings:
        return cls(cfg.security_policy, cfg.security_mode, cfg.pki_dir, cfg.trust)


def _own_certificate(name: str, s: SecuritySettings, pki: Pki) -> AppCertificate:
    if s.certificate is None or s.private_key is None:
        own = pki.own()
        if own is None:
            raise ConnectError(
                name,
                f"no application certificate in {pki.root}/own: create one with "
                f"`edgegw certs create --pki-dir {pki.root}`",
            )
        return own
    try:
        with open(s.certificate, "rb") as f:
            data = f.read()
        der = x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER) if data.startswith(b"-----") else data
        uri = application_uri_of(der)
    except (OSError, ValueError) as err:
        raise ConnectError(name, f"unusable certificate {s.certificate}: {err}") from err
    if uri is None:
        raise ConnectError(name, f"certificate {s.certificate} has no ApplicationUri (URI subjectAltName)")
    return AppCertificate(Path(s.certificate), Path(s.private_key), uri)


async def secure(client: Client, name: str, endpoint: str, s: SecuritySettings) -> None:
    """Pick the server's endpoint for the policy and mode, check its certificate, and set security up.

    ``name`` (the device, or the endpoint for `edgegw browse`) goes into every error.
    """
    if s.policy is SecurityPolicy.NONE:
        return
    pki = Pki(s.pki_dir)
    own = _own_certificate(name, s, pki)
    client.application_uri = own.application_uri
    policy = _POLICIES[s.policy]
    mode = _MODES[s.mode]
    endpoints = await client.connect_and_get_server_endpoints()
    match = [e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
    if not match:
        offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints})
        raise ConnectError(
            name,
            f"{endpoint} offers no {s.policy.value}/{s.mode.value} endpoint (offered: {', '.join(offered)})",
        )
    server_der = _first_certificate(match[0].ServerCertificate)
    _check_trust(pki, server_der, name, endpoint, s.trust)

    async def validate(cert: Any, _app: Any) -> None:
        if cert.public_bytes(Encoding.DER) != server_der:
            raise ConnectError(name, "the server presented a different certificate in CreateSession")

    client.certificate_validator = validate
    await client.set_security(policy, str(own.cert_path), str(own.key_path), server_certificate=server_der, mode=mode)


def _check_trust(pki: Pki, der: bytes, name: str, endpoint: str, trust: TrustPolicy) -> None:
    problem = validity_problem(der)
    if problem is not None:
        raise ConnectError(name, f"server certificate {thumbprint(der)} of {endpoint} {problem}")
    if pki.is_trusted(der):
        return
    uri = application_uri_of(der)
    if trust is TrustPolicy.TRUST_ON_FIRST_USE and not pki.known_for_uri(uri):
        path = pki.trust(der)
        log.warning(
            "Device %s: trusting server certificate %s (%s) on first use; stored as %s.",
            name,
            thumbprint(der),
            uri,
            path,
            extra={"device": name},
        )
        return
    path = pki.reject(der)
    why = "differs from the one trusted for" if pki.known_for_uri(uri) else "is not in the trust list for"
    raise ConnectError(
        name,
        f"server certificate {thumbprint(der)} ({uri}) {why} {endpoint}; it was saved as {path}: "
        f"move it to {pki.trusted}/ to trust it",
    )


def _first_certificate(der: bytes) -> bytes:
    """A server may send a chain; the first DER element is its own certificate."""
    if len(der) > 4 and der[0] == 0x30 and der[1] == 0x82:
        length = int.from_bytes(der[2:4], "big") + 4
        return der[:length]
    return der


# ------------------------------------------------------------------- browse
@dataclass(frozen=True, slots=True)
class BrowsedVariable:
    node_id: str
    browse_path: str
    data_type: str
    access: str  # "r", "rw", "w" or ""
    array: bool
    unit: str = ""  # from the variable's EngineeringUnits property, if it has one
    eu_range: tuple[float, float] | None = None  # its EURange (Low, High), if it has a usable one
    instrument_range: tuple[float, float] | None = None  # its InstrumentRange (the instrument's limits), if usable


_PROPERTY_TYPE = ua.NodeId(ua.ObjectIds.PropertyType, 0)
_PROPERTIES = ("EngineeringUnits", "EURange", "InstrumentRange")  # the properties browse reads with a variable
_ATTRIBUTES = (ua.AttributeIds.DataType, ua.AttributeIds.AccessLevel, ua.AttributeIds.ValueRank)
_BROWSE_READ_CAP = 1000  # nodes per Read when the server advertises no MaxNodesPerRead


def _is_property(ref: Any) -> bool:
    """A Property (HasProperty, PropertyType) describes its parent: metadata, not a process variable."""
    rtype, tdef = ref.ReferenceTypeId, ref.TypeDefinition
    return bool(
        (rtype.NamespaceIndex == 0 and rtype.Identifier == ua.ObjectIds.HasProperty)
        or (tdef is not None and tdef.NamespaceIndex == 0 and tdef.Identifier == ua.ObjectIds.PropertyType)
    )


async def browse(
    endpoint: str,
    *,
    depth: int = 6,
    pattern: str = "*",
    timeout_s: float = 10.0,
    security: SecuritySettings | None = None,
    username: str | None = None,
    password: str | None = None,
    user_certificate: str | None = None,
    user_private_key: str | None = None,
) -> list[BrowsedVariable]:
    """Walk Objects/ (hierarchical references) and list the variables: the raw material of a point list.

    Properties (HasProperty references, PropertyType: EngineeringUnits, EURange, ...) are not
    listed; a variable's EngineeringUnits becomes its ``unit``, its EURange its ``eu_range`` and its
    InstrumentRange its ``instrument_range``.
    Security None unless ``security`` says otherwise; then the server certificate is checked
    against the trust list exactly as a device's would be.
    """
    client = Client(endpoint, timeout=timeout_s)
    if username is not None:  # servers that refuse anonymous sessions: a user name and password
        client.set_user(username)
        client.set_password(password or "")
    elif user_certificate is not None and user_private_key is not None:  # or an X.509 user identity
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            data = Path(user_certificate).read_bytes()  # two small files, once, before the session
            key = Path(user_private_key).read_bytes()
        except OSError as err:
            raise ConnectError(endpoint, f"cannot read the user certificate or key: {err}") from err
        client.user_certificate = (
            x509.load_pem_x509_certificate(data) if data.startswith(b"-----") else x509.load_der_x509_certificate(data)
        )
        client.user_private_key = load_pem_private_key(key, password=None)
    try:
        if security is not None:
            await secure(client, endpoint, endpoint, security)
        await client.connect()
    except ConnectError:
        await OpcUaDriver._close(client)
        raise
    except UaStatusCodeError as err:
        raise ConnectError(endpoint, f"refused: {status_name(err.code)}") from err
    except _COMM_ERRORS as err:
        if security is None and "No matching endpoints" in str(err):  # asyncua's words for "no None endpoint"
            raise ConnectError(
                endpoint, "the server offers no security None endpoint: browse with --security (e.g. "
                "Basic256Sha256) and --pki-dir (docs/opcua.md, Browse)"
            ) from err
        raise ConnectError(endpoint, f"cannot connect: {err!r}") from err
    try:
        found: list[tuple[Any, str, str]] = []  # (node, node id, browse path) of the matching variables
        props: dict[tuple[str, str], ua.NodeId] = {}  # (variable node id, property name) -> the property
        frontier: list[tuple[Any, str, str]] = [(client.nodes.objects, "", "Objects")]
        seen: set[str] = set()
        for _level in range(depth):
            nxt: list[tuple[Any, str, str]] = []
            for node, pid, path in frontier:
                refs = await node.get_references(
                    refs=ua.ObjectIds.HierarchicalReferences,
                    direction=ua.BrowseDirection.Forward,
                    nodeclassmask=ua.NodeClass.Object | ua.NodeClass.Variable,
                )
                for ref in refs:
                    if _is_property(ref):
                        if ref.BrowseName.Name in _PROPERTIES and pid:
                            props.setdefault((pid, ref.BrowseName.Name), ref.NodeId)
                        continue
                    nid = ref.NodeId.to_string()
                    if nid in seen or ref.NodeId.NamespaceIndex == 0:
                        continue
                    seen.add(nid)
                    child = client.get_node(ref.NodeId)
                    cpath = f"{path}/{ref.BrowseName.Name}"
                    if ref.NodeClass == ua.NodeClass.Variable and fnmatch.fnmatchcase(cpath, pattern):
                        found.append((child, nid, cpath))
                    nxt.append((child, nid if ref.NodeClass == ua.NodeClass.Variable else "", cpath))
            frontier = nxt
            if not frontier:
                break
        # variables on the last level: their properties were not browsed yet
        wanted = {nid for _n, nid, _p in found}
        for node, pid, _path in frontier:
            if pid in wanted:
                for ref in await node.get_references(
                    refs=ua.ObjectIds.HasProperty,
                    direction=ua.BrowseDirection.Forward,
                    nodeclassmask=ua.NodeClass.Variable,
                ):
                    if ref.BrowseName.Name in _PROPERTIES:
                        props.setdefault((pid, ref.BrowseName.Name), ref.NodeId)
        return await _describe(client, found, props)
    except UaStatusCodeError as err:
        raise ConnectError(endpoint, f"browse failed: {status_name(err.code)}") from err
    except _COMM_ERRORS as err:
        raise ConnectError(endpoint, f"browse failed: {err!r}") from err
    finally:
        await OpcUaDriver._close(client)


async def _describe(
    client: Client, found: Sequence[tuple[Any, str, str]], props: dict[tuple[str, str], ua.NodeId]
) -> list[BrowsedVariable]:
    """The attributes and properties of all found variables in as few Reads as MaxNodesPerRead allows."""
    to_read: list[ua.ReadValueId] = []
    for node, nid, _path in found:
        to_read += [ua.ReadValueId(NodeId=node.nodeid, AttributeId=a) for a in _ATTRIBUTES]
        to_read += [
            ua.ReadValueId(NodeId=props[(nid, name)], AttributeId=ua.AttributeIds.Value)
            for name in _PROPERTIES
            if (nid, name) in props
        ]
    per_read = batch_size((await operation_limits(client))[0], _BROWSE_READ_CAP)
    dvs: list[ua.DataValue] = []
    for chunk in chunks(to_read, per_read):
        dvs += await client.uaclient.read(ua.ReadParameters(NodesToRead=list(chunk)))
    out: list[BrowsedVariable] = []
    at = 0
    for _node, nid, path in found:
        dtype_v, level_v, rank_v = (_good_value(dv) for dv in dvs[at : at + 3])
        at += 3
        values: dict[str, Any] = {}
        for name in _PROPERTIES:
            if (nid, name) in props:
                values[name] = _good_value(dvs[at])
                at += 1
        dtype = "?"
        if isinstance(dtype_v, ua.NodeId):
            if dtype_v.NamespaceIndex == 0 and isinstance(dtype_v.Identifier, int):
                dtype = ua.ObjectIdNames.get(dtype_v.Identifier, str(dtype_v.Identifier))
            else:
                dtype = dtype_v.to_string()
        level = int(level_v or 0) if isinstance(level_v, int) else 0
        access = ("r" if level & 1 else "") + ("w" if level & 2 else "")
        array = isinstance(rank_v, int) and rank_v >= 0
        unit = _unit_text(values.get("EngineeringUnits"))
        out.append(BrowsedVariable(
            nid, path, dtype, access, array, unit,
            _eu_range(values.get("EURange")), _eu_range(values.get("InstrumentRange")),
        ))
    return out


async def operation_limits(client: Client) -> tuple[int | None, int | None]:
    """The server's MaxNodesPerRead and MaxMonitoredItemsPerCall (None where it advertises none)."""
    values = await client.uaclient.read_attributes([ua.NodeId(i, 0) for i in _LIMIT_NODES], ua.AttributeIds.Value)
    nodes_per_read, items_per_call = (_int_or_none(_good_value(dv)) for dv in values)
    return nodes_per_read, items_per_call


def _good_value(dv: ua.DataValue) -> Any:
    if dv.Value is None or (dv.StatusCode is not None and not dv.StatusCode.is_good()):
        return None
    return dv.Value.Value


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _unit_text(value: Any) -> str:
    """EngineeringUnits is an EUInformation (Part 8): its DisplayName is the symbol ("°C", "%");
    some servers put a plain string or LocalizedText there instead."""
    if isinstance(value, ua.EUInformation):
        value = value.DisplayName
    if isinstance(value, ua.LocalizedText):
        value = value.Text
    return value.strip() if isinstance(value, str) else ""


def _eu_range(value: Any) -> tuple[float, float] | None:
    """EURange (and InstrumentRange) is a Range (Low, High).  None unless both are finite and Low < High:
    an inverted range is nonsense, and an empty one (Low = High, typically an unset 0..0) would flag every value."""
    if not isinstance(value, ua.Range):
        return None
    lo, hi = value.Low, value.High
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (lo, hi)):
        return None
    return usable_range((lo, hi))
