"""torchship.client's wire form, checked against Triton's own client library: the requests it
builds are the ones tritonclient builds, and it reads responses as tritonclient reads them."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tritonclient.http as triton

from torchship.client import tensors

X = np.arange(6, dtype=np.float32).reshape(2, 3)
WORDS = np.array([b"ab", "cé".encode()], dtype=object)


def split(body: bytes, length: int | None) -> tuple[dict, bytes]:
    length = len(body) if length is None else length
    return json.loads(body[:length]), body[length:]


@pytest.mark.parametrize("binary", [True, False])
def test_requests_match_tritonclient(binary: bool):
    ours = tensors.encode_request(
        {"x": X, "w": WORDS}, ["y"], binary=binary, binary_output=binary, request_id="1"
    )
    length = ours.headers.get(tensors.HEADER_LENGTH)
    our_header, our_tail = split(ours.body, int(length) if length else None)

    x, w = triton.InferInput("x", [2, 3], "FP32"), triton.InferInput("w", [2], "BYTES")
    x.set_data_from_numpy(X, binary_data=binary)
    w.set_data_from_numpy(WORDS, binary_data=binary)
    output = triton.InferRequestedOutput("y", binary_data=binary)
    body, theirs_length = triton.InferenceServerClient.generate_request_body(
        [x, w], [output], request_id="1"
    )
    their_header, their_tail = split(body, theirs_length)
    if not binary:
        # tritonclient leaves `binary_data: false` in; absent means the same.
        for item in their_header["outputs"]:
            item.pop("parameters", None)
        for item in their_header["inputs"]:
            item.pop("parameters", None)
    assert our_header == their_header
    assert our_tail == their_tail


def test_responses_read_as_tritonclient_reads_them():
    raw = {
        "y": X.astype("<f4").tobytes(),
        "s": b"".join(struct.pack("<I", len(v)) + v for v in WORDS),
    }
    header = {
        "model_name": "m",
        "model_version": "2",
        "id": "7",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2, 3],
             "parameters": {"binary_data_size": len(raw["y"])}},
            {"name": "j", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]},
            {"name": "s", "datatype": "BYTES", "shape": [2],
             "parameters": {"binary_data_size": len(raw["s"])}},
            {"name": "b", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        ],
    }  # fmt: skip
    head = json.dumps(header).encode()
    body = head + raw["y"] + raw["s"]
    ours = tensors.decode_response(body, len(head))
    theirs = triton.InferResult.from_response_body(body, header_length=len(head))
    assert (ours.model_name, ours.model_version, ours.id) == ("m", "2", "7")
    assert list(ours) == ["y", "j", "s", "b"]
    for name in ours:
        want = theirs.as_numpy(name)
        assert ours[name].dtype == want.dtype, name
        assert ours[name].tolist() == want.tolist(), name


def test_datatypes_follow_the_arrays():
    kinds = {
        np.float16: "FP16", np.float32: "FP32", np.float64: "FP64", np.int8: "INT8",
        np.int32: "INT32", np.int64: "INT64", np.uint8: "UINT8", np.bool_: "BOOL",
    }  # fmt: skip
    for dtype, name in kinds.items():
        assert tensors.datatype(np.zeros(2, dtype=dtype)) == name
    assert tensors.datatype(np.array(["a"])) == "BYTES"
    with pytest.raises(TypeError, match="complex64"):
        tensors.datatype(np.zeros(2, dtype=np.complex64))
    # Not UTF-8: such BYTES cannot be JSON, so they go as raw bytes even when small.
    encoded = tensors.encode_request({"w": np.array([b"\xff"], dtype=object)})
    assert tensors.HEADER_LENGTH in encoded.headers
