"""The transformers format's text generation through a real server (hack/llmfiles.py's small
models of real architectures, seeded weights, a tokenizer trained on the project's docs), held
to transformers' own generate() token for token, with the unmodified openai client."""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import llmfiles
import openai
import pytest
from llmserved import TOKEN, decode, encode, generate, metric, prompts, reference, serve


def start(tmp_path_factory, model_dir):
    workdir = tmp_path_factory.mktemp("server")
    (workdir / "token").write_text(TOKEN)
    # A small prefill chunk: the longer prompts take several steps beside running streams.
    return serve(
        workdir,
        model_dir,
        TORCHSHIP_AUTH_TOKEN_FILE=str(workdir / "token"),
        TORCHSHIP_PREFILL_CHUNK_TOKENS="32",
    )


# What does not depend on the architecture (sampling, the wire, validation, cancellation,
# metrics) runs once, on Llama; the Llama server also serves Llama's turn of the rest.
@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return llmfiles.build(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory, llama_dir):
    running = start(tmp_path_factory, llama_dir)
    yield running
    running.stop()


# Equality with generate() runs on every architecture.
@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen2"])
def architecture(request):
    return request.param


@pytest.fixture(scope="module")
def model_dir(request, tmp_path_factory, architecture):
    if architecture == "llama":
        return request.getfixturevalue("llama_dir")
    return llmfiles.build(tmp_path_factory.mktemp(architecture), architecture)


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, architecture, model_dir):
    if architecture == "llama":
        yield request.getfixturevalue("llama_server")
        return
    running = start(tmp_path_factory, model_dir)
    yield running
    running.stop()


def client(server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)


EXTENSIONS = ("ignore_eos", "top_k", "stop_token_ids")


async def complete(api, prompt: str, stream: bool, **options) -> tuple[str, str, dict]:
    """Text, finish reason and usage of one completion, streamed or not (vLLM's extensions,
    as the openai client sends them: in the extra body)."""
    extra = {k: options.pop(k) for k in EXTENSIONS if k in options}
    options["extra_body"] = extra
    if not stream:
        done = await api.completions.create(model="tiny", prompt=prompt, **options)
        return done.choices[0].text, done.choices[0].finish_reason, done.usage.model_dump()
    chunks = await api.completions.create(
        model="tiny", prompt=prompt, stream=True, stream_options={"include_usage": True}, **options
    )
    text, finish, usage = "", None, None
    async for chunk in chunks:
        if chunk.choices:
            text += chunk.choices[0].text
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage.model_dump()
    return text, finish, usage


def test_greedy_equals_transformers_generate_with_sixteen_staggered_requests(server, model_dir):
    """16 prompts of 10 to 355 characters, streamed and not, arriving 0 to 75 ms apart: each
    joins and leaves the running batch at its own step, and each answer is generate()'s."""
    texts = prompts(16)
    api = client(server)

    async def one(index: int, prompt: str):
        await asyncio.sleep(0.005 * index)
        return await complete(api, prompt, index % 2 == 1, max_tokens=24 + index, temperature=0)

    async def everyone():
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(texts)))

    answers = asyncio.run(everyone())
    for index, (prompt, (text, finish, usage)) in enumerate(zip(texts, answers, strict=True)):
        ids = encode(model_dir, prompt)
        expected = generate(model_dir, ids, 24 + index)
        assert text == decode(model_dir, expected), f"request {index} differs"
        assert usage["prompt_tokens"] == len(ids)
        assert usage["completion_tokens"] == len(expected)
        assert finish == ("length" if len(expected) == 24 + index else "stop")


