#!/usr/bin/env python3
"""Serving benchmark, side by side in one run on one machine: the same two models, the same
load generator, the same concurrency levels, every server.

- limit: the model's raw in-process forward throughput at its best batch size (rows/s);
- torchship runtime, batching on and off (JSON), and with binary tensors (HEAVY);
- the KServe Python model server and LitServe with its batching (bench/peers/, installed by
  bench/peers/setup.sh), each as its documentation recommends for a torch model.

The load generator and the torchship server are runtime_bench's: a raw asyncio HTTP/1.1 client
over keep-alive connections on loopback (one per simulated user), bounded in time, with one
answer of every cell checked against the model. Prints a table with ratios, writes JSON and a
PNG.

    bench/peers/setup.sh        # once: the peers in .venv-peers
    .venv/bin/python bench/serving_bench.py --json bench/results/serving.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import models  # noqa: E402
from procstat import pyplot  # noqa: E402
from runtime_bench import (  # noqa: E402
    Runtime,
    Server,
    binary_request,
    decode_output,
    drive,
    json_request,
    raw_forward,
)

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


class Peer(Server):
    """A peer server (bench/peers/<script>) in the peers' environment."""

    def __init__(self, workdir: Path, script: str, model: str, health: str) -> None:
        command = [str(PEERS_PYTHON), str(ROOT / "bench" / "peers" / script), "--model", model]
        super().__init__(command, workdir / f"{script}-{model}.log", health)


def measure(
    cell: tuple[str, str, bool], port: int, raw: bytes, concurrency: int, seconds: float, check
) -> Cell:
    """One server at one concurrency; `cell` is (model, server, binary answer)."""
    model, server, binary = cell
    load, sample = uvloop.run(drive(port, raw, concurrency, min(1.0, seconds / 3), seconds))
    got = decode_output(sample, binary=binary)
    if not np.allclose(got, check, atol=1e-4):
        raise AssertionError(f"{server} on {model}: the answer differs from the model's")
    latencies = sorted(load.latencies) or [float("nan")]
    return Cell(
        model=model,
        server=server,
        concurrency=concurrency,
        requests_per_s=round(load.completed / seconds, 1),
        p50_ms=round(1000 * statistics.median(latencies), 2),
        p99_ms=round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        errors=load.errors,
    )


def servers(model: str, tmp: Path, width: int, threads: int, peers: bool) -> list:
    """(label, start, request, binary answer) for every server of the run, in table order."""
    path = tmp / f"{model}.pt"
    torch.jit.script(models.build(model)).save(str(path))
    row = np.random.default_rng(0).standard_normal(width).astype(np.float32)
    env = {
        "TORCHSHIP_TORCH_THREADS": str(threads),
        "TORCHSHIP_MAX_BATCH_SIZE": "32",
        "TORCHSHIP_MAX_DELAY_MS": "5",
        "TORCHSHIP_LOG_LEVEL": "warning",
    }
    on = partial(Runtime, tmp, path, model, width, **env)
    off = partial(Runtime, tmp, path, model, width, **env, TORCHSHIP_BATCHING="false")
    table = [
        ("torchship", on, json_request(model, row), False),
        ("torchship, batching off", off, json_request(model, row), False),
    ]
    if model == "heavy":
        table.append(("torchship, binary tensors", on, binary_request(model, row), True))
    if peers:
        kserve = partial(Peer, tmp, "kserve_server.py", model, "/v2/health/ready")
        litserve = partial(Peer, tmp, "litserve_server.py", model, "/health")
        table += [
            ("kserve", kserve, json_request(model, row), False),
            ("litserve, batching", litserve, json_request(model, row), False),
        ]
    return table


def report(cells: list[Cell], limits: dict[str, tuple[float, int]]) -> str:
    lines = []
    for model, (limit, batch) in limits.items():
        lines.append(f"\n{model.upper()}: raw forward limit {limit:,.0f} rows/s (batch {batch})")
        lines.append(
            "| server | c | req/s | p50 ms | p99 ms | errors | / limit | torchship / this |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        ours = {c.concurrency: c for c in cells if c.model == model and c.server == "torchship"}
        for c in (c for c in cells if c.model == model):
            mine = ours.get(c.concurrency)
            versus = f"{mine.requests_per_s / c.requests_per_s:.2f}x" if c.requests_per_s else "-"
            lines.append(
                f"| {c.server} | {c.concurrency} | {c.requests_per_s:,.0f} | {c.p50_ms} | "
                f"{c.p99_ms} | {c.errors} | {c.requests_per_s / limit:.2f} | "
                f"{versus if mine else '-'} |"
            )
    return "\n".join(lines)


def plot(cells: list[Cell], limits: dict[str, tuple[float, int]], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    colours = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(c.server for c in cells))}
    fig, axes = plt.subplots(1, len(limits), figsize=(6 * len(limits), 4))
    for ax, model in zip(np.atleast_1d(axes), limits, strict=True):
        for server in dict.fromkeys(c.server for c in cells if c.model == model):
            row = [c for c in cells if c.model == model and c.server == server]
            x, y = [c.concurrency for c in row], [c.requests_per_s for c in row]
            ax.plot(x, y, marker="o", color=colours[server], label=server)
        ax.axhline(limits[model][0], linestyle="--", color="grey", label="raw forward limit")
        ax.set_title(f"{model.upper()} model")
        ax.set_xlabel("concurrency")
        ax.set_ylabel("requests/s")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.legend(fontsize="small")
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

    torch.set_num_threads(args.threads)
    peers = not args.no_peers and PEERS_PYTHON.exists()
    if not peers and not args.no_peers:
        print("peers not installed: run bench/peers/setup.sh (skipping them)", file=sys.stderr)
    limits: dict[str, tuple[float, int]] = {}
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="torchship-serving-") as tmp_dir:
        tmp = Path(tmp_dir)
        for model in args.models:
            width = models.input_width(model)
            module = models.build(model)
            raw = raw_forward(module, width, args.seconds)
            limits[model] = (round(raw.throughput, 1), raw.batch_size or 1)
            row = np.random.default_rng(0).standard_normal(width).astype(np.float32)
            with torch.inference_mode():
                check = module(torch.from_numpy(row)[None]).numpy().ravel()
            for server, start, request, binary in servers(model, tmp, width, args.threads, peers):
                process = start()
                try:
                    for c in args.concurrency:
                        what = (model, server, binary)
                        cell = measure(what, process.port, request, c, args.seconds, check)
                        print(json.dumps(asdict(cell)), flush=True)
                        cells.append(cell)
                finally:
                    process.stop()
    print(report(cells, limits))
    print(
        f"\nmachine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores usable, "
        f"torch {torch.__version__}, {args.threads} torch threads, load generator on the same host"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"limits": limits, "cells": [asdict(c) for c in cells]}, indent=2)
    )
    plot(cells, limits, args.json.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
