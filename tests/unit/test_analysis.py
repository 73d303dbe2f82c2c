"""Canary analysis, the pure part: windows of counters, the p99 of a histogram, the verdicts."""

from __future__ import annotations

import math

import pytest

from torchship_operator.analysis import (
    AnalysisPolicy,
    Counters,
    Figures,
    Measurement,
    StepAnalysis,
    judge,
    quantile,
)
from torchship_operator.revisions import parse_time
from torchship_operator.rollout import format_time
from torchship_operator.scrape import Reading, measure

INF = math.inf


def hist(*pairs: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    return tuple(pairs)


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.99, (), None),
        (0.99, hist((0.1, 0), (INF, 0)), None),
        # All in the first bucket: interpolated from 0.
        (0.5, hist((0.1, 10), (INF, 10)), 0.05),
        # 99 of 100 under 10 ms, the last one in (10 ms, 100 ms]: the 99th is the 10 ms bound.
        (0.99, hist((0.01, 99), (0.1, 100), (INF, 100)), 0.01),
        # Half above 10 ms: p99 is near the top of (10 ms, 100 ms].
        (0.99, hist((0.01, 50), (0.1, 100), (INF, 100)), 0.01 + 0.09 * 49 / 50),
        # Beyond the last finite bound: that bound, as Prometheus says.
        (0.99, hist((0.01, 1), (0.1, 1), (INF, 100)), 0.1),
    ],
)
def test_quantile_interpolates_inside_the_bucket_as_prometheus_does(q, buckets, expected):
    got = quantile(q, buckets)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_a_window_is_the_difference_of_two_readings_and_none_after_a_restart():
    before = Counters(10, 1, hist((0.01, 8), (INF, 10)))
    after = Counters(30, 4, hist((0.01, 20), (INF, 30)))
    assert after.minus(before) == Counters(20, 3, hist((0.01, 12), (INF, 20)))
    restarted = Counters(5, 0, hist((0.01, 5), (INF, 5)))
    assert restarted.minus(before) is None


def test_measure_sums_each_revisions_pods_and_leaves_out_pods_not_read_twice():
    def counters(n: float, errors: float = 0) -> Counters:
        return Counters(n, errors, hist((0.01, n), (INF, n)))

    before = Reading(
        at=10.0,
        pods={"a-1": ("a", counters(100)), "b-1": ("b", counters(0)), "b-2": ("b", counters(50))},
    )
    after = Reading(
        at=40.0,
        pods={
            "a-1": ("a", counters(160)),
            "b-1": ("b", counters(30, 6)),
            "b-2": ("b", counters(3)),  # restarted: no window
            "b-3": ("b", counters(9, 9)),  # new since the first reading: no window
            "c-1": ("c", counters(5)),  # neither revision
        },
    )
    m = measure(before, after, canary="b", stable="a")
    assert (m.start, m.end) == (10.0, 40.0)
    assert (m.canary.requests, m.canary.errors) == (30, 6)
    assert (m.stable.requests, m.stable.errors) == (60, 0)
    assert m.canary.p99_ms == pytest.approx(9.9)


POLICY = AnalysisPolicy(max_error_ratio=0.05, max_latency_p99_ms=200, min_requests=20)


def window(canary: Figures, stable: Figures) -> Measurement:
    return Measurement(start=0.0, end=30.0, canary=canary, stable=stable)


@pytest.mark.parametrize(
    ("policy", "canary", "stable", "result", "said"),
    [
        (POLICY, Figures(100, 2, 50.0), Figures(300, 0, 40.0), "Passed", "canary 2 errors"),
        (POLICY, Figures(19, 19, 50.0), Figures(300, 0, 40.0), "Inconclusive", "19 canary"),
        (POLICY, Figures(84, 42, 5.0), Figures(352, 0, 4.0), "Failed", "error ratio 0.500"),
        (POLICY, Figures(100, 0, 250.0), Figures(300, 0, 40.0), "Failed", "p99 250.0ms >"),
        # No latency observed below the last bound: no p99 to fail on.
        (POLICY, Figures(100, 0, None), Figures(300, 0, 40.0), "Passed", "stable 0 errors"),
        (
            AnalysisPolicy(max_latency_p99_ratio=2, min_requests=20),
            Figures(100, 0, 30.0),
            Figures(100, 0, 10.0),
            "Failed",
            "2 x stable p99 10.0ms",
        ),
        (
            AnalysisPolicy(max_latency_p99_ratio=2, min_requests=20),
            Figures(100, 0, 15.0),
            Figures(100, 0, 10.0),
            "Passed",
            "",
        ),
        # The ratio needs a stable revision with traffic to compare with.
        (
            AnalysisPolicy(max_latency_p99_ratio=2, min_requests=20),
            Figures(100, 0, 30.0),
            Figures(5, 0, 10.0),
            "Inconclusive",
            "5 stable requests",
        ),
    ],
)
def test_judge(policy, canary, stable, result, said):
    verdict = judge(policy, window(canary, stable))
    assert verdict.result == result
    assert said in verdict.message


def test_step_records_count_verdicts_and_keep_the_last_figures_on_the_wire():
    record = StepAnalysis(step=0, weight=10)
    m = window(Figures(84, 42, 5.0), Figures(352, 0, 4.0))
    record = record.counted(m, judge(POLICY, m))
    assert (record.passed, record.failed, record.last) == (0, 1, "Failed")
    wire = record.to_dict(format_time)
    assert wire == {
        "step": 0,
        "weight": 10,
        "passed": 0,
        "failed": 1,
        "inconclusive": 0,
        "last": "Failed",
        "canary": {"requests": 84, "errors": 42, "latencyP99Ms": 5.0},
        "stable": {"requests": 352, "errors": 0, "latencyP99Ms": 4.0},
        "measuredAt": "1970-01-01T00:00:30.000000Z",
    }
    assert StepAnalysis.from_dict(wire, parse_time) == record
