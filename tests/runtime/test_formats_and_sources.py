"""Every model format and source, served by the real runtime and checked against calling the
model directly."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from runtime_harness import free_port, runtime_server, save_mlp

ROW = [0.01 * i - 0.3 for i in range(64)]


def infer(url: str, name: str, rows: list[list[float]], **extra) -> dict:
    body = {
        "id": "req-1",
        "inputs": [
            {"name": "input__0", "datatype": "FP32", "shape": [len(rows), 64], "data": rows}
        ],
        **extra,
    }
    r = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def expected(model: torch.nn.Module, rows: list[list[float]]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor(rows))


def check(url: str, name: str, model: torch.nn.Module) -> None:
    rows = [ROW, [x * 2 for x in ROW]]
    out = infer(url, name, rows)
    assert out["id"] == "req-1"
    (tensor,) = out["outputs"]
    assert tensor["shape"] == [2, 10]
    got = torch.tensor(tensor["data"]).reshape(2, 10)
    assert torch.allclose(got, expected(model, rows), atol=1e-5)


MODEL_PY = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build_model():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))

    class Handler:
        def load(self, path, device):
            self.model = build_model()
            self.model.load_state_dict(torch.load(path, weights_only=True))

        def preprocess(self, inputs):
            return torch.as_tensor(inputs["input__0"])

        def predict(self, x):
            return self.model(x)

        def postprocess(self, y):
            return {"scores": y.numpy()}
    """
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "usermodel.py").write_text(MODEL_PY)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("usermodel", None)


def test_torchscript(tmp_path):
    model = save_mlp(tmp_path / "mlp.pt")
    env = {
        "TORCHSHIP_MODEL_URI": f"file://{tmp_path / 'mlp.pt'}",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "ts",
    }
    with runtime_server(tmp_path, **env) as running:
        check(running.url, "ts", model)
        meta = httpx.get(f"{running.url}/v2/models/ts").json()
        assert meta["platform"] == "pytorch_torchscript"
        assert meta["inputs"] == [{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}]
        assert meta["outputs"] == [{"name": "output__0", "datatype": "FP32", "shape": [-1, 10]}]


def test_exported_program_with_a_dynamic_batch(tmp_path):
    model = save_mlp(tmp_path / "unused.pt")
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.zeros(2, 64),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "mlp.pt2"))
    env = {
        "TORCHSHIP_MODEL_URI": str(tmp_path / "mlp.pt2"),
        "TORCHSHIP_MODEL_FORMAT": "exported-program",
        "TORCHSHIP_MODEL_NAME": "ep",
        "TORCHSHIP_MODEL_VERSION": "3",
    }
    with runtime_server(tmp_path, **env) as running:
        check(running.url, "ep", model)
        meta = httpx.get(f"{running.url}/v2/models/ep/versions/3").json()
        assert meta["platform"] == "pytorch_exported_program"
        assert meta["versions"] == ["3"]
        assert meta["inputs"][0]["shape"] == [-1, 64]
        assert httpx.get(f"{running.url}/v2/models/ep/versions/4").status_code == 404


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_state_dict_with_an_entrypoint(tmp_path, model_dir, suffix):
    import usermodel

    model = usermodel.build_model().eval()
    weights = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(weights))
    else:
        torch.save(model.state_dict(), weights)
    env = {
        "TORCHSHIP_MODEL_URI": f"file://{weights}",
        "TORCHSHIP_MODEL_FORMAT": "state-dict",
        "TORCHSHIP_MODEL_ENTRYPOINT": "usermodel:build_model",
        "TORCHSHIP_MODEL_NAME": "sd",
    }
    with runtime_server(tmp_path, **env) as running:
        check(running.url, "sd", model)


