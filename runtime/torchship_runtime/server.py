"""The ASGI application on one port: OIP v2 and v1 (through their adapters), health, /metrics.

A small hand-written router, no web framework: the hot path is one prefix test and one regex.
Every error answers `{"error": "..."}` with its 4xx/5xx status and the server keeps serving.
Health and metrics stay open when a bearer token is required; everything else needs it.
While draining, every response asks the client to close its connection, so keep-alive clients
reconnect through the Service to pods that are still ready.
"""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics
from .asgi import (
    Receive,
    Scope,
    Send,
    authorize,
    respond,
    respond_empty,
    respond_json,
)
from .auth import read_token
from .dataplane import DataPlane
from .errors import InferenceError, MethodNotAllowed, NotFound
from .protocol import ErrorResponse
from .rest_v1 import RestV1
from .rest_v2 import RestV2

log = logging.getLogger("torchship.runtime")
METRICS_TYPE = [(b"content-type", CONTENT_TYPE_LATEST.encode())]


class App:
    def __init__(self, plane: DataPlane) -> None:
        settings = plane.settings
        self.plane = plane
        self.token = read_token(settings.auth_token_file)
        self.v2 = RestV2(plane, settings.max_body_bytes)
        self.v1 = RestV1(plane, settings.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan or websocket protocol here
        path = scope["path"]
        try:
            if path.startswith("/v2/models/"):
                self.authorize(scope)
                if not await self.v2.models(scope, receive, send):
                    raise NotFound(f"no route for {scope['method']} {path}")
            elif path.startswith("/v2/health/"):
                await self.health(scope, send, path)
            elif path == "/v2":
                self.authorize(scope)
                self.only_get(scope)
                await respond_json(send, 200, self.plane.server_metadata(), self.plane.draining)
            elif path == "/metrics":
                self.only_get(scope)
                await respond(send, 200, generate_latest(metrics.REGISTRY), METRICS_TYPE)
            elif path.startswith("/v1/models"):
                self.authorize(scope)
                if not await self.v1.models(scope, receive, send):
                    raise NotFound(f"no route for {scope['method']} {path}")
            else:
                raise NotFound(f"no route for {scope['method']} {path}")
        except InferenceError as error:
            await self.error(send, error.status, error.message, error)
        except Exception as error:  # a bug: say so, keep serving
            log.exception("unexpected error serving %s %s", scope["method"], path)
            await self.error(send, 500, f"internal error: {type(error).__name__}: {error}", error)

    async def health(self, scope: Scope, send: Send, path: str) -> None:
        self.only_get(scope)
        if path == "/v2/health/live":
            ok = self.plane.live()
        elif path == "/v2/health/ready":
            ok = self.plane.ready()
        elif path == "/v2/health/started":  # the startup probe: loaded, warm-up may follow
            ok = self.plane.model.loaded
        else:
            raise NotFound(f"no route for {scope['method']} {path}")
        await respond_empty(send, 200 if ok else 503, self.plane.draining)

    def authorize(self, scope: Scope) -> None:
        if self.token is not None:
            authorize(scope, self.token)

    @staticmethod
    def only_get(scope: Scope) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{scope['method']} is not allowed here (GET)")

    async def error(self, send: Send, status: int, message: str, error: Exception) -> None:
        extra = []
        if status == 401:
            extra.append((b"www-authenticate", b"Bearer"))
        if status == 405:
            extra.append((b"allow", b"POST" if "POST" in message else b"GET"))
        # A refused body may be partly unread: the connection cannot carry another request.
        close = self.plane.draining or status == 413
        try:
            await respond_json(send, status, ErrorResponse(error=message), close, extra)
        except Exception:  # the response had already started, or the client left
            log.debug("could not send the error response for %r", error)
