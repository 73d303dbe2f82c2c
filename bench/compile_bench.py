"""torch.compile in the runtime: what it gains, and what it costs at start.

    .venv/bin/python bench/compile_bench.py [--seconds 3] [--json PATH]

1. Forward throughput, eager vs `torch.compile(mode="default")` vs the AOTInductor package the
   runtime builds with aheadOfTime, in this process, for the
   benchmark models (bench/models.py: SMALL, HEAVY) and a real architecture: a transformer
   encoder (BERT-small shaped: 4 layers, d_model 256, 4 heads, sequence 128).
2. Start time of the runtime (`python -m torchship_runtime`, the state-dict format, the
   encoder) from process start to ready: eager; compiled with an empty Inductor cache (a
   first start); compiled again with the cache the first one filled (a restarted container,
   whose cache volume keeps it); compiled ahead of time (runtime.compile.aheadOfTime), first
   (export and AOTInductor) and from the package the first one left.
"""

from __future__ import annotations

import os

# As the runtime does, before torch loads OpenMP: idle threads sleep, not spin (compiled C++
# kernels run many short parallel regions; spinning threads on shared cores stall them).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "hack")]  # models.py, and the harness it uses
import models  # noqa: E402

ENCODER = {"layers": 4, "d_model": 256, "heads": 4, "sequence": 128}

ENCODER_MODULE = textwrap.dedent(
    f"""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(
                {ENCODER["d_model"]}, {ENCODER["heads"]},
                dim_feedforward={4 * ENCODER["d_model"]}, batch_first=True,
            )
            self.encoder = nn.TransformerEncoder(
                layer, {ENCODER["layers"]}, enable_nested_tensor=False
            )
            self.head = nn.Linear({ENCODER["d_model"]}, 2)

        def forward(self, tokens):
            return self.head(self.encoder(tokens).mean(dim=1))

    def build():
        torch.manual_seed(0)
        return Encoder().eval()
    """
)


def encoder() -> nn.Module:
    scope: dict = {}
    exec(ENCODER_MODULE, scope)  # the same module the runtime serves in part 2
    return scope["build"]()


def rate(module, batch: torch.Tensor, seconds: float) -> float:
    """Rows per second of `module` on `batch`, after two warm-up calls."""
    with torch.inference_mode():
        for _ in range(2):
            module(batch)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            module(batch)
            done += batch.shape[0]
    return done / (time.perf_counter() - started)


def packaged(module: nn.Module, shape: tuple[int, ...], workdir: Path, name: str):
    """The module compiled ahead of time as the runtime does it (its ahead module)."""
    from torchship_runtime import ahead

    path = workdir / f"{name}.pt2"
    ahead.compile_package(module, (torch.randn(2, *shape),), "default", path)
    return ahead.load_package(path)


