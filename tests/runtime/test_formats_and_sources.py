"""Every model format and source, served by the real runtime and checked against calling the
model directly; metadata names the model's real tensors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from harness import file_server
from served import (
    WIDTH,
    entrypoint_env,
    free_port,
    mlp,
    reference,
    save_torchscript,
    torchscript_env,
)

X = torch.linspace(-1, 1, 3 * WIDTH).reshape(3, WIDTH)


def infer(url: str, name: str, x: torch.Tensor, input_name: str = "input", **extra) -> dict:
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": input_name,
                "datatype": "FP32",
                "shape": list(x.shape),
                "data": x.tolist(),  # nested lists: the row-major form the protocol allows
            }
        ],
        **extra,
    }
    r = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def output(doc: dict, index: int = 0) -> torch.Tensor:
    tensor = doc["outputs"][index]
    return torch.tensor(tensor["data"], dtype=torch.float32).reshape(tensor["shape"])


def check(url: str, name: str, model: torch.nn.Module, input_name: str = "input") -> None:
    doc = infer(url, name, X, input_name)
    assert doc["id"] == "req-1" and doc["model_name"] == name
    torch.testing.assert_close(output(doc), reference(model, X), atol=1e-5, rtol=1e-5)


USER_MODEL = textwrap.dedent(
    """
    import numpy as np
    import torch
    from torch import nn

    class Scorer(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))

        def forward(self, features):
            return self.body(features)

    def build_model():
        torch.manual_seed(1)
        return Scorer()

    class Handler:
        def load(self, path, device):
            self.model = build_model()
            self.model.load_state_dict(torch.load(path, weights_only=True))
            self.model.eval()

        def preprocess(self, inputs):
            return torch.as_tensor(inputs["features"]), inputs["labels"]

        def predict(self, data):
            x, labels = data
            return self.model(x), labels

        def postprocess(self, result):
            scores, labels = result
            best = scores.argmax(dim=1).numpy()
            return {
                "scores": scores.numpy(),
                "label": np.array([labels[i][0].decode().upper() for i in range(len(best))]),
            }
    """
)


@pytest.fixture
def user_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A user's model module, importable here and, from the model directory, by the runtime."""
    (tmp_path / "usermodel.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    import usermodel

    yield usermodel
    sys.modules.pop("usermodel", None)


def test_torchscript_with_inputs_from_the_model_itself(tmp_path, start_runtime):
    model = mlp()
    path = save_torchscript(model, tmp_path / "mlp.pt")
    running = start_runtime(**torchscript_env(path, "ts", TORCHSHIP_MODEL_VERSION="7"))
    url = running.wait_ready().url
    check(url, "ts", model)
    meta = httpx.get(f"{url}/v2/models/ts").json()
    assert meta == {
        "name": "ts",
        "versions": ["7"],
        "platform": "pytorch_torchscript",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, WIDTH]}],
        "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert httpx.get(f"{url}/v2/models/ts/versions/7").json() == meta


def test_torchscript_with_declared_inputs_and_outputs(tmp_path, start_runtime):
    model = mlp()
    path = save_torchscript(model, tmp_path / "mlp.pt")
    env = torchscript_env(
        path,
        "declared",
        TORCHSHIP_MODEL_INPUTS='[{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}]',
        TORCHSHIP_MODEL_OUTPUTS='[{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]',
    )
    url = start_runtime(**env).wait_ready().url
    check(url, "declared", model, input_name="input__0")
    meta = httpx.get(f"{url}/v2/models/declared").json()
    assert [t["name"] for t in meta["inputs"] + meta["outputs"]] == ["input__0", "logits"]


