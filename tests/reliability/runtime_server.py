"""Start the real runtime as a subprocess on 127.0.0.1, configured only by its environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def save_mlp(path: Path, sizes: tuple[int, ...] = (64, 128, 10)) -> torch.nn.Module:
    """A small TorchScript MLP written to `path`; returns the eager module for reference."""
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).eval()
    torch.jit.script(model).save(str(path))
    return model


@dataclass(frozen=True)
class RunningRuntime:
    url: str
    pid: int


@contextmanager
def runtime_server(model_path: Path, tmp: Path, **env: str) -> Iterator[RunningRuntime]:
    """A running runtime serving the TorchScript file `model_path` as model "mlp"."""
    port = free_port()
    environment = {
        **os.environ,
        "TORCHSHIP_MODEL_URI": f"file://{model_path}",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "mlp",
        "TORCHSHIP_MODEL_INPUTS": '[{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}]',
        "TORCHSHIP_HOST": "127.0.0.1",
        "TORCHSHIP_PORT": str(port),
        "TORCHSHIP_MODEL_CACHE_DIR": str(tmp / "cache"),
        "TORCHSHIP_DRAIN_SECONDS": "0",
        "TORCHSHIP_TORCH_THREADS": "1",
        **env,
    }
    log = (tmp / "runtime.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchship_runtime"], env=environment, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError((tmp / "runtime.log").read_text())
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("runtime never became ready")
            time.sleep(0.1)
        yield RunningRuntime(url=base, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
