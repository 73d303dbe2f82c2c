"""The operator's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "torchship_reconciles", "ModelService reconciles by result.", ["result"]
)  # exposed as torchship_reconciles_total
RECONCILE_SECONDS = Histogram(
    "torchship_reconcile_duration_seconds",
    "Time spent in one ModelService reconcile.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WRITES = Counter(
    "torchship_api_writes", "Write requests sent to the API server.", ["resource"]
)  # e.g. resource="deployments", "deployments/scale", "modelservices/status", "events"
MODELSERVICES = Gauge("torchship_modelservices", "ModelServices by readiness.", ["ready"])
QUEUE_DEPTH = Gauge("torchship_workqueue_depth", "Keys waiting to be reconciled.")
WATCH_EVENTS = Counter(
    "torchship_watch_events", "Watch events received about child kinds.", ["resource", "ours"]
)  # ours="false": an object that is no child; zero while the API server selects
CACHED = Gauge("torchship_cached_objects", "Objects held in each watch cache.", ["cache"])
