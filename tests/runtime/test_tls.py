"""TLS from a certificate and key file (what a mounted kubernetes.io/tls Secret gives): HTTPS and
gRPC over TLS with a test CA, plain text refused on both ports, and a rotated certificate
(signed by another CA) served without a restart."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from certs import authority, issue
from served import WIDTH, mlp, save_torchscript, torchscript_env
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException


def https_ok(url: str, ca: Path) -> bool:
    try:
        return (
            httpx.get(
                f"{url}/v2/health/ready", verify=ssl.create_default_context(cafile=ca), timeout=5
            ).status_code
            == 200
        )
    except httpx.HTTPError:
        return False


def grpc_infer(address: str, ca: Path) -> np.ndarray:
    client = triton.InferenceServerClient(address, ssl=True, root_certificates=str(ca))
    tensor = triton.InferInput("input", [1, WIDTH], "FP32")
    tensor.set_data_from_numpy(np.ones((1, WIDTH), np.float32))
    return client.infer("mlp", [tensor], client_timeout=10).as_numpy("output__0")


@pytest.fixture
def tls_runtime(tmp_path, start_runtime):
    first, second = authority(tmp_path, "one"), authority(tmp_path, "two")
    secret = tmp_path / "secret"
    secret.mkdir()
    issue(first, secret)
    path = save_torchscript(mlp(), tmp_path / "mlp.pt")
    running = start_runtime(
        **torchscript_env(path),
        TORCHSHIP_TLS_CERT_FILE=str(secret / "tls.crt"),
        TORCHSHIP_TLS_KEY_FILE=str(secret / "tls.key"),
        TORCHSHIP_TLS_RELOAD_SECONDS="0.2",
    ).wait_ready()
    return running, secret, first, second


def test_https_and_grpc_over_tls_and_plain_text_refused(tls_runtime):
    running, _, (_, _, ca), _ = tls_runtime
    assert running.url.startswith("https://")
    assert https_ok(running.url, ca)
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, WIDTH], "data": [1] * 64}]}
    r = httpx.post(
        f"{running.url}/v2/models/mlp/infer",
        json=doc,
        verify=ssl.create_default_context(cafile=ca),
        timeout=10,
    )
    rest = np.array(r.json()["outputs"][0]["data"], np.float32)
    np.testing.assert_allclose(grpc_infer(running.grpc_address, ca).ravel(), rest, rtol=1e-6)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{running.port}/v2/health/ready", timeout=5)
    with grpc.insecure_channel(running.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert https_ok(running.url, ca)  # still serving


def test_a_rotated_certificate_is_served_without_a_restart(tls_runtime):
    running, secret, (_, _, old_ca), second = tls_runtime
    new_ca = second[2]
    assert https_ok(running.url, old_ca) and not https_ok(running.url, new_ca)
    issue(second, secret)  # the Secret renewed by another issuer
    deadline = time.monotonic() + 20
    while not https_ok(running.url, new_ca):
        assert time.monotonic() < deadline, f"never served the new certificate:\n{running.output()}"
        time.sleep(0.2)
    assert not https_ok(running.url, old_ca)
    assert grpc_infer(running.grpc_address, new_ca).shape == (1, 10)
    with pytest.raises(InferenceServerException):  # the old CA's trust is gone
        grpc_infer(running.grpc_address, old_ca)
    assert running.proc.poll() is None  # the same process all along
    assert "TLS certificate reloaded" in running.output()


def test_a_bad_key_pair_at_start_up_is_a_start_up_failure(tmp_path, start_runtime):
    first, second = authority(tmp_path, "one"), authority(tmp_path, "two")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    issue(first, a)
    issue(second, b)
    path = save_torchscript(mlp(), tmp_path / "mlp.pt")
    running = start_runtime(
        **torchscript_env(path),
        TORCHSHIP_TLS_CERT_FILE=str(a / "tls.crt"),
        TORCHSHIP_TLS_KEY_FILE=str(b / "tls.key"),
    )
    assert running.proc.wait(60) == 2
    assert "torchship-runtime:" in running.output()
