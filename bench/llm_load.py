#!/usr/bin/env python3
"""An OpenAI-API streaming load generator: the same requests, sent the same way, to any server
that speaks `POST /v1/chat/completions` (or `/v1/completions`) with `stream: true`.

A round is closed-loop: `concurrency` clients each send their next request as soon as the last
one has finished, until the round's requests are all sent or its deadline has passed (no request
starts after it). It is cut at its limit: requests still streaming then are cancelled and what
they had streamed counts, marked as cut, so that a slow server bounds the run too. Per request
it records the time to the first content chunk (TTFT), the gaps between content chunks
(inter-token latency, ITL: what a reader sees; a server that falls behind may send several
tokens in one chunk, as vLLM does under load), the time per output token after the first
(TPOT: (last chunk - first chunk) / (tokens - 1), GuideLLM's and vLLM's per-request figure) and
the completion tokens (the server's `usage` when it sends one, else the count of content
chunks); per round the output tokens/s (all tokens streamed over the round's wall time) and the
percentiles. Loopback only.

    .venv/bin/python bench/llm_load.py --url http://127.0.0.1:8000 --model NAME \\
        --tokenizer MODEL_DIR/tokenizer.json --concurrency 1 16 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

CORPUS = Path(__file__).resolve().parent.parent / "hack" / "llm_corpus.txt"


@dataclass(frozen=True)
class Request:
    prompt: str
    prompt_tokens: int
    max_tokens: int


@dataclass
class Sample:
    """One streamed request as the client saw it (seconds, from the request's send)."""

    ttft: float = math.nan
    last: float = math.nan  # the last content chunk
    gaps: list[float] = field(default_factory=list)
    tokens: int = 0
    chunks: int = 0
    wanted: int = 0
    error: str | None = None
    cut: bool = False  # cancelled at the round's limit while streaming


@dataclass(frozen=True)
class Summary:
    concurrency: int
    requests: int
    errors: int
    short: int  # completed with fewer tokens than asked: EOS or a stop was not ignored
    cut: int  # still streaming at the round's limit: their tokens so far count
    output_tokens: int
    chunks: int
    wall_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    tpot_p50_ms: float
    tpot_p99_ms: float
    first_error: str | None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples: Sequence[Sample], concurrency: int, wall_s: float) -> Summary:
    done = [s for s in samples if s.error is None]
    failed = [s for s in samples if s.error is not None]
    ttfts = [s.ttft for s in done if not math.isnan(s.ttft)]
    gaps = [gap for s in done for gap in s.gaps]
    tpots = [(s.last - s.ttft) / (s.tokens - 1) for s in done if s.tokens > 1 and s.gaps]
    tokens = sum(s.tokens for s in done)
    return Summary(
        concurrency=concurrency,
        requests=len(done),
        errors=len(failed),
        short=sum(1 for s in done if s.tokens < s.wanted and not s.cut),
        cut=sum(1 for s in done if s.cut),
        output_tokens=tokens,
        chunks=sum(s.chunks for s in done),
        wall_s=round(wall_s, 3),
        output_tokens_per_s=round(tokens / wall_s, 1) if wall_s > 0 else math.nan,
        ttft_p50_ms=round(percentile(ttfts, 50) * 1e3, 1),
        ttft_p99_ms=round(percentile(ttfts, 99) * 1e3, 1),
        itl_p50_ms=round(percentile(gaps, 50) * 1e3, 1),
        itl_p99_ms=round(percentile(gaps, 99) * 1e3, 1),
        tpot_p50_ms=round(percentile(tpots, 50) * 1e3, 1),
        tpot_p99_ms=round(percentile(tpots, 99) * 1e3, 1),
        first_error=failed[0].error if failed else None,
    )


