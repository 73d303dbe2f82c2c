"""Served throughput and latency of the torchship runtime next to the model's raw forward pass.

    .venv/bin/python bench/runtime_bench.py [--seconds 3] [--quick] [--json PATH]

One run on one machine, printed as one table: for SMALL (MLP 64->128->10) and HEAVY (MLP
1024->4096->4096->1024), the raw in-process forward throughput at the best batch size, then the
runtime (one server process, torch with --threads threads, batching on) at concurrency 1, 16 and
64 with JSON bodies, HEAVY also with the binary tensor data extension, and SMALL at concurrency 1
with batching off (the latency that batching must not add). The load generator is a raw asyncio
HTTP/1.1 client on keep-alive connections (uvloop, pre-encoded bodies, no JSON decoding of
responses except one checked per cell), on the same host as the server. Results go to --json as
well.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models

ROOT = Path(__file__).resolve().parent.parent


# -- the load generator ---------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._maybe_done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("closed by the server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def _maybe_done(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower() + b"\r\n"
        start = head.find(b"\r\ncontent-length:") + 17
        length = int(head[start : head.find(b"\r\n", start)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.waiter.set_result((status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


@dataclass
class Load:
    completed: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


async def drive(
    port: int, raw: bytes, concurrency: int, warmup: float, seconds: float
) -> tuple[Load, bytes]:
    loop = asyncio.get_running_loop()
    connections = [
        (await loop.create_connection(Connection, "127.0.0.1", port))[1] for _ in range(concurrency)
    ]
    status, sample = await connections[0].request(raw)
    if status != 200:
        raise RuntimeError(f"the server answered {status}: {sample[:300]!r}")
    load = Load()
    started = time.perf_counter()
    measure_from, stop_at = started + warmup, started + warmup + seconds

    async def worker(conn: Connection) -> None:
        while (now := time.perf_counter()) < stop_at:
            status, _ = await conn.request(raw)
            done = time.perf_counter()
            if now >= measure_from:
                if status == 200:
                    load.completed += 1
                    load.latencies.append(done - now)
                else:
                    load.errors += 1

    await asyncio.gather(*(worker(c) for c in connections))
    for conn in connections:
        conn.transport.close()
    return load, sample


def http_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_request(name: str, row: np.ndarray) -> bytes:
    doc = {
        "inputs": [
            {
                "name": "input__0",
                "datatype": "FP32",
                "shape": [1, row.size],
                "data": row.tolist(),
            }
        ]
    }
    body = json.dumps(doc).encode()
    return http_request(f"/v2/models/{name}/infer", body, {"Content-Type": "application/json"})


def binary_request(name: str, row: np.ndarray) -> bytes:
    raw = row.astype(np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input__0",
                    "datatype": "FP32",
                    "shape": [1, row.size],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "output__0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return http_request(
        f"/v2/models/{name}/infer",
        header + raw,
        {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )


def decode_output(body: bytes, binary: bool) -> np.ndarray:
    if binary:
        # The JSON header ends where its braces balance; the raw tensor follows.
        depth, end = 0, 0
        for i, c in enumerate(body):
            depth += (c == ord("{")) - (c == ord("}"))
            if depth == 0:
                end = i + 1
                break
        return np.frombuffer(body[end:], dtype=np.float32)
    return np.asarray(json.loads(body)["outputs"][0]["data"], dtype=np.float32)


# -- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Runtime:
    """`python -m torchship_runtime` in a subprocess, configured by its environment."""

    def __init__(self, workdir: Path, model_path: Path, name: str, width: int, **env: str):
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        inputs = [{"name": "input__0", "datatype": "FP32", "shape": [-1, width]}]
        environment = {
            **os.environ,
            "TORCHSHIP_MODEL_URI": str(model_path),
            "TORCHSHIP_MODEL_FORMAT": "torchscript",
            "TORCHSHIP_MODEL_NAME": name,
            "TORCHSHIP_MODEL_INPUTS": json.dumps(inputs),
            "TORCHSHIP_HOST": "127.0.0.1",
            "TORCHSHIP_PORT": str(self.port),
            "TORCHSHIP_DEVICE": "cpu",
            "TORCHSHIP_DRAIN_SECONDS": "0",
            "TORCHSHIP_MODEL_CACHE_DIR": str(workdir / "cache"),
            **env,
        }
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT / "runtime"), environment.get("PYTHONPATH")])
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "torchship_runtime"],
            env=environment,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the runtime exited:\n{self.log.read_text()}")
            try:
                url = f"http://127.0.0.1:{self.port}/v2/health/ready"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the runtime never became ready")
            time.sleep(0.1)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the measurements -----------------------------------------------------------------------


@dataclass
class Cell:
    model: str
    mode: str  # "raw", "json", "binary", "json, batching off"
    concurrency: int
    throughput: float  # requests (rows for raw) per second
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch: float | None = None
    errors: int = 0
    batch_size: int | None = None  # raw: the best batch size


def raw_forward(module: torch.nn.Module, width: int, seconds: float) -> Cell:
    """Rows per second of the bare forward pass, best over batch sizes up to 64."""
    best: tuple[float, int] = (0.0, 1)
    with torch.inference_mode():
        for batch in (1, 8, 16, 32, 64):
            x = torch.randn(batch, width)
            module(x)
            rows, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds / 5:
                module(x)
                rows += batch
            best = max(best, (rows / elapsed, batch))
    return Cell(model="", mode="raw forward", concurrency=0, throughput=best[0], batch_size=best[1])


def served(
    runtime: Runtime,
    model: str,
    mode: str,
    raw: bytes,
    concurrency: int,
    seconds: float,
    check: np.ndarray,
) -> Cell:
    batches_before = runtime.metric("torchship_batch_size_count")
    rows_before = runtime.metric("torchship_batch_size_sum")
    load, sample = uvloop.run(drive(runtime.port, raw, concurrency, min(1.0, seconds / 3), seconds))
    got = decode_output(sample, binary="binary" in mode)
    if not np.allclose(got, check, atol=1e-4):
        raise AssertionError(f"{model} {mode}: the served output differs from the model's")
    batches = runtime.metric("torchship_batch_size_count") - batches_before
    rows = runtime.metric("torchship_batch_size_sum") - rows_before
    latencies = sorted(load.latencies) or [float("nan")]
    return Cell(
        model=model,
        mode=mode,
        concurrency=concurrency,
        throughput=load.completed / seconds,
        p50_ms=1000 * statistics.median(latencies),
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        mean_batch=rows / batches if batches else None,
        errors=load.errors,
    )


def bench_model(name: str, args: argparse.Namespace, workdir: Path) -> list[Cell]:
    module = models.build(name)
    width = models.input_width(name)
    path = workdir / f"{name}.pt"
    torch.jit.script(module).save(str(path))
    raw = raw_forward(module, width, args.seconds)
    raw.model = name
    cells = [raw]
    row = np.random.default_rng(0).standard_normal(width).astype(np.float32)
    with torch.inference_mode():
        check = module(torch.from_numpy(row)[None]).numpy().ravel()
    common = {
        "TORCHSHIP_TORCH_THREADS": str(args.threads),
        "TORCHSHIP_MAX_BATCH_SIZE": str(args.max_batch_size),
        "TORCHSHIP_MAX_DELAY_MS": str(args.max_delay_ms),
    }
    concurrencies = (1, 64) if args.quick else (1, 16, 64)
    runtime = Runtime(workdir, path, name, width, **common)
    try:
        for c in concurrencies:
            cells.append(
                served(runtime, name, "json", json_request(name, row), c, args.seconds, check)
            )
        if name == "heavy":
            for c in concurrencies[1:]:
                request = binary_request(name, row)
                cells.append(served(runtime, name, "binary", request, c, args.seconds, check))
    finally:
        runtime.stop()
    if name == "small":
        runtime = Runtime(workdir, path, name, width, **common, TORCHSHIP_BATCHING="false")
        try:
            request = json_request(name, row)
            cells.append(
                served(runtime, name, "json, batching off", request, 1, args.seconds, check)
            )
        finally:
            runtime.stop()
    return cells


def table(cells: list[Cell]) -> str:
    lines = [
        f"{'model':6} {'mode':19} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'batch':>6} {'vs raw':>7}",
    ]
    raw = {c.model: c.throughput for c in cells if c.mode == "raw forward"}
    for c in cells:
        if c.mode == "raw forward":
            lines.append(
                f"{c.model:6} {'raw forward':19} {'':>4} {c.throughput:9.0f} {'':>8} {'':>8} "
                f"{c.batch_size:6d} {'1.00':>7}   (rows/s at the best batch size)"
            )
            continue
        lines.append(
            f"{c.model:6} {c.mode:19} {c.concurrency:4d} {c.throughput:9.0f} {c.p50_ms:8.2f} "
            f"{c.p99_ms:8.2f} {c.mean_batch or 0:6.1f} {c.throughput / raw[c.model]:7.2f}"
            + (f"   {c.errors} errors" if c.errors else "")
        )
    heavy = {(c.mode, c.concurrency): c.throughput for c in cells if c.model == "heavy"}
    for c in (16, 64):
        if ("binary", c) in heavy and ("json", c) in heavy:
            ratio = heavy[("binary", c)] / heavy[("json", c)]
            lines.append(f"heavy binary / json at concurrency {c}: {ratio:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--models", default="small,heavy")
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 64 only")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "runtime_bench.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="torchship-bench-") as tmp:
        for name in args.models.split(","):
            cells += bench_model(name, args, Path(tmp))
    print(
        f"torchship runtime benchmark: {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} torch threads, max batch "
        f"{args.max_batch_size}, max delay {args.max_delay_ms} ms, {args.seconds}s per cell"
    )
    print(table(cells))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "load_average_before": os.getloadavg(),
                    "torch": torch.__version__,
                },
                "settings": vars(args),
                "cells": [asdict(c) for c in cells],
            },
            indent=2,
        )
    )
    print(f"results written to {out}")


if __name__ == "__main__":
    main()
