"""One small real model file per format, for tests that load what a ModelService names: the
operator-to-runtime contract test and the examples test.

`write(format, directory)` returns the file and the entrypoint the format needs (state-dict and
handler import it from the model file's directory, as the runtime does in a pod)."""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

WIDTH = 64  # examples/cpu-model.yaml declares [-1, 64]
INPUT = "input"  # the forward argument's name (nn.Sequential's), which the runtime reports
# The largest batch the exported program accepts: the CRD's maxBatchSize bound.
MAX_BATCH = 1024

ENTRYPOINTS = {"state-dict": "contractmodel:build", "handler": "contractmodel:Handler"}

MODULE = textwrap.dedent(
    f"""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear({WIDTH}, 8), nn.ReLU(), nn.Linear(8, 3))

    class Handler:
        def load(self, path, device):
            self.model = build().to(device).eval()
            self.model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
            self.device = device

        def predict(self, data):
            (x,) = data.values()
            return self.model(torch.as_tensor(x, dtype=torch.float32, device=self.device)).cpu()
    """
)


@dataclass(frozen=True)
class ModelFile:
    path: Path
    entrypoint: str | None
    module: nn.Module  # the eager model, for reference answers


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(WIDTH, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


class Faulty(nn.Module):
    """`inner`, raising for any row whose first value is above `threshold`: a model bug, which
    the runtime answers 500 (scripted, the raise reaches it as torch.jit.Error)."""

    def __init__(self, inner: nn.Module, threshold: float) -> None:
        super().__init__()
        self.inner = inner
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] > self.threshold).any()):
            raise RuntimeError("input out of range")
        return self.inner(x)


def suffix(fmt: str) -> str:
    return ".pt2" if fmt == "exported-program" else ".pt"


def write(fmt: str, directory: Path, name: str = "model") -> ModelFile:
    """The model of `fmt` as `directory/name<suffix>` (plus its code for entrypoint formats)."""
    directory.mkdir(parents=True, exist_ok=True)
    model = build()
    path = directory / f"{name}{suffix(fmt)}"
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated, still the format
            torch.jit.script(model).save(str(path))
    elif fmt == "exported-program":
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        program = torch.export.export(model, (torch.zeros(2, WIDTH),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    elif fmt in ENTRYPOINTS:
        torch.save(model.state_dict(), path)
        (directory / "contractmodel.py").write_text(MODULE)
    else:
        raise ValueError(f"no model file for format {fmt}")
    return ModelFile(path, ENTRYPOINTS.get(fmt), model)


def declared_inputs() -> list[dict]:
    """spec.model.inputs that describe these models."""
    return [{"name": INPUT, "datatype": "FP32", "shape": [-1, WIDTH]}]
