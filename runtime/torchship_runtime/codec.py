"""Open Inference Protocol v2 tensors on the wire, to arrays and back: JSON `data` and the
binary tensor data extension (a JSON header, then raw little-endian tensor bytes; BYTES elements
each prefixed by a 4-byte length). Pure functions: every malformed request raises
InferenceError (400) with what was wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import torch
from pydantic import ValidationError

from torchship.datatypes import NUMPY_DTYPES

from .errors import InferenceError, ModelFailure
from .protocol import InferenceRequest, RequestOutput

DATATYPE_OF_NUMPY = {dtype: name for name, dtype in NUMPY_DTYPES.items()}
TORCH_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "FP32": torch.float32,
    "FP64": torch.float64,
    "BF16": torch.bfloat16,
}
for _name in ("UINT16", "UINT32", "UINT64"):  # torch >= 2.3 has them, with few kernels
    if hasattr(torch, _name.lower()):
        TORCH_DTYPES[_name] = getattr(torch, _name.lower())
DATATYPE_OF_TORCH = {dtype: name for name, dtype in TORCH_DTYPES.items()}
DATATYPES = (*NUMPY_DTYPES, "BF16", "BYTES")

Array = np.ndarray | torch.Tensor


@dataclass(slots=True)
class Tensor:
    """A decoded input: numpy for every datatype but BF16 (a torch tensor: numpy has no
    bfloat16); BYTES as a numpy object array of `bytes`."""

    name: str
    datatype: str
    shape: list[int]
    array: Array


@dataclass(slots=True)
class DecodedRequest:
    inputs: list[Tensor]
    id: str | None = None
    outputs: list[RequestOutput] | None = None
    parameters: dict[str, Any] | None = None

    @property
    def binary_output(self) -> bool:
        """Whether outputs not named in `outputs` go back as raw bytes."""
        return bool((self.parameters or {}).get("binary_data_output"))


def describe(error: ValidationError) -> str:
    """A pydantic validation error as one line a client can act on."""
    problems = []
    for item in error.errors(include_url=False)[:3]:
        if item["type"] == "json_invalid":
            return f"malformed JSON: {item.get('ctx', {}).get('error', item['msg'])}"
        where = ".".join(str(part) for part in item["loc"])
        problems.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "invalid request: " + "; ".join(problems)


def decode_request(body: bytes, header_length: int | None = None) -> DecodedRequest:
    """An infer request body (JSON, or a JSON header of `header_length` bytes plus binary
    tensors) to arrays."""
    binary = b""
    if header_length is not None:
        if not 0 <= header_length <= len(body):
            raise InferenceError(
                f"Inference-Header-Content-Length {header_length} does not fit a body of "
                f"{len(body)} bytes"
            )
        body, binary = body[:header_length], body[header_length:]
    try:
        request = InferenceRequest.model_validate_json(body)
    except ValidationError as error:
        raise InferenceError(describe(error)) from None
    inputs, offset = [], 0
    view = memoryview(bytearray(binary)) if binary else None  # writable: tensors may be reused
    for item in request.inputs:
        size = (item.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or view is None or offset + size > len(view):
                raise InferenceError(
                    f"input {item.name}: binary_data_size {size!r} goes past the "
                    f"{len(binary)} bytes of binary data"
                )
            raw = view[offset : offset + size]
            array = decode_binary(item.name, item.datatype, item.shape, raw)
            offset += size
        elif item.data is None:
            raise InferenceError(f"input {item.name}: 'data' is missing")
        else:
            array = decode_json(item.name, item.datatype, item.shape, item.data)
        inputs.append(Tensor(item.name, item.datatype, item.shape, array))
    if offset != len(binary):
        raise InferenceError(
            f"{len(binary) - offset} bytes of binary data follow the header that no input claims"
        )
    return DecodedRequest(inputs, request.id, request.outputs, request.parameters)


def flatten(data: list) -> list:
    """Nested lists (row-major) to one flat list; flat lists pass through."""
    if not data or not isinstance(data[0], list):
        return data
    out: list = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def decode_json(name: str, datatype: str, shape: list[int], data: Any) -> Array:
    count = math.prod(shape)
    if not isinstance(data, list):
        raise InferenceError(f"input {name}: 'data' must be a list")
    if datatype == "BYTES":
        flat = flatten(data)
        if len(flat) != count:
            raise InferenceError(f"input {name}: shape {shape} needs {count} elements")
        if not all(isinstance(s, str) for s in flat):
            raise InferenceError(f"input {name}: BYTES data must be strings")
        array = np.empty(count, dtype=object)
        array[:] = [s.encode() for s in flat]
        return array.reshape(shape)
    if datatype == "BF16":
        return torch.from_numpy(decode_json(name, "FP32", shape, data)).to(torch.bfloat16)
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise InferenceError(
            f"input {name}: unsupported datatype {datatype!r} (one of {', '.join(DATATYPES)})"
        )
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as error:
        raise InferenceError(f"input {name}: data is not valid {datatype}: {error}") from None
    if array.size != count:
        raise InferenceError(f"input {name}: shape {shape} needs {count} values, got {array.size}")
    return array.reshape(shape)


def decode_binary(name: str, datatype: str, shape: list[int], raw: memoryview) -> Array:
    count = math.prod(shape)
    if datatype == "BYTES":
        items, offset = [], 0
        while offset + 4 <= len(raw):
            size = int.from_bytes(raw[offset : offset + 4], "little")
            items.append(bytes(raw[offset + 4 : offset + 4 + size]))
            offset += 4 + size
        if offset != len(raw) or len(items) != count:
            raise InferenceError(
                f"input {name}: binary BYTES data does not hold {count} length-prefixed elements"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    if datatype == "BF16":
        if len(raw) != 2 * count:
            raise InferenceError(f"input {name}: {len(raw)} bytes do not fit BF16 {shape}")
        return torch.frombuffer(raw, dtype=torch.bfloat16).reshape(shape)
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise InferenceError(
            f"input {name}: unsupported datatype {datatype!r} (one of {', '.join(DATATYPES)})"
        )
    if len(raw) != dtype.itemsize * count:
        raise InferenceError(f"input {name}: {len(raw)} bytes do not fit {datatype} {shape}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def datatype_of(value: Array) -> str:
    """The protocol's name for an output's element type."""
    if isinstance(value, torch.Tensor):
        found = DATATYPE_OF_TORCH.get(value.dtype)
    elif value.dtype.kind in "OSU":
        found = "BYTES"
    else:
        found = DATATYPE_OF_NUMPY.get(value.dtype)
    if found is None:
        raise ModelFailure(f"the model returned {value.dtype}, which the protocol cannot carry")
    return found


def as_output(value: Any) -> Array:
    """What a model or handler returned, as a CPU tensor or a numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return value if value.device.type == "cpu" else value.cpu()
    if isinstance(value, np.ndarray):
        return value
    array = np.asarray(value)
    if array.dtype.kind in "SU":  # strings: BYTES
        array = array.astype(object)
    return array


