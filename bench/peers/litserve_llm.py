"""LitServe streaming transformers' `generate()`, the common recipe for a language model behind
LitServe: a LitAPI whose `predict` runs `generate()` in a thread with a streamer and yields the
text as it comes, served through LitServe's OpenAI spec (`POST /v1/chat/completions`).

One difference from the recipe's TextIteratorStreamer, which holds text back to word
boundaries: the streamer here yields every token's text as soon as it is made, so that the load
generator sees one chunk per token, as it does from the other servers. EOS is ignored (the
benchmark's rule) by asking `generate()` for `max_tokens` new tokens at least and at most.

    python bench/peers/litserve_llm.py --model DIR --port 9003
"""

from __future__ import annotations

import argparse
import queue
import threading
from collections.abc import Iterator
from typing import Any

import litserve as ls
import litserve.server
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer


class TokenStreamer(BaseStreamer):
    """Hands each new token's text to a queue: the text the sequence's decoding grew by."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.text = ""
        self.prompt_seen = False
        self.queue: queue.Queue[str | None] = queue.Queue()

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() puts the prompt first
            self.prompt_seen = True
            return
        self.tokens.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        self.queue.put(text[len(self.text) :])
        self.text = text

    def end(self) -> None:
        self.queue.put(None)


class GenerateAPI(ls.LitAPI):
    def __init__(self, model_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_dir = model_dir

    def setup(self, device: str) -> None:
        torch.set_num_threads(2)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_dir, local_files_only=True, dtype=torch.float32
        ).eval()

    def decode_request(self, request: Any, context: Any = None) -> dict[str, Any]:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        ids = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        return {"input_ids": ids, "max_tokens": request.max_tokens or 16}

    def predict(self, x: dict[str, Any]) -> Iterator[dict[str, Any]]:
        streamer = TokenStreamer(self.tokenizer)
        budget = x["max_tokens"]
        kwargs = {
            "input_ids": x["input_ids"],
            "attention_mask": torch.ones_like(x["input_ids"]),
            "max_new_tokens": budget,
            "min_new_tokens": budget,
            "do_sample": False,
            "streamer": streamer,
        }
        worker = threading.Thread(target=self._generate, kwargs=kwargs)
        worker.start()
        prompt_tokens, count = x["input_ids"].shape[1], 0
        while (piece := streamer.queue.get()) is not None:
            count += 1
            yield {
                "role": "assistant",
                "content": piece,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": count,
                "total_tokens": prompt_tokens + count,
            }
        worker.join()

    def _generate(self, **kwargs: Any) -> None:
        try:
            with torch.inference_mode():
                self.model.generate(**kwargs)
        finally:
            kwargs["streamer"].end()  # again after a normal end: the reader stops at the first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="a Hugging Face-style directory")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # LitServe 0.2.19 turns its MCP endpoint on when `mcp` is installed (vLLM brings it) but
    # imports it only when `fastmcp` is: off, as without vLLM beside it.
    litserve.server._MCP_AVAILABLE = False
    api = GenerateAPI(args.model, spec=ls.OpenAISpec())
    # No request timeout: at concurrency 64 a request waits for the 63 before it.
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=False)
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False)


if __name__ == "__main__":
    main()
