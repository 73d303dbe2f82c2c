"""numpy arrays to Open Inference Protocol v2 requests and responses back to arrays: JSON `data`
and the binary tensor data extension (a JSON header, then each tensor's raw little-endian bytes;
BYTES elements each prefixed by a 4-byte length). Pure functions, no transport: REST uses them
today and any other transport of the same protocol can."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..datatypes import NUMPY_DTYPES
from .errors import ProtocolError

DTYPES = NUMPY_DTYPES
DATATYPE_OF = {dtype.kind + str(dtype.itemsize): name for name, dtype in DTYPES.items()}
HEADER_LENGTH = "inference-header-content-length"
# Tensors at least this large travel as raw bytes: JSON costs ~10x the bytes and a parse each way.
BINARY_THRESHOLD = 1024


def datatype(array: np.ndarray) -> str:
    """The protocol's datatype of a numpy array; text and bytes are BYTES."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    name = DATATYPE_OF.get(array.dtype.kind + str(array.dtype.itemsize))
    if name is None:
        raise TypeError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
    return name


def as_bytes_elements(array: np.ndarray) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1).tolist()]


def tensor_bytes(array: np.ndarray, kind: str) -> bytes:
    if kind == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in as_bytes_elements(array))
    return np.ascontiguousarray(array, dtype=DTYPES[kind]).tobytes()


def json_data(array: np.ndarray, kind: str) -> list[Any]:
    if kind == "BYTES":
        try:
            return [v.decode() for v in as_bytes_elements(array)]
        except UnicodeDecodeError as error:
            raise TypeError("BYTES that are not UTF-8 need the binary extension") from error
    return array.reshape(-1).tolist()


@dataclass
class EncodedRequest:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def encode_request(
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None = None,
    *,
    binary: bool | None = None,
    binary_output: bool | None = None,
    request_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> EncodedRequest:
    """The request body. `binary` None: each tensor of BINARY_THRESHOLD bytes or more goes as raw
    bytes; True/False: all or none. Outputs come back binary when any input went binary (large
    in, large out) unless `binary_output` says otherwise."""
    if not inputs:
        raise ValueError("infer needs at least one input")
    header_inputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in inputs.items():
        array = np.asarray(value)
        kind = datatype(array)
        entry: dict[str, Any] = {"name": name, "datatype": kind, "shape": list(array.shape)}
        raw = binary if binary is not None else array.nbytes >= BINARY_THRESHOLD
        if not raw:
            try:
                entry["data"] = json_data(array, kind)
            except TypeError:
                raw = True
        if raw:
            chunk = tensor_bytes(array, kind)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        header_inputs.append(entry)
    wants_binary = binary_output if binary_output is not None else bool(chunks)
    request: dict[str, Any] = {"inputs": header_inputs}
    if request_id is not None:
        request["id"] = request_id
    params = dict(parameters or {})
    if outputs is not None:
        request["outputs"] = [
            {"name": o, **({"parameters": {"binary_data": True}} if wants_binary else {})}
            for o in outputs
        ]
    elif wants_binary:
        params["binary_data_output"] = True
    if params:
        request["parameters"] = params
    header = json.dumps(request, separators=(",", ":")).encode()
    if not chunks:
        return EncodedRequest(header, {"content-type": "application/json"})
    return EncodedRequest(
        header + b"".join(chunks),
        {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))},
    )


@dataclass(frozen=True)
class InferResult:
    """A response: `outputs` by name, in the server's order, as numpy arrays (BYTES: an object
    array of `bytes`)."""

    model_name: str
    model_version: str | None
    id: str | None
    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.outputs[name]

    def __iter__(self):
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)


def decode_response(body: bytes, header_length: int | None) -> InferResult:
    header, rest = (body, b"") if header_length is None else split(body, header_length)
    try:
        doc = json.loads(header)
    except ValueError as error:
        raise ProtocolError(f"the response is not OIP v2 JSON: {header[:200]!r}") from error
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
        raise ProtocolError(f"the response has no outputs: {header[:200]!r}")
    outputs: dict[str, np.ndarray] = {}
    offset = 0
    for out in doc["outputs"]:
        name, kind, shape = out["name"], out["datatype"], [int(d) for d in out["shape"]]
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            chunk = rest[offset : offset + int(size)]
            if len(chunk) != int(size):
                raise ProtocolError(f"output {name}: {size} bytes announced, {len(chunk)} sent")
            offset += int(size)
            outputs[name] = from_bytes(chunk, kind, shape, name)
        else:
            outputs[name] = from_json(out.get("data"), kind, shape, name)
    return InferResult(
        model_name=doc.get("model_name", ""),
        model_version=doc.get("model_version"),
        id=doc.get("id"),
        outputs=outputs,
        parameters=doc.get("parameters"),
    )


def split(body: bytes, header_length: int) -> tuple[bytes, bytes]:
    if header_length > len(body):
        raise ProtocolError(f"header length {header_length} exceeds the body ({len(body)})")
    return body[:header_length], body[header_length:]


def from_bytes(chunk: bytes, kind: str, shape: list[int], name: str) -> np.ndarray:
    if kind == "BYTES":
        values, offset = [], 0
        while offset < len(chunk):
            (length,) = struct.unpack_from("<I", chunk, offset)
            values.append(chunk[offset + 4 : offset + 4 + length])
            offset += 4 + length
        return np.array(values, dtype=object).reshape(shape)
    dtype = dtype_of(kind, name)
    return np.frombuffer(chunk, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def from_json(data: Any, kind: str, shape: list[int], name: str) -> np.ndarray:
    if data is None:
        raise ProtocolError(f"output {name} has neither data nor binary_data_size")
    if kind == "BYTES":
        flat = np.array(data, dtype=object).reshape(-1)
        values = [v.encode() if isinstance(v, str) else bytes(v) for v in flat]
        return np.array(values, dtype=object).reshape(shape)
    return np.array(data, dtype=dtype_of(kind, name).newbyteorder("=")).reshape(shape)


def dtype_of(kind: str, name: str) -> np.dtype:
    dtype = DTYPES.get(kind)
    if dtype is None:
        # BF16 has no numpy type: ask the server for FP32 outputs instead.
        raise ProtocolError(f"output {name} is {kind}, which numpy cannot represent")
    return dtype