def test_chat_through_the_template_equals_generate(server, model_dir):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    sync = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)
    answer = sync.chat.completions.create(
        model="tiny", messages=messages, max_tokens=12, temperature=0
    )
    tokenizer, _ = reference(str(model_dir))
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"])
    expected = generate(model_dir, ids, 12)
    assert answer.choices[0].message.content == decode(model_dir, expected)
    assert answer.choices[0].message.role == "assistant"
    assert answer.usage.prompt_tokens == len(ids)
    streamed = sync.chat.completions.create(
        model="tiny", messages=messages, max_tokens=12, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == answer.choices[0].message.content


def test_seeded_sampling_is_reproducible_beside_other_requests(llama_server):
    api = client(llama_server)
    options = {"max_tokens": 20, "temperature": 0.9, "top_p": 0.9, "ignore_eos": True}

    async def run():
        noise = [complete(api, p, False, max_tokens=30, temperature=1.0) for p in prompts(5)]
        seeded = [complete(api, "The runtime", s, seed=7, **options) for s in (False, True)]
        other = complete(api, "The runtime", False, seed=8, **options)
        return await asyncio.gather(*seeded, other, *noise)

    first, streamed, other, *_ = asyncio.run(run())
    again = asyncio.run(complete(client(llama_server), "The runtime", False, seed=7, **options))
    assert first[0] == streamed[0] == again[0]
    assert first[0] != other[0]  # another seed, other tokens (20 of them: never all equal)
    top_k = asyncio.run(
        complete(client(llama_server), "The runtime", False, seed=3, top_k=1, **options)
    )
    greedy = asyncio.run(
        complete(
            client(llama_server),
            "The runtime",
            False,
            max_tokens=20,
            temperature=0,
            ignore_eos=True,
        )
    )
    assert top_k[0] == greedy[0]  # top_k 1 leaves one choice


def test_stop_strings_end_the_text_before_the_stop(llama_server):
    api = client(llama_server)
    options = {"max_tokens": 40, "temperature": 0, "ignore_eos": True}
    full, _, _ = asyncio.run(complete(api, "The operator", False, **options))
    stop = full[15:18]
    before = full[: full.index(stop)]
    for stream in (False, True):
        text, finish, usage = asyncio.run(
            complete(
                client(llama_server), "The operator", stream, stop=[stop, "\x00never"], **options
            )
        )
        assert (text, finish) == (before, "stop")
        assert usage["completion_tokens"] < 40


def test_max_tokens_and_usage_count_the_tokenizers_tokens(llama_server, llama_dir):
    prompt = prompts(3)[2]
    _, finish, usage = asyncio.run(
        complete(client(llama_server), prompt, True, max_tokens=7, temperature=0.5, ignore_eos=True)
    )
    assert finish == "length"
    assert usage == {
        "prompt_tokens": len(encode(llama_dir, prompt)),
        "completion_tokens": 7,
        "total_tokens": len(encode(llama_dir, prompt)) + 7,
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
    }


def test_the_oip_generate_extension(llama_server, llama_dir):
    headers = {"authorization": f"Bearer {TOKEN}"}
    body = {"text_input": "The runtime", "parameters": {"max_tokens": 9, "temperature": 0}}
    expected = decode(llama_dir, generate(llama_dir, encode(llama_dir, "The runtime"), 9))
    answer = httpx.post(f"{llama_server.url}/v2/models/tiny/generate", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["text_output"] == expected
    assert answer.json()["details"]["finish_reason"] in ("length", "stop")
    with httpx.stream(
        "POST", f"{llama_server.url}/v2/models/tiny/generate_stream", json=body, headers=headers
    ) as streamed:
        events = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    docs = [json.loads(e.removeprefix("data: ")) for e in events]
    assert "".join(d["text_output"] for d in docs) == expected
    assert docs[-1]["details"]["completion_tokens"] <= 9
    metadata = httpx.get(f"{llama_server.url}/v2/models/tiny", headers=headers).json()
    assert metadata["platform"] == "transformers_text_generation"
    assert metadata["inputs"][0]["name"] == "text_input"
    tensor = {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["x"]}
    infer = httpx.post(
        f"{llama_server.url}/v2/models/tiny/infer", json={"inputs": [tensor]}, headers=headers
    )
    assert infer.status_code == 400 and "generate" in infer.json()["error"]


HOSTILE = [
    ({"model": "tiny", "prompt": 5}, "prompt"),
    ({"model": "tiny", "prompt": "x", "max_tokens": "many"}, "max_tokens"),
    ({"model": "tiny", "prompt": "x", "max_tokens": 10**9}, "context"),
    ({"model": "tiny", "prompt": "x", "n": 2}, "n"),
    ({"model": "tiny", "prompt": "x", "presence_penalty": 0.5}, "presence_penalty"),
    ({"model": "tiny", "prompt": "x", "logprobs": 3}, "logprobs"),
    ({"model": "tiny", "prompt": "x", "temperature": -1}, "temperature"),
    ({"model": "tiny", "prompt": "x", "frobnicate": True}, "frobnicate"),
    ({"model": "tiny", "prompt": ""}, "empty"),
    ({"model": "tiny", "prompt": [10**9]}, "token ids"),
    ({"model": "other", "prompt": "x"}, "other"),
    ({"model": "tiny", "prompt": "x", "stop": [""]}, "stop"),
]


def test_hostile_bodies_get_4xx_with_a_message_and_serving_goes_on(llama_server):
    url, headers = llama_server.url, {"authorization": f"Bearer {TOKEN}"}
    for body, words in HOSTILE:
        answer = httpx.post(f"{url}/v1/completions", json=body, headers=headers)
        assert 400 <= answer.status_code < 500, (body, answer.text)
        error = answer.json()["error"]
        assert words in error["message"], (body, error)
    chats = [
        {"model": "tiny", "messages": []},
        {"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]},
        {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
    ]
    for body in chats:
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers)
        assert answer.status_code == 400, answer.text
    for raw in (b"\xff\xfe not utf-8", b"{", b"[]"):
        answer = httpx.post(f"{url}/v1/completions", content=raw, headers=headers)
        assert answer.status_code == 400, answer.text
    unauthorized = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "x"})
    assert unauthorized.status_code == 401
    long_prompt = {"model": "tiny", "prompt": "the runtime " * 400, "max_tokens": 1}
    answer = httpx.post(f"{url}/v1/completions", json=long_prompt, headers=headers)
    assert answer.status_code == 400
    assert "512" in answer.json()["error"]["message"]  # the context, beside the prompt's size
    good = httpx.post(
        f"{url}/v1/completions",
        json={"model": "tiny", "prompt": "x", "max_tokens": 3},
        headers=headers,
    )
    assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] >= 1


