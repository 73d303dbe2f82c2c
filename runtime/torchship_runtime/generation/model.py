"""The `transformers` model format: a Hugging Face-style directory (config.json, safetensors
weights, tokenizer files, generation_config.json), read from local files only with transformers
(no hub, no remote code). A causal language model is served by the generation engine; any other
architecture is an encoder, served for embeddings."""

from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any

from ..errors import InferenceError
from ..model import DTYPES, Model
from ..protocol import TensorMetadata
from ..settings import RuntimeSettings
from .embeddings import Embedder
from .engine import Engine
from .memory import cache_bytes
from .runner import ModelRunner
from .sampling import SamplingParams

CAUSAL = ("ForCausalLM", "LMHeadModel")
TEXT_INPUT = TensorMetadata(name="text_input", datatype="BYTES", shape=[1])


class TextGenerator:
    """The tokenizer, the model runner and the engine of one causal language model."""

    def __init__(self, path: Path, settings: RuntimeSettings, device: Any, dtype: Any) -> None:
        import transformers

        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=False
        )
        budget = cache_bytes(settings.kv_cache_bytes, settings.kv_cache_memory_fraction, device)
        runner = ModelRunner(
            path, device, dtype, budget, settings.kv_block_size, settings.max_model_length
        )
        self.context = runner.geometry.context
        self.vocab = runner.vocab
        self.engine = Engine(
            runner,
            self.tokenizer.backend_tokenizer,
            eos_ids(path, self.tokenizer),
            model=settings.model_name,
            max_running=settings.max_running_requests,
            max_waiting=settings.max_waiting_requests,
            step_tokens=settings.prefill_chunk_tokens,
        )
        self.engine.start()

    def check(self, ids: list[int], max_tokens: int | None) -> int:
        """The request's max_tokens (the rest of the context when not given); a 400 for a
        prompt that does not fit."""
        if not ids:
            raise InferenceError("the prompt is empty")
        if any(not 0 <= t < self.vocab for t in ids):
            raise InferenceError(f"token ids must be in [0, {self.vocab})")
        if len(ids) >= self.context:
            raise InferenceError(
                f"the prompt is {len(ids)} tokens; this model's context is {self.context} tokens"
            )
        room = self.context - len(ids)
        if max_tokens is not None and max_tokens > room:
            raise InferenceError(
                f"the prompt ({len(ids)} tokens) and max_tokens ({max_tokens}) make "
                f"{len(ids) + max_tokens} tokens; this model's context is {self.context} tokens",
            )
        return room if max_tokens is None else max_tokens

    def warm_up(self) -> None:
        """A few tokens through the whole engine: ready means it has generated."""
        answers: queue.Queue = queue.Queue()
        ids = self.tokenizer("warm-up")["input_ids"] or [0]
        self.engine.submit(
            ids, SamplingParams(max_tokens=4, temperature=0, ignore_eos=True), answers
        )
        while (delta := answers.get(timeout=300)).finish_reason is None:
            pass
        if delta.finish_reason == "error":
            raise RuntimeError(f"the engine failed its warm-up: {self.engine.failure}")


def eos_ids(path: Path, tokenizer: Any) -> frozenset[int]:
    """End-of-sequence ids: generation_config.json's, else config.json's, else the tokenizer's."""
    for name in ("generation_config.json", "config.json"):
        file = path / name
        if file.is_file() and (value := json.loads(file.read_text()).get("eos_token_id")):
            return frozenset(value if isinstance(value, list) else [value])
    return frozenset([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


class TransformersModel(Model):
    """Either generator or embedder is set once built."""

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.dtype = DTYPES[settings.dtype]
        self.generator: TextGenerator | None = None
        self.embedder: Embedder | None = None

    def build(self, path: Any) -> None:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a Hugging Face-style directory: no config.json")
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
        self.inputs = [TEXT_INPUT]
        if any(a.endswith(CAUSAL) for a in architectures):
            self.generator = TextGenerator(path, self.settings, self.device, self.dtype)
            self.platform = "transformers_text_generation"
            self.outputs = [TensorMetadata(name="text_output", datatype="BYTES", shape=[1])]
        else:
            self.embedder = Embedder(path, self.device, self.dtype)
            self.platform = "transformers_embedding"
            self.outputs = [TensorMetadata(name="embedding", datatype="FP32", shape=[-1])]

    def warm_up(self) -> None:
        (self.generator or self.embedder).warm_up()

    def prepare(self, inputs: list[Any]) -> dict[str, Any]:
        kind = "/generate, /v1/completions" if self.generator else "/v1/embeddings"
        raise InferenceError(f"model {self.name} is served through {kind}, not infer")

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        raise InferenceError(f"model {self.name} does not take tensors")

    @property
    def healthy(self) -> bool:
        """False once the engine's thread has failed (liveness turns 503)."""
        return self.generator is None or self.generator.engine.healthy

    def close(self) -> None:
        if self.generator is not None:
            self.generator.engine.stop()
