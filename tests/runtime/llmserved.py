"""The runtime serving small language models (hack/llmfiles.py) and the references the tests hold
it to: transformers' own generate() on the same directory, the same tokenizer."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import httpx
import llmfiles
from harness import RuntimeProcess

TOKEN = "generation-test-token"
# Texts of different lengths from the project's own prose.
CORPUS = Path(llmfiles.CORPUS).read_text()


def prompts(count: int, shortest: int = 10, step: int = 23) -> list[str]:
    return [CORPUS[1000 + 97 * i : 1000 + 97 * i + shortest + step * i] for i in range(count)]


def llm_env(path: Path, name: str = "tiny", **extra: str) -> dict[str, str]:
    return {
        "TORCHSHIP_MODEL_URI": str(path),
        "TORCHSHIP_MODEL_FORMAT": "transformers",
        "TORCHSHIP_MODEL_NAME": name,
        "TORCHSHIP_KV_CACHE_BYTES": str(16 * 2**20),
        **extra,
    }


def serve(workdir: Path, path: Path, **extra: str) -> RuntimeProcess:
    return RuntimeProcess(workdir, llm_env(path, **extra)).wait_ready(timeout=120)


@cache
def reference(path: str):  # -> (tokenizer, model)
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    return tokenizer, model.eval()


def generate(path: Path, ids: list[int], max_new_tokens: int) -> list[int]:
    """transformers' greedy generate(): the token ids after the prompt."""
    import torch

    _, model = reference(str(path))
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False, top_k=None
        )
    return out[0, len(ids) :].tolist()


def encode(path: Path, text: str) -> list[int]:
    return reference(str(path))[0](text)["input_ids"]


def decode(path: Path, ids: list[int]) -> str:
    return reference(str(path))[0].decode(ids, skip_special_tokens=True)


def metric(url: str, name: str, **labels: str) -> float:
    """The first sample of `name` whose labels include `labels`."""
    text = httpx.get(f"{url}/metrics").text
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for found in re.finditer(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", text, re.M):
        if all(label in (found.group(1) or "") for label in wanted):
            return float(found.group(2))
    raise AssertionError(f"no {name} {labels} in /metrics")
