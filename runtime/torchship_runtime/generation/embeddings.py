"""Encoder models for `/v1/embeddings`: token states pooled the way the directory's
sentence-transformers configuration says (modules.json and its Pooling module's config: mean,
cls, max or last token; a Normalize module), mean pooling when it says nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import InferenceError

POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
}


def pooling_of(path: Path) -> tuple[str, bool]:
    """The pooling mode and whether vectors are L2-normalised."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return "mean", False
    modules = json.loads(modules_file.read_text())
    mode, normalize = "mean", False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            config = json.loads((path / module["path"] / "config.json").read_text())
            chosen = [m for key, m in POOLING_MODES.items() if config.get(key)]
            mode = chosen[0] if chosen else "mean"
        elif kind.endswith("Normalize"):
            normalize = True
    return mode, normalize


def pool(states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """`[batch, tokens, hidden]` states and `[batch, tokens]` mask to `[batch, hidden]`."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    if mode == "cls":
        return states[:, 0]
    if mode == "max":
        return states.masked_fill(weights == 0, float("-inf")).max(1).values
    if mode == "last":
        return states[torch.arange(states.shape[0]), mask.sum(1) - 1]
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class Embedder:
    """An encoder and its tokenizer, from local files only."""

    def __init__(self, path: Path, device: torch.device, dtype: torch.dtype) -> None:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=False
        )
        self.model = transformers.AutoModel.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, dtype=dtype
        )
        self.model.to(device).eval()
        self.device = device
        self.mode, self.normalize = pooling_of(path)
        self.context = min(
            self.model.config.max_position_embeddings, self.tokenizer.model_max_length
        )

    def tokenize(self, inputs: list[str] | list[list[int]]) -> list[list[int]]:
        """Token ids of every input (text, or ids as sent), each checked against the context."""
        if inputs and isinstance(inputs[0], str):
            ids = self.tokenizer(list(inputs))["input_ids"]
        else:
            ids = [list(i) for i in inputs]
        for index, tokens in enumerate(ids):
            if len(tokens) > self.context:
                raise InferenceError(
                    f"input {index} is {len(tokens)} tokens; this model's context is "
                    f"{self.context} tokens"
                )
            if not tokens:
                raise InferenceError(f"input {index} is empty")
        return ids

    def embed(self, ids: list[list[int]]) -> torch.Tensor:
        """Float32 vectors `[inputs, hidden]` (run in the forward thread)."""
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            states = self.model(**batch).last_hidden_state
            vectors = pool(states, batch["attention_mask"], self.mode).float()
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.cpu()

    def warm_up(self) -> None:
        self.embed(self.tokenize(["warm-up"]))

    def check(self, ids: Any) -> None:
        vocab = self.model.config.vocab_size
        if any(not 0 <= t < vocab for tokens in ids for t in tokens):
            raise InferenceError(f"token ids must be in [0, {vocab})")
