"""generation/sequence.py: incremental text, stop strings, stop tokens and max_tokens."""

from __future__ import annotations

import llmfiles
import pytest

from torchship_runtime.generation.sampling import SamplingParams
from torchship_runtime.generation.sequence import Sequence


@pytest.fixture(scope="module")
def tokenizer():
    return llmfiles.train_tokenizer(300)


def run(tokenizer, text: str, **options) -> tuple[str, str | None, int]:
    """Feed the tokens of `text` one by one, as if generated."""
    prompt = tokenizer.encode("The prompt").ids
    params = SamplingParams(max_tokens=options.pop("max_tokens", 1000), **options)
    sequence = Sequence(prompt, params, tokenizer, None, None)
    out = ""
    for token in tokenizer.encode(text).ids:
        delta = sequence.append(token, frozenset([2]))
        out += delta.text
        if delta.finish_reason:
            return out, delta.finish_reason, sequence.generated
    return out, None, sequence.generated


def test_the_streamed_text_is_the_decoded_text(tokenizer):
    text = "Every pod reads its model — from a path, café, 日本 — and serves it."
    out, finish, _ = run(tokenizer, text + "<|im_end|>")
    assert (out, finish) == (text, "stop")


def test_a_stop_string_ends_the_text_before_it_and_is_never_streamed(tokenizer):
    out, finish, _ = run(tokenizer, "The runtime serves STOP and more", stop=("STOP", "xyz"))
    assert (out, finish) == ("The runtime serves ", "stop")
    out, finish, _ = run(tokenizer, "abc xyz def STOP", stop=("STOP", "xyz"))
    assert (out, finish) == ("abc ", "stop")


def test_max_tokens_and_stop_token_ids(tokenizer):
    _, finish, generated = run(tokenizer, "one two three four five six", max_tokens=3)
    assert (finish, generated) == ("length", 3)
    stop_id = tokenizer.encode(" three").ids[0]
    out, finish, _ = run(tokenizer, "one two three four", stop_token_ids=(stop_id,))
    assert (out, finish) == ("one two", "stop")


def test_ignore_eos_goes_on_past_the_end_token(tokenizer):
    _, finish, generated = run(tokenizer, "a<|im_end|>b", ignore_eos=True, max_tokens=3)
    assert (finish, generated) == ("length", 3)
