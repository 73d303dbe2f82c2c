"""The same client code against KServe's model server (bench/peers, installed in .venv-peers by
bench/peers/setup.sh): it is a protocol client, not a torchship-only one."""

from __future__ import annotations

import asyncio

import models  # bench/, on pytest's pythonpath
import numpy as np
import pytest
import torch
from serving_bench import PEERS_PYTHON, Peer

from torchship.client import AsyncInferenceClient, InferenceClient, ModelNotFound

WIDTH = models.input_width("small")


@pytest.fixture(scope="module")
def kserve(tmp_path_factory):
    assert PEERS_PYTHON.exists(), "KServe is not installed: run bench/peers/setup.sh"
    peer = Peer(tmp_path_factory.mktemp("kserve"), "kserve_server.py", "small", "/v2/health/ready")
    try:
        yield f"http://127.0.0.1:{peer.port}"
    finally:
        peer.stop()


def expected(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return models.build("small")(torch.from_numpy(x)).numpy()


def test_infer_json_and_binary_against_kserve(kserve):
    small = np.linspace(-1, 1, 2 * WIDTH, dtype=np.float32).reshape(2, WIDTH)
    large = np.linspace(-1, 1, 64 * WIDTH, dtype=np.float32).reshape(64, WIDTH)
    with InferenceClient(kserve) as client:
        assert client.server_live() and client.server_ready()
        assert client.model_ready("small")
        assert not client.model_ready("nope")
        assert client.model_metadata("small")["name"] == "small"
        for x in (small, large):  # JSON, then the binary tensor extension
            result = client.infer("small", {"input__0": x}, request_id="k-1")
            assert result.model_name == "small" and result.id == "k-1"
            np.testing.assert_allclose(result["output__0"], expected(x), atol=1e-5)
        with pytest.raises(ModelNotFound) as missing:
            client.infer("nope", {"input__0": small})
        assert "nope" in missing.value.message


def test_async_client_against_kserve(kserve):
    x = np.linspace(-1, 1, 3 * WIDTH, dtype=np.float32).reshape(3, WIDTH)

    async def main() -> np.ndarray:
        async with AsyncInferenceClient(kserve) as client:
            return (await client.infer("small", {"input__0": x}))["output__0"]

    np.testing.assert_allclose(asyncio.run(main()), expected(x), atol=1e-5)
