"""The benchmark's two models, built the same way by every server under test (hack/harness.py
builds the MLP; hack/ must be on the path).

SMALL: MLP 64->128->10, where HTTP and JSON overhead dominate.
HEAVY: MLP 1024->4096->4096->1024, where the forward pass dominates.
"""

from __future__ import annotations

from harness import mlp
from torch import nn

SHAPES = {"small": (64, 128, 10), "heavy": (1024, 4096, 4096, 1024)}


def build(name: str) -> nn.Module:
    """The model with fixed weights (seeded), in eval mode."""
    return mlp(SHAPES[name], seed=0)


def input_width(name: str) -> int:
    return SHAPES[name][0]
