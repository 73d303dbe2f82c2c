"""The wire codec on its own: JSON and binary tensors in every datatype, to arrays and back, and
the message a malformed request gets."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from torchship_runtime.codec import (
    NUMPY_DTYPES,
    DecodedRequest,
    decode_request,
    encode_response,
)
from torchship_runtime.errors import InferenceError
from torchship_runtime.protocol import InferenceResponse, RequestOutput


def json_body(name: str, datatype: str, shape: list[int], data) -> bytes:
    tensor = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    return orjson.dumps({"inputs": [tensor]})


def binary_body(tensors: dict[str, tuple[str, np.ndarray]], **doc) -> tuple[bytes, int]:
    raws, inputs = [], []
    for name, (datatype, array) in tensors.items():
        raw = array.tobytes()
        raws.append(raw)
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    header = orjson.dumps({"inputs": inputs, **doc})
    return header + b"".join(raws), len(header)


def parse_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """A response back to arrays, checked against the protocol's response model on the way."""
    header = body if header_length is None else body[:header_length]
    doc = InferenceResponse.model_validate_json(header)
    out, offset = {}, header_length or 0
    for o in doc.outputs:
        dtype = NUMPY_DTYPES.get(o.datatype, np.dtype(object))
        if o.parameters and "binary_data_size" in o.parameters:
            size = o.parameters["binary_data_size"]
            raw = body[offset : offset + size]
            offset += size
            if o.datatype == "BYTES":
                items, i = [], 0
                while i < len(raw):
                    n = int.from_bytes(raw[i : i + 4], "little")
                    items.append(raw[i + 4 : i + 4 + n])
                    i += 4 + n
                out[o.name] = np.array(items, dtype=object).reshape(o.shape)
            else:
                out[o.name] = np.frombuffer(raw, dtype=dtype).reshape(o.shape)
        elif o.datatype == "BYTES":
            out[o.name] = np.array([s.encode() for s in o.data], dtype=object).reshape(o.shape)
        else:
            out[o.name] = np.asarray(o.data, dtype=dtype).reshape(o.shape)
    assert offset == len(body) or header_length is None
    return out


finite_arrays = st.sampled_from(sorted(NUMPY_DTYPES)).flatmap(
    lambda datatype: st.tuples(
        st.just(datatype),
        hnp.arrays(
            NUMPY_DTYPES[datatype],
            hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
            elements={"allow_nan": False, "allow_infinity": False}
            if NUMPY_DTYPES[datatype].kind == "f"
            else None,
        ),
    )
)


@settings(max_examples=200, deadline=None)
@given(finite_arrays, st.booleans(), st.booleans())
def test_any_numeric_tensor_round_trips(datatype_and_array, binary_in, binary_out):
    datatype, array = datatype_and_array
    if binary_in:
        body, length = binary_body({"t": (datatype, array)})
    else:
        body, length = json_body("t", datatype, list(array.shape), array.tolist()), None
    request = decode_request(body, length)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("t", datatype, list(array.shape))
    assert tensor.array.dtype == array.dtype and np.array_equal(tensor.array, array)
    request.parameters = {"binary_data_output": binary_out}
    payload, header_length = encode_response("m", "", request, {"t": tensor.array})
    assert (header_length is not None) == binary_out
    back = parse_response(payload, header_length)["t"]
    assert back.dtype == array.dtype and np.array_equal(back, array)


@given(st.lists(st.binary(max_size=12), min_size=1, max_size=6))
def test_bytes_round_trip_in_binary(items):
    array = np.empty(len(items), dtype=object)
    array[:] = items
    raw = b"".join(len(v).to_bytes(4, "little") + v for v in items)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [len(items)],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    request = decode_request(header + raw, len(header))
    assert list(request.inputs[0].array) == items
    request.parameters = {"binary_data_output": True}
    payload, length = encode_response("m", "", request, {"s": array})
    assert list(parse_response(payload, length)["s"]) == items


