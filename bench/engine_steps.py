"""Where a generation step's time goes: the engine in-process (no HTTP), on a model of
hack/llmfiles.py, with the step split into the forward pass, attention inside it, and what runs
around it (scheduling, sampling, detokenisation); optionally transformers' own
`generate_batch` on the same requests.

    .venv/bin/python bench/engine_steps.py [--size 30m] [--requests 16] [--prompt 41]
        [--tokens 64] [--threads 2] [--transformers-batch]

`--transformers-batch` sizes transformers' paged cache as transformers decides: on CPU it can
take many GB (it was OOM-killed at 10 to 12 GB on a 24 GB machine outside inference_mode).
Run on a quiet machine: another build beside it cuts every figure.
"""

from __future__ import annotations

import argparse
import queue
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / p) for p in ("runtime", "hack")]

import llmfiles  # noqa: E402

from torchship_runtime.generation import attention  # noqa: E402
from torchship_runtime.generation.engine import Engine  # noqa: E402
from torchship_runtime.generation.runner import ModelRunner  # noqa: E402
from torchship_runtime.generation.sampling import SamplingParams  # noqa: E402


class Timed:
    """Wraps the engine's step, the runner's forward and attention with timers."""

    def __init__(self, engine: Engine) -> None:
        self.seconds = {"step": 0.0, "forward": 0.0, "attention": 0.0}
        engine.step = self.wrap("step", engine.step)
        engine.runner.forward = self.wrap("forward", engine.runner.forward)
        call = attention.PagedAttention.__call__
        timed = self.wrap("attention", call)
        attention.PagedAttention.__call__ = lambda self_, *a, **k: timed(self_, *a, **k)

    def wrap(self, name, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed


def prompts(tokenizer, count: int, length: int) -> list[list[int]]:
    text = llmfiles.CORPUS.read_text()
    return [
        tokenizer(text[i * 300 : i * 300 + 8 * length])["input_ids"][:length] for i in range(count)
    ]


def run(engine: Engine, batch: list[list[int]], tokens: int) -> tuple[int, float]:
    answers = []
    started = time.perf_counter()
    for ids in batch:
        answers.append(queue.Queue())
        params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
        engine.submit(ids, params, answers[-1])
    total = 0
    for answer in answers:
        while (delta := answer.get()).finish_reason is None:
            total += len(delta.tokens)
        total += len(delta.tokens)
    return total, time.perf_counter() - started


def transformers_batch(path: Path, batch: list[list[int]], tokens: int) -> None:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    config = transformers.GenerationConfig(
        max_new_tokens=tokens, do_sample=False, eos_token_id=-1, pad_token_id=0
    )
    with torch.inference_mode():
        model.generate_batch(inputs=batch[:2], generation_config=config, progress_bar=False)
        started = time.perf_counter()
        out = model.generate_batch(inputs=batch, generation_config=config, progress_bar=False)
        seconds = time.perf_counter() - started
    total = sum(len(r.generated_tokens) for r in out.values())
    print(f"transformers generate_batch: {total / seconds:.0f} output tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(llmfiles.SIZES), default="30m")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=41)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--transformers-batch", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    with tempfile.TemporaryDirectory() as directory:
        path = llmfiles.build(Path(directory), "llama", args.size)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        runner = ModelRunner(path, torch.device("cpu"), torch.float32, 2**30, 16)
        engine = Engine(
            runner, tokenizer.backend_tokenizer, frozenset(), model="bench",
            max_running=64, max_waiting=4096, step_tokens=512,
        )  # fmt: skip
        engine.start()
        batch = prompts(tokenizer, args.requests, args.prompt)
        run(engine, batch, 4)  # warm-up
        timed, steps = Timed(engine), engine.steps
        total, seconds = run(engine, batch, args.tokens)
        steps = engine.steps - steps
        ms = {k: 1000 * v / steps for k, v in timed.seconds.items()}
        print(
            f"engine: {total / seconds:.0f} output tokens/s; {steps} steps; per step "
            f"{ms['step']:.2f} ms: forward {ms['forward']:.2f} ms (attention "
            f"{ms['attention']:.2f} ms), outside the forward {ms['step'] - ms['forward']:.2f} ms"
        )
        engine.stop()
        if args.transformers_batch:
            transformers_batch(path, batch, args.tokens)


if __name__ == "__main__":
    main()
