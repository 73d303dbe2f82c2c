"""generation/sampling.py: greedy, top-k, top-p and seeds over a batch of rows."""

from __future__ import annotations

import torch

from torchship_runtime.generation.sampling import SamplingParams, sample

LOGITS = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))


def test_greedy_rows_take_the_argmax_beside_sampled_rows():
    params = [SamplingParams(8, temperature=0), SamplingParams(8, temperature=1.0)] * 2
    chosen = sample(LOGITS, params, [None] * 4)
    assert chosen[0] == LOGITS[0].argmax() and chosen[2] == LOGITS[2].argmax()


def test_a_seed_gives_the_same_tokens_whatever_else_is_in_the_batch():
    seeded = SamplingParams(8, temperature=1.0, seed=11)
    other = SamplingParams(8, temperature=0.7)
    alone = [sample(LOGITS[:1], [seeded], [seeded.generator()])[0]]
    generator = seeded.generator()
    beside = []
    for _ in range(1):
        beside.append(sample(LOGITS[[1, 0, 2]], [other, seeded, other], [None, generator, None])[1])
    assert alone == beside
    runs = [
        [sample(LOGITS[:1], [seeded], [g])[0] for _ in range(20)]
        for g in (seeded.generator(), seeded.generator())
    ]
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > 1  # it samples: not the same token every step


def test_top_k_one_and_a_tiny_top_p_are_greedy():
    params = [SamplingParams(8, temperature=1.5, top_k=1), SamplingParams(8, top_p=1e-6)]
    for _ in range(10):
        assert sample(LOGITS[:2], params, [None, None]) == LOGITS[:2].argmax(-1).tolist()


def test_top_k_keeps_to_the_k_most_likely():
    top = set(LOGITS[3].topk(3).indices.tolist())
    params = SamplingParams(8, temperature=2.0, top_k=3)
    generator = torch.Generator().manual_seed(1)
    drawn = {sample(LOGITS[3:], [params], [generator])[0] for _ in range(200)}
    assert drawn <= top and len(drawn) > 1
