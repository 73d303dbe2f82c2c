"""The runtime's Prometheus metrics (prometheus-client), named after Prometheus conventions:
counters end in `_total`, durations are `_seconds`. Every series carries the served model's
name; no label takes a value from a request, so the series count stays fixed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

REQUESTS = Counter(
    "torchship_requests",  # exposed as torchship_requests_total
    "Inference requests by model, protocol (v1, v2) and HTTP status code.",
    ["model", "protocol", "code"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "torchship_request_duration_seconds",
    "Inference request latency, from the request's arrival to its response.",
    ["model", "protocol"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
FORWARD_SECONDS = Histogram(
    "torchship_forward_duration_seconds",
    "Duration of one forward pass (one batch).",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "torchship_batch_size",
    "Rows per forward pass.",
    ["model"],
    buckets=BATCH_BUCKETS,
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "torchship_queue_depth",
    "Requests queued for a batch, not yet in a forward pass.",
    ["model"],
    registry=REGISTRY,
)
INFLIGHT = Gauge(
    "torchship_inflight_requests",
    "Inference requests accepted and not yet answered (the autoscaling signal).",
    ["model"],
    registry=REGISTRY,
)
LOAD_SECONDS = Gauge(
    "torchship_model_load_seconds",
    "Time to fetch, load and warm up the model.",
    ["model"],
    registry=REGISTRY,
)
READY = Gauge(
    "torchship_model_ready",
    "1 while the model is loaded, warmed up and not draining.",
    ["model"],
    registry=REGISTRY,
)
START_SECONDS = Gauge(
    "torchship_model_start_seconds",
    "Time each phase of the model's start took: fetch (the download, when this process did it),"
    " load (build, move to device and dtype), warmup (warm-up batches and any compile).",
    ["model", "phase"],
    registry=REGISTRY,
)
