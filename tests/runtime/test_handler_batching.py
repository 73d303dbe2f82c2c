"""Handler batching: a handler class with `batched = True` gets the batcher's concatenated rows
(BYTES included), REST and gRPC requests share its forward passes, and the answers equal those of
the same handler served one request at a time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from served import handler_env, serving

HANDLER = '''
import time
import numpy as np


class Counting:
    """y = 2x + 1 and the text upper-cased, per row; each answer also says which forward pass
    served it and how many rows that pass held."""

    batched = {batched}

    def __init__(self):
        self.passes = 0

    def predict(self, inputs):
        self.passes += 1
        x, text = np.asarray(inputs["x"]), inputs["text"]
        time.sleep(0.3 if x[0, 0] == 0 else 0.02)  # a request of zeros holds the model a while
        rows = x.shape[0]
        if (x[:, 0] == -999).any():
            rows -= 1  # a broken answer: one row short
        return {{
            "y": x[:rows] * 2 + 1,
            "upper": np.array([[t.upper() for t in row] for row in text[:rows]], dtype=object),
            "pass": np.full((rows, 1), self.passes, np.int64),
            "rows": np.full((rows, 1), rows, np.int64),
        }}
'''


def start(tmp_path_factory, batched: bool):
    tmp = tmp_path_factory.mktemp(f"handler-batched-{batched}")
    (tmp / "counting.py").write_text(HANDLER.format(batched=batched))
    env = handler_env(
        tmp,
        "counting:Counting",
        "counting",
        TORCHSHIP_MAX_BATCH_SIZE="32",
        TORCHSHIP_MAX_DELAY_MS="50",
    )
    return serving(tmp, **env)


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    with start(tmp_path_factory, True) as running:
        yield running


@pytest.fixture(scope="module")
def unbatched(tmp_path_factory):
    with start(tmp_path_factory, False) as running:
        yield running


def rows(i: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[i + 1.0, i / 4, -i]], np.float32)
    text = np.array([[f"row {i} é".encode()]], dtype=object)
    return x, text


def rest(url: str, x: np.ndarray, text: np.ndarray) -> dict[str, np.ndarray]:
    doc = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()},
            {
                "name": "text",
                "datatype": "BYTES",
                "shape": list(text.shape),
                "data": [t.decode() for t in text.ravel()],
            },
        ]
    }
    r = httpx.post(f"{url}/v2/models/counting/infer", json=doc, timeout=30)
    r.raise_for_status()
    out = {}
    for o in r.json()["outputs"]:
        data = [v.encode() for v in o["data"]] if o["datatype"] == "BYTES" else o["data"]
        out[o["name"]] = np.array(data, dtype=object if o["datatype"] == "BYTES" else None)
        out[o["name"]] = out[o["name"]].reshape(o["shape"])
    return out


def grpc_infer(address: str, x: np.ndarray, text: np.ndarray) -> dict[str, np.ndarray]:
    client = triton.InferenceServerClient(address)
    tensors = [
        triton.InferInput("x", list(x.shape), "FP32"),
        triton.InferInput("text", [1, 1], "BYTES"),
    ]
    tensors[0].set_data_from_numpy(x)
    tensors[1].set_data_from_numpy(text)
    result = client.infer("counting", tensors, client_timeout=30)
    return {n: result.as_numpy(n) for n in ("y", "upper", "pass", "rows")}


def concurrently(running, count: int) -> list[tuple[str, dict[str, np.ndarray]]]:
    """One request of zeros holding the model, then `count` requests (half REST, half gRPC)
    arriving while it runs."""
    blocker = threading.Thread(
        target=rest, args=(running.url, np.zeros((1, 3), np.float32), rows(0)[1])
    )
    blocker.start()
    time.sleep(0.1)

    def one(i: int) -> tuple[str, dict[str, np.ndarray]]:
        if i % 2:
            return "grpc", grpc_infer(running.grpc_address, *rows(i))
        return "rest", rest(running.url, *rows(i))

    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(one, range(1, count + 1)))
    blocker.join()
    return answers


def test_concurrent_requests_share_forward_passes_and_answer_as_unbatched(batched, unbatched):
    count = 12
    together = concurrently(batched, count)
    alone = concurrently(unbatched, count)
    passes = {int(a["pass"][0, 0]) for _, a in together}
    assert len(passes) < count, f"{count} requests took {len(passes)} forward passes"
    assert max(int(a["rows"][0, 0]) for _, a in together) > 1
    protocols_by_pass: dict[int, set[str]] = {}
    for protocol, answer in together:
        protocols_by_pass.setdefault(int(answer["pass"][0, 0]), set()).add(protocol)
    assert {"rest", "grpc"} in protocols_by_pass.values(), protocols_by_pass
    # Unbatched: one request per forward pass.
    assert len({int(a["pass"][0, 0]) for _, a in alone}) == count
    assert all(int(a["rows"][0, 0]) == 1 for _, a in alone)
    for i, ((_, got), (_, want)) in enumerate(zip(together, alone, strict=True), start=1):
        x, text = rows(i)
        np.testing.assert_array_equal(got["y"], want["y"])
        np.testing.assert_array_equal(got["y"], x * 2 + 1)
        assert list(got["upper"].ravel()) == list(want["upper"].ravel()) == [text[0, 0].upper()]


def test_a_broken_answer_fails_its_own_request_only(batched):
    bad = np.array([[-999.0, 0.0, 0.0]], np.float32)

    def one(i: int) -> int | str:
        x = bad if i == 3 else rows(i)[0]
        doc = {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": x.ravel().tolist()},
                {"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["t"]},
            ]
        }
        r = httpx.post(f"{batched.url}/v2/models/counting/infer", json=doc, timeout=30)
        return r.status_code if r.status_code == 200 else r.json()["error"]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert results[:3] + results[4:] == [200] * 5
    assert "a batched handler returns one row per input row" in results[3]


def test_a_batched_handler_needs_a_batch_dimension(batched):
    doc = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]},
            {"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": ["a", "b"]},
        ]
    }
    r = httpx.post(f"{batched.url}/v2/models/counting/infer", json=doc, timeout=30)
    assert r.status_code == 400
    assert "same, non-zero leading (batch) dimension" in r.json()["error"]
