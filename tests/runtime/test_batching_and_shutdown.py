"""Batching seen from outside, and shutdown as Kubernetes needs it (real subprocess)."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time

import httpx
import torch
from runtime_harness import mlp_env, runtime_server, save_mlp, start_runtime, wait_ready


def body(row: list[float]) -> dict:
    return {"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 64], "data": row}]}


def batch_count(metrics: str) -> float:
    match = re.search(r'^torchship_batch_size_count\{model="mlp"\} (\S+)$', metrics, re.M)
    return float(match.group(1)) if match else 0.0


def test_64_concurrent_requests_take_fewer_forward_passes(tmp_path):
    model = save_mlp(tmp_path / "mlp.pt")
    env = mlp_env(tmp_path / "mlp.pt") | {"TORCHSHIP_MAX_DELAY_MS": "20"}
    rows = [[float(i) / 64 + j / 100 for j in range(64)] for i in range(64)]
    with runtime_server(tmp_path, **env) as running:
        before = batch_count(httpx.get(f"{running.url}/metrics").text)

        async def fire():
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(limits=limits, timeout=30) as client:
                url = f"{running.url}/v2/models/mlp/infer"
                return await asyncio.gather(*(client.post(url, json=body(r)) for r in rows))

        responses = asyncio.run(fire())
        passes = batch_count(httpx.get(f"{running.url}/metrics").text) - before
    with torch.no_grad():
        expected = model(torch.tensor(rows))
    for i, r in enumerate(responses):
        assert r.status_code == 200
        assert torch.allclose(torch.tensor(r.json()["outputs"][0]["data"]), expected[i], atol=1e-5)
    assert 1 <= passes < 64, passes


def test_sigterm_drains_without_losing_accepted_requests(tmp_path):
    save_mlp(tmp_path / "mlp.pt")
    env = mlp_env(tmp_path / "mlp.pt") | {"TORCHSHIP_DRAIN_SECONDS": "2"}
    proc, url = start_runtime(tmp_path, **env)
    wait_ready(proc, url, tmp_path / "runtime.log")
    outcomes: list[str] = []
    stop = threading.Event()

    def load() -> None:
        row = [0.1] * 64
        while not stop.is_set():
            try:
                # A fresh connection each time: a refused connect was never accepted.
                r = httpx.post(f"{url}/v2/models/mlp/infer", json=body(row), timeout=10)
                outcomes.append("ok" if r.status_code == 200 else f"http {r.status_code}")
            except httpx.ConnectError:
                outcomes.append("refused")
                time.sleep(0.05)
            except httpx.HTTPError as error:
                outcomes.append(f"lost: {error!r}")

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.3)
    assert httpx.get(f"{url}/v2/health/ready").status_code == 503  # readiness off at once
    served_while_draining = len(outcomes)
    time.sleep(1)
    assert len(outcomes) > served_while_draining  # ...but requests are still served
    returncode = proc.wait(timeout=20)
    exited_after = time.monotonic() - signalled
    stop.set()
    for w in workers:
        w.join()
    assert returncode == 0
    assert 2 <= exited_after < 10
    lost = [o for o in outcomes if o not in ("ok", "refused")]
    assert not lost, lost[:5]
    assert outcomes.count("ok") > 20


def test_a_second_sigterm_exits_at_once(tmp_path):
    save_mlp(tmp_path / "mlp.pt")
    env = mlp_env(tmp_path / "mlp.pt") | {"TORCHSHIP_DRAIN_SECONDS": "30"}
    proc, url = start_runtime(tmp_path, **env)
    wait_ready(proc, url, tmp_path / "runtime.log")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=5)
    assert time.monotonic() - started < 2


def test_a_model_that_fails_to_load_ends_the_process_with_the_reason(tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    env = {
        "TORCHSHIP_MODEL_URI": str(tmp_path / "broken.pt"),
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "broken",
    }
    proc, _ = start_runtime(tmp_path, **env)
    assert proc.wait(timeout=60) == 1
    log = (tmp_path / "runtime.log").read_text()
    assert "the model could not be loaded" in log
