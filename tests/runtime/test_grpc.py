"""The Open Inference Protocol over gRPC as clients see it: tritonclient.grpc unmodified
(metadata, readiness, FP32 and BYTES inference, a request id, a bearer token), typed contents,
grpc.health.v1, and hostile messages that answer a status code while the server keeps serving.

Raw messages are built with tritonclient's own protobuf modules: its `inference` package is a
superset of the runtime's (same names, same field numbers), and one process cannot register both.
"""

from __future__ import annotations

import re
import signal
import socket
import time

import grpc
import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import save_torchscript, serving, torchscript_env
from served import WIDTH, echo_serving, mlp, reference
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

TOKEN = "s3cret-t0ken"
AUTH = {"authorization": f"Bearer {TOKEN}"}
METADATA = (("authorization", f"Bearer {TOKEN}"),)
LIMIT = 200_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The MLP behind a bearer token, with a small message limit."""
    tmp = tmp_path_factory.mktemp("grpc")
    model = mlp()
    path = save_torchscript(model, tmp / "mlp.pt")
    (tmp / "token").write_text(TOKEN + "\n")
    env = torchscript_env(
        path,
        "mlp",
        TORCHSHIP_MODEL_VERSION="1",
        TORCHSHIP_MAX_BODY_BYTES=str(LIMIT),
        TORCHSHIP_AUTH_TOKEN_FILE=str(tmp / "token"),
    )
    with serving(tmp, **env) as running:
        yield running, model


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    with echo_serving(tmp_path_factory.mktemp("grpc-echo")) as running:
        yield running


@pytest.fixture
def stub(served):
    running, _ = served
    with grpc.insecure_channel(running.grpc_address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def status_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value.code(), caught.value.details() or ""


def test_tritonclient_grpc_unmodified(served):
    running, model = served
    client = triton.InferenceServerClient(running.grpc_address)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp", headers=AUTH)
    assert client.is_model_ready("mlp", "1", headers=AUTH)
    server = client.get_server_metadata(headers=AUTH, as_json=True)
    assert server["name"] == "torchship" and "extensions" in server
    meta = client.get_model_metadata("mlp", "1", headers=AUTH, as_json=True)
    assert meta["name"] == "mlp" and meta["versions"] == ["1"]
    assert meta["platform"] == "pytorch_torchscript"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", str(WIDTH)]}]
    assert meta["outputs"] == [{"name": "output__0", "datatype": "FP32", "shape": ["-1", "10"]}]
    x = np.random.default_rng(0).standard_normal((5, WIDTH)).astype(np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(
        "mlp",
        [tensor],
        outputs=[triton.InferRequestedOutput("output__0")],
        request_id="abc",
        model_version="1",
        headers=AUTH,
    )
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("abc", "mlp", "1")
    want = reference(model, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.as_numpy("output__0"), want, rtol=1e-5, atol=1e-5)
    # gzip-compressed messages are gRPC's own business: they decode the same.
    again = client.infer("mlp", [tensor], headers=AUTH, compression_algorithm="gzip")
    np.testing.assert_allclose(again.as_numpy("output__0"), want, rtol=1e-5, atol=1e-5)


def test_bearer_token_on_grpc_metadata(served):
    running, _ = served
    client = triton.InferenceServerClient(running.grpc_address)
    tensor = triton.InferInput("input", [1, WIDTH], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, WIDTH), np.float32))
    for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        with pytest.raises(InferenceServerException) as caught:
            client.infer("mlp", [tensor], headers=headers)
        assert "UNAUTHENTICATED" in str(caught.value.status())
        assert "bearer token is required" in caught.value.message()
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        client.get_model_metadata("mlp")
    # Liveness and readiness stay open, like /v2/health/* and grpc.health.v1.
    assert client.is_server_live() and client.is_server_ready()
    client.infer("mlp", [tensor], headers={"authorization": f"bearer {TOKEN}"})


def test_bytes_and_every_datatype_through_raw_contents(echo):
    client = triton.InferenceServerClient(echo.grpc_address)
    arrays = {
        "BOOL": np.array([[True, False, True]]),
        "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
        "UINT64": np.array([[0, 7, 2**64 - 1]], dtype=np.uint64),
        "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
        "INT64": np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64),
        "FP16": np.array([[-1.5, 0.0, 65504.0]], dtype=np.float16),
        "FP64": np.array([[-1e300, 0.0, 1e-300]], dtype=np.float64),
        "BYTES": np.array([[b"a", "été".encode(), b""]], dtype=object),
    }
    tensors = []
    for datatype, array in arrays.items():
        tensor = triton.InferInput(datatype.lower(), list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer("echo", tensors)
    for datatype, array in arrays.items():
        got = result.as_numpy(datatype.lower())
        assert result.get_output(datatype.lower()).datatype == datatype
        assert got.shape == array.shape, datatype
        if datatype == "BYTES":
            assert list(got.ravel()) == list(array.ravel())
        else:
            assert got.dtype == array.dtype and np.array_equal(got, array), datatype


def typed(name: str, datatype: str, shape: list[int], **contents) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="echo")
    request.inputs.add(
        name=name, datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents)
    )
    return request


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("BOOL", "bool_contents", [True, False], np.bool_),
        ("INT8", "int_contents", [-128, 127], np.int8),
        ("INT32", "int_contents", [-(2**31), 2**31 - 1], np.int32),
        ("INT64", "int64_contents", [-(2**63), 2**63 - 1], np.int64),
        ("UINT16", "uint_contents", [0, 65535], np.uint16),
        ("UINT64", "uint64_contents", [0, 2**64 - 1], np.uint64),
        ("FP32", "fp32_contents", [-1.5, 2.25], np.float32),
        ("FP64", "fp64_contents", [1e-300, -1e300], np.float64),
        ("BYTES", "bytes_contents", [b"x", b"\x00\xff"], object),
    ],
)
def test_typed_contents_are_accepted(echo, datatype, field, values, dtype):
    with grpc.insecure_channel(echo.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(typed("t", datatype, [1, 2], **{field: values}))
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("t", datatype, [1, 2])
    (raw,) = response.raw_output_contents
    if datatype == "BYTES":
        assert raw == b"".join(len(v).to_bytes(4, "little") + v for v in values)
    else:
        assert np.array_equal(np.frombuffer(raw, dtype=dtype), np.array(values, dtype=dtype))


def raw_request(name="input", datatype="FP32", shape=(1, WIDTH), raw=None, **fields):
    request = pb.ModelInferRequest(model_name=fields.pop("model_name", "mlp"), **fields)
    request.inputs.add(name=name, datatype=datatype, shape=list(shape))
    if raw is None:
        raw = np.zeros(shape, np.float32).tobytes()
    request.raw_input_contents.append(raw)
    return request


ROW = np.zeros((1, WIDTH), np.float32).tobytes()
HOSTILE = [
    (raw_request(model_name="nope"), "NOT_FOUND", "model 'nope' is not served here"),
    (raw_request(model_version="7"), "NOT_FOUND", "has no version '7'"),
    (
        raw_request(datatype="INT64", raw=np.zeros((1, WIDTH), np.int64).tobytes()),
        "INVALID_ARGUMENT",
        "expected datatype FP32, got INT64",
    ),
    (raw_request(shape=(2, WIDTH), raw=ROW), "INVALID_ARGUMENT", "bytes do not fit FP32"),
    (raw_request(shape=(1, 3), raw=b"\0" * 12), "INVALID_ARGUMENT", "expected shape [-1, 64]"),
    (raw_request(name="x"), "INVALID_ARGUMENT", "missing input(s) ['input']"),
    (raw_request(datatype="FP99"), "INVALID_ARGUMENT", "unsupported datatype 'FP99'"),
    (raw_request(shape=(-1, WIDTH), raw=ROW), "INVALID_ARGUMENT", "negative dimension"),
    (pb.ModelInferRequest(model_name="mlp"), "INVALID_ARGUMENT", "the request has no inputs"),
    (
        pb.ModelInferRequest(model_name="mlp", raw_input_contents=[ROW]),
        "INVALID_ARGUMENT",
        "raw_input_contents holds 1 tensor(s) for 0 input(s)",
    ),
    (
        raw_request(outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="nope")]),
        "INVALID_ARGUMENT",
        "unknown output(s) requested: ['nope']",
    ),
]


@pytest.mark.parametrize(("request_", "code", "message"), HOSTILE)
def test_hostile_messages_get_a_status_and_the_server_keeps_serving(
    served, stub, request_, code, message
):
    got, details = status_of(stub.ModelInfer, request_, metadata=METADATA)
    assert got.name == code and message in details, details
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ModelInfer(raw_request(), metadata=METADATA).outputs[0].name == "output__0"


def test_typed_contents_that_do_not_fit(served, stub):
    short = pb.ModelInferRequest(model_name="mlp")
    short.inputs.add(
        name="input",
        datatype="FP32",
        shape=[1, WIDTH],
        contents=pb.InferTensorContents(fp32_contents=[1.0] * 3),
    )
    got, details = status_of(stub.ModelInfer, short, metadata=METADATA)
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "needs 64 values" in details
    half = pb.ModelInferRequest(model_name="mlp")
    half.inputs.add(name="input", datatype="FP16", shape=[1, WIDTH])
    got, details = status_of(stub.ModelInfer, half, metadata=METADATA)
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "raw_input_contents only" in details
    both = raw_request()
    both.inputs[0].contents.fp32_contents.extend([0.0] * WIDTH)
    got, details = status_of(stub.ModelInfer, both, metadata=METADATA)
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "cannot both" in details


def test_oversized_messages_are_refused(served, stub):
    big = raw_request(shape=(LIMIT // 4 // WIDTH + 1, WIDTH), raw=b"\0" * (LIMIT + 4 * WIDTH))
    got, _ = status_of(stub.ModelInfer, big, metadata=METADATA)
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ModelInfer(raw_request(), metadata=METADATA).outputs


def test_garbage_and_unknown_methods(served):
    running, _ = served
    with grpc.insecure_channel(running.grpc_address) as channel:
        garbage = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as caught:
            garbage(b"\xff\xff\xff not a protobuf message", metadata=METADATA)
        assert caught.value.code() != grpc.StatusCode.OK
        for method in ("/inference.GRPCInferenceService/ModelStreamInfer", "/nope.Nope/Nope"):
            unknown = channel.unary_unary(method)
            with pytest.raises(grpc.RpcError) as caught:
                unknown(b"")
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest()).ready


def test_grpc_requests_are_counted_under_their_protocol(served, stub):
    running, _ = served
    stub.ModelInfer(raw_request(), metadata=METADATA)
    status_of(stub.ModelInfer, raw_request(model_name="nope"), metadata=METADATA)
    text = httpx.get(f"{running.url}/metrics", timeout=10).text
    assert re.search(
        r'torchship_requests_total\{code="200",model="mlp",protocol="grpc"\} [1-9]', text
    )
    assert re.search(
        r'torchship_requests_total\{code="404",model="mlp",protocol="grpc"\} [1-9]', text
    )
    assert 'torchship_request_duration_seconds_count{model="mlp",protocol="grpc"}' in text


def check(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_grpc_health_is_open_and_follows_readiness(served):
    running, _ = served
    serving_ = health_pb2.HealthCheckResponse.SERVING
    assert check(running.grpc_address) == serving_  # no token needed
    assert check(running.grpc_address, "inference.GRPCInferenceService") == serving_
    with pytest.raises(grpc.RpcError) as caught:
        check(running.grpc_address, "no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


SLOW = """
import time
import numpy as np

