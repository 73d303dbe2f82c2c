"""Canary analysis: how the canary's pods serve against the stable's, from the runtime's own
counters, and whether a step may pass. Pure: the counters come in parsed (scrape.py), the
verdict goes to the rollout state machine (rollout/step_analysis.py) as data.

A measurement is the difference between two readings of every pod's counters, `interval`
apart, so each one judges only the traffic of its own window: the canary at the current step's
weight, not what it served at the step before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Result = Literal["Passed", "Failed", "Inconclusive"]


@dataclass(frozen=True)
class AnalysisPolicy:
    """spec.rollout.analysis, reduced to what the judgement needs."""

    max_error_ratio: float | None = None
    max_latency_p99_ms: float | None = None
    max_latency_p99_ratio: float | None = None
    min_requests: int = 20
    interval_seconds: float = 30
    failure_limit: int = 0

    @classmethod
    def from_spec(cls, spec: Any) -> AnalysisPolicy | None:
        if spec is None:
            return None
        return cls(
            max_error_ratio=spec.max_error_ratio,
            max_latency_p99_ms=spec.max_latency_p99_ms,
            max_latency_p99_ratio=spec.max_latency_p99_ratio,
            min_requests=spec.min_requests,
            interval_seconds=spec.interval_seconds,
            failure_limit=spec.failure_limit,
        )


@dataclass(frozen=True)
class Counters:
    """One pod's counters, as its /metrics reads: inference requests, those answered 5xx (the
    server's fault; a 4xx is the client's), and the cumulative latency histogram."""

    requests: float = 0
    errors: float = 0
    buckets: tuple[tuple[float, float], ...] = ()  # (upper bound in seconds, count), +Inf last

    def minus(self, before: Counters) -> Counters | None:
        """What happened between `before` and this reading; None when a counter went down
        (the container restarted: its window is unknown)."""
        if self.requests < before.requests or self.errors < before.errors:
            return None
        earlier = dict(before.buckets)
        buckets = tuple((le, n - earlier.get(le, 0)) for le, n in self.buckets)
        if any(n < 0 for _, n in buckets):
            return None
        return Counters(self.requests - before.requests, self.errors - before.errors, buckets)

    def plus(self, other: Counters) -> Counters:
        mine, theirs = dict(self.buckets), dict(other.buckets)
        bounds = sorted(set(mine) | set(theirs))
        return Counters(
            self.requests + other.requests,
            self.errors + other.errors,
            tuple((le, mine.get(le, 0) + theirs.get(le, 0)) for le in bounds),
        )


@dataclass(frozen=True)
class Figures:
    """A revision's traffic in one window, from the pods read at both its ends."""

    requests: int = 0
    errors: int = 0
    p99_ms: float | None = None  # None: no request, or all of them beyond the last bound
    # Pods read at both ends of the window (None: not counted). 0 means the revision was not
    # measured at all (its pods unreadable, or each replaced within the window), which is not
    # the same as a revision that served no request.
    pods: int | None = None

    @property
    def unread(self) -> bool:
        return self.pods == 0

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @classmethod
    def of(cls, counters: Iterable[Counters]) -> Figures:
        total, pods = Counters(), 0
        for c in counters:
            total, pods = total.plus(c), pods + 1
        p99 = quantile(0.99, total.buckets)
        return cls(round(total.requests), round(total.errors), p99 * 1000 if p99 else p99, pods)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, "errors": self.errors}
        if self.p99_ms is not None:
            out["latencyP99Ms"] = round(self.p99_ms, 1)
        if self.pods is not None:
            out["pods"] = self.pods
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figures:
        pods = data.get("pods")
        return cls(
            int(data.get("requests", 0)),
            int(data.get("errors", 0)),
            data.get("latencyP99Ms"),
            None if pods is None else int(pods),
        )

    def describe(self) -> str:
        if self.unread:
            return "not read (no pod read at both ends of the window)"
        latency = f", p99 {self.p99_ms:.1f}ms" if self.p99_ms is not None else ""
        return f"{self.errors} errors in {self.requests} requests{latency}"


@dataclass(frozen=True)
class Measurement:
    """The canary's and the stable's figures between two readings (`start`, `end`: seconds)."""

    start: float
    end: float
    canary: Figures
    stable: Figures


