"""Ahead-of-time compilation: the module exported once (torch.export, the batch dimension
dynamic) and compiled by AOTInductor into a package kept on the cache volume. A later start
(a restarted container; with the model cache, the next replica or revision) loads the package:
no tracing, no compiling, no C++ compiler needed, where torch.compile traces the module again
at every start even when its kernels are cached.

The package is named by everything that shapes it: the model file (path, size, modification
time), torch's version, the device, dtype, mode and declared inputs. Another model
or another GPU gets a package of its own; a half-written package is never seen (it is renamed
into place once whole).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree

from .loading import cxx_compiler, cxx_name

log = logging.getLogger("torchship.runtime")

# torch.compile's modes, as AOTInductor configurations; CUDA graphs (reduce-overhead) have no
# ahead-of-time form, and the API refuses that pairing.
MODE_CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "max-autotune": {"max_autotune": True},
    "max-autotune-no-cudagraphs": {"max_autotune": True},
}


def package_key(model_path: Path, device: torch.device, facts: Mapping[str, Any]) -> str:
    """A name for the package of this model file on this device with these settings."""
    stat = model_path.stat()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    identity = {
        "model": str(model_path.resolve()),
        "size": stat.st_size,
        "mtime": stat.st_mtime_ns,
        "torch": torch.__version__,
        "device": device.type,
        "gpu": gpu,
        **facts,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def compile_package(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    mode: str,
    target: Path,
    max_rows: int | None = None,
) -> None:
    """Export `module` with a dynamic batch dimension (any number of rows: a request may bring
    more than a batch) and compile it into the package `target`. `example` has two rows: a size
    of 1 would be specialised."""
    if cxx_compiler() is None:
        raise RuntimeError(
            f"compiling ahead of time needs a C++ compiler ({cxx_name()}) for the first start, "
            "and this image has none: use an image with one (spec.runtime.image) once, with "
            "model.cache so the package is kept, or leave compile off"
        )
    exported = export(module, example, max_rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".pt2")
    os.close(handle)
    try:
        torch._inductor.aoti_compile_and_package(
            exported, package_path=partial, inductor_configs=MODE_CONFIGS[mode]
        )
        os.replace(partial, target)  # whole, or not there: replicas may compile at once
    finally:
        Path(partial).unlink(missing_ok=True)


def export(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...], max_rows: int | None = None
) -> Any:
    """The module's program, every input's first dimension dynamic from one row up to
    `max_rows` (an exported program's own bound; None: any number)."""
    batch = torch.export.Dim("batch", min=1, max=max_rows)
    dynamic = tuple({0: batch} for _ in example)
    try:
        return torch.export.export(module, example, dynamic_shapes=dynamic)
    except Exception as error:
        raise RuntimeError(
            f"torch.export cannot capture this module ({type(error).__name__}: {error}); "
            "compile it just in time instead (leave runtime.compile.aheadOfTime off)"
        ) from error


class Package:
    """A loaded AOTInductor package, called like the module with positional tensors. Loaded
    through torch's C++ loader directly: `torch._inductor.aoti_load_package` would import
    Inductor itself first, a second of every start for nothing."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.out_spec = pytree.treespec_loads(loader.get_call_spec()[1])

    def __call__(self, *args: torch.Tensor) -> Any:
        flat = [a for a in pytree.tree_leaves(args) if isinstance(a, torch.Tensor)]
        return pytree.tree_unflatten(self.loader.boxed_run(flat), self.out_spec)


def load_package(path: Path) -> Callable[..., Any]:
    loader = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    # (path, model name, single-threaded, runners, device index[, stream affinity]): the
    # arguments grew over torch releases; any other form is Inductor's own loader's business.
    for extra in ((False, 1, -1, False), (False, 1, -1)):
        try:
            return Package(loader(str(path), "model", *extra))
        except TypeError:
            continue
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(path))


def ahead_of_time(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    *,
    model_path: Path,
    device: torch.device,
    directory: Path,
    mode: str,
    facts: Mapping[str, Any],
    max_rows: int | None = None,
) -> Callable[..., Any]:
    """The compiled package of `module`: loaded when a previous start left it, else compiled
    now and kept for the next."""
    key = package_key(model_path, device, {"mode": mode, "max_rows": max_rows, **facts})
    path = directory / f"{key}.pt2"
    started = time.perf_counter()
    if path.exists():
        runner = load_package(path)
        log.info("loaded the compiled package %s in %.2f s", path, time.perf_counter() - started)
        return runner
    compile_package(module, example, mode, path, max_rows)
    log.info("compiled %s ahead of time in %.1f s", path, time.perf_counter() - started)
    return load_package(path)
