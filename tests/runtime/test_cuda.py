"""The runtime on a GPU: every torch format on CUDA, in float32, float16 and bfloat16, checked
against the model run directly, with batching under concurrency. Skipped without a CUDA device."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import httpx
import pytest
import torch
from served import WIDTH, entrypoint_env, mlp, reference, save_torchscript, torchscript_env

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

X = torch.randn(8, WIDTH, generator=torch.Generator().manual_seed(5))


def infer(url: str, name: str, x: torch.Tensor, input_name: str) -> tuple[str, torch.Tensor]:
    doc = {
        "inputs": [
            {"name": input_name, "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}
        ]
    }
    r = httpx.post(f"{url}/v2/models/{name}/infer", json=doc, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    return out["datatype"], torch.tensor(out["data"], dtype=torch.float32).reshape(out["shape"])


@pytest.mark.parametrize(
    ("dtype", "datatype", "tolerance"),
    [("float32", "FP32", 1e-3), ("float16", "FP16", 2e-2), ("bfloat16", "BF16", 6e-2)],
)
def test_state_dict_on_cuda_in_each_dtype(
    tmp_path, start_runtime, monkeypatch, dtype, datatype, tolerance
):
    (tmp_path / "gpumodel.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build():
                torch.manual_seed(4)
                return nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 10))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import gpumodel

    model = gpumodel.build().eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    env = entrypoint_env(
        tmp_path / "w.pt",
        "state-dict",
        "gpumodel:build",
        "g",
        TORCHSHIP_DEVICE="auto",  # picks the GPU
        TORCHSHIP_DTYPE=dtype,
    )
    running = start_runtime(**env).wait_ready()
    got_type, got = infer(running.url, "g", X, "input")
    assert got_type == datatype
    torch.testing.assert_close(got, reference(model, X), atol=tolerance, rtol=tolerance)
    assert "on cuda" in running.output()

    async def concurrent() -> list[httpx.Response]:
        rows = [X[i : i + 1] for i in range(8)] * 8
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{running.url}/v2/models/g/infer",
                        json={
                            "inputs": [
                                {
                                    "name": "input",
                                    "datatype": "FP32",
                                    "shape": [1, WIDTH],
                                    "data": r.tolist(),
                                }
                            ]
                        },
                    )
                    for r in rows
                )
            )

    responses = asyncio.run(concurrent())
    want = reference(model, X)
    for i, r in enumerate(responses):
        got = torch.tensor(r.json()["outputs"][0]["data"], dtype=torch.float32)
        torch.testing.assert_close(got, want[i % 8], atol=tolerance, rtol=tolerance)
    sys.modules.pop("gpumodel", None)


def test_torchscript_and_exported_program_on_cuda(tmp_path, start_runtime):
    model = mlp((WIDTH, 128, 10))
    path = save_torchscript(model, tmp_path / "m.pt")
    batch = torch.export.Dim("batch", min=1, max=256)
    program = torch.export.export(model, (torch.zeros(2, WIDTH),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    ts = start_runtime(**torchscript_env(path, "ts", TORCHSHIP_DEVICE="cuda"))
    ep = start_runtime(
        TORCHSHIP_MODEL_URI=str(tmp_path / "m.pt2"),
        TORCHSHIP_MODEL_FORMAT="exported-program",
        TORCHSHIP_MODEL_NAME="ep",
        TORCHSHIP_DEVICE="cuda",
    )
    want = reference(model, X)
    for running, name in ((ts, "ts"), (ep, "ep")):
        _, got = infer(running.wait_ready().url, name, X, "input")
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize(
    ("dtype", "datatype", "tolerance"), [("float16", "FP16", 2e-2), ("bfloat16", "BF16", 6e-2)]
)
def test_exported_program_on_cuda_in_half_precision(
    tmp_path, start_runtime, dtype, datatype, tolerance
):
    model = mlp((WIDTH, 128, 10))
    batch = torch.export.Dim("batch", min=1, max=256)
    program = torch.export.export(model, (torch.zeros(2, WIDTH),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    running = start_runtime(
        TORCHSHIP_MODEL_URI=str(tmp_path / "m.pt2"),
        TORCHSHIP_MODEL_FORMAT="exported-program",
        TORCHSHIP_MODEL_NAME="ep",
        TORCHSHIP_DEVICE="cuda",
        TORCHSHIP_DTYPE=dtype,
    )
    got_type, got = infer(running.wait_ready().url, "ep", X, "input")
    assert got_type == datatype
    torch.testing.assert_close(got, reference(model, X), atol=tolerance, rtol=tolerance)


def test_dynamic_int8_on_cuda_is_refused_at_load(tmp_path, start_runtime):
    path = save_torchscript(mlp(), tmp_path / "m.pt")
    running = start_runtime(
        **torchscript_env(path, TORCHSHIP_DEVICE="cuda", TORCHSHIP_QUANTIZE="dynamic-int8")
    )
    assert running.proc.wait(timeout=60) == 1
    assert "dynamic-int8 works on CPU" in running.output()
