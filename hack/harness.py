"""Local processes for the tools in hack/, the tests and the benchmarks: free ports, waiting for
an HTTP 200, stopping (terminate, then kill), the runtime and the operator started the way their
pods run them, and the benchmark MLP. Standard library only; `mlp` imports torch when called.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(
    url: str,
    *,
    timeout: float,
    alive: Callable[[], None] | None = None,
    context: ssl.SSLContext | None = None,
    interval: float = 0.1,
    what: str = "",
) -> None:
    """Poll `url` until it answers 200. `alive` raises when the process behind it died, so a
    crash fails at once instead of at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, context=context, timeout=5) as answer,
        ):
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or url} did not answer 200 within {timeout:g}s")
        time.sleep(interval)


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, and SIGKILL after `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_group(proc: subprocess.Popen, timeout: float = 15) -> None:
    """The same for a process started with `start_new_session` and every process it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_tool(
    argv: Sequence[str],
    *,
    input: str | None = None,  # noqa: A002 (mirrors subprocess.run)
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """A command-line tool (kubectl, helm) run to its end, its output captured; with `check`, a
    failure raises RuntimeError with what the tool said."""
    proc = subprocess.run(
        list(argv),
        input=input,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        command = " ".join([Path(argv[0]).name, *argv[1:]])
        raise RuntimeError(f"{command} failed:\n{proc.stderr}{proc.stdout}")
    return proc


def unverified() -> ssl.SSLContext:
    """For readiness only: over TLS, whatever certificate the server presents will do."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def python_env(base: Mapping[str, str] | None = None, **env: str) -> dict[str, str]:
    """An environment whose Python finds this checkout's packages first."""
    environment = {**(os.environ if base is None else base), **env}
    paths = [str(ROOT / p) for p in ("operator", "runtime", "sdk")]
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [*paths, environment.get("PYTHONPATH")])
    )
    return environment


# -- the runtime ------------------------------------------------------------------------------


class RuntimeProcess:
    """`python -m torchship_runtime` on 127.0.0.1, configured only by TORCHSHIP_* variables;
    `url` answers once `wait_ready` returns."""

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str],
        *,
        new_session: bool = False,
        command: Sequence[str] = (sys.executable, "-m", "torchship_runtime"),
    ) -> None:
        """`command` starts the runtime (another front end over the same runtime, for one)."""
        self.port = free_port()
        self.grpc_port = free_port()
        self.tls = bool(env.get("TORCHSHIP_TLS_CERT_FILE"))
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.log = workdir / f"runtime-{self.port}.log"
        defaults = {
            "TORCHSHIP_HOST": "127.0.0.1",
            "TORCHSHIP_PORT": str(self.port),
            "TORCHSHIP_GRPC_PORT": str(self.grpc_port),
            "TORCHSHIP_MODEL_CACHE_DIR": str(workdir / "cache"),
            "TORCHSHIP_DRAIN_SECONDS": "0",
            "TORCHSHIP_TORCH_THREADS": "1",
            "TORCHSHIP_DEVICE": "cpu",
        }
        environment = python_env(**(defaults | dict(env)))
        self.new_session = new_session
        self.proc = subprocess.Popen(
            list(command),
            env=environment,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"runtime exited {self.proc.returncode}:\n{self.output()}")

    def wait_ready(self, timeout: float = 90) -> RuntimeProcess:
        return self.wait_for("/v2/health/ready", timeout)

    def wait_for(self, path: str, timeout: float = 90) -> RuntimeProcess:
        """Until `path` answers 200 (a health endpoint: ready, live, started)."""
        context = unverified() if self.tls else None
        try:
            wait_http(
                f"{self.url}{path}",
                timeout=timeout,
                alive=self.alive,
                context=context,
                interval=0.05,
                what="the runtime",
            )
        except TimeoutError as error:
            raise TimeoutError(f"{error}:\n{self.output()}") from None
        return self

    def stop(self) -> None:
        if self.new_session:
            stop_group(self.proc)
        else:
            stop(self.proc, 20)


@contextlib.contextmanager
def serving(workdir: Path, **env: str) -> Iterator[RuntimeProcess]:
    """A ready runtime for a `with` block."""
    runtime = RuntimeProcess(workdir, env)
    try:
        yield runtime.wait_ready()
    finally:
        runtime.stop()


def torchscript_env(path: Path, name: str = "mlp", **extra: str) -> dict[str, str]:
    """Settings that serve the TorchScript file at `path` as model `name`."""
    return {
        "TORCHSHIP_MODEL_URI": f"file://{path}",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": name,
        **extra,
    }


# -- the operator -----------------------------------------------------------------------------


@dataclass
class OperatorProcess:
    proc: subprocess.Popen
    log: Path
    metrics_port: int
    health_port: int


def start_operator(env: Mapping[str, str], log: Path, **settings: str) -> OperatorProcess:
    """`python -m torchship_operator` with `env` (KUBECONFIG among it) and TORCHSHIP_* settings;
    its metrics and health ports are free ones."""
    metrics_port, health_port = free_port(), free_port()
    defaults = {
        "TORCHSHIP_METRICS_PORT": str(metrics_port),
        "TORCHSHIP_HEALTH_PORT": str(health_port),
        "TORCHSHIP_LOG_LEVEL": "INFO",
    }
    environment = python_env(env, **(defaults | settings))
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchship_operator"],
        env=environment,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return OperatorProcess(proc, log, metrics_port, health_port)


@contextlib.contextmanager
def file_server(
    root: Path,
    address: str = "127.0.0.1",
    *,
    hits: list[str] | None = None,
    delay: float = 0.0,
    rate: float | None = None,
) -> Iterator[str]:
    """A web server for the files under `root` on `address` (loopback, or the host's address
    towards the real node); yields its base URL. Each request's path goes into `hits`; every
    answer waits `delay` seconds first and, with `rate` (bytes per second), is sent no faster
    than a remote store would send it."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            if hits is not None:
                hits.append(self.path)
            time.sleep(delay)
            super().do_GET()

        def copyfile(self, source: Any, destination: Any) -> None:
            if rate is None:
                return super().copyfile(source, destination)
            started, sent = time.monotonic(), 0
            while block := source.read(1 << 20):
                destination.write(block)
                sent += len(block)
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# -- the benchmark model ----------------------------------------------------------------------


def mlp(sizes: tuple[int, ...] = (64, 128, 10), seed: int = 0) -> Any:
    """An MLP (Linear and ReLU layers) with seeded weights, in eval mode: the same module for
    every server under test and every test that serves one."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def save_torchscript(module: Any, path: Path) -> Path:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, still the format
        torch.jit.script(module).save(str(path))
    return path
