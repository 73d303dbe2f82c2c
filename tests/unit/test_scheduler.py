"""generation/scheduler.py: decodes first, prompt chunks within the budget, admission only when
the cache holds the whole prompt, preemption of the newest when a block is missing."""

from __future__ import annotations

import torch

from torchship_runtime.generation.kvcache import BlockPool
from torchship_runtime.generation.sampling import SamplingParams
from torchship_runtime.generation.scheduler import Scheduler
from torchship_runtime.generation.sequence import Sequence


class Decoder:
    def decode(self, ids, skip_special_tokens=True):
        return "x" * len(ids)


def sequence(length: int) -> Sequence:
    return Sequence(list(range(3, 3 + length)), SamplingParams(100), Decoder(), None, None)


def step(scheduler: Scheduler, new_token: int = 7) -> list[tuple[Sequence, int]]:
    """One step as the engine runs it (each sampled sequence gets `new_token`)."""
    chosen = scheduler.schedule()
    scheduler.plan(chosen, torch.device("cpu"))
    for seq, count in chosen:
        seq.computed += count
        if seq.computed == len(seq.tokens):
            seq.tokens.append(new_token)
    return chosen


def test_long_prompts_are_chunked_and_decodes_go_first():
    scheduler = Scheduler(BlockPool(64, 4), max_running=8, step_tokens=10)
    short, long = sequence(3), sequence(25)
    scheduler.add(short)
    step(scheduler)
    scheduler.add(long)
    counts = [[(s is short, n) for s, n in step(scheduler)] for _ in range(3)]
    # The decode takes one token of the step's 10; the 25-token prompt the rest, in 3 steps.
    assert counts == [[(True, 1), (False, 9)], [(True, 1), (False, 9)], [(True, 1), (False, 7)]]
    assert step(scheduler) == [(short, 1), (long, 1)]


def test_a_full_cache_makes_requests_wait_and_a_missing_block_preempts_the_newest():
    pool = BlockPool(4, 4)  # 16 tokens
    scheduler = Scheduler(pool, max_running=8, step_tokens=64)
    first, second, third = sequence(6), sequence(6), sequence(6)
    for s in (first, second, third):
        scheduler.add(s)
    assert [s for s, _ in step(scheduler)] == [first, second]  # the third does not fit
    assert list(scheduler.waiting) == [third] and pool.used == 4
    step(scheduler)
    step(scheduler)  # 8 tokens each in the cache: both blocks full
    assert len(first.tokens) == 9 and first.computed == 8 and pool.used == 4
    chosen = step(scheduler)  # first needs a third block: second gives its blocks back
    assert chosen == [(first, 1)]
    assert list(scheduler.waiting) == [second, third] and second.computed == 0
    scheduler.remove(first)
    assert pool.used == 0 and not first.blocks
    # second is recomputed whole (its 9 tokens: 3 blocks); third still does not fit.
    assert step(scheduler) == [(second, 9)]
    assert list(scheduler.waiting) == [third]
