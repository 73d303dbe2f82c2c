"""The transport-neutral data plane: health, metadata and inference for the one served model.
The protocol adapters (rest_v2, rest_v1, grpc_server) map their wire onto these calls and back;
nothing here knows HTTP, gRPC or a protocol's wire format.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import __version__, metrics
from .batcher import Batcher, as_error
from .codec import Array, DecodedRequest
from .errors import InferenceError, NotFound, Unavailable
from .model import Model, create_model
from .protocol import ModelMetadataResponse, ServerMetadataResponse
from .settings import RuntimeSettings

EXTENSIONS = ["binary_tensor_data"]


class Admission:
    """One accepted request: in flight until closed, and "arriving" (a reason for a batch to wait
    a little) until it is queued for a forward pass or fails before that."""

    __slots__ = ("arriving", "plane")

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.arriving = True
        plane.inflight += 1
        plane.arriving += 1

    def queued(self) -> None:
        if self.arriving:
            self.arriving = False
            self.plane.arriving -= 1

    def close(self) -> None:
        self.queued()
        self.plane.inflight -= 1


class Instrumented:
    """One inference request as every protocol meters it: in flight (admitted) until it ends,
    timed from its arrival, and counted by its status: the error's, 200 once the handler sets
    `code`, or 500 for anything else."""

    __slots__ = ("admission", "code", "meter", "started")

    def __init__(self, plane: DataPlane, meter: metrics.ProtocolMeter) -> None:
        self.started = time.perf_counter()
        self.meter = meter
        self.admission = Admission(plane)
        self.code = 500

    def __enter__(self) -> Instrumented:
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if isinstance(error, InferenceError):
            self.code = error.status
        self.admission.close()
        self.meter.count(self.code)
        self.meter.latency.observe(time.perf_counter() - self.started)


class DataPlane:
    def __init__(self, settings: RuntimeSettings, model: Model | None = None) -> None:
        self.settings = settings
        self.model = model if model is not None else create_model(settings)
        self.draining = False
        self.inflight = 0
        self.arriving = 0
        # One thread runs every forward pass (torch parallelises inside it) and the load, so
        # the warm-up initialises the very thread that serves.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self.batcher: Batcher | None = None
        name = settings.model_name
        self._batch_size = metrics.BATCH_SIZE.labels(name)
        self._forward_seconds = metrics.FORWARD_SECONDS.labels(name)
        metrics.INFLIGHT.labels(name).set_function(lambda: self.inflight)
        metrics.QUEUE_DEPTH.labels(name).set_function(
            lambda: len(self.batcher.queue) if self.batcher else 0
        )
        metrics.READY.labels(name).set_function(lambda: float(self.ready()))

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        """Load and warm up the model in the forward thread, then start batching."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.model.load)
        metrics.LOAD_SECONDS.labels(self.model.name).set(self.model.load_seconds)
        for phase, seconds in self.model.phase_seconds.items():
            metrics.START_SECONDS.labels(self.model.name, phase).set(seconds)
        if self.settings.batching and self.model.batchable:
            self.batcher = Batcher(
                self._forward,
                self.executor,
                max_batch_size=self.model.max_batch_rows,
                max_delay=self.settings.max_delay_ms / 1000,
                arriving=lambda: self.arriving,
                observe=lambda rows, queued: self._batch_size.observe(rows),
            )
            self.batcher.start()

    def _forward(self, inputs: dict[str, Any]) -> dict[str, Array]:
        started = time.perf_counter()
        try:
            return self.model.predict(inputs)
        finally:
            self._forward_seconds.observe(time.perf_counter() - started)

    def admit(self) -> Admission:
        return Admission(self)

    def instrumented(self, meter: metrics.ProtocolMeter) -> Instrumented:
        """`with plane.instrumented(meter) as request:` around one inference request."""
        return Instrumented(self, meter)

    def live(self) -> bool:
        """The process can serve: before the load, or with the batching loop running."""
        return self.batcher is None or self.batcher.healthy

    def ready(self) -> bool:
        return self.model.ready and not self.draining

    # -- metadata --------------------------------------------------------------------------

    def server_metadata(self) -> ServerMetadataResponse:
        return ServerMetadataResponse(name="torchship", version=__version__, extensions=EXTENSIONS)

    def get_model(self, name: str, version: str | None = None) -> Model:
        model = self.model
        if name != model.name:
            raise NotFound(f"model {name!r} is not served here (this server serves {model.name!r})")
        if version and version != model.version:
            raise NotFound(
                f"model {name} has no version {version!r}"
                + (f" (it serves version {model.version!r})" if model.version else "")
            )
        if not model.ready:
            raise Unavailable(f"model {name} is still loading")
        return model

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadataResponse:
        model = self.get_model(name, version)
        return ModelMetadataResponse(
            name=model.name,
            versions=[model.version] if model.version else [],
            platform=model.platform,
            inputs=model.inputs,
            outputs=model.outputs,
        )

    def model_ready(self, name: str, version: str | None = None) -> bool:
        try:
            self.get_model(name, version)
        except Unavailable:
            return False
        return self.ready()

    # -- inference -------------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: str | None,
        request: DecodedRequest,
        admission: Admission | None = None,
    ) -> dict[str, Array]:
        model = self.get_model(name, version)
        inputs = model.prepare(request.inputs)
        if admission is not None:
            admission.queued()
        if self.batcher is not None:
            return await self.batcher.submit(inputs)
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self.executor, self._forward, inputs)
        except Exception as error:
            raise as_error(error) from None
        self._batch_size.observe(1 if not model.batchable else _rows(inputs))
        return outputs


def _rows(inputs: dict[str, Any]) -> int:
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if getattr(first, "ndim", 0) else 1
