"""torchship.client against the real runtime on loopback: inference in JSON and binary, both
clients, metadata and readiness, the server's errors, retries while a model loads, auth."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from served import (
    WIDTH,
    Runtime,
    entrypoint_env,
    free_port,
    mlp,
    reference,
    save_torchscript,
    serving,
)

from torchship.client import (
    AsyncInferenceClient,
    InferenceClient,
    InvalidRequest,
    ModelNotFound,
    Retry,
    ServerUnavailable,
    Unauthorized,
    tensors,
)

INPUTS = f'[{{"name": "input__0", "datatype": "FP32", "shape": [-1, {WIDTH}]}}]'
SMALL = np.linspace(-1, 1, 2 * WIDTH, dtype=np.float32).reshape(2, WIDTH)  # 512 bytes: JSON
LARGE = np.linspace(-1, 1, 64 * WIDTH, dtype=np.float32).reshape(64, WIDTH)  # 16 KiB: binary


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return mlp()


@pytest.fixture(scope="module")
def runtime(model, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("client")
    path = save_torchscript(model, workdir / "mlp.pt")
    env = {
        "TORCHSHIP_MODEL_URI": f"file://{path}",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "mlp",
        "TORCHSHIP_MODEL_VERSION": "3",
        "TORCHSHIP_MODEL_INPUTS": INPUTS,
    }
    with serving(workdir, **env) as running:
        yield running


def expected(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return reference(model, torch.from_numpy(x)).numpy()


def test_infer_small_as_json_and_large_as_binary(runtime, model):
    # The wire form follows the size: JSON for small tensors, raw bytes for large ones.
    small = tensors.encode_request({"input__0": SMALL})
    assert small.headers["content-type"] == "application/json"
    large = tensors.encode_request({"input__0": LARGE})
    assert large.headers[tensors.HEADER_LENGTH].isdigit()
    assert len(large.body) > LARGE.nbytes
    with InferenceClient(runtime.url) as client:
        for x in (SMALL, LARGE):
            result = client.infer("mlp", {"input__0": x}, request_id="r-1")
            assert (result.model_name, result.model_version, result.id) == ("mlp", "3", "r-1")
            assert list(result) == ["output__0"]
            assert result["output__0"].dtype == np.float32
            np.testing.assert_allclose(result["output__0"], expected(model, x), atol=1e-5)
        # Forced either way, and with the output named: the same numbers.
        for binary in (True, False):
            result = client.infer("mlp", {"input__0": SMALL}, ["output__0"], binary=binary)
            np.testing.assert_allclose(result["output__0"], expected(model, SMALL), atol=1e-5)


def test_async_client_gives_the_same_answers(runtime, model):
    async def main() -> list[np.ndarray]:
        async with AsyncInferenceClient(runtime.url) as client:
            assert await client.server_ready()
            assert (await client.model_metadata("mlp"))["name"] == "mlp"
            calls = [client.infer("mlp", {"input__0": x}) for x in (SMALL, LARGE, SMALL)]
            return [r["output__0"] for r in await asyncio.gather(*calls)]

    for got, x in zip(asyncio.run(main()), (SMALL, LARGE, SMALL), strict=True):
        np.testing.assert_allclose(got, expected(model, x), atol=1e-5)


def test_metadata_and_readiness(runtime):
    with InferenceClient(runtime.url) as client:
        assert client.server_live() and client.server_ready()
        assert "binary_tensor_data" in client.server_metadata()["extensions"]
        meta = client.model_metadata("mlp")
        assert meta["versions"] == ["3"]
        assert meta["inputs"] == [{"name": "input__0", "datatype": "FP32", "shape": [-1, WIDTH]}]
        assert client.model_ready("mlp") and client.model_ready("mlp", version="3")
        assert not client.model_ready("nope")


def test_errors_carry_the_servers_message(runtime):
    with InferenceClient(runtime.url) as client:
        with pytest.raises(ModelNotFound) as missing:
            client.infer("nope", {"input__0": SMALL})
        assert missing.value.status == 404
        assert "nope" in missing.value.message
        assert f"404 from {runtime.url}/v2/models/nope/infer" in str(missing.value)
        with pytest.raises(InvalidRequest) as bad:
            client.infer("mlp", {"input__0": SMALL[:, :3]})
        assert bad.value.status == 400
        assert "shape" in bad.value.message and "[2, 3]" in bad.value.message
        with pytest.raises(ModelNotFound):
            client.model_metadata("nope")


SLOW_HANDLER = textwrap.dedent(
    """
    import time

    import numpy as np

    class Echo:
        def load(self, path, device):
            time.sleep(3)  # a slow model download: the server answers 503 meanwhile

        def predict(self, inputs):
            words = inputs["words"].reshape(-1)
            return {
                "doubled": np.asarray(inputs["x"]) * 2,
                "upper": np.array([w.decode().upper() for w in words]),
            }
    """
)


def test_retries_through_connection_refused_and_503_while_loading(tmp_path, caplog):
    (tmp_path / "echo.py").write_text(SLOW_HANDLER)
    (tmp_path / "echo.bin").write_bytes(b"")
    env = entrypoint_env(tmp_path / "echo.bin", "handler", "echo:Echo", "echo")
    runtime = Runtime(tmp_path, env)  # started, not waited for
    try:
        x = np.arange(6, dtype=np.int64).reshape(2, 3)
        words = np.array([[b"ab"], ["cé".encode()]], dtype=object)
        retry = Retry(attempts=200, backoff=0.05, max_backoff=0.2)
        caplog.set_level(logging.INFO, logger="torchship.client")
        with InferenceClient(runtime.url, retry=retry) as client:
            result = client.infer("echo", {"x": x, "words": words})
        np.testing.assert_array_equal(result["doubled"], x * 2)
        assert result["upper"].tolist() == [b"AB", "CÉ".encode()]
        reasons = "\n".join(r.getMessage() for r in caplog.records)
        assert "ConnectError" in reasons  # before the port was bound
        assert "503 model echo is still loading" in reasons
    finally:
        runtime.stop()


def test_gives_up_with_server_unavailable():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = InferenceClient(url, retry=Retry(attempts=2, backoff=0.01))
    with client, pytest.raises(ServerUnavailable) as error:
        client.infer("mlp", {"input__0": SMALL})
    assert f"cannot reach {url}" in str(error.value)


def test_bearer_token(model, tmp_path: Path):
    path = save_torchscript(model, tmp_path / "mlp.pt")
    (tmp_path / "token").write_text("s3cret\n")
    env = {
        "TORCHSHIP_MODEL_URI": f"file://{path}",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "mlp",
        "TORCHSHIP_MODEL_INPUTS": INPUTS,
        "TORCHSHIP_AUTH_TOKEN_FILE": str(tmp_path / "token"),
    }
    with serving(tmp_path, **env) as running:
        with InferenceClient(running.url) as anonymous, pytest.raises(Unauthorized) as denied:
            anonymous.infer("mlp", {"input__0": SMALL})
        assert denied.value.status == 401
        with InferenceClient(running.url, token="s3cret") as client:
            got = client.infer("mlp", {"input__0": SMALL})["output__0"]
        np.testing.assert_allclose(got, expected(model, SMALL), atol=1e-5)
