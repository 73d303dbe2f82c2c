#!/usr/bin/env python3
"""Serving benchmark, side by side in one run on one machine: the same two models, the same
load generator, the same concurrency levels, every server.

- limit: the model's raw in-process forward throughput at its best batch size (rows/s);
- torchship runtime, batching on and off (JSON), with binary tensors (HEAVY), and over OIP gRPC;
- the KServe Python model server (REST JSON and its own OIP gRPC server) and LitServe with its
  batching (bench/peers/, installed by bench/peers/setup.sh), each as its documentation
  recommends for a torch model.

The load generators and the torchship server are runtime_bench's: a raw asyncio HTTP/1.1 client
over keep-alive connections on loopback (one per simulated user), and a grpc.aio client sending
pre-serialized messages (one HTTP/2 connection per 16 users), bounded in time, with one answer
of every cell checked against the model. Prints a table with ratios, writes JSON and a PNG.

    bench/peers/setup.sh        # once: the peers in .venv-peers
    .venv/bin/python bench/serving_bench.py --json bench/results/serving.json
    .venv/bin/python bench/serving_bench.py --set grpc   # gRPC vs REST JSON/binary vs KServe gRPC
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
sys.path.insert(0, str(ROOT / "hack"))  # a script: the shared harness lives in hack/
import models  # noqa: E402
from harness import free_port  # noqa: E402
from procstat import pyplot  # noqa: E402
from runtime_bench import (  # noqa: E402
    Runtime,
    Server,
    binary_request,
    decode_grpc_output,
    decode_output,
    drive,
    drive_grpc,
    grpc_request,
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

    def __init__(
        self, workdir: Path, script: str, model: str, health: str, grpc: bool = False
    ) -> None:
        command = [str(PEERS_PYTHON), str(ROOT / "bench" / "peers" / script), "--model", model]
        self.grpc_port = free_port() if grpc else 0
        if grpc:
            command += ["--grpc-port", str(self.grpc_port)]
        super().__init__(command, workdir / f"{script}-{model}.log", health)


def measure(
    cell: tuple[str, str, str], process: Server, raw: bytes, concurrency: int, seconds: float, check
) -> Cell:
    """One server at one concurrency; `cell` is (model, server, answer: json, binary or grpc)."""
    model, server, answer = cell
    warmup = min(1.0, seconds / 3)
    if answer == "grpc":
        drive_it = drive_grpc(process.grpc_port, raw, concurrency, warmup, seconds)
    else:
        drive_it = drive(process.port, raw, concurrency, warmup, seconds)
    load, sample = uvloop.run(drive_it)
    if answer == "grpc":
        got = decode_grpc_output(sample)
    else:
        got = decode_output(sample, binary=answer == "binary")
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


def servers(model: str, tmp: Path, width: int, threads: int, peers: bool, only_grpc: bool) -> list:
    """(label, start, request, answer) for every server of the run, in table order; with
    `only_grpc`, the gRPC comparison: torchship REST JSON, REST binary, gRPC, KServe gRPC."""
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
    grpc = ("torchship, gRPC", on, grpc_request(model, row), "grpc")
    kserve_grpc = partial(Peer, tmp, "kserve_server.py", model, "/v2/health/ready", grpc=True)
    if only_grpc:
        table = [
            ("torchship", on, json_request(model, row), "json"),
            ("torchship, binary tensors", on, binary_request(model, row), "binary"),
            grpc,
        ]
        if peers:
            table.append(("kserve, gRPC", kserve_grpc, grpc_request(model, row), "grpc"))
        return table
    table = [
        ("torchship", on, json_request(model, row), "json"),
        ("torchship, batching off", off, json_request(model, row), "json"),
    ]
    if model == "heavy":
        table.append(("torchship, binary tensors", on, binary_request(model, row), "binary"))
    table.append(grpc)
    if peers:
        kserve = partial(Peer, tmp, "kserve_server.py", model, "/v2/health/ready")
        litserve = partial(Peer, tmp, "litserve_server.py", model, "/health")
        table += [
            ("kserve", kserve, json_request(model, row), "json"),
            ("kserve, gRPC", kserve_grpc, grpc_request(model, row), "grpc"),
            ("litserve, batching", litserve, json_request(model, row), "json"),
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


def grpc_targets(cells: list[Cell]) -> list[str]:
    """The gRPC targets, each with its figures and whether it was met."""
    by = {(c.model, c.server, c.concurrency): c for c in cells}
    lines = []
    for model in dict.fromkeys(c.model for c in cells):
        ours, kserve = by.get((model, "torchship, gRPC", 64)), by.get((model, "kserve, gRPC", 64))
        if ours and kserve and kserve.requests_per_s:
            ratio = ours.requests_per_s / kserve.requests_per_s
            lines.append(f"{'met   ' if ratio >= 2 else 'MISSED'}  {model.upper()} c64 torchship "
                         f"gRPC >= 2x KServe gRPC: {ratio:.2f}x")  # fmt: skip
        binary = by.get((model, "torchship, binary tensors", 64))
        if model == "heavy" and ours and binary:
            ratio = ours.requests_per_s / binary.requests_per_s
            lines.append(f"{'met   ' if ratio >= 1 else 'MISSED'}  HEAVY c64 gRPC >= REST "
                         f"binary: {ratio:.2f}x")  # fmt: skip
        lone, rest = by.get((model, "torchship, gRPC", 1)), by.get((model, "torchship", 1))
        if lone and rest:
            met = lone.p50_ms <= rest.p50_ms
            lines.append(f"{'met   ' if met else 'MISSED'}  {model.upper()} c1 p50 gRPC <= REST: "
                         f"{lone.p50_ms} ms vs {rest.p50_ms} ms")  # fmt: skip
    return lines


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
    parser.add_argument(
        "--set",
        choices=["all", "grpc"],
        default="all",
        help="grpc: only torchship REST JSON, REST binary, gRPC and KServe gRPC",
    )
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
            table = servers(model, tmp, width, args.threads, peers, args.set == "grpc")
            for server, start, request, answer in table:
                process = start()
                try:
                    for c in args.concurrency:
                        what = (model, server, answer)
                        cell = measure(what, process, request, c, args.seconds, check)
                        print(json.dumps(asdict(cell)), flush=True)
                        cells.append(cell)
                finally:
                    process.stop()
    print(report(cells, limits))
    print("\n".join(grpc_targets(cells)))
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
