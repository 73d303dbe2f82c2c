"""The continuous-batching engine: one thread that runs step after step, each one forward pass
over every running sequence (decodes and prompt chunks together), then samples, detokenises,
and hands every request its new text. Requests join at the next step and leave the moment they
finish or are cancelled (their KV blocks free before the following step).

The event loop talks to it through `submit` and `cancel` (thread-safe); outputs come back to
each request's queue with one `call_soon_threadsafe` per step and loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from typing import Any

from . import metrics
from .runner import ModelRunner
from .sampling import SamplingParams, sample
from .scheduler import Scheduler
from .sequence import Delta, Sequence

log = logging.getLogger("torchship.runtime")


class QueueFull(Exception):
    """More requests wait than the engine's bound."""


class Engine:
    def __init__(
        self,
        runner: ModelRunner,
        tokenizer: Any,
        eos: frozenset[int],
        *,
        model: str,
        max_running: int,
        max_waiting: int,
        step_tokens: int,
    ) -> None:
        self.runner = runner
        self.tokenizer = tokenizer
        self.eos = eos
        self.scheduler = Scheduler(runner.pool, max_running, step_tokens)
        self.max_waiting = max_waiting
        self.arrivals: deque[Sequence] = deque()
        self.cancelled: deque[Sequence] = deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self.run, name="generate", daemon=True)
        self.steps = 0
        self._meters(model)

    def _meters(self, model: str) -> None:
        self.ttft = metrics.TIME_TO_FIRST_TOKEN.labels(model)
        self.itl = metrics.INTER_TOKEN.labels(model)
        self.e2e = metrics.E2E.labels(model)
        self.queue_time = metrics.QUEUE.labels(model)
        self.prompt_tokens = metrics.PROMPT_TOKENS.labels(model)
        self.generation_tokens = metrics.GENERATION_TOKENS.labels(model)
        self.finished = {r: metrics.FINISHED.labels(model, r) for r in ("stop", "length", "abort")}
        metrics.RUNNING.labels(model).set_function(lambda: len(self.scheduler.running))
        metrics.WAITING.labels(model).set_function(self.waiting)
        metrics.KV_CACHE_USAGE.labels(model).set_function(self.runner.pool.usage)

    def waiting(self) -> int:
        return len(self.arrivals) + len(self.scheduler.waiting)

    # -- the event loop's side ------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    @property
    def healthy(self) -> bool:
        return self.failure is None and (self.thread.is_alive() or not self.thread.ident)

    def submit(
        self, prompt: list[int], params: SamplingParams, sink: Any, loop: Any = None
    ) -> Sequence:
        """A new request; its Deltas go to `sink.put_nowait` (on `loop`, when given)."""
        if self.waiting() >= self.max_waiting:
            raise QueueFull(f"{self.waiting()} requests are waiting already")
        sequence = Sequence(prompt, params, self.tokenizer, sink, loop)
        with self.lock:
            self.arrivals.append(sequence)
        self.wake.set()
        return sequence

    def cancel(self, sequence: Sequence) -> None:
        """The client went away: the sequence leaves at the next step, its blocks freed."""
        with self.lock:
            self.cancelled.append(sequence)
        self.wake.set()

    # -- the engine thread ----------------------------------------------------------------

    def run(self) -> None:
        try:
            while not self.stopping:
                self.intake()
                if not self.scheduler.running and not self.scheduler.waiting:
                    self.wake.wait()
                    self.wake.clear()
                    continue
                self.step()
        except BaseException as error:
            self.failure = error
            log.exception("the generation engine stopped")
            self.fail_all(error)

    def intake(self) -> None:
        with self.lock:
            arrivals, self.arrivals = self.arrivals, deque()
            cancelled, self.cancelled = self.cancelled, deque()
        for sequence in arrivals:
            self.scheduler.add(sequence)
        for sequence in cancelled:
            if sequence.finish_reason is None:
                sequence.finish_reason = "abort"
                self.scheduler.remove(sequence)
                self.finished["abort"].inc()

    def step(self) -> None:
        chosen = self.scheduler.schedule()
        if not chosen:  # nothing fits (cannot happen with a cache of one full context)
            time.sleep(0.001)
            return
        plan = self.scheduler.plan(chosen, self.runner.device)
        logits = self.runner.forward(plan)
        self.steps += 1
        sampled: list[Sequence] = []
        for sequence, count in chosen:
            if sequence.computed == 0 and sequence.generated == 0:
                self.prompt_tokens.inc(sequence.prompt_length)
                self.queue_time.observe(sequence.scheduled - sequence.arrived)
            sequence.computed += count
            if sequence.computed == len(sequence.tokens):
                sampled.append(sequence)
        tokens = sample(logits, [s.params for s in sampled], [s.generator for s in sampled])
        self.deliver([(s, self.advance(s, t)) for s, t in zip(sampled, tokens, strict=True)])

    def advance(self, sequence: Sequence, token: int) -> Delta:
        now = time.perf_counter()
        if sequence.last_token is None:
            self.ttft.observe(now - sequence.arrived)
        else:
            self.itl.observe(now - sequence.last_token)
        sequence.last_token = now
        delta = sequence.append(token, self.eos)
        self.generation_tokens.inc()
        if delta.finish_reason is not None:
            self.scheduler.remove(sequence)
            self.e2e.observe(now - sequence.arrived)
            self.finished[delta.finish_reason].inc()
        return delta

    def deliver(self, outputs: list[tuple[Sequence, Delta]]) -> None:
        by_loop: dict[Any, list[tuple[Any, Delta]]] = defaultdict(list)
        for sequence, delta in outputs:
            if sequence.loop is None:
                sequence.sink.put_nowait(delta)
            else:
                by_loop[sequence.loop].append((sequence.sink, delta))
        for loop, pairs in by_loop.items():
            loop.call_soon_threadsafe(_put_all, pairs)

    def fail_all(self, error: BaseException) -> None:
        """Every request still here ends (the engine is broken: liveness says so)."""
        with self.lock:
            everyone = [*self.scheduler.running, *self.scheduler.waiting, *self.arrivals]
        failed = Delta("", [], "error")
        self.deliver([(s, failed) for s in everyone])


def _put_all(pairs: list[tuple[Any, Delta]]) -> None:
    for sink, delta in pairs:
        sink.put_nowait(delta)