def to_bytes_items(array: np.ndarray) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel().tolist()]


def json_data(datatype: str, value: Array) -> Any:
    """Flat, row-major data for JSON (orjson writes numpy arrays natively)."""
    if datatype == "BYTES":
        try:
            return [v.decode() for v in to_bytes_items(value)]
        except UnicodeDecodeError:
            raise InferenceError(
                "an output holds bytes that are not UTF-8 text: ask for it as binary data "
                '(outputs: [{"name": ..., "parameters": {"binary_data": true}}])'
            ) from None
    if isinstance(value, torch.Tensor):
        value = value.float() if datatype == "BF16" else value
        value = value.numpy()
    return np.ascontiguousarray(value).reshape(-1)


def binary_data(datatype: str, value: Array) -> bytes:
    if datatype == "BYTES":
        return b"".join(len(v).to_bytes(4, "little") + v for v in to_bytes_items(value))
    if isinstance(value, torch.Tensor):
        if datatype == "BF16":
            return value.contiguous().view(torch.int16).numpy().tobytes()
        value = value.numpy()
    return np.ascontiguousarray(value).tobytes()


def encode_response(
    model_name: str,
    model_version: str,
    request: DecodedRequest,
    outputs: dict[str, Array],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    selected: dict[str, RequestOutput | None]
    if request.outputs:
        selected = {o.name: o for o in request.outputs}
        if missing := [n for n in selected if n not in outputs]:
            raise InferenceError(
                f"unknown output(s) requested: {missing}; the model has {list(outputs)}"
            )
    else:
        selected = dict.fromkeys(outputs)
    entries, chunks = [], []
    for name, wanted in selected.items():
        value = outputs[name]
        datatype = datatype_of(value)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(value.shape)}
        binary = request.binary_output
        if wanted is not None and wanted.parameters and "binary_data" in wanted.parameters:
            binary = bool(wanted.parameters["binary_data"])
        if binary:
            raw = binary_data(datatype, value)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = json_data(datatype, value)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version:
        doc["model_version"] = model_version
    if request.id is not None:
        doc["id"] = request.id
    doc["outputs"] = entries
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
