"""Open Inference Protocol v2 tensors: JSON and binary (the binary tensor data extension)
to numpy and back. Pure functions; every malformed input raises InferenceError (400)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import torch

from .errors import InferenceError

NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPE_OF = {np.dtype(v): k for k, v in NUMPY.items()}
TORCH_DATATYPE = {
    torch.bool: "BOOL", torch.uint8: "UINT8", torch.int8: "INT8", torch.int16: "INT16",
    torch.int32: "INT32", torch.int64: "INT64", torch.float16: "FP16", torch.float32: "FP32",
    torch.float64: "FP64", torch.bfloat16: "BF16",
}  # fmt: skip
HEADER_LENGTH = "inference-header-content-length"


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    array: Any  # np.ndarray, or a list of bytes for BYTES, or a torch tensor for BF16
    parameters: dict = field(default_factory=dict)


@dataclass
class InferRequest:
    """`{"id": "42", "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 64],
    "data": [...]}], "outputs": [{"name": "output__0"}], "parameters": {}}`"""

    inputs: list[Tensor]
    id: str | None = None
    outputs: list[dict] | None = None
    parameters: dict = field(default_factory=dict)
    binary_output: bool = False


def _shape(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and d >= 0 for d in value):
        raise InferenceError(f"input {name}: shape must be a list of non-negative integers")
    return value


def _flatten(data: Any) -> list:
    if data and isinstance(data[0], list):
        out: list = []
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            else:
                out.append(item)
        return out
    return data


def decode_array(name: str, datatype: str, shape: list[int], data: Any) -> Any:
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten(data) if isinstance(data, list) else None
        if flat is None or len(flat) != count:
            raise InferenceError(f"input {name}: BYTES data must hold {count} elements")
        return [s.encode() if isinstance(s, str) else s for s in flat]
    if datatype == "BF16":
        values = decode_array(name, "FP32", shape, data)
        return torch.from_numpy(values).to(torch.bfloat16)
    dtype = NUMPY.get(datatype)
    if dtype is None:
        raise InferenceError(f"input {name}: unsupported datatype {datatype!r}")
    if not isinstance(data, list):
        raise InferenceError(f"input {name}: data must be a list")
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as error:
        raise InferenceError(f"input {name}: data is not valid {datatype}: {error}") from None
    if array.size != count:
        raise InferenceError(f"input {name}: shape {shape} needs {count} values, got {array.size}")
    return array.reshape(shape)


def decode_binary(name: str, datatype: str, shape: list[int], raw: bytes) -> Any:
    count = math.prod(shape)
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            size = int.from_bytes(raw[offset : offset + 4], "little")
            items.append(raw[offset + 4 : offset + 4 + size])
            offset += 4 + size
        if len(items) != count:
            raise InferenceError(f"input {name}: BYTES data must hold {count} elements")
        return items
    if datatype == "BF16":
        if len(raw) != 2 * count:
            raise InferenceError(f"input {name}: {len(raw)} bytes do not fit shape {shape} BF16")
        return torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(shape)
    dtype = NUMPY.get(datatype)
    if dtype is None:
        raise InferenceError(f"input {name}: unsupported datatype {datatype!r}")
    if len(raw) != np.dtype(dtype).itemsize * count:
        raise InferenceError(f"input {name}: {len(raw)} bytes do not fit shape {shape} {datatype}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def parse_request(body: bytes, header_length: int | None) -> InferRequest:
    binary = b""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InferenceError("Inference-Header-Content-Length exceeds the body")
        body, binary = body[:header_length], body[header_length:]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InferenceError(f"malformed JSON: {error}") from None
    if not isinstance(doc, dict):
        raise InferenceError("the request must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InferenceError("the request needs a non-empty 'inputs' list")
    inputs, offset = [], 0
    for item in raw_inputs:
        if not isinstance(item, dict):
            raise InferenceError("each input must be an object")
        name, datatype = item.get("name"), item.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InferenceError("each input needs a string 'name' and 'datatype'")
        shape = _shape(item.get("shape"), name)
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise InferenceError(f"input {name}: parameters must be an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InferenceError(f"input {name}: binary_data_size exceeds the binary data")
            array = decode_binary(name, datatype, shape, binary[offset : offset + size])
            offset += size
        else:
            if "data" not in item:
                raise InferenceError(f"input {name}: 'data' is missing")
            array = decode_array(name, datatype, shape, item["data"])
        inputs.append(Tensor(name, datatype, shape, array, parameters))
    outputs = doc.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list)
        or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    ):
        raise InferenceError("'outputs' must be a list of objects with a 'name'")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InferenceError("'parameters' must be an object")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InferenceError("'id' must be a string")
    binary_output = bool(parameters.get("binary_data_output")) or any(
        (o.get("parameters") or {}).get("binary_data") for o in outputs or []
    )
    return InferRequest(inputs, request_id, outputs, parameters, binary_output)


def to_numpy(value: torch.Tensor) -> tuple[str, np.ndarray | torch.Tensor]:
    value = value.detach()
    if value.device.type != "cpu":
        value = value.cpu()
    if value.dtype == torch.bfloat16:
        return "BF16", value
    return TORCH_DATATYPE.get(value.dtype, "FP32"), value.numpy()


def encode_response(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: dict[str, torch.Tensor],
) -> tuple[bytes, int | None]:
    """The response body and, for binary outputs, the JSON header's length."""
    wanted = {o["name"]: o for o in request.outputs or []}
    if wanted and (missing := set(wanted) - set(outputs)):
        raise InferenceError(f"unknown output(s) requested: {sorted(missing)}")
    entries, chunks = [], []
    for name, value in outputs.items():
        if wanted and name not in wanted:
            continue
        datatype, array = to_numpy(value)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        binary = request.binary_output
        if name in wanted and "binary_data" in (wanted[name].get("parameters") or {}):
            binary = bool(wanted[name]["parameters"]["binary_data"])
        if binary:
            raw = (
                array.contiguous().view(torch.int16).numpy().tobytes()
                if datatype == "BF16"
                else array.tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif datatype == "BF16":
            entry["data"] = array.float().numpy().ravel()
        else:
            entry["data"] = array.ravel()
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "outputs": entries}
    if model_version:
        doc["model_version"] = model_version
    if request.id is not None:
        doc["id"] = request.id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
