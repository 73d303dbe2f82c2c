"""Canary analysis reads a real runtime's /metrics as the operator does (scrape.Scraper): the
window between two readings is exactly the requests sent in between, 5xx counted as errors and
4xx not; a model that fails inside its forward pass, in any format, is answered 5xx and so fails
the analysis, while input refused before the model runs stays the client's 400."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import modelfiles
import pytest
from modelfiles import Faulty
from served import WIDTH, free_port, mlp, save_torchscript, serving, torchscript_env

from torchship_operator.analysis import AnalysisPolicy, judge
from torchship_operator.scrape import Reading, Scraper, measure

THRESHOLD = 0.5


def pod(name: str, revision: str, ip: str | None, **meta: Any) -> dict[str, Any]:
    """A pod as the operator's cache keeps it (handlers.slim_pod): what scraping reads."""
    out: dict[str, Any] = {
        "metadata": {"name": name, "labels": {"torchship.dev/revision": revision}, **meta}
    }
    if ip:
        out["podIP"] = ip
    return out


def row(first: float) -> dict[str, Any]:
    data = [first] + [0.25] * (WIDTH - 1)
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": data}]}


def send_batch(url: str) -> dict[int, int]:
    """A known mix of answers; how many of each status code came back."""
    codes: dict[int, int] = {}
    wrong_shape = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    requests = (
        [("/v2/models/mlp/infer", row(0.1))] * 15
        + [("/v1/models/mlp:predict", {"instances": [[0.1] * WIDTH]})] * 2
        + [("/v2/models/mlp/infer", row(0.9))] * 4  # the model raises: 500
        + [("/v2/models/mlp/infer", wrong_shape)] * 3  # 400
        + [("/v2/models/mlp/versions/9/infer", row(0.1))]  # no such version: 404
    )
    with httpx.Client(base_url=url, timeout=30) as client:
        for path, body in requests:
            code = client.post(path, json=body).status_code
            codes[code] = codes.get(code, 0) + 1
    return codes


def test_a_window_of_a_real_runtime_counts_exactly_the_batch_and_5xx_as_errors(tmp_path: Path):
    path = save_torchscript(Faulty(mlp(), THRESHOLD), tmp_path / "faulty.pt")
    with serving(tmp_path, **torchscript_env(path, "mlp")) as running:
        send_batch(running.url)  # traffic before the first reading is no part of the window
        pods = [
            pod("p", "r1", "127.0.0.1"),
            pod("pending", "r1", None),  # no address yet: not asked
            pod("leaving", "r1", "127.0.0.1", deletionTimestamp="2025-01-01T00:00:00Z"),
            pod("other", "r2", "127.0.0.1"),  # neither revision compared
        ]

        async def scrape() -> tuple[Reading, Reading, dict[int, int], str | None]:
            scraper = Scraper()
            try:
                before = await scraper.read(pods, ("r1", "r0"), running.port, False, now=10.0)
                codes = await asyncio.to_thread(send_batch, running.url)
                after = await scraper.read(pods, ("r1", "r0"), running.port, False, now=40.0)
                # Nothing listens there: a pod not up yet, left out of the reading.
                nothing = await scraper.fetch(f"http://127.0.0.1:{free_port()}/metrics")
            finally:
                await scraper.client.aclose()
            return before, after, codes, nothing

        before, after, codes, nothing = asyncio.run(scrape())

    assert codes == {200: 17, 500: 4, 400: 3, 404: 1}
    assert nothing is None
    assert set(before.pods) == set(after.pods) == {"p"}
    # The first batch is in the first reading already.
    assert (before.pods["p"][1].requests, before.pods["p"][1].errors) == (25, 4)
    m = measure(before, after, canary="r1", stable="r0")
    assert (m.start, m.end) == (10.0, 40.0)
    assert (m.canary.requests, m.canary.errors) == (25, 4)
    assert (m.stable.requests, m.stable.errors, m.stable.p99_ms) == (0, 0, None)
    # Every request of the window is in the latency histogram, well under a second each.
    window = after.pods["p"][1].minus(before.pods["p"][1])
    assert window is not None and window.buckets[-1][1] == 25
    assert m.canary.p99_ms is not None and 0 < m.canary.p99_ms < 1000


def first(value: float) -> dict[str, Any]:
    data = [value] + [0.1] * (WIDTH - 1)
    return {"inputs": [{"name": modelfiles.INPUT, "datatype": "FP32", "shape": [1, WIDTH],
                        "data": data}]}  # fmt: skip


def send_canary_traffic(url: str, model: str) -> dict[int, int]:
    """30 rows the model serves, 6 it fails on (first value above its threshold), 4 with a
    shape the runtime refuses before the model runs, 2 with a negative first value (which the
    handler refuses on purpose); how many of each status came back."""
    refused = {"inputs": [{"name": modelfiles.INPUT, "datatype": "FP32", "shape": [1, 2],
                           "data": [1, 2]}]}  # fmt: skip
    codes: dict[int, int] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for body in [first(0.1)] * 30 + [first(0.9)] * 6 + [refused] * 4 + [first(-0.9)] * 2:
            code = client.post(f"/v2/models/{model}/infer", json=body).status_code
            codes[code] = codes.get(code, 0) + 1
    return codes


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program", "state-dict", "handler"])
def test_a_canary_whose_model_fails_is_answered_5xx_and_fails_the_analysis(
    tmp_path: Path, fmt: str
):
    faulty = modelfiles.write_faulty(fmt, tmp_path / "model")
    env = {
        "TORCHSHIP_MODEL_URI": f"file://{faulty.path}",
        "TORCHSHIP_MODEL_FORMAT": fmt,
        "TORCHSHIP_MODEL_NAME": "canary",
        "TORCHSHIP_MODEL_INPUTS": json.dumps(modelfiles.declared_inputs()),
    }
    if faulty.entrypoint:
        env["TORCHSHIP_MODEL_ENTRYPOINT"] = faulty.entrypoint
    pods = [pod("canary-0", "c", "127.0.0.1")]
    with serving(tmp_path, **env) as running:

        async def window() -> tuple[Reading, Reading, dict[int, int]]:
            scraper = Scraper()
            try:
                before = await scraper.read(pods, ("c", "s"), running.port, False, now=0.0)
                codes = await asyncio.to_thread(send_canary_traffic, running.url, "canary")
                after = await scraper.read(pods, ("c", "s"), running.port, False, now=30.0)
            finally:
                await scraper.client.aclose()
            return before, after, codes

        before, after, codes = asyncio.run(window())

    # Only the handler refuses negative first values (InferenceError: 400, not an error).
    assert codes == ({200: 30, 500: 6, 400: 6} if fmt == "handler" else {200: 32, 500: 6, 400: 4})
    m = measure(before, after, canary="c", stable="s")
    assert (m.canary.requests, m.canary.errors) == (42, 6)
    verdict = judge(AnalysisPolicy(max_error_ratio=0.05, min_requests=20), m)
    assert verdict.result == "Failed"
    assert "canary error ratio 0.143 > maxErrorRatio 0.05" in verdict.message
