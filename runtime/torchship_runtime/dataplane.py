"""The transport-neutral data plane: health, metadata and inference for the served model.
The REST adapter (server.py) only maps HTTP onto these calls."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import torch

from . import __version__, metrics
from .batcher import Batcher, as_error
from .errors import InferenceError
from .models import ServedModel
from .settings import RuntimeSettings
from .tensors import InferRequest, Tensor, encode_response, parse_request

EXTENSIONS = ["binary_tensor_data"]


class DataPlane:
    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.model: ServedModel | None = None
        self.draining = False
        self.arriving = 0  # requests accepted, not yet queued for a batch
        # One thread runs forward passes: torch parallelises inside it.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self.batcher: Batcher | None = None
        name = settings.model_name
        self._batch_size = metrics.BATCH_SIZE.labels(name)
        self._queue_depth = metrics.QUEUE_DEPTH.labels(name)
        self._forward_seconds = metrics.FORWARD_SECONDS.labels(name)

    # -- lifecycle -------------------------------------------------------------------------

    def set_model(self, model: ServedModel) -> None:
        self.model = model
        metrics.LOAD_SECONDS.labels(model.name).set(model.load_seconds)
        if self.settings.batching and model.batchable:
            self.batcher = Batcher(
                self._timed_run,
                self.executor,
                max_batch_size=model.max_batch_rows or self.settings.max_batch_size,
                max_delay=self.settings.max_delay_ms / 1000,
                arriving=lambda: self.arriving,
                observe=self._observe_batch,
            )
            self.batcher.start()

    def _observe_batch(self, rows: int, queued: int) -> None:
        self._batch_size.observe(rows)
        self._queue_depth.set(queued)

    def _timed_run(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        started = time.perf_counter()
        try:
            return self.model.run(batch)
        finally:
            self._forward_seconds.observe(time.perf_counter() - started)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.model is not None and not self.draining

    # -- metadata --------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "torchship", "version": __version__, "extensions": EXTENSIONS}

    def get_model(self, name: str, version: str | None = None) -> ServedModel:
        model = self.model
        if model is None or name != self.settings.model_name:
            if model is None and name == self.settings.model_name:
                raise InferenceError(f"model {name} is not ready yet", status=503)
            raise InferenceError(f"model {name!r} is not served here", status=404)
        if version and version != model.version:
            raise InferenceError(f"model {name} has no version {version!r}", status=404)
        return model

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.get_model(name, version)
        return {
            "name": model.name,
            "versions": [model.version] if model.version else [],
            "platform": model.platform,
            "inputs": [m.model_dump() for m in model.inputs],
            "outputs": [m.model_dump() for m in model.outputs],
        }

    def model_ready(self, name: str, version: str | None = None) -> bool:
        self.get_model(name, version)
        return self.ready()

    # -- inference -------------------------------------------------------------------------

    async def infer(
        self, name: str, version: str | None, body: bytes, header_length: int | None
    ) -> tuple[bytes, int | None]:
        model = self.get_model(name, version)
        request = parse_request(body, header_length)
        outputs = await self._predict(model, request)
        return encode_response(model.name, model.version, request, outputs)

    async def predict_v1(self, name: str, body: bytes) -> bytes:
        """KServe v1: {"instances": [...]} -> {"predictions": [...]} for a single input."""
        model = self.get_model(name)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise InferenceError(f"malformed JSON: {error}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
            raise InferenceError("the request needs an 'instances' list")
        if len(model.inputs) != 1:
            raise InferenceError("the v1 protocol serves single-input models; use v2")
        meta = model.inputs[0]
        try:
            array = np.asarray(
                doc["instances"],
                dtype=np.float32 if meta.datatype.startswith(("FP", "BF")) else np.int64,
            )
        except (ValueError, TypeError, OverflowError) as error:
            raise InferenceError(f"instances are not numeric rows: {error}") from None
        if array.ndim == 0 or array.shape[0] == 0:
            raise InferenceError("instances must be a non-empty list of rows")
        tensor = Tensor(meta.name, meta.datatype, list(array.shape), array)
        outputs = await self._predict(model, InferRequest(inputs=[tensor]))
        first = next(iter(outputs.values()))
        return orjson.dumps(
            {"predictions": first.float().numpy() if first.is_floating_point() else first.numpy()},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    async def _predict(self, model: ServedModel, request: InferRequest) -> dict[str, torch.Tensor]:
        if model.handler is not None:
            return await self._handle(model, request)
        inputs = model.to_tensors(request.inputs)
        rows = {v.shape[0] if v.dim() else 0 for v in inputs.values()}
        if len(rows) != 1 or 0 in rows:
            raise InferenceError("all inputs need the same, non-zero leading (batch) dimension")
        if self.batcher is not None:
            self.arriving -= 1  # queued now: no longer "on its way"
            try:
                return await self.batcher.submit(inputs)
            finally:
                self.arriving += 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, self._timed_run, inputs)
        except Exception as error:
            raise as_error(error) from None

    async def _handle(self, model: ServedModel, request: InferRequest) -> dict[str, torch.Tensor]:
        """Handler models: preprocess -> predict -> postprocess, one request at a time."""
        handler = model.handler
        arrays = {t.name: t.array for t in request.inputs}

        def call() -> dict[str, torch.Tensor]:
            data = handler.preprocess(arrays) if hasattr(handler, "preprocess") else arrays
            with torch.inference_mode():
                result = handler.predict(data)
            if hasattr(handler, "postprocess"):
                result = handler.postprocess(result)
            if not isinstance(result, dict):
                result = {"output__0": result}
            return {k: torch.as_tensor(np.asarray(v)) for k, v in result.items()}

        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        except InferenceError:
            raise
        except Exception as error:
            raise as_error(error) from None
