"""Loading a model in any supported format, and running it.

A ServedModel takes named input tensors with a leading batch dimension and returns named
output tensors; the formats differ only in how the module is built and what metadata it
can report about itself.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InferenceError
from .settings import RuntimeSettings, TensorMeta
from .sources import fetch
from .tensors import TORCH_DATATYPE, Tensor

log = logging.getLogger("torchship.runtime")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PLATFORMS = {
    "torchscript": "pytorch_torchscript",
    "exported-program": "pytorch_exported_program",
    "state-dict": "pytorch_state_dict",
    "handler": "pytorch_handler",
}


def import_entrypoint(entrypoint: str, search: Path | None = None) -> Any:
    module_name, _, attribute = entrypoint.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"entrypoint {entrypoint!r} must look like package.module:callable")
    if search is not None and str(search) not in sys.path:
        sys.path.insert(0, str(search))  # a model directory may carry its own code
    return getattr(importlib.import_module(module_name), attribute)


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.device is cuda but no CUDA device is visible to the pod")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


@dataclass
class ServedModel:
    name: str
    version: str
    platform: str
    inputs: list[TensorMeta]
    outputs: list[TensorMeta]
    device: torch.device
    dtype: torch.dtype
    forward: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    handler: Any = None  # handler format: called per request, unbatched
    max_batch_rows: int | None = None  # a static batch dimension, when the model has one
    load_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def batchable(self) -> bool:
        return self.handler is None

    def to_tensors(self, inputs: list[Tensor]) -> dict[str, torch.Tensor]:
        """Request tensors -> model tensors on the device, checked against the metadata."""
        by_name = {t.name: t for t in inputs}
        expected = {m.name: m for m in self.inputs}
        if missing := set(expected) - set(by_name):
            raise InferenceError(f"missing input(s): {sorted(missing)}")
        if unknown := set(by_name) - set(expected):
            raise InferenceError(
                f"unknown input(s): {sorted(unknown)}; expected {sorted(expected)}"
            )
        out = {}
        for meta in self.inputs:
            tensor = by_name[meta.name]
            check_shape(meta, tensor.shape)
            if tensor.datatype == "BYTES":
                raise InferenceError(f"input {meta.name}: BYTES needs a handler model")
            value = (
                tensor.array
                if isinstance(tensor.array, torch.Tensor)
                else torch.from_numpy(np.ascontiguousarray(tensor.array))
            )
            out[meta.name] = value
        return out

    def run(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One forward pass: CPU tensors in (batched), CPU tensors out."""
        with torch.inference_mode():
            moved = {
                name: (v.to(self.dtype) if v.is_floating_point() else v).to(self.device)
                for name, v in batch.items()
            }
            outputs = self.forward(moved)
            if self.device.type != "cpu":
                outputs = {name: v.cpu() for name, v in outputs.items()}
            return outputs


def check_shape(meta: TensorMeta, shape: list[int]) -> None:
    if len(meta.shape) != len(shape) or any(
        want != -1 and want != got for want, got in zip(meta.shape, shape, strict=True)
    ):
        raise InferenceError(f"input {meta.name}: expected shape {meta.shape}, got {shape}")


