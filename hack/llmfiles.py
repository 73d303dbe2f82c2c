"""Small Hugging Face-style language model directories, made here from nothing but the repository:
a byte-level BPE tokenizer trained by `tokenizers` on hack/llm_corpus.txt (the project's own
documentation), and a causal language model of a real transformers architecture (Llama, Qwen2,
GPT-2) with seeded random weights, saved the way the hub's models are:

    config.json, model.safetensors, generation_config.json,
    tokenizer.json, tokenizer_config.json (with a ChatML chat template)

The runtime's `transformers` format serves such a directory; the tests compare it with
transformers' own `generate()` on the very same files. The same seed gives the same files.

    python hack/llmfiles.py DIR [--architecture llama] [--size tiny|30m|120m] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).with_name("llm_corpus.txt")
ARCHITECTURES = ("llama", "qwen2", "gpt2")
# The end of a turn ends generation; the text's end is the padding and BOS.
END_OF_TEXT, TURN_START, TURN_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [END_OF_TEXT, TURN_START, TURN_END]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Size:
    """A model's shape. `initializer_range` is transformers' init standard deviation: larger
    than the usual 0.02, so that random logits are spread and greedy choices seldom near-tie."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    context: int
    initializer_range: float = 0.1


SIZES = {
    # Tests: a few hundred thousand parameters, a forward pass in well under a millisecond.
    "tiny": Size(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512,
                 context=512),
    # The benchmark's model: about 30 M parameters (Llama: 27.8 M).
    "30m": Size(hidden=512, layers=8, heads=8, kv_heads=8, intermediate=1408, vocab=2048,
                context=2048, initializer_range=0.02),
    # A larger one a 2-core machine still runs: about 120 M parameters (Llama).
    "120m": Size(hidden=768, layers=16, heads=12, kv_heads=4, intermediate=2560, vocab=2048,
                 context=2048, initializer_range=0.02),
}  # fmt: skip


def train_tokenizer(vocab_size: int, corpus: Path = CORPUS) -> Any:
    """A byte-level BPE tokenizer (GPT-2's scheme: any byte sequence encodes) of `vocab_size`
    tokens, the special tokens first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in corpus.read_text().splitlines() if not line.startswith("# Text")]
    tokenizer.train_from_iterator(lines, trainer)
    return tokenizer


def write_tokenizer(directory: Path, vocab_size: int, context: int) -> dict[str, int]:
    """tokenizer.json and tokenizer_config.json; the special tokens' ids."""
    tokenizer = train_tokenizer(vocab_size)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": END_OF_TEXT,
        "eos_token": TURN_END,
        "pad_token": END_OF_TEXT,
        "unk_token": None,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": context,
        "chat_template": CHAT_TEMPLATE,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}


def model_config(architecture: str, size: Size, vocab: int, ids: dict[str, int]) -> Any:
    import transformers

    common = {
        "vocab_size": vocab,
        "bos_token_id": ids[END_OF_TEXT],
        "eos_token_id": ids[TURN_END],
        "pad_token_id": ids[END_OF_TEXT],
        "initializer_range": size.initializer_range,
        "tie_word_embeddings": False,
    }
    if architecture == "gpt2":
        return transformers.GPT2Config(
            n_embd=size.hidden,
            n_layer=size.layers,
            n_head=size.heads,
            n_inner=size.intermediate,
            n_positions=size.context,
            **common,
        )
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}
    return config_class[architecture](
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        intermediate_size=size.intermediate,
        max_position_embeddings=size.context,
        **common,
    )


def build(
    directory: Path | str,
    architecture: str = "llama",
    size: str | Size = "tiny",
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """A model directory at `directory` (created); the same arguments give the same files."""
    import torch
    import transformers

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r}: one of {ARCHITECTURES}")
    shape = SIZES[size] if isinstance(size, str) else size
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer(directory, shape.vocab, shape.context)
    vocab = len(json.loads((directory / "tokenizer.json").read_text())["model"]["vocab"])
    config = model_config(architecture, shape, vocab, ids)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model = model.to(getattr(torch, dtype)).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=ids[END_OF_TEXT], eos_token_id=ids[TURN_END], pad_token_id=ids[END_OF_TEXT]
    )
    model.save_pretrained(directory)  # config.json, model.safetensors, generation_config.json
    return directory


def parameters(directory: Path | str) -> int:
    """The number of parameters in a built directory's weights."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(Path(directory) / "model.safetensors"), "pt") as weights:
        for name in weights.keys():  # noqa: SIM118 (safe_open is not a dict)
            total += math.prod(weights.get_slice(name).get_shape())
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="llama")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    args = parser.parse_args(argv)
    path = build(args.directory, args.architecture, args.size, args.seed, args.dtype)
    print(f"{path}: {args.architecture} {args.size}, {parameters(path) / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
