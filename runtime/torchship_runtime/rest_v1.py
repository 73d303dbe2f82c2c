"""KServe's v1 protocol: `GET /v1/models`, `GET /v1/models/{name}` and
`POST /v1/models/{name}:predict` (`instances` in, `predictions` out), and its wire format:
instances as rows of the model's single input, predictions as JSON-ready rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import torch
from pydantic import ValidationError

from .asgi import CLOSE, JSON, Adapter, Receive, Scope, Send, read_body, respond, respond_json
from .codec import NUMPY_DTYPES, Array, DecodedRequest, Tensor, describe
from .dataplane import Admission, DataPlane
from .errors import InferenceError
from .protocol import V1ModelList, V1ModelStatus, V1PredictRequest


class RestV1(Adapter):
    protocol = "v1"

    async def list(self, scope: Scope, receive: Receive, send: Send) -> None:
        models = V1ModelList(models=[self.meter.model])
        await respond_json(send, 200, models, self.plane.draining)

    async def status(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        status = V1ModelStatus(name=name, ready=self.plane.model_ready(name))
        await respond_json(send, 200, status, self.plane.draining)

    async def predict(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        plane = self.plane
        with plane.instrumented(self.meter) as request:
            plane.get_model(name)  # 404 / 503 before reading any body
            body = await read_body(scope, receive, self.max_body)
            try:
                instances = V1PredictRequest.model_validate_json(body).instances
            except ValidationError as error:
                raise InferenceError(describe(error)) from None
            predictions = await predict(plane, name, instances, request.admission)
            payload = orjson.dumps({"predictions": predictions})
            request.code = 200
            await respond(send, 200, payload, [*JSON, CLOSE] if plane.draining else JSON)


async def predict(
    plane: DataPlane, name: str, instances: list[Any], admission: Admission | None = None
) -> list[Any]:
    """One instance per row of the model's single input; one prediction per row (a value per
    row for one output, an object per row for several)."""
    model = plane.get_model(name)
    if len(model.inputs) > 1:
        names = [m.name for m in model.inputs]
        raise InferenceError(f"v1 predict serves single-input models; this one takes {names}")
    meta = model.inputs[0] if model.inputs else None
    datatype = meta.datatype if meta else "FP32"
    tensor = Tensor(
        meta.name if meta else "instances", datatype, [], instances_array(instances, datatype)
    )
    tensor.shape = list(tensor.array.shape)
    outputs = await plane.infer(name, None, DecodedRequest([tensor]), admission)
    columns = {n: rows_of(v) for n, v in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    rows = min(len(c) for c in columns.values())
    return [{n: c[i] for n, c in columns.items()} for i in range(rows)]


def rows_of(value: Array) -> list[Any]:
    """An output as JSON-ready rows (nested lists for trailing dims, text for BYTES)."""
    if isinstance(value, torch.Tensor):
        value = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    if value.dtype.kind in "OSU":
        value = np.vectorize(text, otypes=[object])(value)
    return value.tolist() if value.ndim else [value.tolist()]


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def instances_array(instances: list[Any], datatype: str) -> np.ndarray | torch.Tensor:
    try:
        if datatype == "BYTES":
            array = np.asarray(instances, dtype=object)
            if not all(isinstance(v, str) for v in array.ravel()):
                raise ValueError("BYTES instances must be strings")
            return np.vectorize(str.encode, otypes=[object])(array)
        if datatype == "BF16":
            return torch.from_numpy(np.asarray(instances, dtype=np.float32)).to(torch.bfloat16)
        return np.asarray(instances, dtype=NUMPY_DTYPES[datatype])
    except (ValueError, TypeError, OverflowError) as error:
        raise InferenceError(f"instances are not {datatype} rows: {error}") from None