def make_requests(
    tokenizer_file: Path,
    count: int,
    seed: int = 0,
    prompt_tokens: tuple[int, int] = (40, 400),
    output_tokens: tuple[int, int] = (64, 256),
    corpus: Path = CORPUS,
) -> list[Request]:
    """`count` prompts cut from the corpus at token boundaries of the model's own tokenizer, with
    lengths and output lengths drawn uniformly (seeded) from the two ranges."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    text = corpus.read_text()
    encoding = tokenizer.encode(text, add_special_tokens=False)
    offsets = encoding.offsets
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        length = rng.randint(*prompt_tokens)
        start = rng.randrange(len(offsets) - length)
        prompt = text[offsets[start][0] : offsets[start + length - 1][1]]
        requests.append(Request(prompt, length, rng.randint(*output_tokens)))
    return requests


def body(
    request: Request, model: str, endpoint: str, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """The request body: greedy, streamed, with usage asked for; `extra` adds what a server
    needs to ignore EOS (vLLM and torchship: `ignore_eos`, `min_tokens`)."""
    common: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if endpoint == "chat":
        common["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        common["prompt"] = request.prompt
    return common | (extra or {})


def content(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    delta = choice.get("delta")
    return (delta.get("content") if delta else choice.get("text")) or ""


async def stream_one(
    client: httpx.AsyncClient, path: str, payload: dict[str, Any], sample: Sample
) -> None:
    """Streams one request into `sample`, which holds what came so far if it is cancelled."""
    usage_tokens = None
    sent = time.perf_counter()
    last = sent
    try:
        async with client.stream("POST", path, json=payload) as response:
            if response.status_code != 200:
                detail = (await response.aread())[:300].decode(errors="replace")
                sample.error = f"HTTP {response.status_code}: {detail}"
                return
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    usage_tokens = chunk["usage"].get("completion_tokens")
                if not content(chunk):
                    continue
                now = time.perf_counter()
                if sample.chunks == 0:
                    sample.ttft = now - sent
                else:
                    sample.gaps.append(now - last)
                last = now
                sample.last = now - sent
                sample.chunks += 1
    except (httpx.HTTPError, json.JSONDecodeError) as error:
        sample.error = f"{type(error).__name__}: {error}"
        return
    except asyncio.CancelledError:
        sample.cut, sample.tokens = True, sample.chunks
        raise
    sample.tokens = usage_tokens if usage_tokens is not None else sample.chunks
    if sample.chunks == 0:
        sample.error = "no content streamed"


async def run_round(
    url: str,
    model: str,
    requests: Sequence[Request],
    concurrency: int,
    *,
    endpoint: str = "chat",
    extra: dict[str, Any] | None = None,
    deadline_s: float = 60.0,
    limit_s: float = 180.0,
) -> Summary:
    """Sends `requests` with `concurrency` in flight; none starts after `deadline_s`, and those
    still streaming at `limit_s` are cut."""
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
    pending = iter(requests)
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(limit_s)
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=timeout, trust_env=False
    ) as client:
        start = time.perf_counter()
        stop_at = start + deadline_s

        async def user() -> None:
            for request in pending:
                if time.perf_counter() > stop_at:
                    return
                sample = Sample(wanted=request.max_tokens)
                samples.append(sample)
                await stream_one(client, path, body(request, model, endpoint, extra), sample)

        users = [asyncio.ensure_future(user()) for _ in range(concurrency)]
        await asyncio.wait(users, timeout=limit_s)
        for task in users:
            task.cancel()
        await asyncio.gather(*users, return_exceptions=True)
        wall = min(time.perf_counter() - start, limit_s)
    return summarize(samples, concurrency, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT (loopback)")
    parser.add_argument("--model", required=True, help="the model name the server expects")
    parser.add_argument("--tokenizer", type=Path, required=True, help="the model's tokenizer.json")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--requests", type=int, default=0, help="per round (0: 2x concurrency)")
    parser.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    parser.add_argument("--extra", default="{}", help="JSON merged into every request body")
    parser.add_argument("--deadline", type=float, default=60.0, help="no request starts after")
    parser.add_argument("--limit", type=float, default=180.0, help="seconds: streams cut then")
    args = parser.parse_args()
    host = httpx.URL(args.url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    for concurrency in args.concurrency:
        count = args.requests or max(2 * concurrency, 4)
        requests = make_requests(args.tokenizer, count, seed=concurrency)
        summary = asyncio.run(
            run_round(
                args.url,
                args.model,
                requests,
                concurrency,
                endpoint=args.endpoint,
                extra=json.loads(args.extra),
                deadline_s=args.deadline,
                limit_s=args.limit,
            )
        )
        print(json.dumps(asdict(summary)))


if __name__ == "__main__":
    main()
