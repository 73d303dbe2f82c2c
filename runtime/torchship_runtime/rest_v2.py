"""Open Inference Protocol v2 over REST: model metadata, model readiness and inference, with the
binary tensor data extension both ways. HTTP in, data plane calls, HTTP out."""

from __future__ import annotations

import re
import time

from . import metrics
from .asgi import (
    CLOSE,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    respond,
    respond_empty,
    respond_json,
)
from .codec import decode_request, encode_response
from .dataplane import DataPlane
from .errors import InferenceError, MethodNotAllowed

MODEL_PATH = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?$"
)
OCTETS = (b"content-type", b"application/octet-stream")
JSON_TYPE = (b"content-type", b"application/json")


class RestV2:
    def __init__(self, plane: DataPlane, max_body: int) -> None:
        self.plane = plane
        self.max_body = max_body
        name = plane.settings.model_name
        self._latency = metrics.REQUEST_SECONDS.labels(name, "v2")
        self._codes: dict[int, metrics.Counter] = {}
        self._name = name

    def _count(self, code: int) -> None:
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = metrics.REQUESTS.labels(self._name, "v2", str(code))
        counter.inc()

    async def models(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve a /v2/models/... path; False when the path is not one of the protocol's."""
        match = MODEL_PATH.match(scope["path"])
        if match is None:
            return False
        name, version, action = match.group("name", "version", "action")
        method = scope["method"]
        if action == "/infer":
            if method != "POST":
                raise MethodNotAllowed("infer takes POST")
            await self.infer(scope, receive, send, name, version)
            return True
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{method} is not allowed here (GET)")
        close = self.plane.draining
        if action == "/ready":
            await respond_empty(send, 200 if self.plane.model_ready(name, version) else 503, close)
        else:
            await respond_json(send, 200, self.plane.model_metadata(name, version), close)
        return True

    async def infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        started = time.perf_counter()
        admission = self.plane.admit()
        code = 500
        try:
            self.plane.get_model(name, version)  # 404 / 503 before reading any body
            header_length = None
            if (value := header(scope, b"inference-header-content-length")) is not None:
                if not value.isdigit():
                    raise InferenceError("Inference-Header-Content-Length must be an integer")
                header_length = int(value)
            body = await read_body(scope, receive, self.max_body)
            request = decode_request(body, header_length)
            outputs = await self.plane.infer(name, version, request, admission)
            model = self.plane.model
            payload, json_length = encode_response(model.name, model.version, request, outputs)
            if json_length is None:
                headers = [JSON_TYPE]
            else:
                headers = [OCTETS, (b"inference-header-content-length", b"%d" % json_length)]
            if self.plane.draining:
                headers.append(CLOSE)
            code = 200
            await respond(send, 200, payload, headers)
        except InferenceError as error:
            code = error.status
            raise
        finally:
            admission.close()
            self._count(code)
            self._latency.observe(time.perf_counter() - started)
