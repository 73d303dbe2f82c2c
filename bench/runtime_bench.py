"""Served throughput and latency of the torchship runtime next to the model's raw forward pass.

    .venv/bin/python bench/runtime_bench.py [--seconds 3] [--quick] [--json PATH]

One run on one machine, printed as one table: for SMALL (MLP 64->128->10) and HEAVY (MLP
1024->4096->4096->1024), the raw in-process forward throughput at the best batch size, then the
runtime (one server process, torch with --threads threads, batching on) at concurrency 1, 16 and
64 with JSON bodies, HEAVY also with the binary tensor data extension, both over OIP gRPC, and
SMALL at concurrency 1 with batching off (the latency that batching must not add; the two servers
take turns, three rounds each, so that the machine's drift falls on both). SMALL is also served
through a minimal Starlette app over the same route table (bench/starlette_runtime.py), taking
turns with the bare ASGI app at concurrency 1 and 64, when starlette is importable. The REST load
generator is a raw asyncio HTTP/1.1 client on keep-alive connections (uvloop, pre-encoded bodies,
no JSON decoding of responses except one checked per cell); the gRPC one is grpc.aio with
pre-serialized messages (one HTTP/2 connection per 16 users); both run on the same host as the
server. Results go to --json as well.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))  # a script: the shared harness lives in hack/
import models  # noqa: E402
from harness import RuntimeProcess, free_port, stop_group, wait_http  # noqa: E402
from procstat import cpu_seconds  # noqa: E402

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


async def drive_grpc(
    port: int, raw: bytes, concurrency: int, warmup: float, seconds: float
) -> tuple[Load, bytes]:
    """`drive` over gRPC: `raw` is a serialized ModelInferRequest, sent as it is."""
    import grpc

    # Own connections (no shared subchannel pool): one HTTP/2 connection per 16 users.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
        for _ in range(max(1, concurrency // 16))
    ]
    calls = [c.unary_unary("/inference.GRPCInferenceService/ModelInfer") for c in channels]
    sample = await calls[0](raw, timeout=30)
    load = Load()
    started = time.perf_counter()
    measure_from, stop_at = started + warmup, started + warmup + seconds

    async def worker(call) -> None:
        while (now := time.perf_counter()) < stop_at:
            try:
                await call(raw, timeout=30)
                ok = True
            except grpc.aio.AioRpcError:
                ok = False
            done = time.perf_counter()
            if now >= measure_from:
                if ok:
                    load.completed += 1
                    load.latencies.append(done - now)
                else:
                    load.errors += 1

    await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(concurrency)))
    for channel in channels:
        await channel.close()
    return load, sample


def grpc_request(name: str, row: np.ndarray, input_name: str = "input__0") -> bytes:
    """A serialized ModelInferRequest: one FP32 row in raw_input_contents."""
    from torchship_runtime.oip import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=name)
    request.inputs.add(name=input_name, datatype="FP32", shape=[1, row.size])
    request.raw_input_contents.append(row.astype(np.float32).tobytes())
    return request.SerializeToString()


def decode_grpc_output(body: bytes) -> np.ndarray:
    """The first output of a serialized ModelInferResponse (raw or typed contents)."""
    from torchship_runtime.oip import grpc_predict_v2_pb2 as pb

    response = pb.ModelInferResponse.FromString(body)
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
    return np.asarray(response.outputs[0].contents.fp32_contents, dtype=np.float32)


def http_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_body(row: np.ndarray) -> bytes:
    tensor = {"name": "input__0", "datatype": "FP32", "shape": [1, row.size], "data": row.tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def binary_body(row: np.ndarray) -> tuple[bytes, int]:
    """The body (JSON header, then the raw tensor) and the header's length."""
    raw = row.astype(np.float32).tobytes()
    tensor = {
        "name": "input__0",
        "datatype": "FP32",
        "shape": [1, row.size],
        "parameters": {"binary_data_size": len(raw)},
    }
    wanted = {"name": "output__0", "parameters": {"binary_data": True}}
    header = json.dumps({"inputs": [tensor], "outputs": [wanted]}).encode()
    return header + raw, len(header)


