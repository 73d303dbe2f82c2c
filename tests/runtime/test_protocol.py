"""The Open Inference Protocol as clients see it: an unmodified OIP v2 client (tritonclient, in
JSON and binary mode), every datatype both ways, v1, errors with a 4xx and a message, limits,
auth and metrics."""

from __future__ import annotations

import gzip
import re

import httpx
import numpy as np
import orjson
import pytest
import torch
from served import (
    WIDTH,
    echo_serving,
    mlp,
    reference,
    save_torchscript,
    serving,
    torchscript_env,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol")
    model = mlp()
    path = save_torchscript(model, tmp / "mlp.pt")
    env = torchscript_env(
        path, "mlp", TORCHSHIP_MODEL_VERSION="1", TORCHSHIP_MAX_BODY_BYTES="200000"
    )
    with serving(tmp, **env) as running:
        yield running.url, model


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    with echo_serving(tmp_path_factory.mktemp("echo")) as running:
        yield running.url


def triton_client(url: str):
    import tritonclient.http as triton

    return triton, triton.InferenceServerClient(url.removeprefix("http://"))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_an_unmodified_oip_v2_client_works(served, binary, compression):
    url, model = served
    triton, client = triton_client(url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "1")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("mlp", "1")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, WIDTH]}]
    assert meta["outputs"] == [{"name": "output__0", "datatype": "FP32", "shape": [-1, 10]}]
    x = np.random.default_rng(0).standard_normal((5, WIDTH)).astype(np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = client.infer(
        "mlp",
        [tensor],
        outputs=[triton.InferRequestedOutput("output__0", binary_data=binary)],
        request_id="abc",
        model_version="1",
        request_compression_algorithm=compression,
    )
    assert result.get_response()["id"] == "abc"
    assert result.get_response()["model_version"] == "1"
    want = reference(model, torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.as_numpy("output__0"), want, rtol=1e-5, atol=1e-5)


NUMERIC = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT16": np.array([[-(2**15), 0, 2**15 - 1]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[-1.5, 0.0, 65504.0]], dtype=np.float16),
    "FP32": np.array([[-1.25, 0.0, 3.4e38]], dtype=np.float32),
    "FP64": np.array([[-1e300, 0.0, 1e-300]], dtype=np.float64),
    "BYTES": np.array([[b"a", b"\xc3\xa9t\xc3\xa9", b""]], dtype=object),
}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips_through_a_client(echo, binary):
    triton, client = triton_client(echo)
    tensors, wanted = [], []
    for datatype, array in NUMERIC.items():
        tensor = triton.InferInput(datatype.lower(), list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
        wanted.append(triton.InferRequestedOutput(datatype.lower(), binary_data=binary))
    result = client.infer("echo", tensors, outputs=wanted)
    for datatype, array in NUMERIC.items():
        got = result.as_numpy(datatype.lower())
        assert result.get_output(datatype.lower())["datatype"] == datatype
        assert got.shape == array.shape
        if datatype == "BYTES":
            # JSON carries text (the client gives str back), binary carries bytes.
            assert [v.encode() if isinstance(v, str) else v for v in got.ravel()] == list(
                array.ravel()
            )
        else:
            assert got.dtype == array.dtype and np.array_equal(got, array), datatype


def test_bf16_in_json_and_binary(echo):
    values = [1.0, -2.5, 0.0078125]
    doc = {"inputs": [{"name": "b", "datatype": "BF16", "shape": [1, 3], "data": values}]}
    out = httpx.post(f"{echo}/v2/models/echo/infer", json=doc).json()["outputs"][0]
    assert (out["datatype"], out["shape"], out["data"]) == ("BF16", [1, 3], values)
    raw = torch.tensor([values], dtype=torch.bfloat16).view(torch.int16).numpy().tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "b",
                    "datatype": "BF16",
                    "shape": [1, 3],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    r = httpx.post(
        f"{echo}/v2/models/echo/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    length = int(r.headers["inference-header-content-length"])
    assert r.headers["content-type"] == "application/octet-stream"
    assert orjson.loads(r.content[:length])["outputs"][0]["parameters"] == {"binary_data_size": 6}
    assert r.content[length:] == raw


def post(url: str, path: str, **kwargs) -> httpx.Response:
    return httpx.post(url + path, timeout=10, **kwargs)


def one(**fields) -> bytes:
    """A request body holding one FP32 input named `input` with these fields."""
    return orjson.dumps({"inputs": [{"name": "input", "datatype": "FP32"} | fields]})


ROW = [0.5] * WIDTH
INFER = "/v2/models/mlp/infer"
PREDICT = "/v1/models/mlp:predict"
ID_5 = orjson.dumps(
    {"id": 5, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": [1]}]}
)
BAD_REQUESTS = [
    (INFER, b"{not json", 400, "malformed JSON"),
    (INFER, b"[]", 400, "invalid request"),
    (INFER, b'{"inputs": []}', 400, "inputs: List should have at least 1 item"),
    (INFER, one(shape=[1, 63], data=[1]), 400, "needs 63 values, got 1"),
    (INFER, one(shape=[1, 3], data=[1, 2, 3]), 400, "expected shape [-1, 64], got [1, 3]"),
    (INFER, one(shape=[1, -2], data=[1]), 400, "inputs.0.shape.1"),
    (INFER, one(datatype="FP99", shape=[1], data=[1]), 400, "unsupported datatype 'FP99'"),
    (
        INFER,
        one(datatype="INT64", shape=[1, 64], data=[1] * 64),
        400,
        "input input: expected datatype FP32, got INT64",
    ),
    (INFER, one(shape=[1, 2], data=["a", "b"]), 400, "not valid FP32"),
    (
        INFER,
        one(name="x", shape=[1, 64], data=ROW),
        400,
        "missing input(s) ['input'], unknown input(s) ['x']",
    ),
    (INFER, one(shape=[1, 64]), 400, "'data' is missing"),
    (INFER, one(shape=[0, 64], data=[]), 400, "non-zero leading (batch) dimension"),
    (
        INFER,
        one(shape=[1, 64], data=ROW, parameters={"binary_data_size": 256}),
        400,
        "goes past the 0 bytes",
    ),
    (INFER, ID_5, 400, "id: Input should be a valid string"),
    ("/v2/models/nope/infer", b"{not json", 404, "model 'nope' is not served here"),
    ("/v2/models/mlp/versions/7/infer", b"{}", 404, "no version '7'"),
    ("/v2/models/mlp", b"{}", 405, "GET"),
    (PREDICT, b'{"instances": "x"}', 400, "instances: Input should be a valid array"),
    (PREDICT, b'{"instances": [[1, 2]]}', 400, "expected shape [-1, 64], got [1, 2]"),
    (PREDICT, b'{"instances": [[1, 2], [3]]}', 400, "instances are not FP32 rows"),
    ("/v2/elsewhere", b"", 404, "no route for POST /v2/elsewhere"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    served, path, body, status, message
):
    url, model = served
    r = post(url, path, content=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    # ...and the next request is served, correctly.
    out = post(url, "/v2/models/mlp/infer", content=one(shape=[1, WIDTH], data=ROW)).json()
    want = reference(model, torch.tensor([ROW]))
    assert np.allclose(out["outputs"][0]["data"], want.ravel().numpy(), atol=1e-5)


def test_v1_predict_and_model_status(served):
    url, model = served
    rows = [ROW, [-x for x in ROW]]
    r = post(url, "/v1/models/mlp:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    want = reference(model, torch.tensor(rows)).tolist()
    np.testing.assert_allclose(r.json()["predictions"], want, rtol=1e-5, atol=1e-5)
    assert httpx.get(f"{url}/v1/models/mlp").json() == {"name": "mlp", "ready": True}
    assert httpx.get(f"{url}/v1/models").json() == {"models": ["mlp"]}


def test_outputs_selection_and_unknown_outputs(served):
    url, _ = served
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, WIDTH], "data": ROW}],
        "outputs": [{"name": "nope"}],
    }
    r = post(url, "/v2/models/mlp/infer", json=body)
    assert r.status_code == 400 and "unknown output(s) requested: ['nope']" in r.json()["error"]
    body["outputs"] = [{"name": "output__0"}]
    assert [o["name"] for o in post(url, "/v2/models/mlp/infer", json=body).json()["outputs"]] == [
        "output__0"
    ]


def test_oversized_bodies_are_refused_with_413(served):
    url, _ = served
    r = post(url, "/v2/models/mlp/infer", content=b"x" * 300_000)
    assert r.status_code == 413 and "exceeds the limit of 200000 bytes" in r.json()["error"]
    # Streamed (chunked, no Content-Length): refused once the limit is crossed.
    chunks = (b"x" * 50_000 for _ in range(6))
    r = post(url, "/v2/models/mlp/infer", content=chunks)
    assert r.status_code == 413
    # A small gzip body that inflates past the limit is refused too.
    bomb = gzip.compress(b" " * 1_000_000)
    r = post(url, "/v2/models/mlp/infer", content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_health_and_server_metadata(served):
    url, _ = served
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/mlp/ready"):
        r = httpx.get(url + path)
        assert (r.status_code, r.content) == (200, b"")
    assert httpx.get(f"{url}/v2/models/mlp/versions/2/ready").status_code == 404
    meta = httpx.get(f"{url}/v2").json()
    assert meta["name"] == "torchship" and meta["extensions"] == ["binary_tensor_data"]
    assert httpx.post(f"{url}/v2/health/ready").status_code == 405


def sample(metrics: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_follow_prometheus_conventions(served):
    url, _ = served
    before = httpx.get(f"{url}/metrics").text
    post(url, "/v2/models/mlp/infer", content=one(shape=[1, WIDTH], data=ROW))
    post(url, "/v2/models/mlp/infer", content=one(shape=[1, 2], data=[1, 2]))
    after = httpx.get(f"{url}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for code in ("200", "400"):
        counted = sample(text, "torchship_requests_total", code=code, model="mlp", protocol="v2")
        was = sample(before, "torchship_requests_total", code=code, model="mlp", protocol="v2")
        assert counted == was + 1, code
    assert sample(text, "torchship_request_duration_seconds_count", model="mlp", protocol="v2") > 0
    assert sample(text, "torchship_batch_size_count", model="mlp") > 0
    assert sample(text, "torchship_forward_duration_seconds_count", model="mlp") > 0
    assert sample(text, "torchship_model_load_seconds", model="mlp") > 0
    assert sample(text, "torchship_model_ready", model="mlp") == 1
    assert re.search(r'^torchship_inflight_requests\{model="mlp"\} 0\.0$', text, re.M)
    assert re.search(r'^torchship_queue_depth\{model="mlp"\} 0\.0$', text, re.M)


def test_bearer_token_guards_everything_but_health_and_metrics(tmp_path):
    path = save_torchscript(mlp(), tmp_path / "mlp.pt")
    (tmp_path / "token").write_text("s3cret-t0ken\n")
    env = torchscript_env(path, TORCHSHIP_AUTH_TOKEN_FILE=str(tmp_path / "token"))
    body = one(shape=[1, WIDTH], data=ROW)
    with serving(tmp_path, **env) as running:
        url = running.url
        r = post(url, "/v2/models/mlp/infer", content=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        for wrong in ("Bearer nope", "Basic s3cret-t0ken", "Bearer s3cret-t0ke", "s3cret-t0ken"):
            r = post(url, INFER, content=body, headers={"Authorization": wrong})
            assert r.status_code == 401
        assert httpx.get(f"{url}/v2/models/mlp").status_code == 401
        assert httpx.get(f"{url}/v2").status_code == 401
        assert post(url, "/v1/models/mlp:predict", json={"instances": [ROW]}).status_code == 401
        right = {"Authorization": "Bearer s3cret-t0ken"}
        assert post(url, "/v2/models/mlp/infer", content=body, headers=right).status_code == 200
        assert httpx.get(f"{url}/v2/models/mlp", headers=right).status_code == 200
        for open_path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
            assert httpx.get(url + open_path).status_code == 200
        log = running.output()
    assert "s3cret" not in log