def throughput(seconds: float, workdir: Path) -> list[dict]:
    cases = [
        ("small", models.build("small"), (models.input_width("small"),), (1, 32)),
        ("heavy", models.build("heavy"), (models.input_width("heavy"),), (1, 32)),
        ("encoder", encoder(), (ENCODER["sequence"], ENCODER["d_model"]), (1, 8)),
    ]
    rows = []
    for name, module, shape, batches in cases:
        torch._dynamo.reset()
        compiled = torch.compile(module, mode="default")
        started = time.perf_counter()
        with torch.inference_mode():
            for b in batches:  # the warm-up the runtime does: each served shape compiled
                compiled(torch.randn(b, *shape))
        compile_seconds = time.perf_counter() - started
        package = packaged(module, shape, workdir, name)
        for b in batches:
            x = torch.randn(b, *shape)
            eager = rate(module, x, seconds)
            fast = rate(compiled, x, seconds)
            aot = rate(package, x, seconds)
            rows.append(
                {"model": name, "batch": b, "eager_rows_s": round(eager, 1),
                 "compiled_rows_s": round(fast, 1), "speedup": round(fast / eager, 2),
                 "ahead_rows_s": round(aot, 1), "ahead_speedup": round(aot / eager, 2),
                 "compile_s": round(compile_seconds, 1)}
            )  # fmt: skip
            print(
                f"{name:8} batch {b:3}: eager {eager:10.1f} rows/s, compiled {fast:10.1f} "
                f"rows/s, x{fast / eager:.2f} (compiled in {compile_seconds:.1f} s); ahead of "
                f"time {aot:10.1f} rows/s, x{aot / eager:.2f}",
                flush=True,
            )
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_seconds(
    workdir: Path, compile_mode: str, inductor: Path, ahead: Path | None = None
) -> float:
    """From process start to /v2/health/ready answering 200 (`ahead`: compiled ahead of time,
    the packages kept there)."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("runtime", "operator", "sdk")),
        "TORCHSHIP_MODEL_URI": str(workdir / "encoder.pt"),
        "TORCHSHIP_MODEL_FORMAT": "state-dict",
        "TORCHSHIP_MODEL_ENTRYPOINT": "encodermodel:build",
        "TORCHSHIP_MODEL_NAME": "encoder",
        "TORCHSHIP_MODEL_INPUTS": json.dumps(
            [
                {
                    "name": "tokens",
                    "datatype": "FP32",
                    "shape": [-1, ENCODER["sequence"], ENCODER["d_model"]],
                }
            ]
        ),
        "TORCHSHIP_MAX_BATCH_SIZE": "8",
        "TORCHSHIP_DEVICE": "cpu",
        "TORCHSHIP_PORT": str(port),
        "TORCHSHIP_GRPC_PORT": "0",
        "TORCHSHIP_HOST": "127.0.0.1",
        "TORCHSHIP_MODEL_CACHE_DIR": str(workdir / "cache"),
        "TORCHSHIP_COMPILE_MODE": compile_mode,
        "TORCHINDUCTOR_CACHE_DIR": str(inductor),
        "TRITON_CACHE_DIR": str(inductor / "triton"),
        **(
            {"TORCHSHIP_COMPILE_AHEAD_OF_TIME": "true", "TORCHSHIP_COMPILE_CACHE_DIR": str(ahead)}
            if ahead
            else {}
        ),
    }
    log = (workdir / f"runtime-{compile_mode or 'eager'}-{time.time_ns()}.log").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "torchship_runtime"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the runtime exited {proc.returncode}: see {log.name}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/v2/health/ready", timeout=1
                ) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)


def starts(workdir: Path, repeats: int) -> dict:
    (workdir / "encodermodel.py").write_text(ENCODER_MODULE)
    torch.save(encoder().state_dict(), workdir / "encoder.pt")
    cases = ("eager", "compiled_first", "compiled_cached", "ahead_first", "ahead_cached")
    result: dict[str, list[float]] = {case: [] for case in cases}
    for i in range(repeats):
        result["eager"].append(start_seconds(workdir, "", workdir / f"unused-{i}"))
        inductor = workdir / f"inductor-{i}"  # empty: a first start
        result["compiled_first"].append(start_seconds(workdir, "default", inductor))
        result["compiled_cached"].append(start_seconds(workdir, "default", inductor))
        packages, inductor = workdir / f"aot-{i}", workdir / f"aot-inductor-{i}"
        result["ahead_first"].append(start_seconds(workdir, "default", inductor, packages))
        result["ahead_cached"].append(start_seconds(workdir, "default", inductor, packages))
    best = {k: round(min(v), 2) for k, v in result.items()}
    print(
        f"encoder start to ready: eager {best['eager']} s; just in time: first "
        f"{best['compiled_first']} s, cached {best['compiled_cached']} s "
        f"(x{best['compiled_cached'] / best['eager']:.2f} of eager); ahead of time: first "
        f"{best['ahead_first']} s, cached package {best['ahead_cached']} s "
        f"(x{best['ahead_cached'] / best['eager']:.2f} of eager)",
        flush=True,
    )
    return {"best_seconds": best, "all_seconds": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput figure")
    parser.add_argument("--repeats", type=int, default=2, help="start-time runs per case")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--starts-only", action="store_true", help="skip the throughput figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["TORCHSHIP_TORCH_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tmp) / "inductor-bench"))
        results = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "threads": args.threads,
                "cxx": subprocess.run(
                    ["g++", "--version"], capture_output=True, text=True
                ).stdout.split("\n")[0],
            },
            "throughput": [] if args.starts_only else throughput(args.seconds, Path(tmp)),
            "start": starts(Path(tmp), args.repeats),
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
