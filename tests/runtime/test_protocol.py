"""The Open Inference Protocol as clients see it: an unmodified OIP v2 client (tritonclient),
binary tensors, errors with 4xx and a message, auth, limits, metrics."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest
import torch
from runtime_harness import mlp_env, runtime_server, save_mlp


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol")
    model = save_mlp(tmp / "mlp.pt")
    (tmp / "token").write_text("s3cret-token\n")
    env = mlp_env(tmp / "mlp.pt") | {
        "TORCHSHIP_MODEL_VERSION": "1",
        "TORCHSHIP_MAX_BODY_BYTES": "200000",
    }
    with runtime_server(tmp, **env) as running:
        yield running, model


def reference(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_an_unmodified_oip_v2_client_works(served, binary):
    import tritonclient.http as triton

    running, model = served
    client = triton.InferenceServerClient(running.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("mlp")
    assert meta["inputs"][0] == {"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    tensor = triton.InferInput("input__0", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = [triton.InferRequestedOutput("output__0", binary_data=binary)]
    result = client.infer("mlp", [tensor], outputs=wanted, request_id="abc", model_version="1")
    assert result.get_response()["id"] == "abc"
    np.testing.assert_allclose(result.as_numpy("output__0"), reference(model, x), atol=1e-5)


def post(url: str, path: str, **kwargs) -> httpx.Response:
    return httpx.post(url + path, timeout=10, **kwargs)


def one(**tensor) -> bytes:
    """A request body holding one input tensor with these fields."""
    return orjson.dumps({"inputs": [{"name": "input__0", "datatype": "FP32"} | tensor]})


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/mlp/infer", b"{not json", 400, "malformed JSON"),
        ("/v2/models/mlp/infer", b"[]", 400, "must be a JSON object"),
        ("/v2/models/mlp/infer", b'{"inputs": []}', 400, "non-empty 'inputs'"),
        ("/v2/models/mlp/infer", one(shape=[1, 63], data=[1]), 400, "needs 63 values"),
        ("/v2/models/mlp/infer", one(shape=[1, 3], data=[1, 2, 3]), 400, "expected shape [-1, 64]"),
        ("/v2/models/mlp/infer", one(datatype="FP99", shape=[1], data=[1]), 400, "unsupported"),
        ("/v2/models/mlp/infer", one(shape=[1, 2], data=["a", "b"]), 400, "not valid FP32"),
        ("/v2/models/mlp/infer", one(name="x", shape=[1], data=[1]), 400, "missing input"),
        ("/v2/models/mlp/infer", one(shape=[1, 64]), 400, "'data' is missing"),
        ("/v2/models/nope/infer", b'{"inputs": []}', 404, "not served here"),
        ("/v2/models/mlp/versions/7/infer", b"{}", 404, "no version '7'"),
        ("/v1/models/mlp:predict", b'{"instances": "x"}', 400, "'instances' list"),
        ("/v2/elsewhere", b"", 404, "no route"),
    ],
)  # fmt: skip
def test_malformed_requests_get_a_clear_4xx_and_the_server_stays_up(
    served, path, body, status, message
):
    running, _ = served
    r = post(running.url, path, content=body)
    assert r.status_code == status
    assert message in r.json()["error"]
    assert httpx.get(f"{running.url}/v2/health/ready").status_code == 200


def test_outputs_selection_and_unknown_outputs(served):
    running, _ = served
    body = {
        "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}],
        "outputs": [{"name": "nope"}],
    }
    r = post(running.url, "/v2/models/mlp/infer", json=body)
    assert r.status_code == 400 and "unknown output" in r.json()["error"]
    body["outputs"] = [{"name": "output__0"}]
    assert (
        post(running.url, "/v2/models/mlp/infer", json=body).json()["outputs"][0]["name"]
        == "output__0"
    )


def test_oversized_bodies_are_refused_with_413(served):
    running, _ = served
    r = post(running.url, "/v2/models/mlp/infer", content=b"x" * 300_000)
    assert r.status_code == 413
    assert "exceeds the limit" in r.json()["error"]


def test_metrics_follow_prometheus_conventions(served):
    running, _ = served
    text = httpx.get(f"{running.url}/metrics").text
    for name in (
        "torchship_requests_total",
        "torchship_request_duration_seconds_bucket",
        "torchship_batch_size_bucket",
        "torchship_queue_depth",
        "torchship_inflight_requests",
        "torchship_model_load_seconds",
    ):
        assert name in text, name
    assert 'torchship_requests_total{code="400",model="mlp",protocol="v2"}' in text


def test_bearer_token_protects_inference_but_not_health(tmp_path):
    save_mlp(tmp_path / "mlp.pt")
    (tmp_path / "token").write_text("s3cret\n")
    env = mlp_env(tmp_path / "mlp.pt") | {"TORCHSHIP_AUTH_TOKEN_FILE": str(tmp_path / "token")}
    body = {
        "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]
    }
    with runtime_server(tmp_path, **env) as running:
        assert post(running.url, "/v2/models/mlp/infer", json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (
            post(running.url, "/v2/models/mlp/infer", json=body, headers=wrong).status_code == 401
        )
        right = {"Authorization": "Bearer s3cret"}
        assert (
            post(running.url, "/v2/models/mlp/infer", json=body, headers=right).status_code == 200
        )
        assert httpx.get(f"{running.url}/v2/health/ready").status_code == 200
        assert httpx.get(f"{running.url}/metrics").status_code == 200
    assert "s3cret" not in (tmp_path / "runtime.log").read_text()
