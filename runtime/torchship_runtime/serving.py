"""The serving process: the HTTP and gRPC servers around the model's data plane, from start to
stop (`torchship-runtime` without a subcommand; see __main__).

Start-up order: the HTTP server (live at once; ready once the model is loaded and warmed up),
then the model. A model that fails to load ends the process with exit code 1 and the reason, in
the log and in the pod's termination message, so `kubectl describe pod` shows it; the server is
never left live but unable to serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from .auth import read_token
from .dataplane import DataPlane
from .grpc_server import GrpcServer
from .server import App
from .settings import RuntimeSettings
from .shutdown import Shutdown
from .termination import report_failure
from .tls import Certificates

if TYPE_CHECKING:
    from .generation.model import TransformersModel

log = logging.getLogger("torchship.runtime")


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGTERM and SIGINT belong to the shutdown module


def generative_model(settings: RuntimeSettings) -> TransformersModel | None:
    """The transformers format's model, or None for the tensor formats (the data plane's own)."""
    if settings.model_format != "transformers":
        return None
    from .generation.model import TransformersModel  # the generation package, imported only here

    return TransformersModel(settings)


def http_config(app: App, settings: RuntimeSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        backlog=2048,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
    )


async def serve(settings: RuntimeSettings) -> int:
    model = generative_model(settings)
    plane = DataPlane(settings, model)
    try:
        app = App(plane)
        certificates = (
            Certificates(settings.tls_cert_file, settings.tls_key_file) if settings.tls else None
        )
        grpc = (
            GrpcServer(plane, settings, read_token(settings.auth_token_file), certificates)
            if settings.grpc_port
            else None
        )
    except (OSError, ValueError, ssl.SSLError) as error:
        report_failure(f"torchship-runtime: {error}", settings.termination_message_path)
        return 2
    config = http_config(app, settings)
    watching = None
    if certificates is not None:
        config.load()
        config.ssl = certificates.rest_context()  # follows the certificate's rotations
        watching = asyncio.create_task(certificates.watch(settings.tls_reload_seconds))
    server = Server(config)
    Shutdown(plane, server, grpc).install(asyncio.get_running_loop())
    serving = asyncio.create_task(server.serve(), name="http")

    async def give_up(message: str) -> int:
        report_failure(message, settings.termination_message_path)
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await serving
        if grpc is not None:
            await grpc.stop(0)
        return 1

    if grpc is not None:
        try:
            await grpc.start()
        except OSError as error:
            return await give_up(f"torchship-runtime: {error}")
    try:
        await plane.load()
    except Exception as error:
        log.debug("load failure", exc_info=True)
        return await give_up(
            f"the model could not be loaded ({settings.model_format} from "
            f"{settings.model_uri}): {type(error).__name__}: {error}"
        )
    if serving.done():  # the port could not be bound, say
        return await give_up(f"torchship-runtime: the HTTP server ended on port {settings.port}")
    if grpc is not None:
        await grpc.serving()
    log.info(
        "serving model %s on %s:%d (%s)%s",
        settings.model_name,
        settings.host,
        settings.port,
        "HTTPS" if certificates else "HTTP",
        f", gRPC on port {settings.grpc_port}" if grpc else "",
    )
    await serving
    if grpc is not None:
        await grpc.stop(settings.shutdown_timeout_seconds)
    if watching is not None:
        watching.cancel()
    plane.executor.shutdown(wait=False, cancel_futures=True)
    if model is not None:
        model.close()
    log.info("stopped")
    return 0
