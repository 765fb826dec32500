"""Registration and resolution of identifier codes on an enterprise or secondary node (HTTP APIs).

Two APIs (see the project's identifier reference, section 2.2):

- **SNMS-compatible** (secondary nodes, enterprise-node "兼容接口"): ``POST /identity/token`` for a
  bearer token, ``POST /identityv2/data/batchCreate`` and ``PUT /identityv2/data/batchUpdate`` (a
  JSON array, answered per handle with ``msg``), ``GET /identityv2/data/detail?handle=``.
- **DOIP over HTTP** (IDHub enterprise node "标准版"): challenge-response login
  (``GET /api/v1/doip/public/challenge``, RSA PKCS#1 v1.5 SHA-256 signature of the nonce,
  ``POST /api/v1/doip/public/verify-response``), then ``/api/v1/doip`` with ``operationId``
  ``0.DOIP/Op.Create`` / ``0.DOIP/Op.Update`` (overwrite) / ``0.DOIP/Op.Retrieve`` and ``targetId``.

Rules: batches of at most 1,500 records; registering is idempotent ("已存在", already exists, is
not an error); an HTTP 504 means "maybe registered", so the same batch is sent again and "already
exists" on the retry confirms the first call.  A record that already exists is read back (one
detail / retrieve per record: neither API documents a batch read) and compared with what would be
registered, on the attribute types the gateway manages (``managed_types``); the ones that differ
are updated, batches of at most 1,500 again (SNMS ``batchUpdate``; DOIP ``Op.Update`` per record).
Attributes the gateway does not manage are carried over unchanged; a managed attribute the config
no longer sets is cleared (left out of the SNMS record; sent as ``""`` over DOIP, which cannot
delete an attribute).  Resolutions are cached for a TTL, and a
stale entry is served while the node is unreachable.

The documentation shows the DOIP token being issued but not the header that carries it; like the
SNMS API, ``Authorization: Bearer <token>`` is sent (unverified against a real IDHub node).

Never on the hot path: the gateway registers in a background task (``asyncio.to_thread``), the
CLI calls it directly; a node that is down or answers garbage raises
:class:`~gateway.core.errors.RegistryUnavailable` and nothing else waits for it.  Plain ``urllib``:
one request at a time, no new dependency.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.errors import IdentifierError, RegistryAuthError, RegistryError, RegistryUnavailable
from gateway.core.identifiers import parse_handle

__all__ = [
    "MAX_BATCH",
    "DoipClient",
    "Record",
    "RegisterReport",
    "RegistryClient",
    "ResolutionCache",
    "Resolved",
    "Resolver",
    "SnmsClient",
    "batches",
    "stale_attributes",
]

MAX_BATCH = 1500
_EXISTS = ("已存在", "already exists")
_DOIP_OK, _DOIP_NOT_FOUND, _DOIP_EXISTS = 1, 104, 105
_DOIP_DONE = (_DOIP_OK, 10000)  # the state-code table says 1; the create / update examples show 10000
_FIRST_BUSINESS_INDEX = 2000  # below: reserved (1000 template id, 1001, HS_ADMIN, HS_CERT, ...)


@dataclass(frozen=True, slots=True)
class Record:
    """One handle to register: ``values`` are (index, type, value) triples of the node's template."""

    handle: str
    values: tuple[tuple[int, str, str], ...]

    def snms(self, template_version: str) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "templateVersion": template_version,
            "value": [
                {"index": i, "type": t, "auth": "", "data": {"format": "string", "value": v}} for i, t, v in self.values
            ],
        }

    def attributes(self) -> dict[str, str]:
        return {t: v for _, t, v in self.values}


@dataclass(frozen=True, slots=True)
class Resolved:
    handle: str
    values: dict[str, str]  # type -> value
    indexes: dict[str, int] = field(default_factory=dict)  # type -> index, where the API tells (SNMS)
    template: str = ""  # SNMS templateVersion / DOIP type (metadata template handle)


def stale_attributes(
    record: Record, current: Resolved, managed: Collection[str] = ()
) -> dict[str, tuple[str, str]]:
    """``type -> (registered, wanted)`` for each attribute the record sets or ``managed`` names whose
    value on the node differs; an empty value counts as absent.  Other attributes are not compared."""
    want = record.attributes()
    out: dict[str, tuple[str, str]] = {}
    for t in sorted(set(managed) | want.keys()):
        have, wanted = current.values.get(t, ""), want.get(t, "")
        if have != wanted:
            out[t] = (have, wanted)
    return out


