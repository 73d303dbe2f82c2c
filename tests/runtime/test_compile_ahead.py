"""Compiled ahead of time (runtime.compile.aheadOfTime): the first start exports and compiles
the module into a package on the compile cache; the next start loads that package, compiling
nothing, with no C++ compiler to be found; both answer as the eager model does."""

from __future__ import annotations

import os

import httpx
import modelfiles
import pytest
import torch
from skips import skip_unless_installable

from torchship_runtime import ahead, loading


@pytest.fixture(autouse=True)
def a_compiler() -> None:
    """The first start compiles C++ with the compiler Inductor runs (the runtime's own rule)."""
    if loading.cxx_compiler() is None:
        skip_unless_installable(f"the first start compiles C++: no {loading.cxx_name()} on PATH")


def infer(url: str, rows: list[list[float]]) -> list[float]:
    body = {
        "inputs": [
            {"name": modelfiles.INPUT, "datatype": "FP32", "shape": [len(rows), 64],
             "data": [v for row in rows for v in row]}
        ]
    }  # fmt: skip
    answer = httpx.post(f"{url}/v2/models/ahead/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["outputs"][0]["data"]


@pytest.mark.parametrize("fmt", ["state-dict", "exported-program"])
def test_the_first_start_compiles_a_package_and_the_next_loads_it_without_a_compiler(
    tmp_path, start_runtime, fmt
):
    model = modelfiles.write(fmt, tmp_path / "model")
    packages = tmp_path / "aot"
    env = {
        "TORCHSHIP_MODEL_URI": str(model.path),
        "TORCHSHIP_MODEL_FORMAT": fmt,
        "TORCHSHIP_MODEL_NAME": "ahead",
        "TORCHSHIP_COMPILE_MODE": "default",
        "TORCHSHIP_COMPILE_AHEAD_OF_TIME": "true",
        "TORCHSHIP_COMPILE_CACHE_DIR": str(packages),
        "TORCHSHIP_MAX_BATCH_SIZE": "8",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        **({"TORCHSHIP_MODEL_ENTRYPOINT": model.entrypoint} if model.entrypoint else {}),
    }
    rows = [[((i * 7 + r) % 64) / 64 for i in range(64)] for r in range(11)]
    with torch.no_grad():
        expected = model.module(torch.tensor(rows)).flatten().tolist()

    first = start_runtime(**env).wait_ready(timeout=170)
    assert "compiled" in first.output() and "ahead of time" in first.output()
    (package,) = packages.glob("*.pt2")
    # One row, a batch, and more rows than a batch: the batch dimension is dynamic.
    assert infer(first.url, rows[:1]) == pytest.approx(expected[:3], abs=1e-5)
    assert infer(first.url, rows) == pytest.approx(expected, abs=1e-5)
    first.stop()
    made = package.stat().st_mtime_ns

    # No compiler on the PATH: a start that tried to compile would fail its warm-up.
    bare = tmp_path / "bin"
    bare.mkdir()
    second = start_runtime(**env, PATH=str(bare), CXX="no-such-compiler").wait_ready(timeout=120)
    assert "loaded the compiled package" in second.output()
    assert package.stat().st_mtime_ns == made and list(packages.glob("*.pt2")) == [package]
    assert infer(second.url, rows) == pytest.approx(expected, abs=1e-5)


def test_the_package_is_named_by_the_model_file_and_the_settings(tmp_path):
    model = modelfiles.write("state-dict", tmp_path)
    cpu = torch.device("cpu")
    key = ahead.package_key(model.path, cpu, {"mode": "default", "dtype": "float32"})
    assert key == ahead.package_key(model.path, cpu, {"mode": "default", "dtype": "float32"})
    assert key != ahead.package_key(model.path, cpu, {"mode": "max-autotune", "dtype": "float32"})
    os.utime(model.path, ns=(1, 1))  # a new file (a new fill, a new download)
    assert key != ahead.package_key(model.path, cpu, {"mode": "default", "dtype": "float32"})


def test_a_module_torch_export_cannot_capture_says_so():
    class DataDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # a branch on the values: no one graph for every input
                return x * 2
            return x

    with pytest.raises(RuntimeError, match=r"leave runtime\.compile\.aheadOfTime off"):
        ahead.export(DataDependent(), (torch.zeros(2, 4),))
