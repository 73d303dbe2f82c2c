"""The runtime under a bounded soak and a malformed-input fuzz run, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import torch
from harness import RuntimeProcess, mlp, save_torchscript, serving, torchscript_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow
INPUTS = '[{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}]'


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[RuntimeProcess, torch.nn.Module]:
    tmp = tmp_path_factory.mktemp("soak")
    model = mlp()
    env = torchscript_env(save_torchscript(model, tmp / "mlp.pt"), TORCHSHIP_MODEL_INPUTS=INPUTS)
    with serving(tmp, **env) as running:
        yield running, model


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def infer_body(rows: list[list[float]]) -> dict:
    return {
        "inputs": [
            {
                "name": "input__0",
                "datatype": "FP32",
                "shape": [len(rows), 64],
                "data": [x for row in rows for x in row],
            }
        ]
    }


async def soak_round(client: httpx.AsyncClient, url: str, requests: int, concurrency: int):
    row = [0.01 * i for i in range(64)]
    body = json.dumps(infer_body([row]))
    statuses: list[int] = []
    outputs: list[list[float]] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            r = await client.post(url, content=body, headers={"content-type": "application/json"})
            statuses.append(r.status_code)
            outputs.append(r.json()["outputs"][0]["data"])

    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return statuses, outputs, row


def test_soak_memory_stays_flat_and_no_errors(served):
    running, model = served
    url = f"{running.url}/v2/models/mlp/infer"

    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            rss: list[int] = []
            for _ in range(8):  # bounded: 8 rounds x 400 requests
                statuses, outputs, row = await soak_round(client, url, 400, 16)
                assert set(statuses) == {200}
                rss.append(rss_bytes(running.pid))
            expected = model(torch.tensor([row])).detach()[0]
            assert torch.allclose(torch.tensor(outputs[-1]), expected, atol=1e-5)
            return rss

    rss = asyncio.run(run())
    # After the first rounds warm the allocator, resident memory must not keep growing.
    growth = max(rss[2:]) - rss[2]
    assert growth < 24 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB: {rss}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
tensor_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["input__0", "x", ""]) | st.integers(),
        "datatype": st.sampled_from(["FP32", "FP16", "INT64", "BYTES", "BOOL", "XX"]) | json_values,
        "shape": st.lists(st.integers(-3, 70), max_size=4) | json_values,
        "data": st.lists(st.floats(allow_nan=False, width=32), max_size=70) | json_values,
        "parameters": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"inputs": st.lists(tensor_like, max_size=3)},
        optional={"id": json_values, "outputs": json_values, "parameters": json_values},
    ).map(lambda v: json.dumps(v).encode()),
)
paths = st.sampled_from(
    [
        "/v2/models/mlp/infer",
        "/v2/models/nope/infer",
        "/v2/models/mlp/versions/9/infer",
        "/v1/models/mlp:predict",
        "/v2/models/mlp",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=paths, body=bodies)
def test_malformed_requests_get_4xx_never_5xx(served, path, body):
    running, _ = served
    with httpx.Client(timeout=10) as client:
        r = client.post(
            running.url + path, content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code < 500, (r.status_code, r.text, body)
        if r.status_code >= 400:
            assert r.json()["error"], r.text
        assert client.get(f"{running.url}/v2/health/live").status_code == 200
