"""The runtime as its pods run it: `python -m torchship_runtime` in a subprocess on 127.0.0.1,
configured only by TORCHSHIP_* environment variables, serving small torch models that the tests
build in temporary directories."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

WIDTH = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mlp(sizes: tuple[int, ...] = (WIDTH, 32, 10), seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def save_torchscript(model: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, still the format
        torch.jit.script(model).save(str(path))
    return path


def reference(model: nn.Module, *inputs: torch.Tensor):
    """What the model itself answers, called directly."""
    with torch.inference_mode():
        return model(*inputs)


def unverified() -> ssl.SSLContext:
    """For readiness only: over TLS, whatever certificate the runtime serves will do."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Runtime:
    """One runtime process; `url` once it answers ready."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.grpc_port = free_port()
        self.tls = bool(env.get("TORCHSHIP_TLS_CERT_FILE"))
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.log = workdir / f"runtime-{self.port}.log"
        environment = {
            **os.environ,
            "TORCHSHIP_HOST": "127.0.0.1",
            "TORCHSHIP_PORT": str(self.port),
            "TORCHSHIP_GRPC_PORT": str(self.grpc_port),
            "TORCHSHIP_MODEL_CACHE_DIR": str(workdir / "cache"),
            "TORCHSHIP_DRAIN_SECONDS": "0",
            "TORCHSHIP_TORCH_THREADS": "1",
            "TORCHSHIP_DEVICE": "cpu",
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "torchship_runtime"],
            env=environment,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> Runtime:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"runtime exited {self.proc.returncode}:\n{self.output()}")
            try:
                context = unverified() if self.tls else None
                ready = f"{self.url}/v2/health/ready"
                with urllib.request.urlopen(ready, timeout=2, context=context) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"runtime never became ready:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def serving(workdir: Path, **env: str) -> Iterator[Runtime]:
    """A ready runtime for a `with` block (module-scoped fixtures use this)."""
    runtime = Runtime(workdir, env)
    try:
        yield runtime.wait_ready()
    finally:
        runtime.stop()


def torchscript_env(path: Path, name: str = "mlp", **extra: str) -> dict[str, str]:
    return {
        "TORCHSHIP_MODEL_URI": f"file://{path}",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": name,
        **extra,
    }
