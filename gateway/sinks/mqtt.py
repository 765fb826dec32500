"""MQTT uplink with delivery confirmed by PUBACK reason code.

aiomqtt (on paho-mqtt 2.x) treats every PUBACK as success and acknowledges incoming messages on
receipt.  :class:`MqttClient` closes both gaps: :meth:`MqttClient.publish_checked` returns only
after a PUBACK and raises :class:`RejectedError` for a reason code >= 0x80, and ``manual_ack``
lets the ingest role acknowledge a message only once its points are durable in InfluxDB.
This module and :mod:`gateway.ingest` are the only users of aiomqtt / paho.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import MqttConfig
from gateway.core.errors import ConfigError, ConfigIssue, RejectedError, RetryableError
from gateway.core.point import now_ns

__all__ = ["MqttClient", "MqttUplink", "UplinkConnection", "state_message", "tls_context", "topic"]

log = logging.getLogger("edgegw.mqtt")
_quiet = logging.getLogger("edgegw.mqtt.client")
_quiet.setLevel(logging.ERROR)  # aiomqtt warns on every publish while > 10 are pending


def topic(cfg: MqttConfig, site: str, gateway_id: str, kind: str) -> str:
    """``<prefix>/<site>/<gateway>/<kind>``: config keys only, never raw identifier codes."""
    return f"{cfg.topic_prefix}/{site}/{gateway_id}/{kind}"


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context of a connection, or None without TLS.  Verification is on unless the
    config says ``tls_verify = "off"``; TLS 1.2 is the floor."""
    if not cfg.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.tls_verify != "full":
            ctx.check_hostname = False
        if cfg.tls_verify == "off":
            ctx.verify_mode = ssl.CERT_NONE
        if cfg.cert_file and cfg.key_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError([ConfigIssue("tls", f"cannot load the TLS files: {err}")]) from None
    return ctx


