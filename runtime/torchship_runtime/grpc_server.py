"""Open Inference Protocol v2 over gRPC (`inference.GRPCInferenceService`) and the standard
`grpc.health.v1.Health`, on their own port, in the event loop that runs the REST server, over
the same data plane: a gRPC request and a REST request can share one forward pass.

Errors are call statuses with the data plane's message: INVALID_ARGUMENT for what the request
got wrong, NOT_FOUND for an unknown model or version, UNAUTHENTICATED without the bearer token,
UNAVAILABLE while the model loads, INTERNAL for the model's own failures; RPCs the service does
not define answer UNIMPLEMENTED (gRPC itself), messages past the body limit RESOURCE_EXHAUSTED.
No request can end the server: anything unexpected is logged and answers INTERNAL.

Health (`""` and `inference.GRPCInferenceService`) is NOT_SERVING until the model is ready
and again from the first SIGTERM; it needs no token, like ServerLive and ServerReady (the REST
`/v2/health/*`). Everything else needs `authorization: Bearer <token>` when a token is set.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from . import metrics
from .auth import check_bearer
from .dataplane import DataPlane
from .errors import InferenceError
from .oip import grpc_predict_v2_pb2 as pb
from .oip import grpc_predict_v2_pb2_grpc as pb_grpc
from .protocol_grpc import (
    decode_infer_request,
    encode_infer_response,
    model_metadata,
    server_metadata,
)
from .settings import RuntimeSettings
from .tls import Certificates

log = logging.getLogger("torchship.runtime")

SERVICE = "inference.GRPCInferenceService"
# The data plane's errors carry HTTP statuses; each maps to the gRPC code that means the same.
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def rpc(*, open_: bool = False) -> Callable[[Handler], Handler]:
    """An RPC of the service: the token checked (unless `open_`), errors turned into statuses."""

    def wrap(method: Handler) -> Handler:
        @functools.wraps(method)
        async def handler(self: InferenceService, request: Any, context: Any) -> Any:
            try:
                if not open_ and self.token is not None:
                    check_bearer(self.authorization(context), self.token)
                return await method(self, request, context)
            except InferenceError as error:
                code, message = CODES.get(error.status, grpc.StatusCode.INTERNAL), error.message
            except Exception as error:  # a bug: say so, keep serving
                log.exception("unexpected error serving gRPC %s", method.__name__)
                code = grpc.StatusCode.INTERNAL
                message = f"internal error: {type(error).__name__}: {error}"
            await context.abort(code, message)

        return handler

    return wrap


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, token: bytes | None) -> None:
        self.plane = plane
        self.token = token
        self.meter = metrics.ProtocolMeter(plane.settings.model_name, "grpc")

    @staticmethod
    def authorization(context: Any) -> bytes | None:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                return value.encode("latin-1") if isinstance(value, str) else value
        return None

    @rpc(open_=True)
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self.plane.live())

    @rpc(open_=True)
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    @rpc()
    async def ModelReady(self, request: Any, context: Any) -> Any:
        ready = self.plane.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @rpc()
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return server_metadata(self.plane.server_metadata())

    @rpc()
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        return model_metadata(self.plane.model_metadata(request.name, request.version or None))

    @rpc()
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        plane = self.plane
        with plane.instrumented(self.meter) as served:
            name, version = request.model_name, request.model_version or None
            model = plane.get_model(name, version)  # NOT_FOUND / UNAVAILABLE before decoding
            decoded = decode_infer_request(request)
            outputs = await plane.infer(name, version, decoded, served.admission)
            response = encode_infer_response(model.name, model.version, decoded, outputs)
            served.code = 200
            return response


class GrpcServer:
    """The gRPC listener: the inference service and health, plain text or TLS."""

    def __init__(
        self,
        plane: DataPlane,
        settings: RuntimeSettings,
        token: bytes | None,
        certificates: Certificates | None = None,
    ) -> None:
        self.server = grpc.aio.server(
            options=[
                # The REST body limit, for messages (a larger one: RESOURCE_EXHAUSTED).
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                # A port another process holds is a start-up failure, never a shared port.
                ("grpc.so_reuseport", 0),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceService(plane, token), self.server
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        self.address = f"{host}:{settings.grpc_port}"
        self.tls = certificates is not None
        self._credentials = certificates.grpc_credentials() if certificates else None
        self._stopping: asyncio.Task | None = None

    async def start(self) -> None:
        """Bind and serve, health NOT_SERVING until `serving()`; OSError when the port is taken."""
        for service in ("", SERVICE):
            await self.health.set(service, NOT_SERVING)
        try:
            if self._credentials is not None:
                port = self.server.add_secure_port(self.address, self._credentials)
            else:
                port = self.server.add_insecure_port(self.address)
        except RuntimeError as error:
            raise OSError(f"gRPC cannot listen on {self.address}: {error}") from None
        if port == 0:
            raise OSError(f"gRPC cannot listen on {self.address}")
        await self.server.start()

    async def serving(self) -> None:
        for service in ("", SERVICE):
            await self.health.set(service, SERVING)

    async def draining(self) -> None:
        """NOT_SERVING from now on, for good; calls are still served."""
        await self.health.enter_graceful_shutdown()

    def stop(self, grace: float) -> asyncio.Task:
        """Refuse new calls, give those in flight `grace` seconds, then end (once)."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(
                self.server.stop(grace), name="grpc-stop"
            )
        return self._stopping
