"""The served model's lifecycle: created from the settings, `load()`ed once (fetch, build, move to
device and dtype, warm up), then `ready`, answering `predict()` until the process ends.

`TorchModel` serves the torchscript, exported-program and state-dict formats: its `predict` takes
a batch (every input with the same leading dimension) and is what the batcher calls.
`HandlerModel` serves a user class with preprocess / predict / postprocess: one request at a time,
or, when the class says `batched = True`, the batcher's concatenated rows like a tensor model.
Both run `predict` in the one forward thread, never on the event loop.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import ahead, loading
from .codec import TORCH_DTYPES, Array, Tensor, as_output, datatype_of
from .errors import InferenceError, ModelFailure
from .protocol import TensorMetadata
from .settings import RuntimeSettings
from .sources import fetch

log = logging.getLogger("torchship.runtime")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for, but no CUDA device is visible")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def check_shape(meta: TensorMetadata, shape: list[int]) -> None:
    if len(meta.shape) != len(shape) or any(
        want not in (-1, got) for want, got in zip(meta.shape, shape, strict=True)
    ):
        raise InferenceError(f"input {meta.name}: expected shape {meta.shape}, got {shape}")


class Model(ABC):
    """What the data plane serves: metadata, a load step, readiness and predict."""

    batchable = False

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.name = settings.model_name
        self.version = settings.model_version
        self.platform = loading.PLATFORMS[settings.model_format]
        self.inputs: list[TensorMetadata] = list(settings.model_inputs or [])
        self.outputs: list[TensorMetadata] = list(settings.model_outputs or [])
        self.device = torch.device("cpu")
        self.max_batch_rows = settings.max_batch_size
        self.ready = False
        self.loaded = False  # built and on its device; the warm-up has not finished
        self.load_seconds = 0.0
        self.phase_seconds: dict[str, float] = {}

    def load(self) -> None:
        """Fetch, build and warm up the model; `ready` once it has answered a warm-up input."""
        started = time.perf_counter()
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        self.device = pick_device(self.settings.device)
        path = fetch(
            self.settings.model_uri,
            cache_dir=self.settings.model_cache_dir,
            pvc_root=self.settings.pvc_root,
        )
        fetched = time.perf_counter()
        self.build(path)
        self.loaded = True
        built = time.perf_counter()
        self.warm_up()
        done = time.perf_counter()
        self.phase_seconds = {"fetch": fetched - started, "load": built - fetched}
        self.phase_seconds["warmup"] = done - built
        self.load_seconds = done - started
        self.ready = True
        log.info(
            "model %s ready: %s on %s (%s) in %.2fs; inputs %s; outputs %s",
            self.name, self.settings.model_format, self.device, self.settings.dtype,
            self.load_seconds, [m.model_dump() for m in self.inputs],
            [m.model_dump() for m in self.outputs],
        )  # fmt: skip

    @abstractmethod
    def build(self, path: Any) -> None: ...

    @abstractmethod
    def warm_up(self) -> None: ...

    @abstractmethod
    def prepare(self, inputs: list[Tensor]) -> dict[str, Any]:
        """Check a request's inputs against the metadata (on the event loop, before queueing)."""

    @abstractmethod
    def predict(self, inputs: dict[str, Any]) -> dict[str, Array]:
        """Run the model (in the forward thread)."""

    def check_names(self, inputs: list[Tensor]) -> dict[str, Tensor]:
        by_name = {t.name: t for t in inputs}
        if len(by_name) != len(inputs):
            raise InferenceError("an input name appears twice")
        expected = [m.name for m in self.inputs]
        missing = [n for n in expected if n not in by_name]
        unknown = [n for n in by_name if n not in expected]
        if missing or unknown:
            problems = [f"missing input(s) {missing}"] if missing else []
            problems += [f"unknown input(s) {unknown}"] if unknown else []
            raise InferenceError(f"{', '.join(problems)}; the model takes {expected}")
        return by_name

    def warm_up_inputs(self, rows: int) -> dict[str, torch.Tensor]:
        """Zeros in the declared shapes: `rows` for the batch dim, 1 for other unknown dims."""
        batch = {}
        for meta in self.inputs:
            if meta.datatype == "BYTES":
                raise RuntimeError(f"input {meta.name} is BYTES: serve it with a handler")
            shape = [rows if i == 0 and d == -1 else max(d, 1) for i, d in enumerate(meta.shape)]
            batch[meta.name] = torch.zeros(shape, dtype=TORCH_DTYPES[meta.datatype])
        return batch


