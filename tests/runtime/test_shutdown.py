"""Start-up and shutdown as Kubernetes drives them, on real subprocesses: health that tells the
truth while loading, SIGTERM under load (drain, then finish in-flight work, then exit 0), a second
SIGTERM, a signal during the load, a model that cannot load."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
from served import WIDTH, handler_env, mlp, save_torchscript, torchscript_env

SLOW = '''
import time
import numpy as np

class Slow:
    """Loads in LOAD seconds; answers after PREDICT seconds."""

    LOAD, PREDICT = {load}, {predict}

    def load(self, path, device):
        time.sleep(self.LOAD)

    def predict(self, inputs):
        time.sleep(self.PREDICT)
        return {{"y": np.asarray(inputs["x"]) * 2}}
'''


def slow_handler(tmp_path: Path, load: float, predict: float) -> dict[str, str]:
    (tmp_path / "slow.py").write_text(SLOW.format(load=load, predict=predict))
    return handler_env(tmp_path, "slow:Slow", "slow")


ROW = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, WIDTH], "data": [0.1] * WIDTH}]
}
X = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}


def test_sigterm_under_load_drains_and_loses_no_request(tmp_path, start_runtime):
    """Clients keep sending through the drain until the (simulated) Service drops the pod's
    endpoint, 1 s after SIGTERM: every request they sent is answered, none is refused or lost."""
    path = save_torchscript(mlp(), tmp_path / "mlp.pt")
    running = start_runtime(**torchscript_env(path, TORCHSHIP_DRAIN_SECONDS="2")).wait_ready()
    url = running.url
    outcomes: list[str] = []
    endpoint_removed = threading.Event()

    def client(keep_alive: bool) -> None:
        # Keep-alive clients reuse their connection until the server asks them to close it.
        with httpx.Client(timeout=10) as session:
            while not endpoint_removed.is_set():
                try:
                    if keep_alive:
                        r = session.post(f"{url}/v2/models/mlp/infer", json=ROW)
                    else:
                        r = httpx.post(f"{url}/v2/models/mlp/infer", json=ROW, timeout=10)
                    outcomes.append("ok" if r.status_code == 200 else f"http {r.status_code}")
                except httpx.HTTPError as error:
                    outcomes.append(f"lost: {error!r}")
                    time.sleep(0.01)

    clients = [threading.Thread(target=client, args=(i % 2 == 0,), daemon=True) for i in range(6)]
    for t in clients:
        t.start()
    try:
        time.sleep(1)
        served_before = len(outcomes)
        running.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.2)
        ready = httpx.get(f"{url}/v2/health/ready")
        assert ready.status_code == 503  # out of the Service's endpoints at once...
        assert ready.headers.get("connection") == "close"
        assert httpx.get(f"{url}/v2/health/live").status_code == 200
        during = len(outcomes)
        time.sleep(0.8)
    finally:
        endpoint_removed.set()
        for t in clients:
            t.join()
    assert len(outcomes) > during  # ...while requests are still served
    returncode = running.proc.wait(timeout=20)
    exited_after = time.monotonic() - signalled
    assert returncode == 0, running.output()
    # Not before the 2 s drain; the upper bound is the drain plus the 15 s the runtime gives
    # in-flight work, plus slack for a loaded machine: the order is the claim, not the speed.
    assert 2 <= exited_after < 2 + 15 + 5, exited_after
    assert served_before > 10
    assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"][:5]


def test_in_flight_work_finishes_after_the_drain(tmp_path, start_runtime):
    env = slow_handler(tmp_path, load=0, predict=1.5) | {"TORCHSHIP_DRAIN_SECONDS": "0.5"}
    running = start_runtime(**env).wait_ready()
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{running.url}/v2/models/slow/infer", json=X, timeout=10)
        )
    )
    request.start()
    time.sleep(0.3)  # the request is in the handler now
    running.proc.send_signal(signal.SIGTERM)
    request.join()
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["outputs"][0]["data"] == [2.0, 4.0]
    assert running.proc.wait(timeout=10) == 0


def test_a_second_sigterm_exits_at_once(tmp_path, start_runtime):
    path = save_torchscript(mlp(), tmp_path / "mlp.pt")
    running = start_runtime(**torchscript_env(path, TORCHSHIP_DRAIN_SECONDS="30")).wait_ready()
    running.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert running.proc.poll() is None  # draining for 30 s
    started = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=15) != 0
    assert time.monotonic() - started < 10  # far inside the 30 s drain it cut short


def test_health_tells_the_truth_while_loading_and_a_signal_then_exits_at_once(
    tmp_path, start_runtime
):
    running = start_runtime(**slow_handler(tmp_path, load=60, predict=0))
    # Live as soon as the server listens, even though the model is loading.
    running.wait_for("/v2/health/live", timeout=60)
    assert httpx.get(f"{running.url}/v2/health/ready").status_code == 503
    assert httpx.get(f"{running.url}/v2/models/slow/ready").status_code == 503
    r = httpx.post(f"{running.url}/v2/models/slow/infer", json=X)
    assert r.status_code == 503 and "still loading" in r.json()["error"]
    started = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=15) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 10  # far inside the 60 s load it cut short


def test_a_model_that_cannot_load_ends_the_process_with_the_reason(tmp_path, start_runtime):
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    env = torchscript_env(tmp_path / "broken.pt", "broken")
    running = start_runtime(**env)
    assert running.proc.wait(timeout=60) == 1
    log = running.output()
    assert "the model could not be loaded (torchscript from file://" in log
    missing = start_runtime(**torchscript_env(tmp_path / "nowhere.pt", "missing"))
    assert missing.proc.wait(timeout=60) == 1
    assert "no model at" in missing.output()


def test_a_model_that_cannot_run_its_declared_inputs_fails_at_warm_up(tmp_path, start_runtime):
    path = save_torchscript(mlp(), tmp_path / "mlp.pt")
    declared = '[{"name": "input", "datatype": "FP32", "shape": [-1, 63]}]'
    running = start_runtime(**torchscript_env(path, TORCHSHIP_MODEL_INPUTS=declared))
    assert running.proc.wait(timeout=60) == 1
    assert "warm-up failed on zeros shaped {'input': [1, 63]}" in running.output()