def test_nested_and_flat_data_mean_the_same_row_major_tensor():
    flat = decode_request(json_body("x", "INT32", [2, 3], [1, 2, 3, 4, 5, 6])).inputs[0].array
    nested = decode_request(json_body("x", "INT32", [2, 3], [[1, 2, 3], [4, 5, 6]])).inputs[0]
    assert np.array_equal(flat, nested.array) and flat.shape == (2, 3)


def test_bf16_json_and_binary():
    values = [1.0, -2.5, 0.0078125]
    tensor = decode_request(json_body("b", "BF16", [3], values)).inputs[0].array
    assert tensor.dtype == torch.bfloat16 and tensor.tolist() == values
    wanted = RequestOutput(name="b", parameters={"binary_data": True})
    request = DecodedRequest([], outputs=[wanted])
    payload, length = encode_response("m", "", request, {"b": tensor})
    header = orjson.loads(payload[:length])
    assert header["outputs"][0]["datatype"] == "BF16"
    raw = payload[length:]
    assert torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).tolist() == values


def test_response_selects_outputs_and_echoes_the_id():
    request = decode_request(
        orjson.dumps(
            {
                "id": "r-9",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                "outputs": [{"name": "b"}],
            }
        )
    )
    payload, length = encode_response(
        "m", "3", request, {"a": np.zeros(1, np.float32), "b": np.ones((1, 2), np.int64)}
    )
    doc = orjson.loads(payload)
    assert length is None
    assert doc == {
        "model_name": "m",
        "model_version": "3",
        "id": "r-9",
        "outputs": [{"name": "b", "datatype": "INT64", "shape": [1, 2], "data": [1, 1]}],
    }


def test_non_utf8_bytes_outputs_must_go_binary():
    outputs = {"s": np.array([b"\xff"], dtype=object)}
    with pytest.raises(InferenceError, match="not UTF-8 text"):
        encode_response("m", "", DecodedRequest([]), outputs)
    binary = DecodedRequest([], parameters={"binary_data_output": True})
    payload, length = encode_response("m", "", binary, outputs)
    assert payload[length:] == b"\x01\x00\x00\x00\xff"


FP32_1x2 = np.array([[1.0, 2.0]], dtype=np.float32)


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{", None, "malformed JSON"),
        (b'{"inputs": [{"name": "x"}]}', None, "inputs.0.datatype: Field required"),
        (json_body("x", "FP32", [2, 2], [1, 2, 3]), None, "shape [2, 2] needs 4 values, got 3"),
        (json_body("x", "FP32", [1], "1"), None, "'data' must be a list"),
        (json_body("x", "INT8", [1], [300]), None, "not valid INT8"),
        (json_body("x", "BYTES", [2], ["a"]), None, "needs 2 elements"),
        (json_body("x", "BYTES", [1], [1]), None, "BYTES data must be strings"),
        (json_body("x", "COMPLEX", [1], [1]), None, "unsupported datatype 'COMPLEX'"),
        (binary_body({"x": ("FP32", FP32_1x2)})[0], 10_000, "does not fit a body"),
        (binary_body({"x": ("FP32", FP32_1x2)})[0] + b"!", None, "malformed JSON"),
    ],
)
def test_malformed_requests_say_what_is_wrong(body, header_length, message):
    with pytest.raises(InferenceError) as caught:
        decode_request(body, header_length)
    assert message in caught.value.message
    assert caught.value.status == 400


def test_binary_sizes_must_account_for_every_byte():
    body, length = binary_body({"x": ("FP32", FP32_1x2)})
    with pytest.raises(InferenceError, match="1 bytes of binary data follow"):
        decode_request(body + b"!", length)
    wrong = body[:length].replace(b'"binary_data_size":8', b'"binary_data_size":4')
    with pytest.raises(InferenceError, match="4 bytes do not fit FP32"):
        decode_request(wrong + body[length:], len(wrong))
    with pytest.raises(InferenceError, match="goes past"):
        decode_request(body[:-1], length)
