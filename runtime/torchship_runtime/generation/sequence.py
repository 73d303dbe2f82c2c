"""One request in the engine: its tokens, its KV blocks, how far the cache has computed it, and
its text as it grows (incremental detokenisation, stop strings), plus the timestamps the metrics
read."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

from .sampling import SamplingParams

_ids = itertools.count()


@dataclass
class Delta:
    """What a request hears after a step: new text and token ids, and how it ended, if it did."""

    text: str
    tokens: list[int]
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Sequence:
    def __init__(
        self, prompt: list[int], params: SamplingParams, tokenizer: Any, sink: Any, loop: Any
    ) -> None:
        self.id = next(_ids)
        self.prompt_length = len(prompt)
        self.tokens = list(prompt)  # prompt, then every generated token
        self.params = params
        self.generator = params.generator()
        self.sink, self.loop = sink, loop  # outputs go to sink.put_nowait (on `loop` if any)
        self.blocks: list[int] = []
        self.computed = 0  # tokens whose keys and values are in the cache
        self.finish_reason: str | None = None
        self.arrived = time.perf_counter()
        self.scheduled: float | None = None
        self.last_token: float | None = None
        self.text = Text(tokenizer, self.tokens, params.stop)

    @property
    def generated(self) -> int:
        return len(self.tokens) - self.prompt_length

    def append(self, token: int, eos: frozenset[int]) -> Delta:
        """A sampled token: its text, and whether it ends the sequence."""
        self.tokens.append(token)
        params = self.params
        if token in params.stop_token_ids or (token in eos and not params.ignore_eos):
            self.finish_reason = "stop"
            text = self.text.flush(self.tokens[:-1])
        else:
            text = self.text.add(self.tokens)
            if self.text.stopped:
                self.finish_reason = "stop"
            elif self.generated >= params.max_tokens:
                self.finish_reason = "length"
            if self.finish_reason is not None and not self.text.stopped:
                text += self.text.flush(self.tokens)
        return self.delta(text, [token])

    def delta(self, text: str, tokens: list[int]) -> Delta:
        return Delta(text, tokens, self.finish_reason, self.prompt_length, self.generated)


class Text:
    """Generated text from token ids, a step at a time: bytes that do not yet make a whole
    character wait for the next token; a stop string ends the text before it, and while one
    could still be forming its first characters are held back."""

    def __init__(self, tokenizer: Any, prompt: list[int], stop: tuple[str, ...]) -> None:
        self.decode = tokenizer.decode
        self.prefix = max(len(prompt) - 4, 0)  # a little prompt context for the first token
        self.read = len(prompt)
        self.stop = stop
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.text = ""  # generated so far
        self.sent = 0  # characters of it already handed out
        self.stopped = False

    def _new(self, tokens: list[int], final: bool) -> str:
        before = self.decode(tokens[self.prefix : self.read], skip_special_tokens=True)
        after = self.decode(tokens[self.prefix :], skip_special_tokens=True)
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        self.prefix, self.read = self.read, len(tokens)
        return after[len(before) :]

    def add(self, tokens: list[int]) -> str:
        new = self._new(tokens, final=False)
        if not new:
            return ""
        start = max(len(self.text) - self.hold, 0)
        self.text += new
        found = [i for i in (self.text.find(s, start) for s in self.stop) if i != -1]
        if found:  # the earliest stop string ends the text
            self.text = self.text[: min(found)]
            self.stopped = True
        end = len(self.text) if self.stopped else max(len(self.text) - self.hold, self.sent)
        out, self.sent = self.text[self.sent : end], end
        return out

    def flush(self, tokens: list[int]) -> str:
        """The rest of the text, at the end."""
        if not self.stopped:
            self.text += self._new(tokens, final=True)
        out, self.sent = self.text[self.sent :], len(self.text)
        return out
