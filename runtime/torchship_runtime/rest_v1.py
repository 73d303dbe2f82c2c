"""KServe's v1 protocol: `GET /v1/models`, `GET /v1/models/{name}` and
`POST /v1/models/{name}:predict` (`instances` in, `predictions` out)."""

from __future__ import annotations

import re
import time

import orjson
from pydantic import ValidationError

from . import metrics
from .asgi import CLOSE, JSON, Receive, Scope, Send, read_body, respond, respond_json
from .codec import describe
from .dataplane import DataPlane
from .errors import InferenceError, MethodNotAllowed
from .protocol import V1ModelList, V1ModelStatus, V1PredictRequest

MODEL_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?P<action>:predict)?$")


class RestV1:
    def __init__(self, plane: DataPlane, max_body: int) -> None:
        self.plane = plane
        self.max_body = max_body
        name = plane.settings.model_name
        self._latency = metrics.REQUEST_SECONDS.labels(name, "v1")
        self._name = name

    async def models(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve a /v1/models... path; False when the path is not one of the protocol's."""
        path, method = scope["path"], scope["method"]
        close = self.plane.draining
        if path == "/v1/models":
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{method} is not allowed here (GET)")
            await respond_json(send, 200, V1ModelList(models=[self._name]), close)
            return True
        match = MODEL_PATH.match(path)
        if match is None:
            return False
        name, action = match.group("name", "action")
        if not action:
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{method} is not allowed here (GET)")
            status = V1ModelStatus(name=name, ready=self.plane.model_ready(name))
            await respond_json(send, 200, status, close)
            return True
        if method != "POST":
            raise MethodNotAllowed("predict takes POST")
        await self.predict(scope, receive, send, name)
        return True

    async def predict(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        started = time.perf_counter()
        admission = self.plane.admit()
        code = 500
        try:
            self.plane.get_model(name)  # 404 / 503 before reading any body
            body = await read_body(scope, receive, self.max_body)
            try:
                request = V1PredictRequest.model_validate_json(body)
            except ValidationError as error:
                raise InferenceError(describe(error)) from None
            predictions = await self.plane.predict_v1(name, request.instances, admission)
            payload = orjson.dumps({"predictions": predictions})
            code = 200
            await respond(send, 200, payload, [*JSON, CLOSE] if self.plane.draining else JSON)
        except InferenceError as error:
            code = error.status
            raise
        finally:
            admission.close()
            metrics.REQUESTS.labels(self._name, "v1", str(code)).inc()
            self._latency.observe(time.perf_counter() - started)