@dataclass(frozen=True)
class Verdict:
    result: Result
    message: str


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly inside its bucket, as
    Prometheus' histogram_quantile does; beyond the last finite bound, that bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, count
    return lower


def judge(policy: AnalysisPolicy, m: Measurement) -> Verdict:
    """Failed at the first threshold the canary crosses; Inconclusive below minRequests (too
    little traffic to say), or for a latency ratio while the stable has too little to compare."""
    canary, stable = m.canary, m.stable
    seen = f"canary {canary.describe()}; stable {stable.describe()}"
    if canary.unread:
        return Verdict("Inconclusive", f"the canary was not measured ({seen})")
    if canary.requests < policy.min_requests:
        return Verdict(
            "Inconclusive",
            f"{canary.requests} canary requests of the {policy.min_requests} needed ({seen})",
        )
    limit = policy.max_error_ratio
    if limit is not None and canary.error_ratio > limit:
        return Verdict(
            "Failed",
            f"canary error ratio {canary.error_ratio:.3f} > maxErrorRatio {limit} ({seen})",
        )
    p99 = canary.p99_ms
    limit = policy.max_latency_p99_ms
    if limit is not None and p99 is not None and p99 > limit:
        return Verdict("Failed", f"canary p99 {p99:.1f}ms > maxLatencyP99Ms {limit:g} ({seen})")
    ratio = policy.max_latency_p99_ratio
    if ratio is not None:
        # Nothing to compare with is no comparison passed.
        if stable.unread:
            return Verdict(
                "Inconclusive", f"the stable revision was not measured to compare with ({seen})"
            )
        if stable.requests < policy.min_requests or not stable.p99_ms:
            return Verdict(
                "Inconclusive",
                f"{stable.requests} stable requests of the {policy.min_requests} needed to "
                f"compare latencies ({seen})",
            )
        if p99 is not None and p99 > ratio * stable.p99_ms:
            return Verdict(
                "Failed",
                f"canary p99 {p99:.1f}ms > maxLatencyP99Ratio {ratio:g} x stable p99 "
                f"{stable.p99_ms:.1f}ms ({seen})",
            )
    return Verdict("Passed", seen)


@dataclass(frozen=True)
class StepAnalysis:
    """What the measurements of one canary step said, kept in status.rollout.analysis."""

    step: int
    weight: int
    passed: int = 0
    failed: int = 0
    inconclusive: int = 0
    last: Result | None = None
    canary: Figures | None = None  # of the last measurement
    stable: Figures | None = None
    measured_at: float | None = None  # the end of the last measurement counted

    def counted(self, m: Measurement, verdict: Verdict) -> StepAnalysis:
        return StepAnalysis(
            step=self.step,
            weight=self.weight,
            passed=self.passed + (verdict.result == "Passed"),
            failed=self.failed + (verdict.result == "Failed"),
            inconclusive=self.inconclusive + (verdict.result == "Inconclusive"),
            last=verdict.result,
            canary=m.canary,
            stable=m.stable,
            measured_at=m.end,
        )

    def to_dict(self, format_time: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step,
            "weight": self.weight,
            "passed": self.passed,
            "failed": self.failed,
            "inconclusive": self.inconclusive,
        }
        if self.last is not None:
            out["last"] = self.last
        if self.canary is not None:
            out["canary"] = self.canary.to_dict()
        if self.stable is not None:
            out["stable"] = self.stable.to_dict()
        if self.measured_at is not None:
            out["measuredAt"] = format_time(self.measured_at)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], parse_time: Any) -> StepAnalysis:
        def figures(key: str) -> Figures | None:
            return Figures.from_dict(data[key]) if data.get(key) else None

        measured = data.get("measuredAt")
        return cls(
            step=int(data["step"]),
            weight=int(data["weight"]),
            passed=int(data.get("passed", 0)),
            failed=int(data.get("failed", 0)),
            inconclusive=int(data.get("inconclusive", 0)),
            last=data.get("last"),
            canary=figures("canary"),
            stable=figures("stable"),
            measured_at=parse_time(measured) if measured else None,
        )
