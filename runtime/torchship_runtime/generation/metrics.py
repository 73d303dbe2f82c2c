"""The generative engine's Prometheus metrics, in the runtime's registry and `torchship_` family.
Each has one vLLM counterpart (docs/generation.md has the table), so recipes written for vLLM
(KEDA, HPA, the Gateway API inference extension's endpoint picker) read them by a rename."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ..metrics import REGISTRY

TOKEN_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0)


def _histogram(name: str, text: str, buckets: tuple[float, ...]) -> Histogram:
    return Histogram(name, text, ["model"], buckets=buckets, registry=REGISTRY)


TIME_TO_FIRST_TOKEN = _histogram(
    "torchship_time_to_first_token_seconds",
    "From a generation request's arrival to its first generated token.",
    TOKEN_BUCKETS,
)
INTER_TOKEN = _histogram(
    "torchship_inter_token_latency_seconds",
    "Between two consecutive generated tokens of one request.",
    TOKEN_BUCKETS,
)
E2E = _histogram(
    "torchship_e2e_request_latency_seconds",
    "From a generation request's arrival to its last token.",
    REQUEST_BUCKETS,
)
QUEUE = _histogram(
    "torchship_request_queue_time_seconds",
    "From a generation request's arrival to its first step in the running batch.",
    REQUEST_BUCKETS,
)
PROMPT_TOKENS = Counter(
    "torchship_prompt_tokens", "Prompt tokens prefilled.", ["model"], registry=REGISTRY
)
GENERATION_TOKENS = Counter(
    "torchship_generation_tokens", "Tokens generated.", ["model"], registry=REGISTRY
)
FINISHED = Counter(
    "torchship_request_success",
    "Generation requests finished, by finish reason (stop, length, abort).",
    ["model", "finished_reason"],
    registry=REGISTRY,
)
RUNNING = Gauge(
    "torchship_num_requests_running",
    "Generation requests in the running batch.",
    ["model"],
    registry=REGISTRY,
)
WAITING = Gauge(
    "torchship_num_requests_waiting",
    "Generation requests waiting for the running batch (queue or KV cache full).",
    ["model"],
    registry=REGISTRY,
)
KV_CACHE_USAGE = Gauge(
    "torchship_kv_cache_usage_perc",
    "The share of the KV cache's blocks held by requests, 0..1.",
    ["model"],
    registry=REGISTRY,
)