def test_a_disconnect_cancels_the_sequence_and_frees_its_blocks(llama_server):
    body = {"model": "tiny", "prompt": prompts(4)[3], "max_tokens": 400, "ignore_eos": True}
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.stream(
        "POST", f"{llama_server.url}/v1/completions", json=body | {"stream": True}, headers=headers
    ) as streamed:
        lines = streamed.iter_lines()
        assert next(lines).startswith("data: ")
        assert metric(llama_server.url, "torchship_kv_cache_usage_perc") > 0
        assert metric(llama_server.url, "torchship_num_requests_running") == 1
    # The client is gone: within a step or two the sequence and its blocks are.
    for _ in range(100):
        if metric(llama_server.url, "torchship_kv_cache_usage_perc") == 0:
            break
        asyncio.run(asyncio.sleep(0.02))
    assert metric(llama_server.url, "torchship_kv_cache_usage_perc") == 0
    assert metric(llama_server.url, "torchship_num_requests_running") == 0
    assert metric(llama_server.url, "torchship_request_success_total", finished_reason="abort") >= 1


def test_metrics_of_generation(llama_server):
    asyncio.run(complete(client(llama_server), "metrics", False, max_tokens=5, ignore_eos=True))
    url = llama_server.url
    assert metric(url, "torchship_time_to_first_token_seconds_count") >= 1
    assert metric(url, "torchship_inter_token_latency_seconds_count") >= 4
    assert metric(url, "torchship_e2e_request_latency_seconds_count") >= 1
    assert metric(url, "torchship_request_queue_time_seconds_count") >= 1
    assert metric(url, "torchship_prompt_tokens_total") >= 2
    assert metric(url, "torchship_generation_tokens_total") >= 5
    assert metric(url, "torchship_num_requests_waiting") == 0


