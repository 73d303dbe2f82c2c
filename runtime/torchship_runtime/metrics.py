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


class ProtocolMeter:
    """One protocol's request latency and counts by status code for the served model; each
    labelled series is looked up once, not per request."""

    __slots__ = ("_codes", "latency", "model", "protocol")

    def __init__(self, model: str, protocol: str) -> None:
        self.model, self.protocol = model, protocol
        self.latency = REQUEST_SECONDS.labels(model, protocol)
        self._codes: dict[int, Counter] = {}

    def count(self, code: int) -> None:
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = REQUESTS.labels(self.model, self.protocol, str(code))
        counter.inc()