def test_exported_program_with_named_inputs_and_a_dynamic_batch(tmp_path, start_runtime):
    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(WIDTH, 4)

        def forward(self, features, scale):
            y = self.linear(features) * scale
            return {"scores": y, "best": y.argmax(dim=1)}

    torch.manual_seed(2)
    model = TwoInputs().eval()
    batch = torch.export.Dim("batch", min=1, max=512)
    program = torch.export.export(
        model,
        (torch.zeros(2, WIDTH), torch.ones(2, 1)),
        dynamic_shapes={"features": {0: batch}, "scale": {0: batch}},
    )
    torch.export.save(program, str(tmp_path / "model.pt2"))
    env = {
        "TORCHSHIP_MODEL_URI": str(tmp_path / "model.pt2"),  # a plain path works too
        "TORCHSHIP_MODEL_FORMAT": "exported-program",
        "TORCHSHIP_MODEL_NAME": "ep",
        "TORCHSHIP_MODEL_VERSION": "3",
    }
    url = start_runtime(**env).wait_ready().url
    meta = httpx.get(f"{url}/v2/models/ep/versions/3").json()
    assert meta["platform"] == "pytorch_exported_program"
    assert meta["inputs"] == [
        {"name": "features", "datatype": "FP32", "shape": [-1, WIDTH]},
        {"name": "scale", "datatype": "FP32", "shape": [-1, 1]},
    ]
    assert meta["outputs"] == [
        {"name": "scores", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "best", "datatype": "INT64", "shape": [-1]},
    ]
    scale = torch.tensor([[1.0], [2.0], [-1.0]])
    body = {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [3, WIDTH], "data": X.tolist()},
            {"name": "scale", "datatype": "FP32", "shape": [3, 1], "data": scale.tolist()},
        ]
    }
    doc = httpx.post(f"{url}/v2/models/ep/versions/3/infer", json=body).json()
    want = reference(model, X, scale)
    torch.testing.assert_close(output(doc, 0), want["scores"], atol=1e-5, rtol=1e-5)
    assert doc["outputs"][1]["datatype"] == "INT64"
    assert doc["outputs"][1]["data"] == want["best"].tolist()
    assert httpx.get(f"{url}/v2/models/ep/versions/4").status_code == 404


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_state_dict_built_by_an_entrypoint(tmp_path, start_runtime, user_model, suffix):
    model = user_model.build_model().eval()
    weights = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(weights))
    else:
        torch.save(model.state_dict(), weights)
    env = {
        "TORCHSHIP_MODEL_URI": f"file://{weights}",
        "TORCHSHIP_MODEL_FORMAT": "state-dict",
        "TORCHSHIP_MODEL_ENTRYPOINT": "usermodel:build_model",  # found in the model's directory
        "TORCHSHIP_MODEL_NAME": "sd",
    }
    url = start_runtime(**env).wait_ready().url
    check(url, "sd", model, input_name="features")
    assert httpx.get(f"{url}/v2/models/sd").json()["platform"] == "pytorch_state_dict"


def test_handler_with_preprocess_predict_postprocess_and_bytes(tmp_path, start_runtime, user_model):
    model = user_model.build_model().eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    env = {
        "TORCHSHIP_MODEL_URI": str(tmp_path / "weights.pt"),
        "TORCHSHIP_MODEL_FORMAT": "handler",
        "TORCHSHIP_MODEL_ENTRYPOINT": "usermodel:Handler",
        "TORCHSHIP_MODEL_NAME": "h",
        "TORCHSHIP_MODEL_INPUTS": '[{"name": "features", "datatype": "FP32", "shape": [-1, 64]},'
        ' {"name": "labels", "datatype": "BYTES", "shape": [-1, 1]}]',
    }
    url = start_runtime(**env).wait_ready().url
    body = {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [3, WIDTH], "data": X.tolist()},
            {"name": "labels", "datatype": "BYTES", "shape": [3, 1], "data": ["a", "bé", "c"]},
        ]
    }
    doc = httpx.post(f"{url}/v2/models/h/infer", json=body).json()
    by_name = {o["name"]: o for o in doc["outputs"]}
    scores = torch.tensor(by_name["scores"]["data"]).reshape(3, 10)
    torch.testing.assert_close(scores, reference(model, X), atol=1e-5, rtol=1e-5)
    label = {"name": "label", "datatype": "BYTES", "shape": [3], "data": ["A", "BÉ", "C"]}
    assert by_name["label"] == label
    meta = httpx.get(f"{url}/v2/models/h").json()
    assert meta["platform"] == "pytorch_handler"
    assert [i["name"] for i in meta["inputs"]] == ["features", "labels"]


def test_float16_bfloat16_and_dynamic_int8(tmp_path, start_runtime, user_model):
    model = user_model.build_model().eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    base = entrypoint_env(tmp_path / "w.pt", "state-dict", "usermodel:build_model", "q")
    want = reference(model, X)
    runtimes = {
        "int8": start_runtime(**base, TORCHSHIP_QUANTIZE="dynamic-int8"),
        "bf16": start_runtime(**base, TORCHSHIP_DTYPE="bfloat16"),
        "fp16": start_runtime(**base, TORCHSHIP_DTYPE="float16"),
    }
    datatypes = {"int8": "FP32", "bf16": "BF16", "fp16": "FP16"}
    for kind, running in runtimes.items():
        doc = infer(running.wait_ready().url, "q", X, "features")
        assert doc["outputs"][0]["datatype"] == datatypes[kind]
        got = output(doc)
        assert not torch.equal(got, want)  # really ran in lower precision
        torch.testing.assert_close(got, want, atol=0.05, rtol=0.05)


def test_exported_program_served_in_bfloat16_and_float16(tmp_path, start_runtime):
    model = mlp()
    batch = torch.export.Dim("batch", min=1, max=256)
    program = torch.export.export(model, (torch.zeros(2, WIDTH),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    base = {
        "TORCHSHIP_MODEL_URI": str(tmp_path / "m.pt2"),
        "TORCHSHIP_MODEL_FORMAT": "exported-program",
        "TORCHSHIP_MODEL_NAME": "ep",
        "TORCHSHIP_DEVICE": "cpu",
    }
    runtimes = {
        "BF16": start_runtime(**base, TORCHSHIP_DTYPE="bfloat16"),
        "FP16": start_runtime(**base, TORCHSHIP_DTYPE="float16"),
    }
    want = reference(model, X)
    for datatype, running in runtimes.items():
        url = running.wait_ready().url
        doc = infer(url, "ep", X)
        assert doc["outputs"][0]["datatype"] == datatype
        got = output(doc)
        assert not torch.equal(got, want)  # the weights really were cast
        torch.testing.assert_close(got, want, atol=0.05, rtol=0.05)
        meta = httpx.get(f"{url}/v2/models/ep").json()
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, WIDTH]}]