def test_handler(tmp_path, model_dir):
    import usermodel

    model = usermodel.build_model().eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    env = {
        "TORCHSHIP_MODEL_URI": str(tmp_path / "weights.pt"),
        "TORCHSHIP_MODEL_FORMAT": "handler",
        "TORCHSHIP_MODEL_ENTRYPOINT": "usermodel:Handler",
        "TORCHSHIP_MODEL_NAME": "h",
        "TORCHSHIP_MODEL_INPUTS": '[{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}]',
    }
    with runtime_server(tmp_path, **env) as running:
        out = infer(running.url, "h", [ROW])
        (tensor,) = out["outputs"]
        assert tensor["name"] == "scores"
        assert torch.allclose(
            torch.tensor(tensor["data"]).reshape(1, 10), expected(model, [ROW]), atol=1e-5
        )


def test_float16_and_dynamic_int8(tmp_path, model_dir):
    import usermodel

    model = usermodel.build_model().eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    base = {
        "TORCHSHIP_MODEL_URI": str(tmp_path / "w.pt"),
        "TORCHSHIP_MODEL_FORMAT": "state-dict",
        "TORCHSHIP_MODEL_ENTRYPOINT": "usermodel:build_model",
        "TORCHSHIP_MODEL_NAME": "q",
        "TORCHSHIP_DEVICE": "cpu",
    }
    reference = expected(model, [ROW])
    with runtime_server(tmp_path, **base, TORCHSHIP_QUANTIZE="dynamic-int8") as running:
        got = torch.tensor(infer(running.url, "q", [ROW])["outputs"][0]["data"]).reshape(1, 10)
        assert torch.allclose(got, reference, atol=0.05)  # int8 weights: close, not equal
    with runtime_server(tmp_path, **base, TORCHSHIP_DTYPE="bfloat16") as running:
        out = infer(running.url, "q", [ROW])["outputs"][0]
        assert out["datatype"] == "BF16"
        assert torch.allclose(torch.tensor(out["data"]).reshape(1, 10), reference, atol=0.05)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_http_source_downloads_once_into_the_cache(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    model = save_mlp(served / "mlp.pt")
    port = free_port()
    handler = lambda *a, **k: Quiet(*a, directory=str(served), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    env = {
        "TORCHSHIP_MODEL_URI": f"http://127.0.0.1:{port}/mlp.pt",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "web",
    }
    try:
        with runtime_server(tmp_path, **env) as running:
            check(running.url, "web", model)
    finally:
        httpd.shutdown()
    cached = list((tmp_path / "cache").iterdir())
    assert [p.name.endswith("-mlp.pt") for p in cached] == [True]
    # The server is gone: a second start is served from the cache alone.
    with runtime_server(tmp_path, **env) as running:
        check(running.url, "web", model)


def test_s3_source_through_a_local_s3_server(tmp_path):
    import boto3

    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    aws = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    try:
        for _ in range(100):
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        model = save_mlp(tmp_path / "mlp.pt")
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(tmp_path / "mlp.pt"), "models", "mlp/v1/mlp.pt")
        env = {
            "TORCHSHIP_MODEL_URI": "s3://models/mlp/v1/mlp.pt",
            "TORCHSHIP_MODEL_FORMAT": "torchscript",
            "TORCHSHIP_MODEL_NAME": "s3m",
            **aws,
        }
        with runtime_server(tmp_path, **env) as running:
            check(running.url, "s3m", model)
    finally:
        moto.terminate()
        moto.wait()


def test_pvc_uri_resolves_under_the_mount_root(tmp_path):
    (tmp_path / "claim" / "mlp").mkdir(parents=True)
    model = save_mlp(tmp_path / "claim" / "mlp" / "model.pt")
    env = {
        "TORCHSHIP_MODEL_URI": "pvc://claim/mlp/model.pt",
        "TORCHSHIP_PVC_ROOT": str(tmp_path),
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "pvc",
    }
    with runtime_server(tmp_path, **env) as running:
        check(running.url, "pvc", model)
    assert json.loads(json.dumps(env))  # env stays plain strings
