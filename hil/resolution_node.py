"""A simulated identifier resolution node (enterprise / secondary node HTTP APIs) on 127.0.0.1.

A real node cannot be reached from here (no network beyond loopback, and registration needs an
enterprise prefix and an application identity issued by a secondary node), so this simulator
follows the request and response shapes documented for the SNMS-compatible API and the IDHub
DOIP-over-HTTP API (the project's identifier reference, section 2.2, after the node vendor's API
docs): status / code fields, "标识已存在" for an existing handle, the 2,000-record batch limit,
HTTP 504 meaning "maybe registered", challenge-response login with an RSA signature.  Records keep
their attributes, and detail / retrieve return them.  Updates: SNMS ``PUT /identityv2/data`` and
``PUT /identityv2/data/batchUpdate`` (same bodies and answers as register / batchCreate; the record
is overwritten), DOIP ``0.DOIP/Op.Update`` (overwrite; like the documented node it refuses to delete
an attribute: every attribute the record has must be in the new content, ``""`` clears it).

Fault injection for tests: ``fail_504`` (the next N writes answer 504, after storing the data when
``commit_on_504``, as a timed-out proxy in front of a slow node would; only writes to the path or
DOIP operation ``fail_504_only`` when set), ``refuse_update`` (handle -> the message an update of
it is refused with), ``garbage`` (every answer is an HTML error page), and
:meth:`ResolutionNode.down` / :meth:`ResolutionNode.up` (the port stops / starts accepting
connections).

By hand: ``python -m hil.resolution_node --port 3000 --user 88.608.5288/App_gw=secret`` serves until
Ctrl-C, for trying ``edgegw ids register | resolve`` with ``url = "http://127.0.0.1:3000"``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from gateway.core.errors import IdentifierError
from gateway.core.identifiers import Profile, parse_handle
from hil.services import free_port

__all__ = ["ResolutionNode"]

_EXISTS = "标识已存在"
_NOT_FOUND = "没有找到标识"


class ResolutionNode:
    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        doip_apps: dict[str, bytes] | None = None,
        max_batch: int = 2000,
        port: int = 0,
    ) -> None:
        self.users = dict(users or {})
        self.doip_apps = dict(doip_apps or {})  # app handle -> PEM public key
        self.max_batch = max_batch
        self.store: dict[str, dict[str, Any]] = {}  # equality key -> {"handle", "templateVersion", "value"}
        self.tokens: set[str] = set()
        self.nonces: dict[str, str] = {}
        self.batch_sizes: list[int] = []  # batchCreate
        self.update_batch_sizes: list[int] = []  # batchUpdate
        self.updates: list[str] = []  # handles updated, in order (SNMS and DOIP)
        self.refuse_update: dict[str, str] = {}  # handle -> the message an update of it is refused with
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.fail_504 = 0
        self.commit_on_504 = True
        self.fail_504_only: str | None = None  # e.g. "/identityv2/data/batchUpdate" or "0.DOIP/Op.Update"
        self.garbage = False
        self.port = port or free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        node = self

        class Handler(_Handler):
            pass

        Handler.node = node
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="resolution-node", daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def registered(self, handle: str) -> dict[str, Any] | None:
        return self.store.get(parse_handle(handle, Profile.HANDLE).key)

    # --- the APIs -------------------------------------------------------------------------

    def _check(self, rec: Any) -> tuple[str, str]:
        """(equality key, "") for a well-formed record, or ("", the reason it is refused)."""
        if not isinstance(rec, dict) or not isinstance(rec.get("handle"), str):
            return "", "缺少必要的请求参数: handle"
        try:
            key = parse_handle(rec["handle"], Profile.HANDLE).key
        except IdentifierError:
            return "", "标识格式异常"
        values = rec.get("value")
        if not isinstance(values, list) or any(
            not isinstance(v, dict) or v.get("index") == 1001 or not isinstance(v.get("data"), dict)
            or not isinstance(v.get("type"), str) or not isinstance(v["data"].get("value"), str) for v in values
        ):
            return "", "非法操作，标识属性不合法"
        if len({v["type"] for v in values}) != len(values) or len({v.get("index") for v in values}) != len(values):
            return "", "非法操作，标识属性重复"
        return key, ""

    def _create(self, rec: Any) -> str:
        """One record of a registration: ``success``, ``标识已存在`` or the reason it is refused."""
        key, why = self._check(rec)
        if why:
            return why
        with self._lock:
            if key in self.store:
                return _EXISTS
            self.store[key] = {"handle": rec["handle"], "templateVersion": rec.get("templateVersion"),
                               "value": rec["value"]}
        return "success"

    def _update(self, rec: Any) -> str:
        """One record of an SNMS update (overwrites the record): ``success`` or the reason it is refused."""
        key, why = self._check(rec)
        if why:
            return why
        with self._lock:
            old = self.store.get(key)
            if old is None:
                return _NOT_FOUND
            if old["handle"] in self.refuse_update:
                return self.refuse_update[old["handle"]]
            self.store[key] = {"handle": old["handle"], "templateVersion": rec.get("templateVersion"),
                               "value": rec["value"]}
            self.updates.append(old["handle"])
        return "success"

    def snms(self, method: str, path: str, query: dict[str, str], body: Any, auth: str | None) -> tuple[int, Any]:
        if path == "/identity/token" and method == "POST":
            if isinstance(body, dict) and self.users.get(str(body.get("username"))) == body.get("password"):
                token = secrets.token_hex(16)
                self.tokens.add(token)
                return 200, {"status": 1, "message": "success", "data": {"token": token}}
            return 200, {"status": -1, "message": "用户名或密码错误", "data": None}
        if auth not in self.tokens:
            return 401, {"status": -1, "message": "token无效或已过期", "data": None}
        batch = {("/identityv2/data/batchCreate", "POST"): ("注册", self._create, self.batch_sizes),
                 ("/identityv2/data/batchUpdate", "PUT"): ("更新", self._update, self.update_batch_sizes)}
        if (path, method) in batch:
            verb, apply, sizes = batch[(path, method)]
            if not isinstance(body, list):
                return 200, {"status": -2, "message": "请求体必须是数组", "data": None}
            if len(body) > self.max_batch:
                return 200, {"status": -2, "message": f"批量{verb}最大支持{self.max_batch}条", "data": None}
            sizes.append(len(body))
            items = [{"handle": r.get("handle") if isinstance(r, dict) else None, "msg": apply(r)} for r in body]
            return 200, {"status": 1, "message": "success", "data": items}
        if path == "/identityv2/data" and method in ("POST", "PUT"):
            msg = self._create(body) if method == "POST" else self._update(body)
            if msg == "success":
                return 200, {"status": 1, "message": "success", "data": True}
            return 200, {"status": -2, "message": msg, "data": None}
        if path == "/identityv2/data/detail" and method == "GET":
            handle = query.get("handle")
            if not handle:
                return 200, {"status": -2, "message": "缺少必要的请求参数: handle", "data": None}
            try:
                rec = self.registered(handle)
            except IdentifierError:
                return 200, {"status": -2, "message": "标识格式异常", "data": None}
            if rec is None:
                return 200, {"status": -2, "message": _NOT_FOUND, "data": None}
            prefix = rec["handle"].partition("/")[0]
            return 200, {"status": 1, "message": "success", "data": {"code": "200", "prefix": prefix, **rec}}
        return 404, {"status": -2, "message": f"no such API: {method} {path}", "data": None}

    def doip(self, method: str, path: str, query: dict[str, str], body: Any, auth: str | None) -> tuple[int, Any]:
        if path == "/api/v1/doip/public/challenge" and method == "GET":
            handle = query.get("handle", "")
            if handle not in self.doip_apps:
                return 200, {"code": 40508, "message": "标识格式异常"}
            nonce = str(secrets.randbelow(9000) + 1000)
            self.nonces[handle] = nonce
            return 200, {"code": 1, "message": "operation was successfully processed", "data": nonce}
        if path == "/api/v1/doip/public/verify-response" and method == "POST":
            app = str(body.get("handle")) if isinstance(body, dict) else ""
            issued = self.nonces.pop(app, None)
            if issued is None or not _verify(self.doip_apps[app], issued, str(body.get("signature", ""))):
                return 200, {"code": 102, "message": "authentication failed"}
            token = secrets.token_hex(16)
            self.tokens.add(token)
            return 200, {"code": 1, "message": "operation was successfully processed", "data": {"token": token}}
        if path != "/api/v1/doip":
            return 404, {"code": 101, "message": "invalid request"}
        if auth not in self.tokens:
            return 401, {"code": 102, "message": "authentication failed"}
        op, target = query.get("operationId"), query.get("targetId", "")
        if op == "0.DOIP/Op.Create" and method == "POST":
            attrs = body.get("attributes") if isinstance(body, dict) else None
            content = attrs.get("content") if isinstance(attrs, dict) else None
            if not isinstance(content, dict):
                return 200, {"code": 106, "message": "bad parameters"}
            values = [{"index": 2000 + i, "type": k, "data": {"format": "string", "value": v}}
                      for i, (k, v) in enumerate(content.items())]
            msg = self._create({"handle": target, "templateVersion": body.get("type"), "value": values})
            if msg == "success":
                return 200, {"code": 1, "message": "operation was successfully processed"}
            if msg == _EXISTS:
                return 200, {"code": 105, "message": "handle already exists"}
            return 200, {"code": 40508 if msg == "标识格式异常" else 106, "message": msg}
        if op == "0.DOIP/Op.Update" and method == "POST":
            return 200, self._doip_update(target, body)
        if op == "0.DOIP/Op.Retrieve" and method == "GET":
            try:
                rec = self.registered(target)
            except IdentifierError:
                return 200, {"code": 40508, "message": "标识格式异常"}
            if rec is None:
                return 200, {"code": 104, "message": "handle not found"}
            content = {v["type"]: v["data"]["value"] for v in rec["value"]}
            return 200, {"code": 1, "data": {"id": rec["handle"], "type": rec["templateVersion"],
                                             "attributes": {"content": content}}}
        return 200, {"code": 101, "message": "invalid request"}

    def _doip_update(self, target: str, body: Any) -> dict[str, Any]:
        """``0.DOIP/Op.Update`` (overwrite): the documented success answer is code 10000 with the new object."""
        attrs = body.get("attributes") if isinstance(body, dict) else None
        content = attrs.get("content") if isinstance(attrs, dict) else None
        if not isinstance(content, dict) or not all(isinstance(v, str) for v in content.values()):
            return {"code": 106, "message": "bad parameters"}
        try:
            key = parse_handle(target, Profile.HANDLE).key
        except IdentifierError:
            return {"code": 40508, "message": "标识格式异常"}
        with self._lock:
            old = self.store.get(key)
            if old is None:
                return {"code": 104, "message": "标识对象不存在"}
            if old["handle"] in self.refuse_update:
                return {"code": 701, "message": self.refuse_update[old["handle"]]}
            if body.get("type") != old["templateVersion"]:
                return {"code": 106, "message": "元数据模板与标识创建时不一致"}
            indexes = {v["type"]: v["index"] for v in old["value"]}
            missing = sorted(indexes.keys() - content.keys())
            if missing:
                return {"code": 106, "message": f"不能删除属性: {', '.join(missing)}"}
            nxt = max(indexes.values(), default=1999) + 1
            values = []
            for k, v in content.items():
                if k not in indexes:
                    indexes[k], nxt = nxt, nxt + 1
                values.append({"index": indexes[k], "type": k, "data": {"format": "string", "value": v}})
            self.store[key] = {**old, "value": values}
            self.updates.append(old["handle"])
        return {"code": 10000, "message": "success", "data": {"type": old["templateVersion"],
                                                                "attributes": {"content": content}}}


class _Handler(BaseHTTPRequestHandler):
    node: ResolutionNode
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        node = self.node
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        node.requests.append((self.command, url.path))
        if node.garbage:
            self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(400, json.dumps({"status": -2, "message": "请求体不是JSON"}).encode())
            return
        auth = self.headers.get("Authorization", "").removeprefix("Bearer ").strip() or None
        write = self.command in ("POST", "PUT") and "public" not in url.path and url.path != "/identity/token"
        if write and node.fail_504_only is not None:
            write = node.fail_504_only in (url.path, query.get("operationId"))
        if write and node.fail_504 > 0:
            node.fail_504 -= 1
            if node.commit_on_504:
                self._dispatch(url.path, query, body, auth)
            self._send(504, b"<html>504 Gateway Time-out</html>", "text/html")
            return
        status, doc = self._dispatch(url.path, query, body, auth)
        self._send(status, json.dumps(doc, ensure_ascii=False).encode())

    def _dispatch(self, path: str, query: dict[str, str], body: Any, auth: str | None) -> tuple[int, Any]:
        if path.startswith("/api/v1/doip"):
            return self.node.doip(self.command, path, query, body, auth)
        return self.node.snms(self.command, path, query, body, auth)

    def _send(self, status: int, payload: bytes, ctype: str = "application/json;charset=UTF-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


def _verify(public_pem: bytes, nonce: str, signature_b64: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_public_key(public_pem)
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(base64.b64decode(signature_b64), nonce.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="simulated identifier resolution node on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user", action="append", default=[], metavar="IDENTITY=PASSWORD")
    args = ap.parse_args(argv)
    users = dict(u.split("=", 1) for u in args.user)
    with ResolutionNode(users=users, port=args.port) as node:
        print(f"resolution node simulator on {node.url} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