class Slow:
    def predict(self, inputs):
        time.sleep({predict})
        return {{"y": np.asarray(inputs["x"]) * 2}}
"""


def test_sigterm_turns_health_not_serving_and_drains_calls(tmp_path, start_runtime):
    (tmp_path / "slow.py").write_text(SLOW.format(predict=0.5))
    (tmp_path / "unused.bin").write_bytes(b"")
    running = start_runtime(
        TORCHSHIP_MODEL_URI=str(tmp_path / "unused.bin"),
        TORCHSHIP_MODEL_FORMAT="handler",
        TORCHSHIP_MODEL_ENTRYPOINT="slow:Slow",
        TORCHSHIP_MODEL_NAME="slow",
        TORCHSHIP_DRAIN_SECONDS="1.5",
    ).wait_ready()
    address = running.grpc_address
    assert check(address) == health_pb2.HealthCheckResponse.SERVING
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    request.raw_input_contents.append(np.ones((1, 2), np.float32).tobytes())
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        running.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while check(address) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline, "health never turned NOT_SERVING"
            time.sleep(0.05)
        assert not stub.ServerReady(pb.ServerReadyRequest()).ready
        # Calls are still served during the drain.
        pending = stub.ModelInfer.future(request, timeout=10)
        answer = stub.ModelInfer(request, timeout=10)
        assert np.frombuffer(answer.raw_output_contents[0], np.float32).tolist() == [2.0, 2.0]
        assert pending.result().outputs[0].name == "y"
    assert running.proc.wait(15) == 0


def test_a_taken_grpc_port_is_a_start_up_failure(tmp_path, start_runtime):
    path = save_torchscript(mlp(), tmp_path / "mlp.pt")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        running = start_runtime(**torchscript_env(path), TORCHSHIP_GRPC_PORT=str(taken))
        assert running.proc.wait(60) == 1
    assert f"gRPC cannot listen on 127.0.0.1:{taken}" in running.output()
