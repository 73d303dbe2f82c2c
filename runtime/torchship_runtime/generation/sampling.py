"""Per-request sampling, vectorised over the step's rows: greedy, temperature, top-k, top-p, with
a request's own seeded generator so that the same seed gives the same tokens whatever else runs
in the batch (each row draws the same amount of noise at every step)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: every token
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generator(self) -> torch.Generator | None:
        return None if self.seed is None else torch.Generator().manual_seed(self.seed)


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
) -> list[int]:
    """One token per row of float32 `logits` `[rows, vocab]`, on the CPU."""
    logits = logits.cpu()
    if all(p.greedy for p in params):
        return logits.argmax(-1).tolist()
    greedy = torch.tensor([p.greedy for p in params])
    temperature = torch.tensor([p.temperature if not p.greedy else 1.0 for p in params])
    scaled = logits / temperature[:, None]
    vocab = logits.shape[-1]
    if any(p.top_k > 0 or p.top_p < 1 for p in params):
        scaled = truncate(scaled, params, vocab)
    probabilities = scaled.softmax(-1)
    # The exponential race: argmax(p / E) with E ~ Exp(1) samples from p.
    noise = torch.empty_like(probabilities).exponential_()
    for row, generator in enumerate(generators):
        if generator is not None:
            noise[row].exponential_(generator=generator)
    chosen = (probabilities / noise).argmax(-1)
    return torch.where(greedy, logits.argmax(-1), chosen).tolist()


def truncate(scaled: torch.Tensor, params: list[SamplingParams], vocab: int) -> torch.Tensor:
    """Logits outside each row's top-k and top-p set to -inf (the most likely token stays)."""
    top_k = torch.tensor([p.top_k if p.top_k > 0 else vocab for p in params])
    top_p = torch.tensor([p.top_p for p in params])
    ordered, order = scaled.sort(-1, descending=True)
    cut = torch.arange(vocab)[None, :] >= top_k[:, None]
    probabilities = ordered.softmax(-1)
    cut |= (probabilities.cumsum(-1) - probabilities) > top_p[:, None]
    ordered = ordered.masked_fill(cut, float("-inf"))
    return torch.empty_like(scaled).scatter_(-1, order, ordered)
