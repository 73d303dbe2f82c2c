"""Open Inference Protocol v2 messages over gRPC, to the data plane's requests and back.

Inputs come either as `raw_input_contents` (one little-endian buffer per input, BYTES elements
length-prefixed: the binary tensor data of REST, so the same decoder reads both) or as typed
`contents`; outputs always go back as `raw_output_contents`, which is what tritonclient reads.
Pure functions: a malformed message raises InferenceError saying what was wrong.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .codec import (
    DATATYPES,
    NUMPY_DTYPES,
    Array,
    DecodedRequest,
    Tensor,
    binary_data,
    datatype_of,
    decode_binary,
)
from .errors import InferenceError
from .oip import grpc_predict_v2_pb2 as pb
from .protocol import ModelMetadataResponse, RequestOutput, ServerMetadataResponse

# The typed field that carries each datatype (FP16 and BF16 have none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters(entries: Any) -> dict[str, Any]:
    """A protobuf map of InferParameter to plain values."""
    out: dict[str, Any] = {}
    for key, value in entries.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def decode_infer_request(request: Any) -> DecodedRequest:
    """A ModelInferRequest to the data plane's decoded request."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InferenceError(
            f"raw_input_contents holds {len(raw)} tensor(s) for {len(request.inputs)} input(s)"
        )
    if not request.inputs:
        raise InferenceError("the request has no inputs")
    tensors = []
    for index, item in enumerate(request.inputs):
        name, datatype = item.name, item.datatype
        shape = list(item.shape)
        if any(d < 0 for d in shape):
            raise InferenceError(f"input {name}: shape {shape} has a negative dimension")
        if raw:
            if item.HasField("contents"):
                raise InferenceError(
                    f"input {name}: contents and raw_input_contents cannot both carry tensors"
                )
            # A writable copy: torch may keep the tensor, protobuf's bytes are read-only.
            array = decode_binary(name, datatype, shape, memoryview(bytearray(raw[index])))
        else:
            array = decode_contents(name, datatype, shape, item.contents)
        tensors.append(Tensor(name, datatype, shape, array))
    outputs = [
        RequestOutput(name=o.name, parameters=parameters(o.parameters) or None)
        for o in request.outputs
    ]
    return DecodedRequest(
        tensors,
        id=request.id or None,
        outputs=outputs or None,
        parameters=parameters(request.parameters) or None,
    )


def decode_contents(name: str, datatype: str, shape: list[int], contents: Any) -> Array:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        if datatype in DATATYPES:  # FP16, BF16
            raise InferenceError(f"input {name}: {datatype} travels in raw_input_contents only")
        raise InferenceError(
            f"input {name}: unsupported datatype {datatype!r} (one of {', '.join(DATATYPES)})"
        )
    values = getattr(contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise InferenceError(
            f"input {name}: shape {shape} needs {count} values in contents.{field}, "
            f"got {len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    try:
        array = np.array(values, dtype=NUMPY_DTYPES[datatype])
    except (OverflowError, ValueError) as error:
        raise InferenceError(f"input {name}: contents are not valid {datatype}: {error}") from None
    return array.reshape(shape)


def encode_infer_response(
    model_name: str, model_version: str, request: DecodedRequest, outputs: dict[str, Array]
) -> Any:
    """The ModelInferResponse: every (or every requested) output in raw_output_contents."""
    if request.outputs:
        names = [o.name for o in request.outputs]
        if missing := [n for n in names if n not in outputs]:
            raise InferenceError(
                f"unknown output(s) requested: {missing}; the model has {list(outputs)}"
            )
    else:
        names = list(outputs)
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request.id or ""
    )
    for name in names:
        value = outputs[name]
        datatype = datatype_of(value)
        response.outputs.add(name=name, datatype=datatype, shape=list(value.shape))
        response.raw_output_contents.append(binary_data(datatype, value))
    return response


def server_metadata(doc: ServerMetadataResponse) -> Any:
    return pb.ServerMetadataResponse(name=doc.name, version=doc.version, extensions=doc.extensions)


def model_metadata(doc: ModelMetadataResponse) -> Any:
    def tensors(metas: list) -> list:
        return [
            pb.ModelMetadataResponse.TensorMetadata(name=m.name, datatype=m.datatype, shape=m.shape)
            for m in metas
        ]

    return pb.ModelMetadataResponse(
        name=doc.name,
        versions=doc.versions,
        platform=doc.platform,
        inputs=tensors(doc.inputs),
        outputs=tensors(doc.outputs),
    )
