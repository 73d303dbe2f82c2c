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


def start_runtime(tmp: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """Start the runtime with `env` (TORCHSHIP_* settings); returns (process, base URL)."""
    port = free_port()
    environment = {
        **os.environ,
        "TORCHSHIP_HOST": "127.0.0.1",
        "TORCHSHIP_PORT": str(port),
        "TORCHSHIP_GRPC_PORT": str(free_port()),
        "TORCHSHIP_MODEL_CACHE_DIR": str(tmp / "cache"),
        "TORCHSHIP_DRAIN_SECONDS": "0",
        "TORCHSHIP_TORCH_THREADS": "1",
        **env,
    }
    log = (tmp / "runtime.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchship_runtime"], env=environment, stdout=log, stderr=log
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, base: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"runtime exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("runtime never became ready")
        time.sleep(0.1)


@contextmanager
def runtime_server(tmp: Path, **env: str) -> Iterator[RunningRuntime]:
    """A running, ready runtime configured by `env`."""
    proc, base = start_runtime(tmp, **env)
    try:
        wait_ready(proc, base, tmp / "runtime.log")
        yield RunningRuntime(url=base, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def mlp_env(model_path: Path, name: str = "mlp") -> dict[str, str]:
    """Settings for serving a TorchScript MLP saved by save_mlp."""
    return {
        "TORCHSHIP_MODEL_URI": f"file://{model_path}",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": name,
        "TORCHSHIP_MODEL_INPUTS": '[{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}]',
    }


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
