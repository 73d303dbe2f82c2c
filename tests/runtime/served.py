"""The runtime as its pods run it (hack/harness.py starts it), serving small torch models that
the tests build in temporary directories."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from harness import RuntimeProcess as Runtime
from harness import free_port, save_torchscript, serving, torchscript_env
from harness import mlp as _mlp
from torch import nn

__all__ = [
    "ECHO",
    "WIDTH",
    "Runtime",
    "echo_serving",
    "entrypoint_env",
    "free_port",
    "handler_env",
    "mlp",
    "reference",
    "save_torchscript",
    "serving",
    "torchscript_env",
]

WIDTH = 64


def reference(model: nn.Module, *inputs: torch.Tensor):
    """What the model itself answers, called directly."""
    with torch.inference_mode():
        return model(*inputs)


ECHO = '''
class Echo:
    """Answers every input as an output of the same name."""

    def predict(self, inputs):
        return dict(inputs)
'''


def mlp(sizes: tuple[int, ...] = (WIDTH, 32, 10), seed: int = 0) -> nn.Module:
    return _mlp(sizes, seed)


def entrypoint_env(
    uri: Path, model_format: str, entrypoint: str, name: str, **extra: str
) -> dict[str, str]:
    """Settings that serve a model built by user code (`module:attribute`)."""
    return {
        "TORCHSHIP_MODEL_URI": str(uri),
        "TORCHSHIP_MODEL_FORMAT": model_format,
        "TORCHSHIP_MODEL_ENTRYPOINT": entrypoint,
        "TORCHSHIP_MODEL_NAME": name,
        **extra,
    }


def handler_env(workdir: Path, entrypoint: str, name: str, **extra: str) -> dict[str, str]:
    """A handler class (its module in `workdir`) that needs no model file."""
    (workdir / "unused.bin").write_bytes(b"")
    return entrypoint_env(workdir / "unused.bin", "handler", entrypoint, name, **extra)


@contextlib.contextmanager
def echo_serving(workdir: Path) -> Iterator[Runtime]:
    """The ECHO handler served from `workdir`, as model "echo"."""
    (workdir / "echo.py").write_text(ECHO)
    with serving(workdir, **handler_env(workdir, "echo:Echo", "echo")) as running:
        yield running
