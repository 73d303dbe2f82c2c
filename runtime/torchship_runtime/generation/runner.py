"""A causal language model of a transformers architecture, loaded from local files only (never a
hub, never remote code), run one step plan at a time over the paged KV cache: one forward pass
for every running sequence's new tokens, logits only at the rows that are sampled."""

from __future__ import annotations

import inspect
import itertools
import logging
from pathlib import Path

import torch

from .attention import PagedAttention, StepPlan
from .kvcache import BlockPool, PagedKVCache

log = logging.getLogger("torchship.runtime")
_names = itertools.count()


class Geometry:
    """What the cache needs to know about the model."""

    def __init__(self, config: object) -> None:
        self.layers = config.num_hidden_layers
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.context = config.max_position_embeddings


class ModelRunner:
    def __init__(
        self,
        path: Path,
        device: torch.device,
        dtype: torch.dtype,
        cache_bytes: int,
        block_size: int,
        context: int = 0,
    ) -> None:
        """`context`: the longest sequence served (0: the model's own)."""
        import transformers

        config = transformers.AutoConfig.from_pretrained(
            path, local_files_only=True, trust_remote_code=False
        )
        self.geometry = shape = Geometry(config)
        shape.context = min(context, shape.context) if context else shape.context
        per_block = PagedKVCache.bytes_per_block(
            shape.layers, block_size, shape.kv_heads, shape.head_dim, dtype
        )
        blocks = cache_bytes // per_block
        if blocks < -(-shape.context // block_size):
            raise ValueError(
                f"a KV cache of {cache_bytes} bytes holds {blocks * block_size} tokens, less "
                f"than one full context of {shape.context} ({per_block} bytes a block of "
                f"{block_size}): raise kv_cache_bytes"
            )
        self.pool = BlockPool(blocks, block_size)
        self.cache = PagedKVCache(
            shape.layers, blocks, block_size, shape.kv_heads, shape.head_dim, dtype, device
        )
        self.attention = PagedAttention(self.cache)
        name = f"torchship_paged_{next(_names)}"
        transformers.AttentionInterface.register(name, self.attention)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            path,
            local_files_only=True,
            trust_remote_code=False,
            dtype=dtype,
            attn_implementation=name,
        )
        self.model.to(device).eval()
        self.device = device
        self.vocab = self.model.get_output_embeddings().weight.shape[0]
        # transformers 5 renames the forward's past_key_values to cache.
        parameters = inspect.signature(self.model.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        log.info(
            "KV cache: %d blocks of %d tokens (%.1f MiB)",
            blocks, block_size, blocks * per_block / 2**20,
        )  # fmt: skip

    def forward(self, plan: StepPlan) -> torch.Tensor:
        """Float32 logits `[sampled rows, vocab]`."""
        self.cache.slots = plan.slots
        self.attention.plan = plan
        with torch.inference_mode():
            output = self.model(
                input_ids=plan.tokens.unsqueeze(0),
                position_ids=plan.positions,
                use_cache=True,
                logits_to_keep=plan.sample_rows,
                **{self.cache_argument: self.cache},
            )
        return output.logits[0].float()