def json_request(name: str, row: np.ndarray) -> bytes:
    path = f"/v2/models/{name}/infer"
    return http_request(path, json_body(row), {"Content-Type": "application/json"})


def binary_request(name: str, row: np.ndarray) -> bytes:
    body, length = binary_body(row)
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(length),
    }
    return http_request(f"/v2/models/{name}/infer", body, headers)


def codec_microseconds(row: np.ndarray, output: torch.Tensor) -> dict[str, float]:
    """In-process cost of one request's wire work (decode the body, encode the response)."""
    from torchship_runtime.codec import decode_request, encode_response

    bodies = {"json": (json_body(row), None), "binary": binary_body(row)}
    costs = {}
    for mode, (body, length) in bodies.items():
        started, n = time.perf_counter(), 0
        while time.perf_counter() - started < 0.3:
            request = decode_request(body, length)
            encode_response("m", "", request, {"output__0": output})
            n += 1
        costs[mode] = 1e6 * (time.perf_counter() - started) / n
    return costs


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


class Server:
    """A server under test in a subprocess of its own session, ready once `health` answers 200.

    The session lets `stop` reach every process the server started (LitServe's workers, for
    one, outlive a stopped parent).
    """

    def __init__(self, command: list[str], log: Path, health: str, env: dict | None = None):
        """Runs `command --port <a free port>`."""
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{self.port}{health}"
        wait_http(url, timeout=120, alive=self.alive, what=log.stem)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.log.stem} exited:\n{self.log.read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        """The server and every process it started."""
        stop_group(self.proc)


class Runtime(RuntimeProcess):
    """`python -m torchship_runtime`, configured by its environment, in a session of its own."""

    def __init__(
        self,
        workdir: Path,
        model_path: Path,
        name: str,
        width: int,
        command: tuple[str, ...] | None = None,
        **env: str,
    ):
        inputs = [{"name": "input__0", "datatype": "FP32", "shape": [-1, width]}]
        settings = {
            "TORCHSHIP_MODEL_URI": str(model_path),
            "TORCHSHIP_MODEL_FORMAT": "torchscript",
            "TORCHSHIP_MODEL_NAME": name,
            "TORCHSHIP_MODEL_INPUTS": json.dumps(inputs),
            **env,
        }
        front = {"command": command} if command else {}
        super().__init__(workdir, settings, new_session=True, **front)
        self.wait_ready(120)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0


# -- the measurements -----------------------------------------------------------------------

METRICS = (
    "torchship_batch_size_count",
    "torchship_batch_size_sum",
    "torchship_forward_duration_seconds_sum",
)


@dataclass
class Cell:
    model: str
    mode: str  # "raw", "json", "binary", "grpc", "json, batching off", "json, starlette"
    concurrency: int
    throughput: float  # requests (rows for raw) per second
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch: float | None = None
    errors: int = 0
    batch_size: int | None = None  # raw: the best batch size
    forward_busy: float | None = None  # share of wall time the forward thread was running
    server_cpu: float | None = None  # server process CPU seconds per wall second (of 2 cores)
    codec_us: dict[str, float] | None = None  # raw: decode + encode of one request, in-process


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
    before = {m: runtime.metric(m) for m in METRICS}
    cpu_before, started = runtime.cpu_seconds(), time.perf_counter()
    warmup = min(1.0, seconds / 3)
    if mode == "grpc":
        load, sample = uvloop.run(drive_grpc(runtime.grpc_port, raw, concurrency, warmup, seconds))
    else:
        load, sample = uvloop.run(drive(runtime.port, raw, concurrency, warmup, seconds))
    elapsed = time.perf_counter() - started
    cpu = runtime.cpu_seconds() - cpu_before
    got = decode_grpc_output(sample) if mode == "grpc" else decode_output(sample, "binary" in mode)
    if not np.allclose(got, check, atol=1e-4):
        raise AssertionError(f"{model} {mode}: the served output differs from the model's")
    delta = {m: runtime.metric(m) - before[m] for m in METRICS}
    batches, rows = delta["torchship_batch_size_count"], delta["torchship_batch_size_sum"]
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
        forward_busy=delta["torchship_forward_duration_seconds_sum"] / elapsed,
        server_cpu=cpu / elapsed,
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
        output = module(torch.from_numpy(row)[None])
    check = output.numpy().ravel()
    raw.codec_us = codec_microseconds(row, output)
    common = {
        "TORCHSHIP_TORCH_THREADS": str(args.threads),
        "TORCHSHIP_MAX_BATCH_SIZE": str(args.max_batch_size),
        "TORCHSHIP_MAX_DELAY_MS": str(args.max_delay_ms),
    }
    concurrencies = (1, 64) if args.quick else (1, 16, 64)
    runtime = Runtime(workdir, path, name, width, **common)
    extra: list[Runtime] = []
    try:
        request = json_request(name, row)
        if name == "small":
            # Batching on against off at concurrency 1, the servers taking turns; the
            # Starlette front end against the bare one at 1 and 64 the same way.
            unbatched = Runtime(workdir, path, name, width, **common, TORCHSHIP_BATCHING="false")
            extra.append(unbatched)
            runs = {"json": runtime, "json, batching off": unbatched}
            if starlette_available():
                command = (sys.executable, str(ROOT / "bench" / "starlette_runtime.py"))
                extra.append(Runtime(workdir, path, name, width, command, **common))
                runs["json, starlette"] = extra[-1]
            cells += taking_turns(runs, name, request, args.seconds, check)
            if len(runs) > 2:
                ab = {mode: runs[mode] for mode in ("json", "json, starlette")}
                cells += taking_turns(ab, name, request, args.seconds, check, concurrency=64)
        else:
            cells.append(served(runtime, name, "json", request, 1, args.seconds, check))
        for c in concurrencies[1:]:
            if not any(x.mode == "json" and x.concurrency == c for x in cells):
                cells.append(served(runtime, name, "json", request, c, args.seconds, check))
        if name == "heavy":
            for c in concurrencies[1:]:
                request = binary_request(name, row)
                cells.append(served(runtime, name, "binary", request, c, args.seconds, check))
        for c in concurrencies:
            request = grpc_request(name, row)
            cells.append(served(runtime, name, "grpc", request, c, args.seconds, check))
    finally:
        for server in (runtime, *extra):
            server.stop()
    return cells


def starlette_available() -> bool:
    return importlib.util.find_spec("starlette") is not None


def taking_turns(
    runtimes: dict[str, Runtime],
    model: str,
    raw: bytes,
    seconds: float,
    check: np.ndarray,
    rounds: int = 3,
    concurrency: int = 1,
) -> list[Cell]:
    """`concurrency` on each runtime in turn, `rounds` times, so that the machine's drift falls
    on all alike; of each runtime's rounds, the median one stands for it (by p50 at
    concurrency 1, by throughput above)."""
    runs: dict[str, list[Cell]] = {mode: [] for mode in runtimes}
    for _ in range(rounds):
        for mode, runtime in runtimes.items():
            cell = served(runtime, model, mode, raw, concurrency, seconds / rounds, check)
            runs[mode].append(cell)
    if concurrency == 1:
        return [sorted(cells, key=lambda c: c.p50_ms)[rounds // 2] for cells in runs.values()]
    return [sorted(cells, key=lambda c: c.throughput)[rounds // 2] for cells in runs.values()]


def table(cells: list[Cell]) -> str:
    lines = [
        f"{'model':6} {'mode':19} {'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'batch':>5} {'served/raw':>10} {'fwd busy':>8} {'srv cpu':>7}",
    ]
    raw = {c.model: c.throughput for c in cells if c.mode == "raw forward"}
    for c in cells:
        if c.mode == "raw forward":
            lines.append(
                f"{c.model:6} {'raw forward':19} {'':>4} {c.throughput:8.0f} {'':>7} {'':>7} "
                f"{c.batch_size:5d} {'1':>10}   rows/s at the best batch size; "
                f"{1e6 / c.throughput:.0f} us/row; wire decode+encode per request: "
                + ", ".join(f"{m} {us:.0f} us" for m, us in (c.codec_us or {}).items())
            )
            continue
        lines.append(
            f"{c.model:6} {c.mode:19} {c.concurrency:4d} {c.throughput:8.0f} {c.p50_ms:7.2f} "
            f"{c.p99_ms:7.2f} {c.mean_batch or 0:5.1f} {c.throughput / raw[c.model]:10.3g} "
            f"{c.forward_busy:8.0%} {c.server_cpu:7.0%}"
            + (f"   {c.errors} errors" if c.errors else "")
        )
    return "\n".join(lines)


def targets(cells: list[Cell]) -> list[str]:
    """The targets, each with the measured figure and whether it was met."""
    by = {(c.model, c.mode, c.concurrency): c for c in cells}
    lines = []

    def check(what: str, value: float, met: bool, unit: str) -> None:
        lines.append(f"{'met   ' if met else 'MISSED'}  {what}: {value:.4g}{unit}")

    if small := by.get(("small", "json", 64)):
        check("SMALL c64 >= 2100 req/s", small.throughput, small.throughput >= 2100, " req/s")
    if lone := by.get(("small", "json", 1)):
        check("SMALL c1 p50 <= 1.5 ms (batching on)", lone.p50_ms, lone.p50_ms <= 1.5, " ms")
        if off := by.get(("small", "json, batching off", 1)):
            lines.append(f"info    SMALL c1 p50 batching on / off: {lone.p50_ms:.3f} / "
                         f"{off.p50_ms:.3f} ms")  # fmt: skip
    for c in (1, 64):
        bare, front = by.get(("small", "json", c)), by.get(("small", "json, starlette", c))
        if bare and front:
            lines.append(
                f"info    SMALL c{c} Starlette / bare ASGI: {front.throughput:.0f} / "
                f"{bare.throughput:.0f} req/s, p50 {front.p50_ms:.3f} / {bare.p50_ms:.3f} ms"
            )
    if heavy := by.get(("heavy", "json", 64)):
        check("HEAVY c64 >= 650 req/s", heavy.throughput, heavy.throughput >= 650, " req/s")
        check("HEAVY c64 p99 <= 200 ms", heavy.p99_ms, heavy.p99_ms <= 200, " ms")
        if binary := by.get(("heavy", "binary", 64)):
            ratio = binary.throughput / heavy.throughput
            check("HEAVY c64 binary >= 2x JSON", ratio, ratio >= 2, "x")
            if grpc := by.get(("heavy", "grpc", 64)):
                ratio = grpc.throughput / binary.throughput
                check("HEAVY c64 gRPC >= REST binary", ratio, ratio >= 1, "x")
    for model in ("small", "heavy"):
        rest, grpc = by.get((model, "json", 1)), by.get((model, "grpc", 1))
        if rest and grpc:
            check(f"{model.upper()} c1 p50 gRPC <= REST", grpc.p50_ms, grpc.p50_ms <= rest.p50_ms,
                  f" ms (REST {rest.p50_ms:.3f} ms)")  # fmt: skip
    return lines


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
    load_before = os.getloadavg()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="torchship-bench-") as tmp:
        for name in args.models.split(","):
            cells += bench_model(name, args, Path(tmp))
    print(
        f"torchship runtime benchmark: {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores usable, "
        f"torch {torch.__version__}, {args.threads} torch threads, max batch "
        f"{args.max_batch_size}, max delay {args.max_delay_ms} ms, {args.seconds}s per cell"
    )
    print(table(cells))
    print("\n".join(targets(cells)))
    print(f"load average before / after: {load_before} / {os.getloadavg()}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "cores_usable": len(os.sched_getaffinity(0)),
                    "cpu_count": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
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