def module_forward(
    module: Callable, inputs: list[TensorMeta], outputs: list[TensorMeta]
) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    names = [m.name for m in inputs]
    out_names = [m.name for m in outputs]

    def forward(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        result = module(*(batch[n] for n in names))
        values = result if isinstance(result, tuple | list) else (result,)
        if len(values) != len(out_names):
            out_names[:] = [f"output__{i}" for i in range(len(values))]
        return dict(zip(out_names, values, strict=True))

    return forward


def guess_inputs(module: torch.nn.Module) -> list[TensorMeta]:
    """Without declared inputs, the first 2-D weight tells a dense model's input width."""
    for parameter in module.parameters():
        if parameter.dim() == 2:
            return [TensorMeta(name="input__0", datatype="FP32", shape=[-1, parameter.shape[1]])]
    raise RuntimeError(
        "cannot tell this model's inputs: declare them (ModelService spec.model.inputs, "
        "TORCHSHIP_MODEL_INPUTS)"
    )


def exported_inputs(program: Any) -> tuple[list[TensorMeta], int | None]:
    """Names and shapes of an ExportedProgram's user inputs (-1 where the dim is symbolic)."""
    metas, static_batch = [], None
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        fake = node.meta["val"]
        shape = [d if isinstance(d, int) else -1 for d in fake.shape]
        if shape and shape[0] != -1:
            static_batch = shape[0]
        metas.append(
            TensorMeta(
                name=f"input__{len(metas)}",
                datatype=TORCH_DATATYPE.get(fake.dtype, "FP32"),
                shape=shape,
            )
        )
    return metas, static_batch


def load(settings: RuntimeSettings) -> ServedModel:
    started = time.perf_counter()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = pick_device(settings.device)
    dtype = DTYPES[settings.dtype]
    path = fetch(settings.model_uri, cache_dir=settings.model_cache_dir, pvc_root=settings.pvc_root)
    fmt = settings.model_format
    inputs = settings.model_inputs
    static_batch = None
    handler = None
    module: Any = None

    if fmt == "handler":
        handler_class = import_entrypoint(settings.model_entrypoint, path.parent)
        handler = handler_class()
        if hasattr(handler, "load"):
            handler.load(str(path), device)
    elif fmt == "torchscript":
        module = torch.jit.load(str(path), map_location=device)
    elif fmt == "exported-program":
        program = torch.export.load(str(path))
        found, static_batch = exported_inputs(program)
        inputs = inputs or found
        module = program.module().to(device)
    elif fmt == "state-dict":
        build = import_entrypoint(settings.model_entrypoint, path.parent)
        module = build()
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        module.load_state_dict(state)
        module = module.to(device)

    if module is not None:
        if fmt != "exported-program":  # an exported program is already in inference form
            module.eval()
        inputs = inputs or guess_inputs(module)
        if settings.quantize == "dynamic-int8":
            if (
                device.type != "cpu"
                or not isinstance(module, torch.nn.Module)
                or fmt == "torchscript"
            ):
                raise RuntimeError(
                    "dynamic-int8 quantization needs an nn.Module on CPU "
                    "(state-dict or exported-program)"
                )
            module = torch.ao.quantization.quantize_dynamic(
                module, {torch.nn.Linear}, dtype=torch.qint8
            )
        elif dtype != torch.float32:
            if fmt == "exported-program":
                raise RuntimeError(
                    f"an exported program runs in the dtype it was exported with; export it in "
                    f"{settings.dtype} or set runtime.dtype to float32"
                )
            module = module.to(dtype)
    outputs = settings.model_outputs or [TensorMeta(name="output__0", datatype="FP32", shape=[-1])]
    model = ServedModel(
        name=settings.model_name,
        version=settings.model_version,
        platform=PLATFORMS[fmt],
        inputs=inputs or [TensorMeta(name="input__0", datatype="BYTES", shape=[-1])],
        outputs=outputs,
        device=device,
        dtype=dtype,
        forward=module_forward(module, inputs, outputs) if module is not None else None,
        handler=handler,
        max_batch_rows=static_batch,
    )
    if module is not None:
        warm_up(model, settings.max_batch_size if settings.batching else 1)
    model.load_seconds = time.perf_counter() - started
    log.info(
        "model %s loaded (%s on %s, %s) in %.2fs",
        model.name, fmt, device, settings.dtype, model.load_seconds,
    )  # fmt: skip
    return model


def warm_up(model: ServedModel, batch_rows: int) -> None:
    """Run representative inputs once (one row and a full batch) so the first requests do not
    pay for lazy initialisation; a model that cannot run its own inputs fails here, not later."""
    rows_options = sorted({1, model.max_batch_rows or batch_rows})
    for rows in rows_options:
        batch = {}
        for meta in model.inputs:
            shape = [rows if d == -1 and i == 0 else max(d, 1) for i, d in enumerate(meta.shape)]
            dtype = torch.float32 if meta.datatype.startswith(("FP", "BF")) else torch.int64
            batch[meta.name] = torch.zeros(shape, dtype=dtype)
        outputs = model.run(batch)
        # Outputs' shapes become metadata: known dims, -1 for the batch.
        if rows == 1:
            model.outputs = [
                TensorMeta(
                    name=n, datatype=TORCH_DATATYPE.get(v.dtype, "FP32"), shape=[-1, *v.shape[1:]]
                )
                for n, v in outputs.items()
            ]
