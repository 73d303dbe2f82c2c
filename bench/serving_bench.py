#!/usr/bin/env python3
"""Serving benchmark, side by side in one run on one machine: the same two models, the same
load generator, the same concurrency levels, every server.

- limit: the model's raw in-process forward throughput at its best batch size (rows/s);
- torchship runtime, batching on and off (JSON), and with binary tensors (HEAVY);
- the KServe Python model server and LitServe (bench/peers/, installed by bench/peers/setup.sh).

The load generator is a raw asyncio HTTP/1.1 client over keep-alive connections on loopback
(one per simulated user), bounded in time. Prints a table with ratios, writes JSON and a PNG.

    bench/peers/setup.sh        # once: the peers in .venv-peers
    .venv/bin/python bench/serving_bench.py --json bench/results/serving.json
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import models  # noqa: E402

PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


@dataclass
class Cell:
    model: str
    server: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the physical limit --------------------------------------------------------------------


def raw_limit(name: str, threads: int, seconds: float = 2.0) -> tuple[float, int]:
    """Best rows/s of the bare forward pass over batch sizes, and that batch size."""
    torch.set_num_threads(threads)
    module = models.build(name)
    width = models.input_width(name)
    best = (0.0, 1)
    with torch.inference_mode():
        for batch in (1, 8, 32, 64, 128):
            x = torch.randn(batch, width)
            module(x)
            rows, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds / 5:
                module(x)
                rows += batch
            best = max(best, (rows / (time.perf_counter() - started), batch))
    return best


# -- requests ------------------------------------------------------------------------------


def json_request(path: str, width: int) -> bytes:
    row = np.random.default_rng(0).standard_normal(width).astype(np.float32)
    body = json.dumps(
        {
            "inputs": [
                {"name": "input__0", "datatype": "FP32", "shape": [1, width], "data": row.tolist()}
            ]
        }
    ).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def binary_request(path: str, width: int) -> bytes:
    row = np.random.default_rng(0).standard_normal(width).astype(np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input__0",
                    "datatype": "FP32",
                    "shape": [1, width],
                    "parameters": {"binary_data_size": len(row)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = header + row
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# -- load generator ------------------------------------------------------------------------


async def user(port: int, request: bytes, until: float, latencies: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            at = lower.find(b"content-length:")
            length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
            await reader.readexactly(length)
            if head[9:12] != b"200":
                errors.append(head[9:12])
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def load(port: int, request: bytes, concurrency: int, seconds: float) -> tuple[list, list]:
    warm_until = time.perf_counter() + min(1.0, seconds / 3)
    await asyncio.gather(*(user(port, request, warm_until, [], []) for _ in range(concurrency)))
    latencies: list[float] = []
    errors: list = []
    until = time.perf_counter() + seconds
    await asyncio.gather(
        *(user(port, request, until, latencies, errors) for _ in range(concurrency))
    )
    return latencies, errors


def measure(
    model: str, server: str, port: int, request: bytes, concurrency: int, seconds: float
) -> Cell:
    import uvloop

    started = time.perf_counter()
    latencies, errors = uvloop.run(load(port, request, concurrency, seconds))
    elapsed = time.perf_counter() - started - min(1.0, seconds / 3)
    latencies.sort()
    return Cell(
        model=model,
        server=server,
        concurrency=concurrency,
        requests_per_s=round(len(latencies) / elapsed, 1),
        p50_ms=round(statistics.median(latencies) * 1000, 2),
        p99_ms=round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        errors=len(errors),
    )


# -- servers -------------------------------------------------------------------------------


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


def start_torchship(
    name: str, tmp: Path, batching: bool, threads: int
) -> tuple[subprocess.Popen, int]:
    path = tmp / f"{name}.pt"
    if not path.exists():
        torch.jit.script(models.build(name)).save(str(path))
    port = free_port()
    env = {
        **os.environ,
        "TORCHSHIP_MODEL_URI": str(path),
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": name,
        "TORCHSHIP_HOST": "127.0.0.1",
        "TORCHSHIP_PORT": str(port),
        "TORCHSHIP_BATCHING": "true" if batching else "false",
        "TORCHSHIP_MAX_BATCH_SIZE": "64",
        "TORCHSHIP_MAX_DELAY_MS": "5",
        "TORCHSHIP_TORCH_THREADS": str(threads),
        "TORCHSHIP_MODEL_CACHE_DIR": str(tmp / "cache"),
        "TORCHSHIP_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchship_runtime"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(proc, f"http://127.0.0.1:{port}/v2/health/ready")
    return proc, port


def start_peer(script: str, name: str, extra: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(PEERS_PYTHON),
            str(ROOT / "bench" / "peers" / script),
            "--model",
            name,
            "--port",
            str(port),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    health = "/v2/health/ready" if script.startswith("kserve") else "/health"
    wait_ready(proc, f"http://127.0.0.1:{port}{health}")
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- report ----------------------------------------------------------------------------------


def report(cells: list[Cell], limits: dict[str, tuple[float, int]]) -> str:
    lines = []
    for model in limits:
        limit, batch = limits[model]
        lines.append(f"\n{model.upper()}: raw forward limit {limit:,.0f} rows/s (batch {batch})")
        lines.append(
            "| server | c | req/s | p50 ms | p99 ms | errors | / limit | torchship / this |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        ours = {c.concurrency: c for c in cells if c.model == model and c.server == "torchship"}
        for c in (c for c in cells if c.model == model):
            mine = ours.get(c.concurrency)
            versus = (
                f"{mine.requests_per_s / c.requests_per_s:.2f}x"
                if mine and c.requests_per_s
                else "-"
            )
            lines.append(
                f"| {c.server} | {c.concurrency} | {c.requests_per_s:,.0f} | {c.p50_ms} | "
                f"{c.p99_ms} | {c.errors} | {c.requests_per_s / limit:.2f} | {versus} |"
            )
    return "\n".join(lines)


def plot(cells: list[Cell], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e .[bench]): no plot", file=sys.stderr)
        return
    names = sorted({c.model for c in cells})
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4))
    for ax, model in zip(np.atleast_1d(axes), names, strict=True):
        for server in dict.fromkeys(c.server for c in cells if c.model == model):
            row = [c for c in cells if c.model == model and c.server == server]
            ax.plot(
                [c.concurrency for c in row],
                [c.requests_per_s for c in row],
                marker="o",
                label=server,
            )
        ax.set_title(f"{model.upper()} model")
        ax.set_xlabel("concurrency")
        ax.set_ylabel("requests/s")
        ax.set_xscale("log", base=2)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["small", "heavy"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    args = parser.parse_args()

    limits = {m: raw_limit(m, args.threads) for m in args.models}
    cells: list[Cell] = []
    peers = not args.no_peers and PEERS_PYTHON.exists()
    if not peers and not args.no_peers:
        print("peers not installed: run bench/peers/setup.sh (skipping them)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for model in args.models:
            width = models.input_width(model)
            path = f"/v2/models/{model}/infer"
            servers = [
                (
                    "torchship",
                    lambda m=model: start_torchship(m, tmp, True, args.threads),
                    json_request,
                ),
                (
                    "torchship, batching off",
                    lambda m=model: start_torchship(m, tmp, False, args.threads),
                    json_request,
                ),
            ]
            if model == "heavy":
                servers.append(
                    (
                        "torchship, binary tensors",
                        lambda m=model: start_torchship(m, tmp, True, args.threads),
                        binary_request,
                    )
                )
            if peers:
                servers += [
                    ("kserve", lambda m=model: start_peer("kserve_server.py", m, []), json_request),
                    (
                        "litserve, batching",
                        lambda m=model: start_peer("litserve_server.py", m, []),
                        json_request,
                    ),
                ]
            for server, start, request in servers:
                proc, port = start()
                try:
                    for c in args.concurrency:
                        cell = measure(model, server, port, request(path, width), c, args.seconds)
                        print(json.dumps(asdict(cell)), flush=True)
                        cells.append(cell)
                finally:
                    stop(proc)
    print(report(cells, limits))
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} torch threads, load generator on the same host"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"limits": limits, "cells": [asdict(c) for c in cells]}, indent=2)
    )
    plot(cells, args.json.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
