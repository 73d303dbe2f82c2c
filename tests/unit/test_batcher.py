"""The dynamic batcher on its own: pure asyncio and a real torch forward, no HTTP."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from torchship_runtime.batcher import Batcher
from torchship_runtime.errors import InferenceError


class Recorder:
    """A real torch module's forward pass (a 1x1 convolution over each row, so any width
    works and rows never mix), remembering the batch shapes it saw."""

    def __init__(self, fail_on: float | None = None) -> None:
        torch.manual_seed(0)
        self.module = torch.nn.Conv1d(1, 1, kernel_size=1).eval()
        self.shapes: list[tuple[int, ...]] = []
        self.fail_on = fail_on

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["x"]
        self.shapes.append(tuple(x.shape))
        if self.fail_on is not None and (x == self.fail_on).any():
            raise RuntimeError("poisoned row")
        with torch.inference_mode():
            return {"y": self.module(x.unsqueeze(1)).squeeze(1)}

    def alone(self, x: torch.Tensor) -> torch.Tensor:
        """What the module answers for these rows run on their own."""
        with torch.inference_mode():
            return self.module(x.unsqueeze(1)).squeeze(1)


def run(coro):
    return asyncio.run(coro)


async def make(recorder, *, max_batch_size=8, max_delay=0.05, arriving=lambda: 0):
    batcher = Batcher(
        recorder,
        ThreadPoolExecutor(1),
        max_batch_size=max_batch_size,
        max_delay=max_delay,
        arriving=arriving,
    )
    batcher.start()
    return batcher


def test_a_lone_request_is_not_held_for_the_delay():
    async def scenario():
        batcher = await make(recorder, max_delay=5.0)
        started = time.monotonic()
        out = await batcher.submit({"x": torch.ones(1, 4)})
        return time.monotonic() - started, out

    recorder = Recorder()
    elapsed, out = run(scenario())
    assert elapsed < 2.5  # far below the 5 s delay, with room for a loaded machine
    torch.testing.assert_close(out["y"], recorder.alone(torch.ones(1, 4)))


def test_the_delay_counts_from_the_first_request_when_more_are_coming():
    async def scenario():
        batcher = await make(Recorder(), max_delay=0.3, arriving=lambda: 1)
        started = time.monotonic()
        await batcher.submit({"x": torch.ones(1, 4)})
        return time.monotonic() - started

    elapsed = run(scenario())
    assert elapsed >= 0.25  # held for the delay: more requests were said to be coming


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows():
    recorder = Recorder()

    async def scenario():
        batcher = await make(recorder, max_batch_size=8)
        results = await asyncio.gather(
            *(batcher.submit({"x": torch.full((1, 4), float(i))}) for i in range(20))
        )
        return batcher, results

    batcher, results = run(scenario())
    for i, out in enumerate(results):
        torch.testing.assert_close(out["y"], recorder.alone(torch.full((1, 4), float(i))))
    assert batcher.forward_passes < 20
    assert all(shape[0] <= 8 for shape in recorder.shapes)
    assert sum(shape[0] for shape in recorder.shapes) == 20


def test_incompatible_shapes_are_never_batched_together():
    recorder = Recorder()

    async def scenario():
        batcher = await make(recorder)
        return await asyncio.gather(
            batcher.submit({"x": torch.ones(1, 4)}),
            batcher.submit({"x": torch.ones(1, 8)}),
            batcher.submit({"x": torch.ones(2, 4)}),
        )

    results = run(scenario())
    assert [r["y"].shape for r in results] == [(1, 4), (1, 8), (2, 4)]
    assert all(shape[1:] in ((4,), (8,)) for shape in recorder.shapes)


def test_a_failing_batch_fails_only_its_own_requests():
    recorder = Recorder(fail_on=-1.0)

    async def scenario():
        batcher = await make(recorder, max_batch_size=8)
        bad = asyncio.ensure_future(batcher.submit({"x": torch.full((1, 3), -1.0)}))
        good = asyncio.ensure_future(batcher.submit({"x": torch.ones(1, 4)}))
        await asyncio.wait([bad, good])
        return bad, good, await batcher.submit({"x": torch.ones(1, 3)})

    bad, good, after = run(scenario())
    with pytest.raises(InferenceError, match="poisoned row"):
        bad.result()
    torch.testing.assert_close(good.result()["y"], recorder.alone(torch.ones(1, 4)))
    torch.testing.assert_close(after["y"], recorder.alone(torch.ones(1, 3)))  # it keeps serving


def test_numpy_inputs_batch_too_bytes_included():
    """Batched handlers get numpy arrays (BYTES as object arrays): joined and split the same way."""
    seen: list[int] = []

    def upper(batch):
        text = batch["text"]
        seen.append(len(text))
        time.sleep(0.01)
        return {"upper": np.array([[t.upper()] for t in text[:, 0]], dtype=object)}

    async def scenario():
        batcher = await make(upper)
        return await asyncio.gather(
            *(
                batcher.submit({"text": np.array([[f"r{i}".encode()]], dtype=object)})
                for i in range(6)
            )
        )

    results = run(scenario())
    assert [out["upper"].tolist() for out in results] == [[[f"R{i}".encode()]] for i in range(6)]
    assert len(seen) < 6 and sum(seen) == 6