class TorchModel(Model):
    """torchscript, exported-program and state-dict: an nn.Module-like callable run on batches."""

    batchable = True

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.dtype = DTYPES[settings.dtype]
        self.module: Callable[..., Any] | None = None
        self.output_names: list[str] | None = None

    def build(self, path: Any) -> None:
        fmt, settings = self.settings.model_format, self.settings
        if fmt == "torchscript":
            loaded = loading.load_torchscript(path, self.device)
        elif fmt == "exported-program":
            loaded = loading.load_exported_program(path, self.device)
        else:
            loaded = loading.load_state_dict(path, settings.model_entrypoint, self.device)
        module = loaded.module
        if settings.quantize == "dynamic-int8":
            if self.device.type != "cpu" or fmt != "state-dict":
                raise RuntimeError(
                    "quantize dynamic-int8 works on CPU with the state-dict format (an nn.Module "
                    f"it can rewrite); this model is {fmt} on {self.device}"
                )
            if self.dtype != torch.float32:
                raise RuntimeError(
                    f"quantize dynamic-int8 computes in float32, not {settings.dtype}: leave "
                    "dtype float32"
                )
            module = loading.quantize_dynamic_int8(module)
        elif self.dtype != torch.float32:
            # An exported program's module() holds its weights as parameters and buffers, so it
            # casts like any module; a graph that fixes a dtype of its own fails the warm-up.
            module = module.to(self.dtype)
        if settings.compile_mode:
            loading.check_compilable(fmt)
            self.model_path = Path(path)
            self.batch_bound = loaded.max_batch  # an exported program's own, kept when compiled
            if not settings.compile_ahead_of_time:  # traced and compiled by the warm-up
                module = loading.compile_module(module, settings.compile_mode)
        self.module = module
        if not self.inputs:
            if not loaded.inputs:
                raise RuntimeError(
                    "cannot tell this model's inputs (forward arguments "
                    f"{loaded.input_names}): declare them (ModelService spec.model.inputs, "
                    "TORCHSHIP_MODEL_INPUTS)"
                )
            self.inputs = loaded.inputs
        static = {m.shape[0] for m in self.inputs if m.shape and m.shape[0] != -1}
        if static:  # a fixed batch dimension: each request brings exactly that many rows
            self.max_batch_rows = min(static)
        elif loaded.max_batch is not None:
            self.max_batch_rows = min(self.max_batch_rows, loaded.max_batch)

    def warm_up(self) -> None:
        """One row, then a full batch: lazy initialisation is paid before ready, and a model that
        cannot run its own declared inputs fails here, with the reason, rather than later.
        Compiled, two rows as well: the second shape makes torch.compile's batch dimension
        dynamic, so no request size compiles again after ready. Compiled ahead of time, the
        package is loaded (or made) first, and the batches run through it."""
        settings = self.settings
        if settings.compile_mode and settings.compile_ahead_of_time:
            self.module = self.compiled_ahead()
        jit = settings.compile_mode and not settings.compile_ahead_of_time
        sizes = {1, self.max_batch_rows} | ({2} if jit else set())
        for rows in sorted(s for s in sizes if s <= self.max_batch_rows):
            batch = self.warm_up_inputs(rows)
            try:
                outputs = self.predict(batch)
            except Exception as error:
                shapes = {n: list(v.shape) for n, v in batch.items()}
                raise RuntimeError(
                    f"warm-up failed on zeros shaped {shapes}: {type(error).__name__}: {error}. "
                    "If those are not the model's inputs, declare them (spec.model.inputs, "
                    "TORCHSHIP_MODEL_INPUTS)"
                ) from error
            if rows > 1 and any(not v.dim() or v.shape[0] != rows for v in outputs.values()):
                # Outputs that do not follow the batch cannot be split back: no batching.
                log.warning("model %s: outputs do not follow the batch: batching off", self.name)
                self.batchable = False
            if rows == 1:  # the real outputs become metadata: names, datatypes, trailing dims
                self.outputs = [
                    TensorMetadata(
                        name=name,
                        datatype=datatype_of(value),
                        shape=[-1, *value.shape[1:]] if value.dim() else [],
                    )
                    for name, value in outputs.items()
                ]

    def compiled_ahead(self) -> Callable[..., Any]:
        """The AOTInductor package of the module, from the compile cache or compiled now."""
        settings, dtype = self.settings, self.dtype
        example = tuple(
            (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
            for v in self.warm_up_inputs(2).values()
        )
        facts = {
            "format": settings.model_format,
            "dtype": settings.dtype,
            "inputs": [m.model_dump(mode="json") for m in self.inputs],
        }
        return ahead.ahead_of_time(
            self.module,
            example,
            model_path=self.model_path,
            device=self.device,
            directory=Path(settings.compile_cache_dir),
            mode=settings.compile_mode,
            facts=facts,
            max_rows=self.batch_bound,
        )

    def prepare(self, inputs: list[Tensor]) -> dict[str, torch.Tensor]:
        by_name = self.check_names(inputs)
        batch: dict[str, torch.Tensor] = {}
        rows = None
        for meta in self.inputs:
            tensor = by_name[meta.name]
            if tensor.datatype != meta.datatype:
                raise InferenceError(
                    f"input {meta.name}: expected datatype {meta.datatype}, got {tensor.datatype}"
                )
            check_shape(meta, tensor.shape)
            if not tensor.shape or tensor.shape[0] == 0 or rows not in (None, tensor.shape[0]):
                raise InferenceError(
                    "every input needs the same, non-zero leading (batch) dimension"
                )
            rows = tensor.shape[0]
            array = tensor.array
            batch[meta.name] = array if isinstance(array, torch.Tensor) else torch.from_numpy(array)
        return batch

    def predict(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        device, dtype = self.device, self.dtype
        with torch.inference_mode():
            args = [
                (v.to(device, dtype) if v.is_floating_point() else v.to(device))
                for v in (inputs[m.name] for m in self.inputs)
            ]
            result = self.module(*args)
            outputs = self.name_outputs(result)
            if device.type != "cpu":
                outputs = {n: v.cpu() for n, v in outputs.items()}
        return outputs

    def name_outputs(self, result: Any) -> dict[str, torch.Tensor]:
        """A tensor, a tuple/list of tensors or a dict of tensors, by name: the dict's keys, else
        the declared outputs' names, else output__0, output__1, ..."""
        if isinstance(result, dict):
            return {str(k): v for k, v in result.items()}
        values = list(result) if isinstance(result, tuple | list) else [result]
        if self.output_names is None:
            declared = [m.name for m in self.settings.model_outputs or []]
            self.output_names = (
                declared
                if len(declared) == len(values)
                else [f"output__{i}" for i in range(len(values))]
            )
        if not all(isinstance(v, torch.Tensor) for v in values):
            raise TypeError("the model returned something other than tensors")
        return dict(zip(self.output_names, values, strict=True))


class HandlerModel(Model):
    """A user class: `load(path, device)` (optional), `preprocess(inputs)` (optional),
    `predict(data)`, `postprocess(result)` (optional). `inputs` maps names to numpy arrays (BYTES
    as arrays of `bytes`); the result is one array-like (output__0, or the one declared output's
    name) or a dict of them.

    With `batched = True` on the class, those methods see batches: every input's rows of several
    requests concatenated along the first dimension, and every output must have one row per
    input row (the batcher slices them back request by request)."""

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.handler: Any = None

    def build(self, path: Any) -> None:
        if not self.settings.model_entrypoint:
            raise ValueError("the handler format needs an entrypoint (pkg.module:HandlerClass)")
        if self.settings.dtype != "float32" or self.settings.quantize != "none":
            # Nothing here would apply them: say so rather than serve something else.
            raise ValueError(
                "a handler chooses its own dtype and quantization: leave dtype float32 and "
                "quantize none"
            )
        handler_class = loading.import_entrypoint(self.settings.model_entrypoint, path.parent)
        self.handler = handler_class()
        if not callable(getattr(self.handler, "predict", None)):
            raise TypeError(f"{self.settings.model_entrypoint} has no predict method")
        batched = getattr(handler_class, "batched", False)
        if not isinstance(batched, bool):
            raise TypeError(f"{self.settings.model_entrypoint}.batched must be True or False")
        self.batchable = batched
        if callable(getattr(self.handler, "load", None)):
            self.handler.load(str(path), self.device)

    def warm_up(self) -> None:
        """The handler's own `warmup()` if it has one, else zeros when every input is declared
        numeric (one row, then a full batch for a batched handler); the outputs it gives become
        metadata."""
        if callable(getattr(self.handler, "warmup", None)):
            self.handler.warmup()
            return
        if not self.inputs or any(m.datatype == "BYTES" for m in self.inputs):
            return
        sizes = sorted({1, self.max_batch_rows}) if self.batchable else [1]
        for rows in sizes:
            zeros = {
                n: (v.float() if v.dtype == torch.bfloat16 else v).numpy()
                for n, v in self.warm_up_inputs(rows).items()
            }
            outputs = self.predict(zeros)
            if rows == 1 and not self.outputs:
                self.outputs = [
                    TensorMetadata(
                        name=n, datatype=datatype_of(v), shape=[-1, *v.shape[1:]] if v.ndim else []
                    )
                    for n, v in outputs.items()
                ]

    def prepare(self, inputs: list[Tensor]) -> dict[str, Any]:
        if not self.inputs:  # nothing declared: the handler checks its own inputs
            prepared = {t.name: t.array for t in inputs}
        else:
            by_name = self.check_names(inputs)
            for meta in self.inputs:
                tensor = by_name[meta.name]
                if tensor.datatype != meta.datatype:
                    raise InferenceError(
                        f"input {meta.name}: expected datatype {meta.datatype}, "
                        f"got {tensor.datatype}"
                    )
                check_shape(meta, tensor.shape)
            prepared = {name: t.array for name, t in by_name.items()}
        if self.batchable:  # rows of several requests are joined along the first dimension
            rows = {_leading(v) for v in prepared.values()}
            if len(rows) != 1 or 0 in rows:
                raise InferenceError(
                    "every input needs the same, non-zero leading (batch) dimension"
                )
        return prepared

    def predict(self, inputs: dict[str, Any]) -> dict[str, Array]:
        handler = self.handler
        data = handler.preprocess(inputs) if hasattr(handler, "preprocess") else inputs
        with torch.inference_mode():
            result = handler.predict(data)
        if hasattr(handler, "postprocess"):
            result = handler.postprocess(result)
        if not isinstance(result, dict):  # one output: the declared one's name, if one is
            declared = self.settings.model_outputs or []
            result = {declared[0].name if len(declared) == 1 else "output__0": result}
        outputs = {str(name): as_output(value) for name, value in result.items()}
        if self.batchable:
            rows = _leading(next(iter(inputs.values())))
            if wrong := {n: list(v.shape) for n, v in outputs.items() if _leading(v) != rows}:
                raise ModelFailure(
                    f"a batched handler returns one row per input row: {rows} row(s) in, "
                    f"outputs shaped {wrong}"
                )
        return outputs


def _leading(value: Any) -> int:
    """The first dimension (0 for a scalar)."""
    shape = getattr(value, "shape", ())
    return int(shape[0]) if len(shape) else 0


def create_model(settings: RuntimeSettings) -> Model:
    if settings.model_format == "handler":
        return HandlerModel(settings)
    return TorchModel(settings)
