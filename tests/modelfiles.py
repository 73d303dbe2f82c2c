"""One small real model file per format, for tests that load what a ModelService names: the
operator-to-runtime contract test and the examples test.

`write(format, directory)` returns the file and the entrypoint the format needs (state-dict and
handler import it from the model file's directory, as the runtime does in a pod)."""

from __future__ import annotations

import importlib.util
import sys
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


FAULTY_ENTRYPOINTS = {"state-dict": "faultymodel:build", "handler": "faultymodel:Handler"}

# A model that fails inside its forward pass for any row whose first value is above THRESHOLD,
# the way models break: the tensor formats look a row up in a one-entry table at index 1 (an
# IndexError from torch), the handler raises ValueError itself. The handler also refuses rows
# whose first value is negative, on purpose (InferenceError: the client's 400).
FAULTY_MODULE = textwrap.dedent(
    f"""
    import torch
    from torch import nn
    from torchship_runtime.errors import InferenceError

    THRESHOLD = 0.5

    class Guarded(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.inner = nn.Sequential(nn.Linear({WIDTH}, 8), nn.ReLU(), nn.Linear(8, 3))
            self.register_buffer("scale", torch.ones(1))
            self.threshold = THRESHOLD

        def forward(self, x):
            index = (x[:, 0] > self.threshold).long()
            return self.inner(x) * self.scale[index].unsqueeze(1)

    def build():
        return Guarded().eval()

    class Handler:
        def load(self, path, device):
            self.model = build().to(device)
            self.model.load_state_dict(torch.load(path, map_location=device, weights_only=True))

        def predict(self, data):
            (x,) = data.values()
            if (x[:, 0] < 0).any():
                raise InferenceError("the first value must not be negative")
            if (x[:, 0] > THRESHOLD).any():
                raise ValueError("input out of range")
            return self.model(torch.as_tensor(x, dtype=torch.float32))
    """
)


def write_faulty(fmt: str, directory: Path) -> ModelFile:
    """A model of `fmt` that fails inside the model for rows whose first value is above 0.5
    (FAULTY_MODULE), with its code beside it for every format."""
    directory.mkdir(parents=True, exist_ok=True)
    code = directory / "faultymodel.py"
    code.write_text(FAULTY_MODULE)
    spec = importlib.util.spec_from_file_location("faultymodel", code)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["faultymodel"] = module  # where torch.jit.script finds the class's source
    spec.loader.exec_module(module)
    model = module.build()
    path = directory / f"faulty{suffix(fmt)}"
    save(model, fmt, path)
    return ModelFile(path, FAULTY_ENTRYPOINTS.get(fmt), model)


def suffix(fmt: str) -> str:
    return ".pt2" if fmt == "exported-program" else ".pt"


def save(model: torch.nn.Module, fmt: str, path: Path) -> None:
    """`model` as a file of `fmt` (its weights alone for the entrypoint formats)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated, still the format
            torch.jit.script(model).save(str(path))
    elif fmt == "exported-program":
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        program = torch.export.export(model, (torch.zeros(2, WIDTH),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    else:
        torch.save(model.state_dict(), path)


def write(fmt: str, directory: Path, name: str = "model") -> ModelFile:
    """The model of `fmt` as `directory/name<suffix>` (plus its code for entrypoint formats)."""
    directory.mkdir(parents=True, exist_ok=True)
    model = build()
    path = directory / f"{name}{suffix(fmt)}"
    if fmt not in ("torchscript", "exported-program", *ENTRYPOINTS):
        raise ValueError(f"no model file for format {fmt}")
    save(model, fmt, path)
    if fmt in ENTRYPOINTS:
        (directory / "contractmodel.py").write_text(MODULE)
    return ModelFile(path, ENTRYPOINTS.get(fmt), model)


def declared_inputs() -> list[dict]:
    """spec.model.inputs that describe these models."""
    return [{"name": INPUT, "datatype": "FP32", "shape": [-1, WIDTH]}]
