"""Model formats: a local path in, a torch callable and what the format tells about its inputs out.

- torchscript: a `.pt` from `torch.jit.save`, read by `torch.jit.load`.
- exported-program: a `.pt2` from `torch.export.save`, read by `torch.export.load(...).module()`.
- state-dict: `.pt`/`.pth` (`torch.save(model.state_dict())`) or `.safetensors`; the entrypoint
  builds the nn.Module, then `load_state_dict` fills it.
- handler: any file the handler's `load(path, device)` reads; the entrypoint is the class.

Input names are the forward pass's own argument names unless the settings declare inputs.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .codec import DATATYPE_OF_TORCH
from .protocol import TensorMetadata

log = logging.getLogger("torchship.runtime")

PLATFORMS = {
    "torchscript": "pytorch_torchscript",
    "exported-program": "pytorch_exported_program",
    "state-dict": "pytorch_state_dict",
    "handler": "pytorch_handler",
    "transformers": "transformers",  # the generation package sets what kind (generate, embed)
}


@dataclass
class LoadedModule:
    module: Callable[..., Any]
    # What the file itself says about the inputs (names always; shapes when it knows them).
    input_names: list[str]
    inputs: list[TensorMetadata] | None = None
    # The largest batch the module accepts (an exported program's bound on its batch dim).
    max_batch: int | None = None


def import_entrypoint(entrypoint: str, search: Path | None = None) -> Any:
    """`package.module:attribute`, importable from the environment or the model's directory."""
    module_name, _, attribute = entrypoint.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"entrypoint {entrypoint!r} must look like package.module:callable")
    if search is not None and search.is_dir() and str(search) not in sys.path:
        sys.path.append(str(search))  # a model directory may carry its own code
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"entrypoint {entrypoint!r}: {module_name} has no {attribute}") from None


def forward_argument_names(module: Any) -> list[str]:
    """The names of a module's forward arguments (without self)."""
    forward = getattr(module, "forward", module)
    schema = getattr(forward, "schema", None)
    if schema is not None:  # TorchScript
        return [a.name for a in schema.arguments if a.name != "self"]
    try:
        parameters = inspect.signature(forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name != "self"
        and p.default is p.empty
    ]


def guess_first_input(module: Any, name: str) -> TensorMetadata | None:
    """A dense model's input from its first layer: a Linear's width, an Embedding's indices.
    Other layers (convolutions, ...) need declared inputs."""
    for _, sub in module.named_modules():
        kind = getattr(sub, "original_name", type(sub).__name__)  # TorchScript keeps the name
        weight = getattr(sub, "weight", None)
        if kind == "Linear" and isinstance(weight, torch.Tensor) and weight.dim() == 2:
            return TensorMetadata(name=name, datatype="FP32", shape=[-1, weight.shape[1]])
        if kind in ("Embedding", "EmbeddingBag"):
            return TensorMetadata(name=name, datatype="INT64", shape=[-1, -1])
        if kind not in ("Sequential", "ModuleList", "ModuleDict") and any(
            True for _ in sub.parameters(recurse=False)
        ):
            return None
    return None


def exported_inputs(program: Any) -> tuple[list[TensorMetadata], int | None]:
    """An ExportedProgram's user inputs as metadata (-1 where a dim is symbolic), and the upper
    bound of its batch dimension when export put one on it."""
    metas, max_batch = [], None
    user_inputs = list(program.graph_signature.user_inputs)
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    for name in user_inputs:
        fake = nodes[name].meta.get("val")
        if not isinstance(fake, torch.Tensor):
            raise RuntimeError(f"exported input {name} is not a tensor; serve it with a handler")
        shape = [d if isinstance(d, int) else -1 for d in fake.shape]
        if fake.dim() and not isinstance(fake.shape[0], int):
            bound = program.range_constraints.get(fake.shape[0].node.expr)
            upper = getattr(bound, "upper", None)
            if upper is not None and upper.is_finite:
                max_batch = int(upper) if max_batch is None else min(max_batch, int(upper))
        datatype = DATATYPE_OF_TORCH.get(fake.dtype)
        if datatype is None:
            raise RuntimeError(f"exported input {name} has dtype {fake.dtype}, not servable")
        metas.append(TensorMetadata(name=name, datatype=datatype, shape=shape))
    return metas, max_batch


def load_torchscript(path: Path, device: torch.device) -> LoadedModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, still loads
        module = torch.jit.load(str(path), map_location=device)
    module.eval()
    names = forward_argument_names(module)
    guess = guess_first_input(module, names[0]) if len(names) == 1 else None
    return LoadedModule(module, names, [guess] if guess else None)


def load_exported_program(path: Path, device: torch.device) -> LoadedModule:
    program = torch.export.load(str(path))
    inputs, max_batch = exported_inputs(program)
    module = program.module().to(device)
    return LoadedModule(module, [m.name for m in inputs], inputs, max_batch)


def load_state_dict(path: Path, entrypoint: str, device: torch.device) -> LoadedModule:
    if not entrypoint:
        raise ValueError("the state-dict format needs an entrypoint (pkg.module:build_model)")
    build = import_entrypoint(entrypoint, path.parent)
    module = build()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"entrypoint {entrypoint} returned {type(module).__name__}, not a Module")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint around the weights
    module.load_state_dict(state)
    module = module.to(device).eval()
    names = forward_argument_names(module)
    guess = guess_first_input(module, names[0]) if len(names) == 1 else None
    return LoadedModule(module, names, [guess] if guess else None)


def quantize_dynamic_int8(module: torch.nn.Module) -> torch.nn.Module:
    """Linear layers with int8 weights, activations quantized per batch (CPU)."""
    quantization = getattr(torch.ao, "quantization", None)
    if quantization is None or not hasattr(quantization, "quantize_dynamic"):
        raise RuntimeError("dynamic-int8 needs torch.ao.quantization, which this torch lacks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of torchao, still supported
        return quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)


def check_compilable(fmt: str) -> None:
    if fmt not in ("state-dict", "exported-program"):
        raise RuntimeError(
            f"compile works on an nn.Module (state-dict, exported-program), not on {fmt}"
        )


def cxx_name() -> str:
    """The C++ compiler Inductor runs: $CXX, else g++ (torch._inductor.config.cpp.cxx); it
    looks for no other name, c++ included."""
    return os.environ.get("CXX") or "g++"


def cxx_compiler() -> str | None:
    """The path of the compiler Inductor will run, or None when there is none to run."""
    return shutil.which(cxx_name())


def compile_module(module: Any, mode: str) -> Any:
    """`torch.compile(module, mode=mode)`; compiled lazily, by the warm-up's batches. Inductor
    writes C++ (CPU) or Triton (CUDA) kernels and builds them with the system's compiler."""
    if cxx_compiler() is None:
        raise RuntimeError(
            f"compile needs a C++ compiler ({cxx_name()}) in the runtime image, and this image "
            "has none: use an image with one (spec.runtime.image), or leave compile off"
        )
    return torch.compile(module, mode=mode)
