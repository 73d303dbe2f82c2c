"""The REST adapter: KServe Open Inference Protocol v2 and the v1 `:predict` form over a small
hand-written ASGI router (served by uvicorn), plus /metrics. Every error is a JSON
`{"error": "..."}` with a 4xx/5xx status, and the server keeps serving."""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics
from .dataplane import DataPlane
from .errors import InferenceError

log = logging.getLogger("torchship.runtime")

V2_MODEL = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?$"
)
V1_MODEL = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?P<action>:predict)?$")
JSON = [(b"content-type", b"application/json")]

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BodyTooLarge(InferenceError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes", status=413)


class App:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.max_body = plane.settings.max_body_bytes
        self.token = self._read_token(plane.settings.auth_token_file)
        name = plane.settings.model_name
        self._inflight = metrics.INFLIGHT.labels(name)
        self._latency = {p: metrics.REQUEST_SECONDS.labels(name, p) for p in ("v1", "v2")}
        self._counters: dict[tuple[str, int], Any] = {}

    @staticmethod
    def _read_token(path: str) -> bytes | None:
        if not path:
            return None
        token = Path(path).read_text().strip().encode()
        if not token:
            raise ValueError(f"the auth token file {path} is empty")
        return token

    def _count(self, protocol: str, code: int) -> None:
        counter = self._counters.get((protocol, code))
        if counter is None:
            counter = metrics.REQUESTS.labels(self.plane.settings.model_name, protocol, str(code))
            self._counters[(protocol, code)] = counter
        counter.inc()

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == "/v2/health/live":
                await self._status(send, 200 if self.plane.live() else 503)
            elif path == "/v2/health/ready":
                await self._status(send, 200 if self.plane.ready() else 503)
            elif path == "/metrics":
                await respond(
                    send,
                    200,
                    generate_latest(metrics.REGISTRY),
                    [(b"content-type", CONTENT_TYPE_LATEST.encode())],
                )
            elif path == "/v2" and method == "GET":
                self._authorize(scope)
                await respond_json(send, 200, self.plane.server_metadata())
            elif match := V2_MODEL.match(path):
                self._authorize(scope)
                await self._v2(scope, receive, send, method, **match.groupdict())
            elif match := V1_MODEL.match(path):
                self._authorize(scope)
                await self._v1(scope, receive, send, method, **match.groupdict())
            else:
                raise InferenceError(f"no route for {method} {path}", status=404)
        except InferenceError as error:
            await respond_json(send, error.status, {"error": error.message})

    async def _status(self, send: Send, status: int) -> None:
        await respond(send, status, b"", JSON)

    def _authorize(self, scope: dict) -> None:
        if self.token is None:
            return
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, presented = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(
                    presented.strip(), self.token
                ):
                    return
                break
        raise InferenceError("a valid bearer token is required", status=401)

    async def _v2(self, scope, receive, send, method, name, version, action) -> None:
        if action == "/infer":
            if method != "POST":
                raise InferenceError("infer takes POST", status=405)
            await self._infer(scope, receive, send, name, version)
        elif method != "GET":
            raise InferenceError(f"{method} is not allowed here", status=405)
        elif action == "/ready":
            await self._status(send, 200 if self.plane.model_ready(name, version) else 503)
        else:
            await respond_json(send, 200, self.plane.model_metadata(name, version))

    async def _infer(self, scope, receive, send, name, version) -> None:
        started = time.perf_counter()
        header_length = None
        for key, value in scope["headers"]:
            if key == b"inference-header-content-length":
                try:
                    header_length = int(value)
                except ValueError:
                    raise InferenceError(
                        "Inference-Header-Content-Length must be an integer"
                    ) from None
        self._inflight.inc()
        self.plane.arriving += 1
        code = 500
        try:
            body = await self._read_body(scope, receive)
            payload, binary_header = await self.plane.infer(name, version, body, header_length)
            headers = [
                (
                    b"content-type",
                    b"application/octet-stream" if binary_header else b"application/json",
                )
            ]
            if binary_header is not None:
                headers.append((b"inference-header-content-length", str(binary_header).encode()))
            code = 200
            await respond(send, 200, payload, headers)
        except InferenceError as error:
            code = error.status
            raise
        finally:
            self.plane.arriving -= 1
            self._inflight.dec()
            self._count("v2", code)
            self._latency["v2"].observe(time.perf_counter() - started)

    async def _v1(self, scope, receive, send, method, name, action) -> None:
        if not action:
            if method != "GET":
                raise InferenceError(f"{method} is not allowed here", status=405)
            await respond_json(send, 200, {"name": name, "ready": self.plane.model_ready(name)})
            return
        if method != "POST":
            raise InferenceError("predict takes POST", status=405)
        started = time.perf_counter()
        self._inflight.inc()
        self.plane.arriving += 1
        code = 500
        try:
            body = await self._read_body(scope, receive)
            payload = await self.plane.predict_v1(name, body)
            code = 200
            await respond(send, 200, payload, JSON)
        except InferenceError as error:
            code = error.status
            raise
        finally:
            self.plane.arriving -= 1
            self._inflight.dec()
            self._count("v1", code)
            self._latency["v1"].observe(time.perf_counter() - started)

    async def _read_body(self, scope: dict, receive: Receive) -> bytes:
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise BodyTooLarge(self.max_body)
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(self.max_body)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks) if len(chunks) > 1 else chunks[0]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def respond(send: Send, status: int, body: bytes, headers: list) -> None:
    # An explicit length spares HTTP/1.1 chunked encoding on every response.
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, doc: Any) -> None:
    await respond(send, status, orjson.dumps(doc), JSON)
