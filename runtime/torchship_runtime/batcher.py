"""Dynamic batching: requests for the model queue; a batch closes at `max_batch_size` rows or
`max_delay` after the *first* queued request arrived; one forward pass runs in the forward thread
(off the event loop) and its outputs are split back, request by request.

A lone request is never held back for nothing: on an idle model with nothing else on its way
in, it runs at once, without a hop through the batching task; otherwise the batcher waits for
more only while other requests are already on their way in (accepted by the server, not queued
yet; `arriving`). One forward pass runs at a time: under load, the requests that arrive while
one runs form the next batch by themselves, so the delay is rarely waited out at all.

Inputs are torch tensors (tensor models) or numpy arrays (batched handlers, BYTES included).
Requests batch together only when their inputs match in dtype and trailing shape. A batch that
fails is retried request by request, so one poisoned request fails alone, with the model's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InferenceError, ModelFailure

Batch = dict[str, torch.Tensor | np.ndarray]


@dataclass(slots=True)
class Pending:
    inputs: Batch
    rows: int
    key: tuple
    arrived: float
    future: asyncio.Future


def batch_key(inputs: Batch) -> tuple:
    """Requests batch together only when every input matches in dtype and trailing shape."""
    return tuple((name, value.dtype, value.shape[1:]) for name, value in inputs.items())


def as_error(error: Exception) -> InferenceError:
    """A forward pass's failure, for the requests it was running. Input the runtime refuses is
    refused before the model runs (names, datatypes, shapes: 400, in `prepare`); whatever the
    model raises after that is the server's failure (500, the model's own words), as Triton
    and KServe answer it, so a broken model shows in every 5xx count. A handler refuses an
    input on purpose by raising `torchship_runtime.errors.InferenceError` (400)."""
    if isinstance(error, InferenceError):
        return error
    if isinstance(error, torch.OutOfMemoryError):
        return ModelFailure(f"the model ran out of memory: {error}")
    return ModelFailure(f"the model failed: {type(error).__name__}: {error}")


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
        """`run` is the forward pass (called in `executor`), `arriving` counts requests accepted
        but not queued yet, `observe(rows, queued)` is told each batch's size and what waits."""
        self.run = run
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay
        self.arriving = arriving
        self.observe = observe
        self.queue: deque[Pending] = deque()
        self.wakeup = asyncio.Event()
        self.forward_passes = 0
        self.running = 0  # forward passes in flight
        self.forming = False  # the loop holds a batch it has not run yet
        self.idle = asyncio.Event()  # set while none is
        self.idle.set()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.loop(), name="batcher")

    @property
    def healthy(self) -> bool:
        """False once the batching loop has died (liveness should then fail)."""
        return self.task is not None and not self.task.done()

    async def submit(self, inputs: Batch) -> Batch:
        """Queue one request's inputs (leading dim = its rows); its outputs when its batch ran."""
        rows = next(iter(inputs.values())).shape[0]
        if (not self.busy and not self.arriving()) or rows >= self.max_batch_size:
            # Nothing to batch with, or a full batch by itself: run it without queueing.
            return await self._forward_alone(inputs)
        future = asyncio.get_running_loop().create_future()
        self.queue.append(Pending(inputs, rows, batch_key(inputs), time.monotonic(), future))
        self.wakeup.set()
        return await future

    @property
    def busy(self) -> bool:
        """Requests queued, a batch forming or a forward pass running: a request joins in."""
        return bool(self.queue) or self.forming or self.running > 0

    async def _forward_alone(self, inputs: Batch) -> Batch:
        self.forward_passes += 1
        self.observe(next(iter(inputs.values())).shape[0], len(self.queue))
        try:
            return await self._forward(inputs)
        except Exception as error:
            raise as_error(error) from None

    async def _forward(self, inputs: Batch) -> Batch:
        """One forward pass in the executor, counted in `running`."""
        self.running += 1
        self.idle.clear()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.run, inputs)
        finally:
            self.running -= 1
            if not self.running:
                self.idle.set()

    def _take(self, key: tuple, room: int) -> list[Pending]:
        """Queued requests with this key, oldest first, up to `room` rows; others stay queued."""
        taken: list[Pending] = []
        kept: deque[Pending] = deque()
        queue = self.queue
        while queue:
            item = queue.popleft()
            if item.future.done():  # cancelled while queued (the client went away)
                continue
            if room and item.key == key and item.rows <= room:
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
            await self.idle.wait()  # what arrives meanwhile joins this batch
            first = self.queue[0]
            batch = self._take(first.key, self.max_batch_size)
            if not batch:
                continue
            self.forming = True
            rows = sum(p.rows for p in batch)
            deadline = first.arrived + self.max_delay
            # Wait for more only while more is on its way, and never past the deadline.
            while rows < self.max_batch_size and self.arriving() > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), remaining)
                more = self._take(first.key, self.max_batch_size - rows)
                batch += more
                rows += sum(p.rows for p in more)
            self.forming = False
            await self._execute(batch, rows)

    async def _execute(self, batch: list[Pending], rows: int) -> None:
        self.observe(rows, len(self.queue))
        if len(batch) == 1:
            merged = batch[0].inputs
        else:
            merged = {n: concat([p.inputs[n] for p in batch]) for n in batch[0].inputs}
        self.forward_passes += 1
        try:
            outputs = await self._forward(merged)
        except Exception as error:
            if len(batch) == 1:
                fail(batch[0], as_error(error))
                return
            # Find the request(s) at fault: each of the batch runs alone.
            for item in batch:
                try:
                    self.forward_passes += 1
                    result = await self._forward(item.inputs)
                except Exception as alone:
                    fail(item, as_error(alone))
                else:
                    succeed(item, result)
            return
        offset = 0
        for item in batch:
            succeed(item, {n: v[offset : offset + item.rows] for n, v in outputs.items()})
            offset += item.rows


def concat(parts: list) -> torch.Tensor | np.ndarray:
    """Rows of several requests as one batch (their key guarantees one type and trailing shape)."""
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


def succeed(item: Pending, outputs: Batch) -> None:
    if not item.future.done():
        item.future.set_result(outputs)


def fail(item: Pending, error: Exception) -> None:
    if not item.future.done():
        item.future.set_exception(error)
