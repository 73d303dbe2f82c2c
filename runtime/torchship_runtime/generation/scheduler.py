"""Which sequences run in the next step, and with how many tokens each.

Every step: the running sequences that are decoding give one token each; a sequence still in its
prompt gives a chunk of it (at most the step's token budget, so a long prompt never stalls the
streams beside it); then waiting sequences join, first come first served, while the step has
budget, the batch has room and the KV cache can hold their whole prompt. When a decoding
sequence needs a block and none is free, the newest running sequence gives its blocks back and
waits again (to be recomputed later: it keeps its tokens).
"""

from __future__ import annotations

import time
from collections import deque

import torch

from .attention import Prefill, StepPlan
from .kvcache import BlockPool
from .sequence import Sequence


class Scheduler:
    def __init__(self, pool: BlockPool, max_running: int, step_tokens: int) -> None:
        self.pool = pool
        self.max_running = max_running
        self.step_tokens = step_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, sequence: Sequence) -> None:
        self.waiting.append(sequence)

    def remove(self, sequence: Sequence) -> None:
        """A sequence that finished or was cancelled: its blocks are free at once."""
        if sequence in self.running:
            self.running.remove(sequence)
        elif sequence in self.waiting:
            self.waiting.remove(sequence)
        self.pool.give_back(sequence.blocks)

    def preempt(self) -> Sequence:
        victim = self.running.pop()
        self.pool.give_back(victim.blocks)
        victim.computed = 0
        self.waiting.appendleft(victim)
        return victim

    def schedule(self) -> list[tuple[Sequence, int]]:
        """The step's sequences with their token counts: decodes first, then prompt chunks."""
        budget = self.step_tokens
        chosen: list[tuple[Sequence, int]] = []
        for sequence in list(self.running):
            if sequence not in self.running:  # preempted for an earlier one's block
                break
            remaining = len(sequence.tokens) - sequence.computed
            count = 1 if remaining == 1 else min(remaining, budget)  # decodes always run
            if count <= 0:
                continue
            need = self.pool.needed(len(sequence.blocks), sequence.computed + count)
            while need > len(self.pool.free) and self.preempt() is not sequence:
                pass
            if sequence not in self.running:
                break
            sequence.blocks += self.pool.take(need)
            chosen.append((sequence, count))
            budget -= count
        while self.waiting and budget > 0 and len(self.running) < self.max_running:
            sequence = self.waiting[0]
            if self.pool.needed(0, len(sequence.tokens) + 1) > len(self.pool.free):
                break  # the cache is full: it waits (the waiting gauge shows it)
            self.waiting.popleft()
            count = min(len(sequence.tokens), budget)
            sequence.blocks += self.pool.take(self.pool.needed(0, count))
            if sequence.scheduled is None:
                sequence.scheduled = time.perf_counter()
            self.running.append(sequence)
            chosen.append((sequence, count))
            budget -= count
        chosen.sort(key=lambda pair: not is_decode(*pair))
        return chosen

    def plan(self, chosen: list[tuple[Sequence, int]], device: torch.device) -> StepPlan:
        """The step's tensors: tokens, positions and slots, in the order of `chosen`."""
        size = self.pool.block_size
        tokens: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        sampled: list[int] = []
        decodes: list[Sequence] = []
        prefills: list[Prefill] = []
        for sequence, count in chosen:
            start, begin = len(tokens), sequence.computed
            end = begin + count
            tokens += sequence.tokens[begin:end]
            positions += range(begin, end)
            blocks = sequence.blocks
            slots += [blocks[p // size] * size + p % size for p in range(begin, end)]
            if end == len(sequence.tokens):
                sampled.append(start + count - 1)
            if is_decode(sequence, count):
                decodes.append(sequence)
            else:
                prefills.append(chunk(sequence, start, count, size, device))
        plan = StepPlan(
            tokens=torch.tensor(tokens, dtype=torch.long, device=device),
            positions=torch.tensor([positions], device=device),
            slots=torch.tensor(slots, dtype=torch.long, device=device),
            decodes=len(decodes),
            prefills=prefills,
            sample_rows=torch.tensor(sampled, dtype=torch.long, device=device),
        )
        if decodes:
            plan.decode_tables, plan.decode_mask = decode_tables(decodes, size, device)
        return plan


def is_decode(sequence: Sequence, count: int) -> bool:
    """The sequence's last token alone (a single-token prompt counts: its context is itself)."""
    return count == 1 and sequence.computed + 1 == len(sequence.tokens)


def chunk(sequence: Sequence, start: int, count: int, size: int, device: torch.device) -> Prefill:
    context = sequence.computed + count
    blocks = torch.tensor(sequence.blocks[: -(-context // size)], device=device)
    mask = None
    if sequence.computed:  # earlier chunks are in the cache: causal with an offset
        queries = torch.arange(sequence.computed, context, device=device)
        mask = torch.arange(context, device=device)[None, :] <= queries[:, None]
    return Prefill(start, count, blocks, context, mask)


def decode_tables(
    decodes: list[Sequence], size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block tables padded to the longest (with block 0, masked out) and the key mask."""
    width = max(len(s.blocks) for s in decodes)
    tables = torch.tensor([s.blocks + [0] * (width - len(s.blocks)) for s in decodes])
    lengths = torch.tensor([s.computed + 1 for s in decodes])
    mask = torch.arange(width * size)[None, :] < lengths[:, None]
    return tables.to(device), mask[:, None, None, :].to(device)
