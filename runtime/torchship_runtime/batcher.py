"""Dynamic batching: requests queue, a batch closes at max_batch_size rows or max_delay after
the *first* queued request arrived, one forward pass runs off the event loop, and results are
split back per request.

A lone request is never held back for nothing: the batcher waits for more only while other
requests are already on their way in (accepted by the server, not yet queued). Under load,
requests that arrive while a forward pass runs form the next batch by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import torch

from .errors import InferenceError

Batch = dict[str, torch.Tensor]


@dataclass
class Pending:
    inputs: Batch
    rows: int
    key: tuple
    arrived: float
    future: asyncio.Future


def batch_key(inputs: Batch) -> tuple:
    """Requests batch together only when every input matches in dtype and trailing shape."""
    return tuple((name, value.dtype, tuple(value.shape[1:])) for name, value in inputs.items())


def as_error(error: Exception) -> Exception:
    """Failures of a forward pass are about the inputs they were given (a 400), with the
    model's own words; the server keeps serving."""
    if isinstance(error, InferenceError):
        return error
    if isinstance(error, RuntimeError | ValueError | TypeError | IndexError):
        return InferenceError(f"the model could not run this input: {error}")
    return InferenceError(f"inference failed: {error}", status=500)


class Batcher:
    def __init__(
        self,
        run: Callable[[Batch], Batch],
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay: float,
        arriving: Callable[[], int] = lambda: 0,
        observe: Callable[[int, int], None] = lambda rows, queued: None,
    ) -> None:
        self.run = run
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay
        self.arriving = arriving
        self.observe = observe
        self.queue: deque[Pending] = deque()
        self.wakeup = asyncio.Event()
        self.forward_passes = 0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.loop(), name="batcher")

    async def submit(self, inputs: Batch) -> Batch:
        rows = next(iter(inputs.values())).shape[0]
        if rows > self.max_batch_size:
            # Larger than any batch: run it alone rather than refuse it.
            return await self._forward_alone(inputs)
        future = asyncio.get_running_loop().create_future()
        self.queue.append(Pending(inputs, rows, batch_key(inputs), time.monotonic(), future))
        self.wakeup.set()
        return await future

    async def _forward_alone(self, inputs: Batch) -> Batch:
        loop = asyncio.get_running_loop()
        self.forward_passes += 1
        try:
            return await loop.run_in_executor(self.executor, self.run, inputs)
        except Exception as error:
            raise as_error(error) from None

    def _take(self, key: tuple, room: int) -> list[Pending]:
        """Queued requests with this key, in order, up to `room` rows; others stay queued."""
        taken, kept = [], deque()
        while self.queue:
            item = self.queue.popleft()
            if item.future.cancelled():
                continue
            if item.key == key and item.rows <= room:
                taken.append(item)
                room -= item.rows
            else:
                kept.append(item)
        self.queue = kept
        return taken

    async def loop(self) -> None:
        while True:
            while not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            first = self.queue[0]
            batch = self._take(first.key, self.max_batch_size)
            if not batch:
                continue
            rows = sum(p.rows for p in batch)
            deadline = first.arrived + self.max_delay
            while rows < self.max_batch_size:
                now = time.monotonic()
                if now >= deadline or self.arriving() <= 0:
                    break
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), deadline - now)
                more = self._take(first.key, self.max_batch_size - rows)
                batch += more
                rows += sum(p.rows for p in more)
            await self._execute(batch, rows)

    async def _execute(self, batch: list[Pending], rows: int) -> None:
        self.observe(rows, len(self.queue))
        loop = asyncio.get_running_loop()
        names = list(batch[0].inputs)
        merged = (
            batch[0].inputs
            if len(batch) == 1
            else {n: torch.cat([p.inputs[n] for p in batch]) for n in names}
        )
        self.forward_passes += 1
        try:
            outputs = await loop.run_in_executor(self.executor, self.run, merged)
            offset = 0
            for item in batch:
                part = {n: v[offset : offset + item.rows] for n, v in outputs.items()}
                offset += item.rows
                if not item.future.done():
                    item.future.set_result(part)
        except Exception as error:  # this batch's requests fail; the next batch runs
            failure = as_error(error)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(failure)
