"""Shutdown as Kubernetes needs it.

A pod being deleted gets SIGTERM while the Service still sends it traffic: endpoints are removed
with a lag. So on the first SIGTERM (or SIGINT) readiness turns 503 at once (gRPC health
NOT_SERVING), requests are still served for the drain period (each REST response asking its
client to close the connection, so keep-alive clients reconnect to pods that stay), then the
listeners close (gRPC refuses new calls), in-flight requests and calls finish (at most
`shutdown_timeout_seconds`) and the process exits 0 — all inside the pod's termination grace
period, which the operator sets to cover drain plus work. A second signal exits at once. Before
the model is ready there is nothing to drain: a signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

import uvicorn

from .dataplane import DataPlane
from .grpc_server import GrpcServer

log = logging.getLogger("torchship.runtime")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# After the listener closes: time for requests on just-accepted connections to be read.
SETTLE_SECONDS = 0.25


def exit_now(signum: int, *_: Any) -> None:
    """Leave without cleaning up (a load in progress cannot be interrupted otherwise)."""
    log.warning("signal %s: exiting now", signal.Signals(signum).name)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(128 + signum)


def install_early_handlers() -> None:
    """Before anything slow happens: a signal ends the process at once."""
    for signum in SIGNALS:
        signal.signal(signum, exit_now)


class Shutdown:
    def __init__(
        self, plane: DataPlane, server: uvicorn.Server, grpc: GrpcServer | None = None
    ) -> None:
        self.plane = plane
        self.server = server
        self.grpc = grpc
        self.task: asyncio.Task | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self.on_signal, signum)

    def on_signal(self, signum: int) -> None:
        if self.task is not None or not self.plane.model.ready:
            exit_now(signum)
        self.task = asyncio.get_running_loop().create_task(self.drain(signum), name="drain")

    async def drain(self, signum: int) -> None:
        settings = self.plane.settings
        self.plane.draining = True
        if self.grpc is not None:
            await self.grpc.draining()
        log.info(
            "%s: not ready any more; serving on for %.1fs (drain), then finishing in-flight work",
            signal.Signals(signum).name,
            settings.drain_seconds,
        )
        await asyncio.sleep(settings.drain_seconds)
        for listener in self.server.servers:
            listener.close()  # no new connections; the open ones finish their requests
        if self.grpc is not None:  # new calls refused; those in flight get the same timeout
            self.grpc.stop(settings.shutdown_timeout_seconds)
        await asyncio.sleep(SETTLE_SECONDS)
        log.info("drain over: %d request(s) in flight", self.plane.inflight)
        self.server.should_exit = True  # uvicorn closes idle connections, awaits the busy ones