def test_settings_nothing_would_apply_are_refused_at_load(tmp_path, start_runtime, user_model):
    torch.save(user_model.build_model().state_dict(), tmp_path / "w.pt")
    base = {
        "TORCHSHIP_MODEL_URI": str(tmp_path / "w.pt"),
        "TORCHSHIP_MODEL_ENTRYPOINT": "usermodel:build_model",
        "TORCHSHIP_MODEL_NAME": "r",
    }
    cases = {
        "dynamic-int8 computes in float32": base
        | {"TORCHSHIP_MODEL_FORMAT": "state-dict", "TORCHSHIP_QUANTIZE": "dynamic-int8",
           "TORCHSHIP_DTYPE": "bfloat16"},
        "a handler chooses its own dtype": base
        | {"TORCHSHIP_MODEL_FORMAT": "handler", "TORCHSHIP_DTYPE": "float16"},
    }  # fmt: skip
    started = {message: start_runtime(**env) for message, env in cases.items()}
    for message, running in started.items():
        assert running.proc.wait(timeout=60) == 1
        assert message in running.output(), running.output()


def test_a_start_up_failure_leaves_its_reason_in_the_termination_message(tmp_path, start_runtime):
    cases = {  # format -> exit code, what the message starts with
        "torchscript": (1, "the model could not be loaded (torchscript from "),
        "onnx": (2, "torchship-runtime: invalid settings:"),
    }
    for fmt, (code, head) in cases.items():
        message = tmp_path / f"termination-{fmt}"
        running = start_runtime(
            TORCHSHIP_MODEL_URI=str(tmp_path / "missing.pt"),
            TORCHSHIP_MODEL_FORMAT=fmt,
            TORCHSHIP_MODEL_NAME="m",
            TORCHSHIP_TERMINATION_MESSAGE_PATH=str(message),
        )
        assert running.proc.wait(timeout=60) == code
        text = message.read_text()
        assert text.startswith(head), text
        assert ("missing.pt" if code == 1 else "model_format") in text


def test_http_source_downloads_once_into_the_cache(tmp_path, start_runtime):
    www = tmp_path / "www"
    www.mkdir()
    model = mlp()
    save_torchscript(model, www / "mlp.pt")
    with file_server(www) as base:
        env = torchscript_env(tmp_path, "web") | {"TORCHSHIP_MODEL_URI": f"{base}/mlp.pt"}
        first = start_runtime(**env).wait_ready()
        check(first.url, "web", model)
        first.stop()
    cached = [p.name for p in (tmp_path / "cache").iterdir()]
    assert len(cached) == 1 and cached[0].endswith("-mlp.pt")
    # The web server is gone: the second start reads the cache alone.
    check(start_runtime(**env).wait_ready().url, "web", model)


def test_s3_source_through_a_local_s3_server(tmp_path, start_runtime):
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
        for _ in range(200):
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        model = mlp()
        save_torchscript(model, tmp_path / "mlp.pt")
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(tmp_path / "mlp.pt"), "models", "mlp/v1/mlp.pt")
        env = torchscript_env(tmp_path, "s3m") | aws
        env["TORCHSHIP_MODEL_URI"] = "s3://models/mlp/v1/mlp.pt"
        check(start_runtime(**env).wait_ready().url, "s3m", model)
        missing = start_runtime(**env | {"TORCHSHIP_MODEL_URI": "s3://models/nope.pt"})
        assert missing.proc.wait(60) == 1
        assert "the model could not be loaded" in missing.output()
    finally:
        moto.terminate()
        moto.wait()


def test_pvc_uri_resolves_under_the_mount_root(tmp_path, start_runtime):
    (tmp_path / "claim" / "mlp").mkdir(parents=True)
    model = mlp()
    save_torchscript(model, tmp_path / "claim" / "mlp" / "model.pt")
    env = torchscript_env(tmp_path, "pvc") | {
        "TORCHSHIP_MODEL_URI": "pvc://claim/mlp/model.pt",
        "TORCHSHIP_PVC_ROOT": str(tmp_path),
    }
    check(start_runtime(**env).wait_ready().url, "pvc", model)


def test_flags_override_the_environment():
    from torchship_runtime.settings import from_args

    env = {
        "TORCHSHIP_MODEL_URI": "/m.pt",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "a",
        "TORCHSHIP_PORT": "9000",
        "TORCHSHIP_MODEL_INPUTS": '[{"name": "x", "shape": [-1, 3]}]',
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        settings = from_args(["--port", "9100", "--max-delay-ms", "2.5"])
    assert (settings.model_name, settings.port, settings.max_delay_ms) == ("a", 9100, 2.5)
    assert settings.model_inputs[0].shape == [-1, 3] and settings.model_inputs[0].datatype == "FP32"
    assert np.isclose(settings.drain_seconds, 10)
