"""The wire types: KServe Open Inference Protocol v2 (REST) and the v1 `:predict` form.

Each docstring shows the JSON. Requests are validated through these models (from the JSON
bytes, in pydantic's compiled core); responses on the hot path are written straight from numpy
by the codec in the shapes these models describe.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
]
Parameters = dict[str, Any]


class TensorMetadata(BaseModel):
    """A model input or output as metadata names it; -1 marks a variable dimension (the batch).

    `{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}`
    """

    model_config = ConfigDict(frozen=True)

    name: str
    datatype: Datatype = "FP32"
    shape: list[Annotated[int, Field(ge=-1)]] = Field(default_factory=lambda: [-1])


class ServerMetadataResponse(BaseModel):
    """`GET /v2`

    `{"name": "torchship", "version": "0.1.0", "extensions": ["binary_tensor_data"]}`
    """

    name: str
    version: str
    extensions: list[str]


class ModelMetadataResponse(BaseModel):
    """`GET /v2/models/{name}[/versions/{version}]`

    `{"name": "mlp", "versions": ["3"], "platform": "pytorch_torchscript",
    "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}],
    "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [-1, 10]}]}`
    """

    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    """One input tensor: `data` holds the values in row-major order (flat or nested), or, with the
    binary tensor data extension, `parameters.binary_data_size` bytes after the JSON header.

    `{"name": "input__0", "datatype": "FP32", "shape": [2, 64], "data": [0.1, 0.2, ...]}`
    `{"name": "input__0", "datatype": "FP32", "shape": [2, 64],
    "parameters": {"binary_data_size": 512}}`
    """

    name: str
    datatype: str
    shape: list[NonNegativeInt]
    parameters: Parameters | None = None
    data: Any = None


class RequestOutput(BaseModel):
    """An output the client wants; `binary_data` asks for it as raw bytes after the header.

    `{"name": "output__0", "parameters": {"binary_data": true}}`
    """

    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    """`POST /v2/models/{name}[/versions/{version}]/infer`; `id` comes back in the response,
    `outputs` (optional) selects outputs, `parameters.binary_data_output` asks for every output
    as raw bytes.

    `{"id": "42", "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 64],
    "data": [...]}], "outputs": [{"name": "output__0"}], "parameters": {}}`
    """

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """`{"name": "output__0", "datatype": "FP32", "shape": [1, 10], "data": [...]}`, or with
    `"parameters": {"binary_data_size": 40}` and the bytes after the JSON header."""

    name: str
    datatype: Datatype
    shape: list[NonNegativeInt]
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """`{"model_name": "mlp", "model_version": "3", "id": "42",
    "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [1, 10], "data": [...]}]}`

    With binary outputs the body is this JSON followed by the outputs' bytes, and the response
    carries `Inference-Header-Content-Length: <length of the JSON>`.
    """

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ErrorResponse(BaseModel):
    """Any failed request: `{"error": "input input__0: expected shape [-1, 64], got [1, 3]"}`"""

    error: str


class V1PredictRequest(BaseModel):
    """`POST /v1/models/{name}:predict`: one instance per row of the model's only input.

    `{"instances": [[0.1, 0.2, ...], [0.3, 0.4, ...]]}`
    """

    instances: list[Any] = Field(min_length=1)


class V1PredictResponse(BaseModel):
    """One prediction per instance; a model with several outputs answers one object per row.

    `{"predictions": [[0.5, -1.2, ...], [0.7, 0.1, ...]]}`
    """

    predictions: list[Any]


class V1ModelStatus(BaseModel):
    """`GET /v1/models/{name}`: `{"name": "mlp", "ready": true}`"""

    name: str
    ready: bool


class V1ModelList(BaseModel):
    """`GET /v1/models`: `{"models": ["mlp"]}`"""

    models: list[str]
