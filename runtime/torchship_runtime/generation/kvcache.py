"""The paged KV cache: every layer's keys and values in one pool of fixed-size blocks, handed to
sequences a block at a time as they grow, so memory goes to tokens that exist rather than to
each request's longest possible length.

Layout: per layer, keys and values as `[blocks, block_size, kv_heads, head_dim]`. A token's
slot is `block * block_size + offset`; a step writes all its new tokens with one `index_copy_`
per layer, and attention reads a sequence's blocks by its block table.
"""

from __future__ import annotations

from collections import deque

import torch


class BlockPool:
    """Free blocks and who holds them (no tensors here: the scheduler's bookkeeping)."""

    def __init__(self, blocks: int, block_size: int) -> None:
        self.blocks = blocks
        self.block_size = block_size
        self.free: deque[int] = deque(range(blocks))

    @property
    def used(self) -> int:
        return self.blocks - len(self.free)

    def usage(self) -> float:
        """0..1: the share of blocks held by sequences."""
        return self.used / self.blocks

    def needed(self, held: int, tokens: int) -> int:
        """Blocks to add to `held` ones for `tokens` tokens in all."""
        return max(0, -(-tokens // self.block_size) - held)

    def take(self, count: int) -> list[int]:
        if count > len(self.free):
            raise MemoryError(f"{count} KV blocks wanted, {len(self.free)} free")
        return [self.free.popleft() for _ in range(count)]

    def give_back(self, blocks: list[int]) -> None:
        self.free.extend(blocks)
        blocks.clear()


class PagedKVCache:
    """The tensors of the pool, one key and one value tensor per layer."""

    def __init__(
        self,
        layers: int,
        blocks: int,
        block_size: int,
        kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (blocks, block_size, kv_heads, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.block_size = block_size
        self.slots: torch.Tensor | None = None  # this step's write positions, set per step

    @staticmethod
    def bytes_per_block(
        layers: int, block_size: int, kv_heads: int, head_dim: int, dtype: torch.dtype
    ) -> int:
        return 2 * layers * block_size * kv_heads * head_dim * dtype.itemsize

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer: int, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What transformers' attention modules call with a step's new keys and values
        (`[1, kv_heads, tokens, head_dim]`): written into their slots; attention reads the pool."""
        slots = self.slots
        flat_keys = self.keys[layer].view(-1, *self.keys[layer].shape[2:])
        flat_values = self.values[layer].view(-1, *self.values[layer].shape[2:])
        flat_keys.index_copy_(0, slots, key[0].transpose(0, 1))
        flat_values.index_copy_(0, slots, value[0].transpose(0, 1))
        return key, value