@dataclass(slots=True)
class RegisterReport:
    """One registration run: every record ends in exactly one of created / updated / unchanged /
    not_compared / failed."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)  # already registered; compare=False did not read them
    failed: list[tuple[str, str]] = field(default_factory=list)  # (handle, node's message)
    changes: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # handle -> stale attributes
    batches: int = 0  # create batches
    update_batches: int = 0
    retries_504: int = 0

    @property
    def existed(self) -> list[str]:
        """Records that were registered before this run (updated or not)."""
        return self.updated + self.unchanged + self.not_compared

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        kept = f", {len(self.not_compared)} already registered (not compared)" if self.not_compared else ""
        return (f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged{kept}, "
                f"{len(self.failed)} failed")


def batches(records: Sequence[Record], size: int = MAX_BATCH) -> Iterator[Sequence[Record]]:
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"batch size must be 1..{MAX_BATCH}")
    for i in range(0, len(records), size):
        yield records[i : i + size]


class RegistryClient(Protocol):
    def register(self, records: Sequence[Record], *, compare: bool = True,
                 progress: Callable[[int], None] | None = None) -> RegisterReport: ...
    def resolve(self, handle: str) -> Resolved: ...


class _Http:
    """JSON over HTTP, one request at a time; every failure becomes a registry error."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"node url {base_url!r} must start with http:// or https://")
        self.base = base_url.rstrip("/")
        self.timeout = timeout_s
        self.token: str | None = None
        self.requests = 0

    def call(
        self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON object).  A 504 is returned (the caller decides); other failures raise."""
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except (urllib.error.URLError, OSError) as err:  # refused, reset, timed out
            raise RegistryUnavailable(f"resolution node {self.base} unreachable: {err}") from None
        if status == 504:
            return status, {}
        if status >= 500:
            raise RegistryUnavailable(f"resolution node {self.base} failed with HTTP {status}")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise RegistryUnavailable(
                f"resolution node {self.base} answered HTTP {status} with something that is not JSON: {raw[:80]!r}"
            ) from None
        if not isinstance(doc, dict):
            raise RegistryUnavailable(f"resolution node {self.base} answered JSON that is not an object")
        if status in (401, 403):
            raise RegistryAuthError(f"resolution node refused the credentials (HTTP {status}): {doc.get('message')}")
        return status, doc


def _is_exists(message: Any) -> bool:
    return isinstance(message, str) and any(m in message for m in _EXISTS)


class _NodeClient:
    """What both APIs share: the HTTP session, login on first use and again when the token
    expired, and the 504 rule ("maybe done": send the same request again)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retries_504: int = 3,
        batch_size: int = MAX_BATCH,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        managed_types: Collection[str] | None = None,
    ) -> None:
        self.http = _Http(base_url, timeout_s)
        self.retries_504 = retries_504
        self.batch_size = batch_size
        self.backoff = backoff_s
        self.sleep = sleep
        self.managed_types = None if managed_types is None else frozenset(managed_types)

    def login(self) -> None:
        raise NotImplementedError

    def resolve(self, handle: str) -> Resolved:
        raise NotImplementedError

    def _create(self, chunk: Sequence[Record], report: RegisterReport) -> list[Record]:
        """Register one batch; records created or failed go into ``report``, the ones that existed are returned."""
        raise NotImplementedError

    def _update(self, stale: Sequence[tuple[Record, Resolved]], managed: frozenset[str],
                report: RegisterReport) -> None:
        raise NotImplementedError

    def register(self, records: Sequence[Record], *, compare: bool = True,
                 progress: Callable[[int], None] | None = None) -> RegisterReport:
        """Create what is missing, update what exists with other attributes, leave the rest alone.
        ``progress(n)`` is told each time ``n`` more records are done (``edgegw ids register``'s bar).

        ``compare=False``: create what is missing only, without reading back what exists (a
        gateway's start-up registration: a few batch requests instead of one read per code).

        Raises :class:`RegistryUnavailable` / :class:`RegistryAuthError` when the node is unusable
        (nothing is half-reported: the caller retries the whole, idempotent, run)."""
        managed = self.managed_types
        if managed is None:  # default: the attribute types this run registers
            managed = frozenset(t for r in records for _, t, _ in r.values)
        report = RegisterReport()
        stale: list[tuple[Record, Resolved]] = []
        for chunk in batches(records, self.batch_size):
            report.batches += 1
            for r in self._create(chunk, report):
                if not compare:
                    report.not_compared.append(r.handle)
                    continue
                try:
                    current = self.resolve(r.handle)
                except RegistryUnavailable:
                    raise
                except (RegistryError, IdentifierError) as err:
                    report.failed.append((r.handle, f"already registered, but reading it back failed: {err}"))
                    continue
                diff = stale_attributes(r, current, managed)
                if not diff:
                    report.unchanged.append(r.handle)
                    continue
                report.changes[r.handle] = diff
                stale.append((r, current))
                if len(stale) >= self.batch_size:
                    self._update(stale, managed, report)
                    stale = []
            if progress is not None:
                progress(len(chunk))
        if stale:
            self._update(stale, managed, report)
        return report

    def _call(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        if self.http.token is None:
            self.login()
        try:
            return self.http.call(method, path, **kw)
        except RegistryAuthError:  # the token expired: log in again, once
            self.login()
            return self.http.call(method, path, **kw)

    def _write(self, report: RegisterReport, what: str, method: str, path: str, **kw: Any) -> dict[str, Any]:
        for attempt in range(self.retries_504 + 1):
            status, doc = self._call(method, path, **kw)
            if status != 504:
                return doc
            report.retries_504 += 1
            if attempt < self.retries_504:
                self.sleep(self.backoff * 2**attempt)
        raise RegistryUnavailable(f"{what} still answered 504 after {self.retries_504} retries")


class SnmsClient(_NodeClient):
    """SNMS-compatible API (``/identity/token``, ``/identityv2/...``)."""

    def __init__(self, base_url: str, username: str, password: str, *, template_version: str = "1.0", **kw: Any):
        super().__init__(base_url, **kw)
        self.username = username
        self.password = password
        self.template_version = template_version

    def login(self) -> None:
        self.http.token = None
        body = {"username": self.username, "password": self.password}
        status, doc = self.http.call("POST", "/identity/token", body=body)
        data = doc.get("data")
        token = data.get("token") if isinstance(data, dict) else None
        if doc.get("status") != 1 or not isinstance(token, str) or not token:
            raise RegistryAuthError(f"login as {self.username!r} refused: {doc.get('message') or f'HTTP {status}'}")
        self.http.token = token

    def _create(self, chunk: Sequence[Record], report: RegisterReport) -> list[Record]:
        body = [r.snms(self.template_version) for r in chunk]
        doc = self._write(report, f"batch of {len(chunk)}", "POST", "/identityv2/data/batchCreate", body=body)
        existed = []
        for r, msg in self._batch_result(chunk, doc):
            if msg == "success":
                report.created.append(r.handle)
            elif _is_exists(msg):
                existed.append(r)
            else:
                report.failed.append((r.handle, msg))
        return existed

    def _update(self, stale: Sequence[tuple[Record, Resolved]], managed: frozenset[str],
                report: RegisterReport) -> None:
        report.update_batches += 1
        body = [self._update_body(r, current, managed) for r, current in stale]
        doc = self._write(report, f"update of {len(stale)}", "PUT", "/identityv2/data/batchUpdate", body=body)
        try:
            results = self._batch_result([r for r, _ in stale], doc)
        except RegistryUnavailable:
            raise
        except RegistryError as err:  # the whole batch refused (e.g. a node without batchUpdate): each one failed
            results = [(r, str(err)) for r, _ in stale]
        for r, msg in results:
            if msg == "success":
                report.updated.append(r.handle)
            else:
                report.failed.append((r.handle, f"update refused: {msg}"))
                report.changes.pop(r.handle, None)

    def _update_body(self, r: Record, current: Resolved, managed: frozenset[str]) -> dict[str, Any]:
        """The whole record (an SNMS update overwrites it), plus the node's business attributes the
        gateway does not manage, so that updating never drops them."""
        body = r.snms(self.template_version)
        mine = r.attributes()
        for t, v in current.values.items():
            index = current.indexes.get(t, 0)
            if t not in managed and t not in mine and index >= _FIRST_BUSINESS_INDEX:
                body["value"].append({"index": index, "type": t, "auth": "", "data": {"format": "string", "value": v}})
        return body

    def _batch_result(self, chunk: Sequence[Record], doc: dict[str, Any]) -> list[tuple[Record, str]]:
        """(record, the node's ``msg`` for it) for every record of the batch."""
        items = doc.get("data")
        if doc.get("status") != 1 or not isinstance(items, list):
            message = doc.get("message")
            if isinstance(message, str) and "status" in doc:
                raise RegistryError(f"node refused the batch: {message}")
            raise RegistryUnavailable(f"node answered the batch with an unexpected shape: {str(doc)[:120]}")
        answered: dict[str, str] = {}
        for it in items:
            if isinstance(it, dict) and isinstance(it.get("handle"), str):
                answered.setdefault(it["handle"], str(it.get("msg", "")))
        return [(r, answered.get(r.handle, "no result for this handle in the node's answer")) for r in chunk]

    def resolve(self, handle: str) -> Resolved:
        parse_handle(handle)
        _, doc = self._call("GET", "/identityv2/data/detail", query={"handle": handle})
        data = doc.get("data")
        if doc.get("status") != 1 or not isinstance(data, dict):
            if "status" in doc and isinstance(doc.get("message"), str):
                raise RegistryError(f"{handle}: {doc['message']}")
            raise RegistryUnavailable(f"node answered the resolution of {handle} with an unexpected shape")
        values: dict[str, str] = {}
        indexes: dict[str, int] = {}
        for v in data.get("value") or []:
            try:
                values[str(v["type"])] = str(v["data"]["value"])
                indexes[str(v["type"])] = int(v["index"])
            except (KeyError, TypeError, ValueError):
                raise RegistryUnavailable(f"node answered {handle} with a malformed value: {v!r:.80}") from None
        template = data.get("templateVersion")
        return Resolved(str(data.get("handle", handle)), values, indexes, template if isinstance(template, str) else "")


class DoipClient(_NodeClient):
    """IDHub DOIP-over-HTTP API with challenge-response login (RSA PKCS#1 v1.5, SHA-256)."""

    def __init__(self, base_url: str, app_handle: str, private_key_pem: bytes, *, type_handle: str, **kw: Any):
        super().__init__(base_url, **kw)
        self.app_handle = app_handle
        self._key_pem = private_key_pem
        self.type_handle = type_handle

    def sign(self, nonce: str) -> str:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        try:
            key = serialization.load_pem_private_key(self._key_pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            raise RegistryAuthError(f"the private key is not a usable PEM key: {err}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise RegistryAuthError("the private key must be an RSA key")
        return base64.b64encode(key.sign(nonce.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()

    def login(self) -> None:
        self.http.token = None
        _, doc = self.http.call("GET", "/api/v1/doip/public/challenge", query={"handle": self.app_handle})
        nonce = doc.get("data")
        if doc.get("code") != _DOIP_OK or not isinstance(nonce, str | int):
            raise RegistryAuthError(f"challenge for {self.app_handle!r} refused: {doc.get('message')}")
        body = {"handle": self.app_handle, "signature": self.sign(str(nonce))}
        _, doc = self.http.call("POST", "/api/v1/doip/public/verify-response", body=body)
        data = doc.get("data")
        token = data.get("token") if isinstance(data, dict) else None
        if doc.get("code") != _DOIP_OK or not isinstance(token, str) or not token:
            raise RegistryAuthError(f"signature of {self.app_handle!r} refused: {doc.get('message')}")
        self.http.token = token

    def _create(self, chunk: Sequence[Record], report: RegisterReport) -> list[Record]:
        existed = []
        for r in chunk:
            body = {"type": self.type_handle, "attributes": {"content": r.attributes()}}
            query = {"operationId": "0.DOIP/Op.Create", "targetId": r.handle}
            doc = self._write(report, r.handle, "POST", "/api/v1/doip", query=query, body=body)
            code = doc.get("code")
            if code in _DOIP_DONE:
                report.created.append(r.handle)
            elif code == _DOIP_EXISTS or _is_exists(doc.get("message")):
                existed.append(r)
            elif isinstance(code, int):
                report.failed.append((r.handle, f"{code}: {doc.get('message')}"))
            else:
                raise RegistryUnavailable(f"node answered {r.handle} with an unexpected shape: {str(doc)[:120]}")
        return existed

    def _update(self, stale: Sequence[tuple[Record, Resolved]], managed: frozenset[str],
                report: RegisterReport) -> None:
        """``0.DOIP/Op.Update`` (overwrite), one record per request: the API has no batch update.
        An update cannot delete an attribute, so a managed one the config no longer sets becomes ``""``."""
        report.update_batches += 1
        for r, current in stale:
            content = {t: v for t, v in current.values.items() if t not in managed}
            content.update({t: "" for t in current.values if t in managed})
            content.update(r.attributes())
            body = {"type": current.template or self.type_handle, "attributes": {"content": content}}
            query = {"operationId": "0.DOIP/Op.Update", "targetId": r.handle}
            doc = self._write(report, r.handle, "POST", "/api/v1/doip", query=query, body=body)
            code = doc.get("code")
            if code in _DOIP_DONE:
                report.updated.append(r.handle)
            elif isinstance(code, int):
                report.failed.append((r.handle, f"update refused: {code}: {doc.get('message')}"))
                report.changes.pop(r.handle, None)
            else:
                raise RegistryUnavailable(f"node answered the update of {r.handle} with an unexpected shape: "
                                          f"{str(doc)[:120]}")

    def resolve(self, handle: str) -> Resolved:
        parse_handle(handle)
        _, doc = self._call("GET", "/api/v1/doip", query={"operationId": "0.DOIP/Op.Retrieve", "targetId": handle})
        code, data = doc.get("code"), doc.get("data")
        if code == _DOIP_NOT_FOUND:
            raise RegistryError(f"{handle}: not found ({doc.get('message')})")
        if code != _DOIP_OK or not isinstance(data, dict):
            if isinstance(code, int):
                raise RegistryError(f"{handle}: {code} {doc.get('message')}")
            raise RegistryUnavailable(f"node answered the resolution of {handle} with an unexpected shape")
        attrs = data.get("attributes")
        content = attrs.get("content") if isinstance(attrs, dict) else None
        if not isinstance(content, dict):
            raise RegistryUnavailable(f"node answered {handle} without attributes.content")
        template = data.get("type")
        return Resolved(str(data.get("id", handle)), {str(k): str(v) for k, v in content.items()},
                        template=template if isinstance(template, str) else "")


@dataclass(slots=True)
class _Entry:
    value: Resolved
    stored: float


class ResolutionCache:
    """Resolutions kept for ``ttl_s`` (default a day, the nodes' usual TTL); bounded in size."""

    def __init__(
        self, ttl_s: float = 86_400.0, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    def get(self, handle: str, *, allow_stale: bool = False) -> Resolved | None:
        e = self._entries.get(parse_handle(handle).key)
        if e is None:
            return None
        if allow_stale or self.clock() - e.stored < self.ttl:
            return e.value
        return None

    def put(self, handle: str, value: Resolved) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))  # oldest insertion
        self._entries[parse_handle(handle).key] = _Entry(value, self.clock())


@dataclass(slots=True)
class Resolver:
    """Cache in front of a client: fresh entries without a request; stale ones while the node is down."""

    client: RegistryClient
    cache: ResolutionCache = field(default_factory=ResolutionCache)
    node_requests: int = 0
    stale_served: int = 0

    def resolve(self, handle: str) -> Resolved:
        hit = self.cache.get(handle)
        if hit is not None:
            return hit
        self.node_requests += 1
        try:
            value = self.client.resolve(handle)
        except RegistryUnavailable:
            stale = self.cache.get(handle, allow_stale=True)
            if stale is None:
                raise
            self.stale_served += 1
            return stale
        self.cache.put(handle, value)
        return value

    def resolve_many(self, handles: Iterable[str]) -> dict[str, Resolved | RegistryError]:
        out: dict[str, Resolved | RegistryError] = {}
        for h in handles:
            try:
                out[h] = self.resolve(h)
            except RegistryError as err:
                out[h] = err
        return out