class MqttClient(aiomqtt.Client):
    """aiomqtt client that reports PUBACK reason codes, the broker's Receive Maximum, and can
    acknowledge incoming QoS 1 messages manually."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        *,
        will: aiomqtt.Will | None = None,
        manual_ack: bool = False,
        max_queued_incoming: int = 0,
        receive_maximum: int | None = None,
        server: tuple[str, int] | None = None,
    ) -> None:
        """``server``: the broker to connect to (one of ``cfg.server_list()``; the first by default)."""
        host, port = server or cfg.server_list()[0]
        v5 = cfg.protocol == "5"
        kwargs: dict[str, Any] = {}
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = cfg.session_expiry_s
            if receive_maximum is not None:  # how many unacknowledged messages the broker may send us
                props.ReceiveMaximum = receive_maximum
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=False, properties=props)
        else:
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=False)
        super().__init__(
            host,
            port,
            username=cfg.username,
            password=cfg.password(),
            identifier=client_id,
            will=will,
            keepalive=cfg.keepalive_s,
            tls_context=tls_context(cfg),
            timeout=cfg.timeout_s,
            max_inflight_messages=cfg.max_inflight,
            max_queued_incoming_messages=max_queued_incoming,
            logger=_quiet,
            **kwargs,
        )
        self._v5 = v5
        self._acks: dict[int, asyncio.Future[int]] = {}
        self.receive_maximum = 65535
        self.session_present = False
        if manual_ack:
            self._client.manual_ack_set(True)

    # paho callbacks (run on the event loop thread through aiomqtt's socket callbacks)
    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Properties | None = None,
    ) -> None:
        self.session_present = bool(getattr(flags, "session_present", False))
        if properties is not None and hasattr(properties, "ReceiveMaximum"):
            self.receive_maximum = int(properties.ReceiveMaximum)
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(int(getattr(reason_code, "value", 0)) if self._v5 else 0)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    def _on_disconnect(self, client: paho.Client, userdata: Any, *args: Any, **kwargs: Any) -> None:
        acks, self._acks = self._acks, {}
        for fut in acks.values():
            if not fut.done():
                fut.set_exception(RetryableError("connection to the broker lost before PUBACK"))
        super()._on_disconnect(client, userdata, *args, **kwargs)

    async def publish_checked(self, topic: str, payload: bytes, *, retain: bool = False, timeout: float) -> int:
        """Publish at QoS 1 and wait for the PUBACK; return its reason code (0 = success)."""
        info = self._client.publish(topic, payload, 1, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise RetryableError(f"cannot publish: {paho.error_string(info.rc)}")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = fut
        try:
            async with asyncio.timeout(timeout):
                code = await fut
        except TimeoutError:
            raise RetryableError(f"no PUBACK within {timeout} s") from None
        finally:
            self._acks.pop(info.mid, None)
        if code >= 0x80:
            raise RejectedError(f"broker refused the publish with reason code {code:#04x}", code)
        return code

    def ack(self, mid: int, qos: int) -> None:
        self._client.ack(mid, qos)

    def disconnect_error(self) -> BaseException | None:
        """Why the connection ended, if it broke (retrieving it keeps asyncio from reporting an
        unretrieved future exception when a lost connection is closed)."""
        fut = self._disconnected
        return fut.exception() if fut.done() and not fut.cancelled() else None

    @property
    def lost(self) -> asyncio.Future[None]:
        """Done once the connection ended (also while nothing is being published)."""
        return self._disconnected


def state_message(state: str, **detail: object) -> bytes:
    """The retained state message: ``online`` / ``offline``, its time, and an alarm while one is raised."""
    return json.dumps({"state": state, "ts_ns": now_ns(), **detail}).encode()


class UplinkConnection:
    """One live broker connection of the gateway: publish batches, confirmed by PUBACK."""

    def __init__(
        self, client: MqttClient, data_topic: str, timeout_s: float, state_topic: str | None = None,
        detail: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self._client = client
        self._topic = data_topic
        self._timeout = timeout_s
        self._state_topic = state_topic
        self._detail = detail  # more of the online state message: the devices' health
        self.no_subscriber_acks = 0
        self.keep_unread = True  # PUBACK 0x10 ("no matching subscribers") keeps the batch: uplink.no_subscribers
        self.alarm: str | None = None  # the alarm the retained state message carries now
        self._alarm_detail: dict[str, object] = {}
        self.facts: dict[str, object] = {}  # the overload facts it carries now (gateway.watch)

    async def refresh_state(self) -> None:
        """Publish the online state message again (a device's health changed).  Best effort."""
        if self._state_topic is not None:
            await self._publish_state(self.alarm, self._alarm_detail, self.facts)

    async def set_alarm(self, alarm: str | None, **detail: object) -> None:
        """Raise (or, with ``None``, clear) an alarm in the retained state message, which central
        monitoring watches next to online / offline.  Best effort: a broker that also refuses the
        state topic leaves the alarm in the log only."""
        if self._state_topic is None or (alarm is None and self.alarm is None):
            return
        if await self._publish_state(alarm, detail, self.facts):
            self.alarm, self._alarm_detail = alarm, (detail if alarm is not None else {})

    async def set_facts(self, facts: dict[str, object]) -> None:
        """Publish the overload facts (``overload`` in the retained state message), keeping the alarm."""
        if self._state_topic is None:
            return
        if await self._publish_state(self.alarm, self._alarm_detail, facts):
            self.facts = facts

    async def _publish_state(self, alarm: str | None, detail: dict[str, object], facts: dict[str, object]) -> bool:
        assert self._state_topic is not None
        extra: dict[str, object] = {"alarm": alarm, **detail} if alarm is not None else {}
        if facts:
            extra["overload"] = facts
        message = state_message("online", **extra, **(self._detail() if self._detail else {}))
        try:
            await self._client.publish_checked(self._state_topic, message, retain=True, timeout=self._timeout)
        except RejectedError as err:
            log.warning("Broker refused the state message too: %s", err)
            return False
        return True

    @property
    def lost(self) -> asyncio.Future[None]:
        return self._client.lost

    @property
    def window(self) -> int:
        return self._client.receive_maximum

    async def publish_catalog(self, catalog_id: str, message: bytes) -> None:
        """Publish a wire format v2 catalog, retained, on ``<prefix>/<site>/<gateway>/catalog/<id>``.
        Raise RetryableError or RejectedError as :meth:`write`."""
        base = self._topic.rsplit("/", 1)[0]
        await self._client.publish_checked(f"{base}/catalog/{catalog_id}", message, retain=True,
                                           timeout=self._timeout)

    async def write(self, payload: bytes) -> None:
        """Raise RetryableError (keep, reconnect) or RejectedError (keep, alarm)."""
        code = await self._client.publish_checked(self._topic, payload, timeout=self._timeout)
        if code == 0x10:  # "no matching subscribers": the broker took it, but nobody will ever read it
            self.no_subscriber_acks += 1
            if self.keep_unread:
                # mosquitto 2.0.11 restores a restarted broker's sessions but not their shared
                # subscriptions: until the ingest subscribes again every batch would be acknowledged
                # into the void (found by the HIL campaign: 992 points lost after a broker restart)
                raise RejectedError(f"no matching subscribers for {self._topic} (PUBACK 0x10): nothing reads "
                                    "it yet; kept buffered and retried", code=0x10)


class MqttUplink:
    """Connection factory for the edge role: fixed client id, persistent session, birth and last will.

    ``kind`` is the topic's last level; any other kind than ``data`` (the alarm uplink) connects with
    client id ``<client id>-<kind>`` and publishes no birth / will: the state topic is the telemetry
    connection's alone.
    """

    def __init__(self, cfg: MqttConfig, site: str, gateway_id: str, kind: str = "data") -> None:
        self.cfg = cfg
        self.client_id = cfg.client_id or f"edgegw-{gateway_id}"
        self.birth = kind == "data"
        if not self.birth:
            self.client_id += f"-{kind}"
        self.data_topic = topic(cfg, site, gateway_id, kind)
        self.state_topic = topic(cfg, site, gateway_id, "state")
        self._servers = cfg.server_list()
        self._current = 0
        self.failovers = 0
        self.detail: Callable[[], dict[str, object]] | None = None  # more of the online message (device health)
        self.current: UplinkConnection | None = None  # the live connection, while there is one

    async def _say(self, client: MqttClient, state: str, timeout: float) -> None:
        detail = self.detail() if self.detail is not None and state == "online" else {}
        await client.publish_checked(self.state_topic, state_message(state, **detail), retain=True, timeout=timeout)

    async def refresh_state(self) -> None:
        """Republish the online state message on the live connection, if there is one (best effort:
        a connection breaking meanwhile is the forwarder's to handle)."""
        conn = self.current
        if conn is not None:
            with contextlib.suppress(RetryableError, aiomqtt.MqttError):
                await conn.refresh_state()

    @property
    def server(self) -> tuple[str, int]:
        """The broker connected to last (or to be tried first)."""
        return self._servers[self._current]

    async def _open(self, will: aiomqtt.Will | None) -> MqttClient:
        """Connect to the current broker, else to the next ones in order (one pass): a broker that
        died is left at once for the next; the session lives on the broker that holds it."""
        errors = []
        for step in range(len(self._servers)):
            k = (self._current + step) % len(self._servers)
            client = MqttClient(self.cfg, self.client_id, will=will, server=self._servers[k])
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as err:
                errors.append(f"{self._servers[k][0]}:{self._servers[k][1]}: {err}")
                continue
            if k != self._current:
                old = self._servers[self._current]
                log.warning("Uplink %s failed over from broker %s:%s to %s:%s (%d of %d).", self.client_id, old[0],
                            old[1], self._servers[k][0], self._servers[k][1], k + 1, len(self._servers))
                self._current = k
                self.failovers += 1
            return client
        raise RetryableError(f"cannot connect to any broker: {'; '.join(errors)}")

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[UplinkConnection]:
        will = aiomqtt.Will(self.state_topic, state_message("offline"), qos=1, retain=True) if self.birth else None
        client = await self._open(will)
        try:
            if self.birth:
                await self._say(client, "online", self.cfg.timeout_s)
            # the alarm uplink has no state message of its own: its refusals show in the log and stats
            state_topic = self.state_topic if self.birth else None
            conn = UplinkConnection(client, self.data_topic, self.cfg.timeout_s, state_topic, self.detail)
            conn.keep_unread = getattr(self.cfg, "no_subscribers", "keep") == "keep"
            self.current = conn if self.birth else None
            try:
                yield conn
            finally:
                self.current = None
            if self.birth:
                await self._say(client, "offline", self.cfg.timeout_s)
        except asyncio.CancelledError:
            # a clean stop (SIGTERM, Ctrl-C) cancels the forwarder in here; the broker sends the
            # will only when a connection breaks, so say offline, best effort and briefly
            if self.birth:
                with contextlib.suppress(RetryableError, RejectedError, aiomqtt.MqttError, asyncio.CancelledError):
                    await self._say(client, "offline", min(self.cfg.timeout_s, 2.0))
            raise
        except aiomqtt.MqttError as err:
            raise RetryableError(f"broker connection failed: {err}") from err
        finally:
            with contextlib.suppress(aiomqtt.MqttError):  # the connection may already be gone
                await client.__aexit__(None, None, None)
            client.disconnect_error()
