"""`python -m torchship_runtime` (`torchship-runtime`): serve one model until told to stop.

Start-up order: signal handlers, settings, the HTTP server (live at once; ready once the model is
loaded and warmed up), the model. A model that fails to load ends the process with exit code 1
and the reason, in the log and in the pod's termination message, so `kubectl describe pod` shows
it; the server is never left live but unable to serve.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads sleep rather than spin. A pod shares its cores
# (with the event loop, under a CPU quota): spinning threads take the time the event loop needs
# and stall the forward pass at every barrier. Set OMP_WAIT_POLICY=ACTIVE to opt out.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import asyncio
import contextlib
import logging
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn
import uvloop

from . import prefetch
from .auth import read_token
from .dataplane import DataPlane
from .grpc_server import GrpcServer
from .server import App
from .settings import TERMINATION_MESSAGE_PATH, RuntimeSettings, from_args
from .shutdown import Shutdown, install_early_handlers
from .tls import Certificates

log = logging.getLogger("torchship.runtime")


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGTERM and SIGINT belong to the shutdown module


def report_failure(message: str, path: str) -> None:
    """The reason in the log and in the pod's termination message (Kubernetes keeps 4 KiB: the
    head, which says what failed, before the library's own words)."""
    log.error("%s", message)
    target = Path(path)
    if target.parent.is_dir():
        with contextlib.suppress(OSError):
            target.write_text(message[:4000])


async def serve(settings: RuntimeSettings) -> int:
    plane = DataPlane(settings)
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
    config = uvicorn.Config(
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
    log.info("stopped")
    return 0


def fetch_only(argv: list[str]) -> int:
    """`torchship-runtime fetch`: the model into the cache, its report as the termination
    message (the pod's init container)."""
    settings = from_args(argv)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(message)s")
    try:
        report = prefetch.run(settings)
    except Exception as error:
        report_failure(
            f"the model could not be fetched from {settings.model_uri}: "
            f"{type(error).__name__}: {error}",
            settings.termination_message_path,
        )
        return 1
    with contextlib.suppress(OSError):
        prefetch.write_report(report, settings.termination_message_path)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["fetch"]:
        sys.exit(fetch_only(args[1:]))
    install_early_handlers()
    try:
        settings = from_args(argv)
    except Exception as error:
        path = os.environ.get("TORCHSHIP_TERMINATION_MESSAGE_PATH", TERMINATION_MESSAGE_PATH)
        print(f"torchship-runtime: invalid settings: {error}", file=sys.stderr)
        with contextlib.suppress(OSError):
            if Path(path).parent.is_dir():
                Path(path).write_text(f"torchship-runtime: invalid settings: {error}"[-4000:])
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    sys.exit(uvloop.run(serve(settings)))


if __name__ == "__main__":
    main()
