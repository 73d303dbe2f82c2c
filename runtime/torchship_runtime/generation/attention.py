"""Attention over the paged KV cache for one step of a ragged batch, as a transformers attention
function: the model runs unchanged, its attention modules compute queries, keys and values for
the step's tokens (all sequences packed into one row), the cache writes the new keys and values
into their slots, and this function attends each token to its own sequence's tokens.

Decoding sequences (one new token each) share one batched `scaled_dot_product_attention` over
their block tables; each prefill chunk gets one of its own, causal within the chunk.

A step's blocks are gathered with one `index_select` per layer into a workspace that every layer
and step reuses: a fresh tensor per gather cost the kernel's page faults on every byte (3.5 times
the copy itself on CPU), and the gather dominated a long context's decode step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn.functional import scaled_dot_product_attention

from .kvcache import PagedKVCache


@dataclass
class Prefill:
    """A chunk of one sequence's prompt: `length` tokens from `start` in the step's row, the
    sequence's blocks, and its context (cached tokens plus this chunk)."""

    start: int
    length: int
    blocks: torch.Tensor
    context: int
    mask: torch.Tensor | None = None  # None: the chunk is the whole context (plain causal)


@dataclass
class StepPlan:
    """One forward pass: the packed tokens (decodes first), their positions and slots, the
    decode group's block tables and mask, the prefill chunks, and the rows whose logits are
    sampled."""

    tokens: torch.Tensor  # [T]
    positions: torch.Tensor  # [1, T]
    slots: torch.Tensor  # [T]
    decodes: int = 0
    decode_tables: torch.Tensor | None = None  # [decodes, blocks]
    decode_mask: torch.Tensor | None = None  # [decodes, 1, 1, blocks * block_size]
    prefills: list[Prefill] = field(default_factory=list)
    sample_rows: torch.Tensor | None = None  # [sampled]


class PagedAttention:
    """The attention function bound to one cache; `plan` is set before every forward pass."""

    def __init__(self, cache: PagedKVCache) -> None:
        self.cache = cache
        self.plan: StepPlan | None = None
        self.workspace: tuple[torch.Tensor, torch.Tensor] | None = None

    def gather(self, layer: int, blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's keys and values of `blocks` (1-D), `[len(blocks), block_size, kv_heads,
        head_dim]`, in the workspace (valid until the next gather)."""
        keys, values = self.cache.keys[layer], self.cache.values[layer]
        count = blocks.shape[0]
        if self.workspace is None or self.workspace[0].shape[0] < count:
            shape = (max(count, 2 * self.workspace[0].shape[0] if self.workspace else 0),)
            shape += keys.shape[1:]
            self.workspace = tuple(keys.new_empty(shape) for _ in range(2))
        k, v = (buffer[:count] for buffer in self.workspace)
        torch.index_select(keys, 0, blocks, out=k)
        torch.index_select(values, 0, blocks, out=v)
        return k, v

    def __call__(
        self,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        **kwargs: object,
    ) -> tuple[torch.Tensor, None]:
        plan = self.plan
        layer = module.layer_idx
        heads, tokens, head_dim = query.shape[1], query.shape[2], query.shape[3]
        gqa = heads != self.cache.keys[layer].shape[2]
        out = query.new_empty(1, tokens, heads, head_dim)
        count = plan.decodes
        if count:
            q = query[0, :, :count].transpose(0, 1).unsqueeze(2)  # [B, H, 1, D]
            k, v = self.gather(layer, plan.decode_tables.view(-1))
            width = plan.decode_tables.shape[1] * k.shape[1]
            k = k.view(count, width, *k.shape[2:]).transpose(1, 2)  # [B, KVH, L, D]
            v = v.view(count, width, *v.shape[2:]).transpose(1, 2)
            attended = scaled_dot_product_attention(
                q, k, v, attn_mask=plan.decode_mask, scale=scaling, enable_gqa=gqa
            )
            out[0, :count] = attended[:, :, 0]
        for chunk in plan.prefills:
            end = chunk.start + chunk.length
            q = query[:, :, chunk.start : end]
            k, v = self.gather(layer, chunk.blocks)
            k = k.flatten(0, 1)[: chunk.context].transpose(0, 1).unsqueeze(0)
            v = v.flatten(0, 1)[: chunk.context].transpose(0, 1).unsqueeze(0)
            attended = scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=chunk.mask,
                is_causal=chunk.mask is None,
                scale=scaling,
                enable_gqa=gqa,
            )
            out[0, chunk.start : end] = attended[0].transpose(0, 1)
        return out, None
