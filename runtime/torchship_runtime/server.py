"""The ASGI application on one port: OIP v2 and, under `/v1`, KServe v1 for a tensor model or
OpenAI's API for a generative one (through their adapters), health, /metrics.

Bare ASGI, no web framework: one route table (routes.py) says which paths exist, which methods
each takes, which need the bearer token and the shape of the errors under each prefix; the hot
path is one regular expression. Every error answers `{"error": "..."}` (under `/v1` of a
generative model, OpenAI's error object) with its 4xx/5xx status and the server keeps
serving. Health and metrics stay open when a bearer token is required; everything else needs it.
While draining, every response asks the client to close its connection, so keep-alive clients
reconnect through the Service to pods that are still ready.
"""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics
from .asgi import CLOSE, JSON, Receive, Scope, Send, authorize, respond, respond_empty
from .auth import read_token
from .dataplane import DataPlane
from .errors import InferenceError, MethodNotAllowed
from .protocol import ErrorResponse
from .rest_v1 import RestV1
from .rest_v2 import RestV2
from .routes import GET, POST, ErrorShape, Route, Router

log = logging.getLogger("torchship.runtime")
METRICS_TYPE = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
# A v1 model name ends at the colon of `:predict`.
V1_MODEL = "/v1/models/(?P<name>[^/:]+)"
V2_MODEL = "/v2/models/{name}(?:/versions/(?P<version>[^/]+))?"


def generation_routes(plane: DataPlane) -> tuple[list[Route], dict[str, ErrorShape]]:
    """The transformers format's APIs: OpenAI's (all of `/v1`, its errors in OpenAI's error
    object whatever raised them) and the OIP generate extension."""
    from .generate_v2 import GenerateV2
    from .openai.protocol import error_object
    from .openai.serving import OpenAIServing

    generate = GenerateV2(plane, plane.settings.max_body_bytes)
    openai = OpenAIServing(plane, plane.settings.max_body_bytes)
    routes = [
        Route(f"{V2_MODEL}/generate", POST, generate.generate),
        Route(f"{V2_MODEL}/generate_stream", POST, generate.generate_stream),
        Route("/v1/chat/completions", POST, openai.chat),
        Route("/v1/completions", POST, openai.completions),
        Route("/v1/embeddings", POST, openai.embeddings),
        Route("/v1/models", GET, openai.models),
        Route("/v1/models/{name}", GET, openai.model),
    ]
    return routes, {"/v1": error_object}


def tensor_routes(plane: DataPlane) -> tuple[list[Route], dict[str, ErrorShape]]:
    """KServe's v1 protocol, for tensor models."""
    v1 = RestV1(plane, plane.settings.max_body_bytes)
    routes = [
        Route(f"{V1_MODEL}:predict", POST, v1.predict),
        Route(V1_MODEL, GET, v1.status),
        Route("/v1/models", GET, v1.list),
    ]
    return routes, {}


def plain_error(error: InferenceError) -> bytes:
    return ErrorResponse(error=error.message).model_dump_json().encode()


class App:
    def __init__(self, plane: DataPlane) -> None:
        settings = plane.settings
        self.plane = plane
        self.token = read_token(settings.auth_token_file)
        v2 = RestV2(plane, settings.max_body_bytes)
        # `/v1` is KServe v1's for a tensor model, OpenAI's for a generative one.
        v1_api = generation_routes if settings.model_format == "transformers" else tensor_routes
        routes, error_shapes = v1_api(plane)
        self.router = Router(
            [
                Route(f"{V2_MODEL}/infer", POST, v2.infer),
                Route(f"{V2_MODEL}/ready", GET, v2.ready),
                Route(V2_MODEL, GET, v2.metadata),
                *routes,
                Route("/v2", GET, v2.server_metadata),
                Route("/v2/health/live", GET, self.live, auth=False),
                Route("/v2/health/ready", GET, self.ready, auth=False),
                Route("/v2/health/started", GET, self.started, auth=False),
                Route("/metrics", GET, self.metrics, auth=False),
            ],
            {"": plain_error, **error_shapes},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan or websocket protocol here
        method = scope["method"]
        try:
            route, parameters = self.router.match(method, scope["path"])
            if route.auth and self.token is not None:
                authorize(scope, self.token)
            self.router.check_method(route, method)
            await route.handler(scope, receive, send, **parameters)
        except InferenceError as error:
            await self.error(send, scope["path"], error)
        except Exception as error:  # a bug: say so, keep serving
            log.exception("unexpected error serving %s %s", method, scope["path"])
            internal = InferenceError(f"internal error: {type(error).__name__}: {error}", 500)
            await self.error(send, scope["path"], internal)

    async def live(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A generation engine whose thread died is not live either (the kubelet restarts it).
        live = self.plane.live() and getattr(self.plane.model, "healthy", True)
        await respond_empty(send, 200 if live else 503, self.plane.draining)

    async def started(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The startup probe: the model is loaded (warm-up may follow)."""
        await respond_empty(send, 200 if self.plane.model.loaded else 503, self.plane.draining)

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond_empty(send, 200 if self.plane.ready() else 503, self.plane.draining)

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, generate_latest(metrics.REGISTRY), METRICS_TYPE)

    async def error(self, send: Send, path: str, error: InferenceError) -> None:
        headers = [*JSON]
        if error.status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        if isinstance(error, MethodNotAllowed):
            headers.append((b"allow", error.allow.encode()))
        # A refused body may be partly unread: the connection cannot carry another request.
        if self.plane.draining or error.status == 413:
            headers.append(CLOSE)
        try:
            await respond(send, error.status, self.router.error_shape(path)(error), headers)
        except Exception:  # the response had already started, or the client left
            log.debug("could not send the error response for %r", error)
