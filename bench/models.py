"""The benchmark's two models, built the same way by every server under test.

SMALL: MLP 64->128->10, where HTTP and JSON overhead dominate.
HEAVY: MLP 1024->4096->4096->1024, where the forward pass dominates.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

SHAPES = {"small": (64, 128, 10), "heavy": (1024, 4096, 4096, 1024)}


def build(name: str) -> nn.Module:
    """The model with fixed weights (seeded), in eval mode."""
    sizes = SHAPES[name]
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def input_width(name: str) -> int:
    return SHAPES[name][0]