def test_random_prompts_never_break_the_engine(llama_server):
    """Odd sizes, token-id prompts and sampling settings at once: every answer is well formed."""
    rng = random.Random(3)

    async def run():
        api = client(llama_server)
        jobs = []
        for _ in range(12):
            prompt = [rng.randrange(3, 500) for _ in range(rng.randrange(1, 120))]
            options = {"max_tokens": rng.randrange(1, 30), "temperature": rng.choice([0, 0.7])}
            jobs.append(api.completions.create(model="tiny", prompt=prompt, **options))
        return await asyncio.gather(*jobs)

    for answer in asyncio.run(run()):
        assert answer.choices[0].finish_reason in ("stop", "length")
        assert 1 <= answer.usage.completion_tokens <= 30


def openai_error(answer: httpx.Response, status: int, kind: str) -> dict:
    """The body of an error under /v1: OpenAI's error object, no other shape."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert (error["type"], error["code"]) == (kind, status) and error["message"]
    return error


def test_every_error_under_v1_is_openais_error_object(llama_server):
    """Errors raised before any OpenAI handler runs (the bearer token, the route table's 404
    and 405) answer OpenAI's error object too, as the openai client expects."""
    url, headers = llama_server.url, {"authorization": f"Bearer {TOKEN}"}
    wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.body["type"] == "authentication_error"
    assert "bearer token" in refused.value.message
    api = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        api.get("/no/such/route", cast_to=object)
    assert "no route for GET /v1/no/such/route" in missing.value.message
    missing = httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "x"})
    assert openai_error(missing, 401, "authentication_error")["param"] is None
    assert missing.headers["www-authenticate"] == "Bearer"
    openai_error(httpx.get(f"{url}/v1/nothing", headers=headers), 404, "not_found_error")
    openai_error(httpx.get(f"{url}/v1", headers=headers), 404, "not_found_error")
    refused = httpx.delete(f"{url}/v1/completions", headers=headers)
    openai_error(refused, 405, "invalid_request_error")
    assert refused.headers["allow"] == "POST"
    # KServe v1 is not served beside OpenAI's API: `:predict` is another model's name here.
    predict = httpx.post(f"{url}/v1/models/tiny:predict", json={"instances": []}, headers=headers)
    openai_error(predict, 405, "invalid_request_error")
    # Outside /v1 the runtime's own shape stays.
    plain = httpx.get(f"{url}/v2/nothing", headers=headers)
    assert plain.status_code == 404 and isinstance(plain.json()["error"], str)
    unauthorized = httpx.get(f"{url}/v2/models/tiny")
    assert unauthorized.status_code == 401 and isinstance(unauthorized.json()["error"], str)


def test_a_model_is_retrieved_as_openais_model_object(llama_server):
    api = openai.OpenAI(base_url=f"{llama_server.url}/v1", api_key=TOKEN, max_retries=0)
    model = api.models.retrieve("tiny")
    assert (model.id, model.object, model.owned_by) == ("tiny", "model", "torchship")
    assert 0 < model.created <= time.time()
    assert model.model_dump() == api.models.list().data[0].model_dump()
    assert model.model_extra == {"max_model_len": 512}
    with pytest.raises(openai.NotFoundError) as missing:
        api.models.retrieve("gpt-4")
    assert missing.value.body["param"] == "model" and "gpt-4" in missing.value.message
    headers = {"authorization": f"Bearer {TOKEN}"}
    answer = httpx.get(f"{llama_server.url}/v1/models/gpt-4", headers=headers)
    assert openai_error(answer, 404, "not_found_error")["param"] == "model"
