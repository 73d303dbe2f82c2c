"""Canary analysis on the runtime's real /metrics pages (tests/golden/metrics-runtime-*.txt).

Both pages were recorded from one runtime serving a TorchScript MLP that raises for rows whose
first value is above 0.5 (the runtime answers that 500):
  page 1: 10 v2 and 2 v1 requests, all 200;
  page 2: 20 more v2 and 2 more v1 answered 200, 5 v2 answered 500 (the model raised) and 3 v2
  answered 400 (a wrong shape: the client's fault, not an error).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from torchship_operator.analysis import AnalysisPolicy, Counters, Figures, Measurement, judge
from torchship_operator.scrape import Reading, measure, parse

GOLDEN = Path(__file__).parent.parent / "golden"
# The runtime's latency buckets (runtime/torchship_runtime/metrics.py), then +Inf.
BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def page(n: int) -> Counters:
    return parse((GOLDEN / f"metrics-runtime-{n}.txt").read_text())


def test_a_page_sums_every_protocol_and_counts_only_5xx_as_errors():
    first, second = page(1), page(2)
    assert (first.requests, first.errors) == (12, 0)
    assert (second.requests, second.errors) == (42, 5)  # the 3 answered 400 are requests only
    for counters in (first, second):
        assert tuple(le for le, _ in counters.buckets) == (*BOUNDS, math.inf)
        # Every request is in the histogram, v1 and v2 together (the gRPC series are empty).
        assert counters.buckets[-1][1] == counters.requests
    # One bucket summed over v2 and v1: 33 + 3 on page 2.
    assert dict(second.buckets)[0.0025] == 36


def test_the_window_between_the_pages_is_the_second_batch():
    window = page(2).minus(page(1))
    assert window is not None
    figures = Figures.of([window])
    assert (figures.requests, figures.errors) == (30, 5)
    # The 99th of 30 ranks 29.7th: 29 answered within 2.5 ms, the 30th in (10 ms, 25 ms].
    assert figures.p99_ms == pytest.approx(10 + 15 * 0.7)
    # Read the other way round the counters went down: a restarted pod, no window.
    assert page(1).minus(page(2)) is None


def measurement() -> Measurement:
    """The canary pod read at both pages; the stable pod served page 1's 12 requests since it
    started (a pod absent from the first reading would count nothing)."""
    before = Reading(at=100.0, pods={"canary-1": ("new", page(1)), "stable-1": ("old", Counters())})
    after = Reading(at=130.0, pods={"canary-1": ("new", page(2)), "stable-1": ("old", page(1))})
    return measure(before, after, canary="new", stable="old")


def test_measure_takes_each_revisions_window():
    m = measurement()
    assert (m.start, m.end) == (100.0, 130.0)
    assert (m.canary.requests, m.canary.errors) == (30, 5)
    assert (m.stable.requests, m.stable.errors) == (12, 0)
    # The 11.88th of 12: 10 answered within 5 ms, the other 2 in (5 ms, 10 ms].
    assert m.stable.p99_ms == pytest.approx(5 + 5 * 0.94)


@pytest.mark.parametrize(
    ("policy", "result", "said"),
    [
        # 5 of 30 is 0.167.
        (AnalysisPolicy(max_error_ratio=0.1, min_requests=10), "Failed", "error ratio 0.167"),
        (AnalysisPolicy(max_error_ratio=0.2, min_requests=10), "Passed", "5 errors in 30"),
        (AnalysisPolicy(max_error_ratio=0.1, min_requests=31), "Inconclusive", "30 canary"),
        (AnalysisPolicy(max_latency_p99_ms=20, min_requests=10), "Failed", "p99 20.5ms"),
        # 20.5 ms against 1.5 x the stable's 9.7 ms.
        (AnalysisPolicy(max_latency_p99_ratio=1.5, min_requests=10), "Failed", "9.7ms"),
        (AnalysisPolicy(max_latency_p99_ratio=2.5, min_requests=10), "Passed", "0 errors in 12"),
        # The stable's 12 requests are too few to compare latencies with.
        (AnalysisPolicy(max_latency_p99_ratio=2.5, min_requests=13), "Inconclusive", "12 stable"),
    ],
)
def test_the_verdicts_on_the_recorded_window(policy, result, said):
    verdict = judge(policy, measurement())
    assert verdict.result == result, verdict.message
    assert said in verdict.message


def test_a_revision_no_pod_of_which_was_read_twice_is_not_measured_not_idle():
    """The stable pod unreadable at the window's end (its /metrics timed out, or it was
    replaced within the window): the stable was not measured, which the record and the verdict
    say, rather than "0 requests"; a revision read twice that served nothing is idle."""
    before = Reading(at=100.0, pods={"canary-1": ("new", page(1)), "stable-1": ("old", page(1))})
    unread = Reading(at=130.0, pods={"canary-1": ("new", page(2)), "stable-2": ("old", page(2))})
    m = measure(before, unread, canary="new", stable="old")
    assert (m.canary.pods, m.canary.requests) == (1, 30)
    assert (m.stable.pods, m.stable.requests) == (0, 0) and m.stable.unread
    assert m.stable.to_dict() == {"requests": 0, "errors": 0, "pods": 0}
    assert Figures.from_dict(m.stable.to_dict()) == m.stable
    ratio = AnalysisPolicy(max_latency_p99_ratio=2.5, min_requests=10)
    verdict = judge(ratio, m)
    assert verdict.result == "Inconclusive"
    assert "stable revision was not measured" in verdict.message
    assert "stable not read (no pod read at both ends of the window)" in verdict.message
    # An absolute threshold needs no stable figures: judged on the canary's alone.
    assert judge(AnalysisPolicy(max_error_ratio=0.2, min_requests=10), m).result == "Passed"

    idle = Reading(at=130.0, pods={"canary-1": ("new", page(2)), "stable-1": ("old", page(1))})
    m = measure(before, idle, canary="new", stable="old")
    assert (m.stable.pods, m.stable.requests) == (1, 0) and not m.stable.unread
    verdict = judge(ratio, m)
    assert verdict.result == "Inconclusive" and "0 stable requests" in verdict.message

    # No canary pod read twice: nothing to judge, whatever the thresholds.
    gone = Reading(at=130.0, pods={"stable-1": ("old", page(2))})
    m = measure(before, gone, canary="new", stable="old")
    verdict = judge(AnalysisPolicy(max_error_ratio=0.2, min_requests=0), m)
    assert verdict.result == "Inconclusive" and "canary was not measured" in verdict.message
