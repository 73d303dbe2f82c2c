"""The runtime's Prometheus metrics (prometheus-client), names after Prometheus conventions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

REQUESTS = Counter(
    "torchship_requests", "Inference requests by model, protocol and HTTP status code.",
    ["model", "protocol", "code"], registry=REGISTRY,
)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "torchship_request_duration_seconds", "Inference request latency.",
    ["model", "protocol"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
FORWARD_SECONDS = Histogram(
    "torchship_forward_duration_seconds", "Time of one forward pass (one batch).",
    ["model"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
BATCH_SIZE = Histogram(
    "torchship_batch_size", "Rows per forward pass.", ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=REGISTRY,
)  # fmt: skip
QUEUE_DEPTH = Gauge(
    "torchship_queue_depth", "Requests waiting for a batch.", ["model"], registry=REGISTRY
)
INFLIGHT = Gauge(
    "torchship_inflight_requests", "Inference requests being served (the autoscaling signal).",
    ["model"], registry=REGISTRY,
)  # fmt: skip
LOAD_SECONDS = Gauge(
    "torchship_model_load_seconds", "Time to fetch, load and warm the model.", ["model"],
    registry=REGISTRY,
)  # fmt: skip
