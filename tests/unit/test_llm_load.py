"""The streaming load generator's statistics (bench/llm_load.py): pure functions."""

import math

import pytest
from llm_load import Request, Sample, body, content, percentile, summarize


def test_percentile_interpolates_between_ranks():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(101)), 99) == 99.0
    assert math.isnan(percentile([], 50))


def test_summary_counts_completed_tokens_and_pools_gaps_of_completed_requests():
    samples = [
        Sample(ttft=0.010, last=0.016, gaps=[0.002, 0.004], tokens=3, chunks=3, wanted=3),
        Sample(ttft=0.030, last=0.036, gaps=[0.006], tokens=2, chunks=2, wanted=4),
        Sample(error="HTTP 503: busy", wanted=8, gaps=[9.0], ttft=9.0),
    ]
    summary = summarize(samples, concurrency=2, wall_s=0.5)
    assert (summary.requests, summary.errors, summary.short) == (2, 1, 1)
    assert summary.output_tokens == 5 and summary.chunks == 5
    assert summary.output_tokens_per_s == 10.0
    assert summary.ttft_p50_ms == 20.0
    assert summary.ttft_p99_ms == pytest.approx(29.8)
    assert summary.itl_p50_ms == 4.0
    assert (summary.tpot_p50_ms, summary.tpot_p99_ms) == (4.5, 6.0)
    assert summary.first_error == "HTTP 503: busy"
    assert summary.cut == 0


def test_cut_streams_count_what_they_streamed_and_are_not_short():
    samples = [
        Sample(ttft=0.010, gaps=[0.002], tokens=2, chunks=2, wanted=64, cut=True),
        Sample(tokens=0, chunks=0, wanted=64, cut=True),  # still queued at the limit
    ]
    summary = summarize(samples, concurrency=2, wall_s=1.0)
    assert (summary.requests, summary.cut, summary.short) == (2, 2, 0)
    assert summary.output_tokens == 2 and summary.ttft_p50_ms == 10.0


def test_body_is_greedy_streamed_with_usage_and_takes_server_extras():
    request = Request("hello", prompt_tokens=1, max_tokens=64)
    chat = body(request, "m", "chat", {"ignore_eos": True, "min_tokens": 64})
    assert chat["messages"] == [{"role": "user", "content": "hello"}]
    assert chat["stream"] and chat["stream_options"] == {"include_usage": True}
    assert (chat["temperature"], chat["max_tokens"], chat["ignore_eos"]) == (0.0, 64, True)
    assert body(request, "m", "completions", None)["prompt"] == "hello"


def test_content_reads_chat_deltas_and_completion_text():
    assert content({"choices": [{"delta": {"content": "a"}}]}) == "a"
    assert content({"choices": [{"delta": {"role": "assistant"}}]}) == ""
    assert content({"choices": [{"text": "b"}]}) == "b"
    assert content({"choices": [], "usage": {"completion_tokens": 3}}) == ""
