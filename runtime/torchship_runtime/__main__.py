"""`python -m torchship_runtime`: serve one model until told to stop.

Start-up: signal handlers first, then the HTTP server (live at once, ready once the model is
loaded and warmed), then the model. A model that fails to load ends the process non-zero with
the reason, so the pod's status shows it.
Shutdown, as Kubernetes needs it: on SIGTERM readiness turns 503 at once while requests are
still served for the drain period (Services drop endpoints with a lag), then in-flight work
finishes and the process exits; a second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import uvicorn
import uvloop

from .dataplane import DataPlane
from .models import load
from .server import App
from .settings import RuntimeSettings, from_args

log = logging.getLogger("torchship.runtime")


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, plane: DataPlane) -> None:
        super().__init__(config)
        self.plane = plane
        self.loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: object) -> None:  # called from the signal handler
        if self.plane.draining or self.plane.model is None:
            log.warning("signal %s: exiting now", sig)
            os._exit(0 if self.plane.model is None else 1)
        self.plane.draining = True
        drain = self.plane.settings.drain_seconds
        log.info("signal %s: not ready any more; serving on for %.1fs, then exiting", sig, drain)
        self.loop.call_soon_threadsafe(self.loop.call_later, drain, self.stop)

    def stop(self) -> None:
        self.should_exit = True  # uvicorn stops accepting and finishes what is in flight


async def serve(settings: RuntimeSettings) -> int:
    plane = DataPlane(settings)
    app = App(plane)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=15,
        backlog=2048,
    )
    server = Server(config, plane)
    server.loop = asyncio.get_running_loop()
    serving = asyncio.create_task(server.serve())
    try:
        model = await asyncio.to_thread(load, settings)
    except Exception as error:
        log.error("the model could not be loaded: %s: %s", type(error).__name__, error)
        server.should_exit = True
        await serving
        return 1
    plane.set_model(model)
    log.info("serving model %s on %s:%d", model.name, settings.host, settings.port)
    await serving
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> None:
    # Before anything slow: a SIGTERM during start-up ends the process at once.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        settings = from_args(argv)
    except Exception as error:
        print(f"torchship-runtime: invalid settings: {error}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    sys.exit(uvloop.run(serve(settings)))


if __name__ == "__main__":
    main()
