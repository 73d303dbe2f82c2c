"""One layer's decode attention over the paged KV cache, the way `generation/attention.py`
reads it, with the blocks gathered into a fresh tensor (as before) or into a reused workspace
(as now): 64 sequences of 428 tokens, blocks of 16, 8 KV heads of 64, float32, 2 threads.

    .venv/bin/python bench/paged_gather.py [--sequences 64] [--context 428]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn.functional import scaled_dot_product_attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--context", type=int, default=428)
    args = parser.parse_args()
    torch.set_num_threads(2)
    count, size, heads, dim = args.sequences, 16, 8, 64
    width = -(-args.context // size)
    pool = [torch.randn(count * width + 8, size, heads, dim) for _ in range(2)]
    tables = torch.randperm(count * width + 8)[: count * width].view(count, width)
    mask = torch.arange(width * size)[None, :] < torch.full((count,), args.context)[:, None]
    mask = mask[:, None, None, :]
    query = torch.randn(count, heads, 1, dim)
    workspace = [torch.empty(count * width, size, heads, dim) for _ in range(2)]

    def attend(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        k, v = (t.view(count, width * size, heads, dim).transpose(1, 2) for t in (k, v))
        return scaled_dot_product_attention(query, k, v, attn_mask=mask)

    def fresh() -> torch.Tensor:
        return attend(pool[0][tables], pool[1][tables])

    def reused() -> torch.Tensor:
        for source, out in zip(pool, workspace, strict=True):
            torch.index_select(source, 0, tables.view(-1), out=out)
        return attend(*workspace)

    assert torch.equal(fresh(), reused())
    for function in (fresh, reused):
        function()
        started = time.perf_counter()
        for _ in range(10):
            function()
        ms = (time.perf_counter() - started) * 100
        print(f"{function.__name__} gather + attention: {ms:.1f} ms a layer")


if __name__ == "__main__":
    main()
