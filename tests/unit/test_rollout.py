"""The rollout state machine: each path by table, then properties over random inputs and over
a simulated cluster that feeds every decision back as the next observation."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchship_operator.analysis import AnalysisPolicy, Figures, Measurement, StepAnalysis
from torchship_operator.rollout import (
    Decision,
    ObservedRevision,
    RolloutPolicy,
    RolloutState,
    Step,
    failure_reason,
    plan,
)
from torchship_operator.vocabulary import MESSAGE_LIMIT, Cause

ROLLING = RolloutPolicy()
MAKE_ROOM = RolloutPolicy(max_surge=0, max_unavailable=1)
CANARY = RolloutPolicy(strategy="Canary", steps=(Step(25, 60), Step(50, None)))
BLUE_GREEN = RolloutPolicy(strategy="BlueGreen")


def rev(name: str, replicas: int, ready: int | None = None, **kw) -> ObservedRevision:
    """A Deployment with `ready` (default: all) ready and available pods."""
    ready = replicas if ready is None else ready
    created = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}.get(name, 0.0)
    return ObservedRevision(name, replicas, ready, ready, created_at=created, **kw)


def stable(name: str = "a") -> RolloutState:
    return RolloutState(stable_revision=name)


def rolling_out(target: str = "b", stable_name: str = "a", at: float = 0.0, **kw) -> RolloutState:
    return RolloutState(
        stable_revision=stable_name,
        target_revision=target,
        phase="Progressing",
        started_at=at,
        progress_at=at,
        **kw,
    )


def call(policy=ROLLING, desired="b", total=4, state=None, revisions=(), now=100.0, promoted=None):
    return plan(
        policy=policy,
        desired=desired,
        total=total,
        state=state,
        revisions=list(revisions),
        now=now,
        promoted_step=promoted,
    )


def reasons(decision: Decision) -> list[str]:
    return [e.reason for e in decision.events]


# ---------------------------------------------------------------------------------------------
# First revision, steady state, scaling


def test_first_revision_takes_all_replicas_and_becomes_stable_once_available():
    d = call(desired="a", total=3, now=0.0)
    assert d.replicas == {"a": 3}
    assert d.weights == {"a": 100} and d.serving == ("a",)
    assert d.state.phase == "Progressing" and d.state.stable_revision is None
    assert d.requeue_after == 600 and d.events == ()
    assert d.cause is None  # only pods to wait for: they say how far they are

    d = call(desired="a", total=3, state=d.state, revisions=[rev("a", 3, 2)], now=30.0)
    assert d.state.phase == "Progressing" and d.events == ()

    d = call(desired="a", total=3, state=d.state, revisions=[rev("a", 3)], now=60.0)
    assert d.state == stable("a")
    assert reasons(d) == ["RolloutComplete"]
    assert d.requeue_after is None
    assert d.cause is None


def test_first_revision_that_never_comes_up_warns_once_and_keeps_trying():
    failure = "ImagePullBackOff: Back-off pulling image example.com/runtime:nope"
    state = RolloutState(target_revision="a", phase="Progressing", started_at=0, progress_at=0)
    observed = [rev("a", 2, 0, failure=failure)]
    d = call(desired="a", total=2, state=state, revisions=observed, now=600.0)
    assert reasons(d) == ["RolloutStalled"] and d.events[0].type == "Warning"
    assert d.state.phase == "Progressing" and d.state.reason == "ImagePullBackOff"
    assert d.replicas == {"a": 2} and d.weights == {"a": 100}
    assert d.cause is None  # not given up: the pods tell why, not the deadline
    assert d.requeue_after is None  # nothing left to wait for but the pods
    again = call(desired="a", total=2, state=d.state, revisions=observed, now=900.0)
    assert again.events == () and again.state == d.state


def test_scale_change_while_stable_just_moves_replicas():
    up = call(desired="a", total=7, state=stable(), revisions=[rev("a", 3)])
    assert up.replicas == {"a": 7} and up.state == stable() and up.events == ()
    down = call(desired="a", total=1, state=stable(), revisions=[rev("a", 3)])
    assert down.replicas == {"a": 1} and down.requeue_after is None


def test_scaled_to_zero_rollout_completes_at_once():
    d = call(desired="b", total=0, state=stable(), revisions=[rev("a", 0)])
    assert d.state == stable("b")
    assert d.replicas == {"a": 0, "b": 0} and d.weights == {"b": 100}
    assert reasons(d) == ["RolloutStarted", "RolloutComplete"]


@pytest.mark.parametrize(
    ("observed", "desired", "expected_stable", "phase"),
    [
        # The status was lost: the revision that serves is adopted, the rollout starts over.
        ([rev("a", 4), rev("b", 1, 0)], "b", "a", "Progressing"),
        # The desired revision already serves in full: it is simply stable.
        ([rev("a", 0), rev("b", 4)], "b", "b", "Stable"),
        # Of two serving revisions the one with the most available pods is the safer fallback.
        ([rev("a", 3), rev("c", 1)], "b", "a", "Progressing"),
    ],
)
def test_lost_state_adopts_what_the_cluster_shows(observed, desired, expected_stable, phase):
    d = call(desired=desired, total=4, state=None, revisions=observed)
    assert d.state.stable_revision == expected_stable
    assert d.state.phase == phase


# ---------------------------------------------------------------------------------------------
# RollingUpdate


@pytest.mark.parametrize(
    ("policy", "observed", "expected"),
    [
        # maxSurge 1: one new pod beside the old ones, none taken away yet.
        (ROLLING, [rev("a", 4)], {"a": 4, "b": 1}),
        # The new pod is ready: one old pod goes, one more new pod comes.
        (ROLLING, [rev("a", 4), rev("b", 1)], {"a": 3, "b": 2}),
        # Not ready yet: nothing moves.
        (ROLLING, [rev("a", 4), rev("b", 1, 0)], {"a": 4, "b": 1}),
        # maxSurge 0 makes room first: an old pod goes before the new one is asked for.
        (MAKE_ROOM, [rev("a", 4)], {"a": 3, "b": 1}),
        (MAKE_ROOM, [rev("a", 3), rev("b", 1, 0)], {"a": 3, "b": 1}),
        (MAKE_ROOM, [rev("a", 3), rev("b", 1)], {"a": 2, "b": 2}),
        # Unready old pods serve nothing: they go first, whatever the budget.
        (ROLLING, [rev("a", 4, 2)], {"a": 2, "b": 3}),
        # maxUnavailable 2 with maxSurge 2 moves two at a time each way.
        (RolloutPolicy(max_surge=2, max_unavailable=2), [rev("a", 4)], {"a": 2, "b": 4}),
    ],
)
def test_rolling_update_moves_within_surge_and_unavailable(policy, observed, expected):
    d = call(policy=policy, state=rolling_out(), revisions=observed)
    assert d.replicas == expected
    assert d.state.phase == "Progressing"


def test_rolling_update_weights_follow_ready_pods_and_complete_when_all_available():
    d = call(state=rolling_out(), revisions=[rev("a", 3), rev("b", 2, 1)])
    assert d.weights == {"a": 75, "b": 25} and d.serving == ("a", "b")
    d = call(state=rolling_out(), revisions=[rev("a", 1), rev("b", 4)])
    assert d.replicas == {"a": 0, "b": 4}
    assert d.state == stable("b") and d.weights == {"b": 100}
    assert reasons(d) == ["RolloutComplete"]


def test_both_budgets_zero_still_progresses_one_pod_at_a_time():
    policy = RolloutPolicy(max_surge=0, max_unavailable=0)
    assert call(policy=policy, state=rolling_out(), revisions=[rev("a", 4)]).replicas == {
        "a": 3,
        "b": 1,
    }


# ---------------------------------------------------------------------------------------------
# Canary


def test_canary_step_waits_for_its_pods_then_pauses_then_advances():
    observed = [rev("a", 4)]
    d = call(policy=CANARY, state=stable(), revisions=observed, now=0.0)
    assert reasons(d) == ["RolloutStarted"]
    assert d.replicas == {"a": 4, "b": 1} and d.weights == {"a": 100}
    assert d.requeue_after == 600

    observed = [rev("a", 4), rev("b", 1)]
    d = call(policy=CANARY, state=d.state, revisions=observed, now=30.0)
    assert d.replicas == {"a": 3, "b": 1}
    assert d.state.phase == "Paused" and d.state.paused_at == 30.0
    assert reasons(d) == ["CanaryStepReached"]
    assert d.weights == {"a": 75, "b": 25} and d.serving == ("a", "b")
    assert d.requeue_after == 60
    assert d.cause == Cause.waiting("CanaryPaused", "step 0 of revision b at 25%: pausing 60s")

    observed = [rev("a", 3), rev("b", 1)]
    mid = call(policy=CANARY, state=d.state, revisions=observed, now=60.0)
    assert mid.state == d.state and mid.events == () and mid.requeue_after == 30

    d = call(policy=CANARY, state=d.state, revisions=observed, now=90.0)
    assert d.state.step == 1 and d.state.phase == "Progressing"
    assert d.state.progress_at == 90.0
    assert d.replicas == {"a": 3, "b": 2}


def test_manual_step_waits_for_promoted_step():
    state = replace(rolling_out(), step=1)
    observed = [rev("a", 2), rev("b", 2)]
    d = call(policy=CANARY, state=state, revisions=observed, now=100.0)
    assert d.state.phase == "Paused" and reasons(d) == ["CanaryStepReached"]
    message = "step 1 of revision b at 50%: waiting for spec.rollout.promotedStep >= 1"
    assert d.cause == Cause.waiting("AwaitingPromotion", message)
    assert d.requeue_after is None  # a person, not a timer, moves it on

    for promoted in (None, 0):
        held = call(policy=CANARY, state=d.state, revisions=observed, now=5000.0, promoted=promoted)
        assert held.state == d.state and held.events == ()  # no deadline while paused

    d = call(policy=CANARY, state=d.state, revisions=observed, now=5000.0, promoted=1)
    assert d.state.step == 2 and d.state.phase == "Progressing"
    assert d.replicas == {"a": 2, "b": 3}  # past the last step: the new revision takes all


def test_steps_already_released_pass_in_one_call():
    policy = RolloutPolicy(strategy="Canary", steps=(Step(50, 0), Step(50, None), Step(75, 0)))
    observed = [rev("a", 2), rev("b", 2)]
    d = call(policy=policy, state=rolling_out(), revisions=observed, promoted=1)
    assert reasons(d) == ["CanaryStepReached"] * 2
    assert d.state.step == 2 and d.state.phase == "Progressing"


def test_canary_completes_keeping_the_old_revision_at_zero():
    state = replace(rolling_out(), step=2)
    d = call(policy=CANARY, state=state, revisions=[rev("a", 0), rev("b", 4)])
    assert d.state == stable("b") and d.replicas == {"a": 0, "b": 4}
    assert d.prune == () and reasons(d) == ["RolloutComplete"]


def test_a_step_at_100_percent_ends_the_rollout():
    policy = RolloutPolicy(strategy="Canary", steps=(Step(20, 30), Step(100, 600), Step(50, 0)))
    assert policy.canary_steps == (Step(20, 30),)
    state = replace(rolling_out(), step=1)
    d = call(policy=policy, state=state, revisions=[rev("a", 1), rev("b", 4)])
    assert d.state == stable("b")


def test_canary_weights_report_the_traffic_served_the_share_of_ready_pods():
    """One Service splits by pod count: a 25% step on 2 replicas serves 50/50, and says so."""
    d = call(policy=CANARY, total=2, state=rolling_out(), revisions=[rev("a", 1), rev("b", 1)])
    assert d.state.phase == "Paused"
    assert d.weights == {"b": 50, "a": 50}


# ---------------------------------------------------------------------------------------------
# Canary analysis: measurements are inputs, verdicts are counted in the state


ANALYSED = replace(
    CANARY,
    steps=(Step(25, 60), Step(50, 0)),
    analysis=AnalysisPolicy(max_error_ratio=0.1, min_requests=20, interval_seconds=30),
)
HEALTHY = Figures(requests=40, errors=0, p99_ms=12.0)
FAILING = Figures(requests=84, errors=42, p99_ms=12.0)
STABLE_FIGURES = Figures(requests=352, errors=0, p99_ms=10.0)


def window(start: float, end: float, canary: Figures = HEALTHY) -> Measurement:
    return Measurement(start=start, end=end, canary=canary, stable=STABLE_FIGURES)


def at_step(policy=ANALYSED, observed=None):
    """A canary of b just paused at step 0 (25%) at t=30."""
    observed = observed or [rev("a", 3), rev("b", 1)]
    d = call(policy=policy, state=rolling_out(), revisions=observed, now=30.0)
    assert d.state.phase == "Paused" and d.state.paused_at == 30.0
    return d, observed


def analysed(d, observed, now, m=None, promoted=None):
    return plan(
        policy=ANALYSED,
        desired="b",
        total=4,
        state=d.state,
        revisions=observed,
        now=now,
        promoted_step=promoted,
        measurement=m,
    )


def test_an_analysed_step_waits_past_its_pause_for_a_passing_measurement():
    d, observed = at_step()
    assert d.state.analysis == (StepAnalysis(step=0, weight=25),)
    assert d.cause.reason == "CanaryPaused" and "analysis: no measurement yet" in d.cause.message

    # The pause is over, nothing measured yet (too little traffic so far): the step waits.
    thin = window(30.0, 60.0, Figures(requests=5, errors=0, p99_ms=3.0))
    d = analysed(d, observed, 95.0, thin)
    assert d.state.phase == "Paused" and d.state.step == 0
    assert d.state.analysis[0].inconclusive == 1 and d.state.analysis[0].passed == 0
    assert d.cause.reason == "AwaitingAnalysis"
    assert "5 errors" not in d.cause.message and "last Inconclusive" in d.cause.message

    # One passing window releases it.
    d = analysed(d, observed, 125.0, window(60.0, 120.0))
    assert d.state.step == 1 and d.state.phase == "Progressing"
    assert d.state.analysis[0].passed == 1
    assert d.state.analysis[0].canary == HEALTHY and d.state.analysis[0].stable == STABLE_FIGURES


def test_a_passing_measurement_does_not_cut_the_pause_short():
    d, observed = at_step()
    d = analysed(d, observed, 61.0, window(30.0, 60.0))
    assert d.state.phase == "Paused" and d.state.analysis[0].passed == 1
    assert d.cause.reason == "CanaryPaused" and "1 passed" in d.cause.message
    assert d.requeue_after == 29.0
    d = analysed(d, observed, 90.0)
    assert d.state.step == 1


def test_a_passed_last_step_promotes_and_the_figures_stay_in_status():
    state = replace(
        rolling_out(), step=1, phase="Paused", paused_at=50.0,
        analysis=(StepAnalysis(0, 25, passed=1), StepAnalysis(1, 50)),
    )  # fmt: skip
    observed = [rev("a", 2), rev("b", 2)]
    d = plan(
        policy=ANALYSED, desired="b", total=4, state=state, revisions=observed, now=90.0,
        measurement=window(55.0, 85.0),
    )  # fmt: skip
    assert d.state.step == 2 and [a.passed for a in d.state.analysis] == [1, 1]
    done = plan(
        policy=ANALYSED, desired="b", total=4, state=d.state, now=200.0,
        revisions=[rev("a", 0), rev("b", 4)],
    )  # fmt: skip
    assert done.state.stable_revision == "b" and done.state.phase == "Stable"
    assert [a.step for a in done.state.analysis] == [0, 1]
    # Kept while stable, with no further write; the next rollout starts afresh.
    steady = plan(
        policy=ANALYSED, desired="b", total=4, state=done.state, now=300.0,
        revisions=[rev("a", 0), rev("b", 4)],
    )  # fmt: skip
    assert steady.state == done.state
    started = plan(
        policy=ANALYSED, desired="c", total=4, state=done.state, now=400.0,
        revisions=[rev("a", 0), rev("b", 4)],
    )  # fmt: skip
    assert started.state.analysis == ()


def test_a_failing_measurement_aborts_with_analysis_failed_and_its_figures():
    d, observed = at_step()
    d = analysed(d, observed, 61.0, window(30.0, 60.0, FAILING))
    assert d.state.phase == "Aborted" and d.state.reason == "AnalysisFailed"
    assert d.state.aborted_revision == "b"
    assert d.weights == {"a": 100} and d.replicas == {"a": 4, "b": 0}
    assert reasons(d) == ["AnalysisMeasurementFailed", "AnalysisFailed"]
    message = d.state.message
    assert message.startswith("revision b failed analysis at step 0 (25%): 1 of 1 measurements")
    assert "error ratio 0.500 > maxErrorRatio 0.1" in message
    assert "canary 42 errors in 84 requests" in message and "stable 0 errors in 352" in message
    assert message.endswith("traffic went back to revision a")
    assert d.cause == Cause.failed("AnalysisFailed", message)
    # Stays aborted, the figures kept, no retry.
    again = analysed(d, observed, 500.0, window(60.0, 90.0, HEALTHY))
    assert again.state == d.state and again.events == ()


def test_failure_limit_tolerates_that_many_failed_measurements_in_a_step():
    policy = replace(ANALYSED, analysis=replace(ANALYSED.analysis, failure_limit=1))
    d, observed = at_step(policy)
    first = plan(
        policy=policy, desired="b", total=4, state=d.state, revisions=observed, now=61.0,
        measurement=window(30.0, 60.0, FAILING),
    )  # fmt: skip
    assert first.state.phase == "Paused" and first.state.analysis[0].failed == 1
    assert reasons(first) == ["AnalysisMeasurementFailed"]
    second = plan(
        policy=policy, desired="b", total=4, state=first.state, revisions=observed, now=91.0,
        measurement=window(60.0, 90.0, FAILING),
    )  # fmt: skip
    assert second.state.reason == "AnalysisFailed" and "2 of 2 measurements" in second.state.message


def test_a_window_from_before_the_step_or_counted_already_is_left_out():
    d, observed = at_step()
    early = analysed(d, observed, 61.0, window(10.0, 60.0, FAILING))
    assert early.state == d.state and early.events == ()
    counted = analysed(d, observed, 61.0, window(30.0, 60.0))
    assert analysed(counted, observed, 62.0, window(30.0, 60.0)).state == counted.state


def test_without_analysis_a_measurement_changes_nothing():
    observed = [rev("a", 3), rev("b", 1)]
    d = call(policy=CANARY, state=rolling_out(), revisions=observed, now=30.0)
    m = window(30.0, 60.0, FAILING)
    with_m = plan(
        policy=CANARY, desired="b", total=4, state=d.state, revisions=observed, now=61.0,
        measurement=m,
    )  # fmt: skip
    assert with_m == call(policy=CANARY, state=d.state, revisions=observed, now=61.0)
    assert with_m.state.analysis == ()


# ---------------------------------------------------------------------------------------------
# BlueGreen


def test_blue_green_comes_up_in_full_then_switches_at_once():
    d = call(policy=BLUE_GREEN, state=stable(), revisions=[rev("a", 4)])
    assert d.replicas == {"a": 4, "b": 4}
    assert d.weights == {"a": 100} and d.serving == ("a",)

    d = call(policy=BLUE_GREEN, state=d.state, revisions=[rev("a", 4), rev("b", 4, 3)])
    assert d.serving == ("a",) and d.state.phase == "Progressing"

    d = call(policy=BLUE_GREEN, state=d.state, revisions=[rev("a", 4), rev("b", 4)])
    assert d.state == stable("b")
    assert d.replicas == {"a": 0, "b": 4} and d.serving == ("b",)


# ---------------------------------------------------------------------------------------------
# Making room (whenFull: MakeRoom)

ROOM = RolloutPolicy(when_full="MakeRoom")  # maxSurge 1, maxUnavailable 0
NO_GPU = "Unschedulable: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
OLD_PODS = ("gpu-0", "gpu-0", "gpu-1", "gpu-1")  # the nodes of the old revision's ready pods


def pending(name: str = "b", replicas: int = 1, ready: int = 0, unplaced: int = 1, **kw):
    """The new revision with `unplaced` pods the scheduler cannot place for lack of a GPU."""
    return rev(
        name, replicas, ready, failure=NO_GPU, unplaced=unplaced, short_of="1 nvidia.com/gpu", **kw
    )


def test_a_pod_short_of_its_gpu_has_an_old_one_give_up_its_own():
    observed = [rev("a", 4, room_on=OLD_PODS), pending()]
    d = call(policy=ROOM, state=rolling_out(), revisions=observed, now=100.0)
    assert d.replicas == {"a": 3, "b": 1}  # no surge: one old pod goes, the new one takes its GPU
    assert d.give_up == {"a": ("gpu-0",)}
    message = (
        "making room: revision a gives up 1 pod on node gpu-0 (1 nvidia.com/gpu) "
        "for revision b's pending pod"
    )
    assert d.cause == Cause.waiting("MakingRoom", message)
    assert d.state.making_room == message and d.state.progress_at == 100.0
    assert d.events == ()  # the Ready condition's change tells it (one event per change of cause)


@pytest.mark.parametrize(
    ("policy", "observed", "expected"),
    [
        # Wait (the default): the surge pod waits, nothing else moves.
        (ROLLING, [rev("a", 4, room_on=OLD_PODS), pending()], {"a": 4, "b": 1}),
        # No old pod holds what it lacks (another GPU product, say): giving one up frees nothing.
        (ROOM, [rev("a", 4), pending()], {"a": 4, "b": 1}),
        # Pending for another reason (a node selector no node matches): no room to make.
        (ROOM, [rev("a", 4, room_on=OLD_PODS), rev("b", 1, 0, failure=NO_GPU)], {"a": 4, "b": 1}),
        # Nothing pending: the policy's own budget, surge first.
        (ROOM, [rev("a", 4, room_on=OLD_PODS)], {"a": 4, "b": 1}),
        # maxUnavailable 2 lets two old pods go at once.
        (
            replace(ROOM, max_unavailable=2),
            [rev("a", 4, room_on=OLD_PODS), pending()],
            {"a": 2, "b": 2},
        ),
    ],
)
def test_room_is_made_only_when_asked_for_and_useful(policy, observed, expected):
    d = call(policy=policy, state=rolling_out(), revisions=observed)
    assert d.replicas == expected
    made = expected["a"] < 4
    assert bool(d.give_up) == made
    assert (d.cause is not None and d.cause.reason == "MakingRoom") == made


def test_while_the_freed_gpu_comes_the_message_stands_and_nothing_more_goes():
    first = call(
        policy=ROOM, state=rolling_out(), revisions=[rev("a", 4, room_on=OLD_PODS), pending()]
    )
    # The old pod is going (not ready, no longer counted); the new one still waits for its GPU.
    observed = [rev("a", 3, room_on=OLD_PODS[1:]), pending()]
    d = call(policy=ROOM, state=first.state, revisions=observed, now=130.0)
    assert d.replicas == {"a": 3, "b": 1} and d.give_up == {}
    assert d.cause == first.cause and d.state == first.state
    # Placed: the pod starts on the freed GPU; the message goes, the pods tell how far they are.
    observed = [rev("a", 3, room_on=OLD_PODS[1:]), rev("b", 1, 0)]
    d = call(policy=ROOM, state=d.state, revisions=observed, now=160.0)
    assert d.state.making_room is None and d.cause is None
    # Ready: the policy's own budget again, a surge pod first; when it waits, room again.
    observed = [rev("a", 3, room_on=OLD_PODS[1:]), rev("b", 1)]
    d = call(policy=ROOM, state=d.state, revisions=observed, now=190.0)
    assert d.replicas == {"a": 3, "b": 2} and d.give_up == {}
    observed = [rev("a", 3, room_on=OLD_PODS[1:]), pending(replicas=2, ready=1)]
    d = call(policy=ROOM, state=d.state, revisions=observed, now=220.0)
    assert d.replicas == {"a": 2, "b": 2} and d.give_up == {"a": ("gpu-0",)}


def test_making_room_is_progress_the_deadline_counts_from_it():
    started = rolling_out(at=0.0)
    observed = [rev("a", 4, room_on=OLD_PODS), pending()]
    # Wait: the surge pod that never gets a GPU aborts the rollout at the deadline.
    assert call(state=started, revisions=observed, now=600.0).state.phase == "Aborted"
    # MakeRoom at 590 s: the deadline now counts from there...
    d = call(policy=ROOM, state=started, revisions=observed, now=590.0)
    assert d.state.phase == "Progressing" and d.requeue_after == 600
    waiting = [rev("a", 3, room_on=OLD_PODS[1:]), pending()]
    d = call(policy=ROOM, state=d.state, revisions=waiting, now=1000.0)
    assert d.state.phase == "Progressing" and d.requeue_after == 190
    # ...and when the freed GPU never reaches the new pod (something else took it), it aborts.
    d = call(policy=ROOM, state=d.state, revisions=waiting, now=1190.0)
    assert d.state.phase == "Aborted" and d.state.reason == "Unschedulable"
    assert d.state.making_room is None and d.give_up == {}
    assert d.cause is not None and d.cause.kind == "failed"


def test_a_canary_step_makes_room_too():
    canary = replace(CANARY, when_full="MakeRoom")
    observed = [rev("a", 4, room_on=OLD_PODS), pending()]
    d = call(policy=canary, state=rolling_out(), revisions=observed)
    assert d.replicas == {"a": 3, "b": 1} and d.give_up == {"a": ("gpu-0",)}
    # One replica: the lone canary pod replaces the stable one rather than wait beside it.
    d = call(
        policy=canary,
        total=1,
        state=rolling_out(),
        revisions=[rev("a", 1, room_on=("gpu-0",)), pending()],
    )
    assert d.replicas == {"a": 0, "b": 1}


def test_blue_green_and_an_abort_make_no_room():
    blue_green = replace(BLUE_GREEN, when_full="MakeRoom")  # the CRD refuses it; plan waits
    observed = [rev("a", 4, room_on=OLD_PODS), pending(replicas=4)]
    d = call(policy=blue_green, state=rolling_out(), revisions=observed)
    assert d.replicas == {"a": 4, "b": 4} and d.give_up == {}
    aborted = replace(rolling_out(), phase="Aborted", aborted_revision="b", reason="Unschedulable")
    d = call(policy=ROOM, state=aborted, revisions=[rev("a", 3, room_on=OLD_PODS[:3]), pending()])
    assert d.give_up == {} and d.replicas == {"a": 4, "b": 0}


# ---------------------------------------------------------------------------------------------
# Abort, rollback, history


@pytest.mark.parametrize("policy", [ROLLING, CANARY, BLUE_GREEN])
def test_no_progress_within_the_deadline_aborts_back_to_stable(policy):
    failure = "Unschedulable: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    # Canary: at its 50% step, waiting for the second canary pod.
    state = replace(rolling_out(at=0.0), target_ready=1, step=1)
    observed = [rev("a", 3), rev("b", 2, 1, failure=failure)]
    early = call(policy=policy, state=state, revisions=observed, now=599.0)
    assert early.state.phase == "Progressing" and early.requeue_after == 1

    d = call(policy=policy, state=state, revisions=observed, now=600.0)
    assert d.state.phase == "Aborted" and d.state.aborted_revision == "b"
    assert d.state.reason == "Unschedulable"
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "RolloutAborted")]
    assert failure in d.events[0].message
    assert d.cause == Cause.failed("Unschedulable", d.state.message)
    assert d.requeue_after is None
    if policy.strategy == "RollingUpdate":  # back the way it came, within the budget
        assert d.replicas == {"a": 4, "b": 1} and d.weights == {"a": 75, "b": 25}
    else:
        assert d.replicas == {"a": 4, "b": 0} and d.serving == ("a",)

    later = call(policy=policy, state=d.state, revisions=[rev("a", 4), rev("b", 0)], now=9999.0)
    assert later.state == d.state and later.events == ()
    assert later.replicas == {"a": 4, "b": 0} and later.weights == {"a": 100}


def test_abort_message_is_one_bounded_line_that_keeps_the_outcome():
    failure = "Unschedulable: " + "0/400 nodes are available:\n insufficient gpu. " * 20
    state = replace(rolling_out(at=0.0), target_ready=1)
    observed = [rev("a", 3), rev("b", 2, 1, failure=failure)]
    d = call(state=state, revisions=observed, now=600.0)
    message = d.state.message
    assert len(message) <= MESSAGE_LIMIT and "\n" not in message
    assert message.startswith("revision b made no progress for 600s: Unschedulable: 0/400")
    assert message.endswith("...; traffic went back to revision a")
    assert d.cause is not None and d.events[0].message == message == d.cause.message


def test_the_deadline_counts_from_the_last_progress():
    state = replace(rolling_out(at=0.0), target_ready=1)
    # A second ready pod 500 s in is progress: the deadline moves.
    d = call(state=state, revisions=[rev("a", 3), rev("b", 2)], now=500.0)
    assert d.state.progress_at == 500.0 and d.state.target_ready == 2
    d = call(state=d.state, revisions=[rev("a", 2), rev("b", 3, 2)], now=1000.0)
    assert d.state.phase == "Progressing" and d.requeue_after == 100
    # A crash loop that drops to 0 and comes back to 2 is no progress.
    d2 = call(state=d.state, revisions=[rev("a", 2), rev("b", 3, 2)], now=1100.0)
    assert d2.state.phase == "Aborted"
    assert d2.state.reason == "ProgressDeadlineExceeded"


def test_a_new_spec_ends_the_abort():
    aborted = replace(rolling_out(), phase="Aborted", aborted_revision="b", reason="X")
    d = call(desired="c", state=aborted, revisions=[rev("a", 4), rev("b", 0)])
    assert d.state.phase == "Progressing" and d.state.target_revision == "c"
    assert d.state.aborted_revision is None and reasons(d) == ["RolloutStarted"]
    back = call(desired="a", state=aborted, revisions=[rev("a", 4), rev("b", 0)])
    assert back.state == stable() and reasons(back) == ["RolloutAbandoned"]


@pytest.mark.parametrize("policy", [CANARY, BLUE_GREEN])
def test_setting_the_spec_back_during_a_rollout_returns_traffic_at_once(policy):
    state = replace(rolling_out(), phase="Paused", paused_at=50.0)
    d = call(policy=policy, desired="a", state=state, revisions=[rev("a", 3), rev("b", 1)])
    assert d.state == stable()
    assert d.replicas == {"a": 4, "b": 0} and d.serving == ("a",)
    assert reasons(d) == ["RolloutAbandoned"]


def test_rolling_back_to_a_kept_revision_reuses_it():
    observed = [rev("a", 0), rev("b", 4)]
    d = call(desired="a", state=stable("b"), revisions=observed)
    assert d.state.target_revision == "a" and d.state.stable_revision == "b"
    assert d.replicas == {"a": 1, "b": 4} and d.prune == ()


def test_old_revisions_beyond_the_history_limit_are_pruned_once_drained():
    policy = RolloutPolicy(revision_history_limit=1)
    observed = [rev("a", 0), rev("b", 0), rev("c", 0), rev("d", 4)]
    d = call(policy=policy, desired="d", state=stable("d"), revisions=observed)
    assert d.prune == ("b", "a")  # c is the newest old revision: kept for a rollback
    assert d.replicas == {"c": 0, "d": 4}
    # An old revision that still runs a pod waits until it is drained.
    policy = replace(policy, revision_history_limit=0)
    observed = [rev("c", 1, 0), rev("d", 4)]
    d = call(policy=policy, desired="d", state=stable("d"), revisions=observed)
    assert d.prune == () and d.replicas == {"c": 0, "d": 4}
    d = call(policy=policy, desired="d", state=stable("d"), revisions=[rev("c", 0), rev("d", 4)])
    assert d.prune == ("c",)


def test_history_limit_zero_never_prunes_the_stable_or_desired_revision():
    policy = RolloutPolicy(strategy="BlueGreen", revision_history_limit=0)
    d = call(policy=policy, desired="b", state=stable("a"), revisions=[rev("a", 0), rev("b", 0)])
    assert d.prune == ()


# ---------------------------------------------------------------------------------------------
# Wire form and helpers


def test_state_wire_form_is_camel_case_with_rfc3339_times():
    state = replace(rolling_out(at=1_700_000_000.25), phase="Paused", paused_at=1_700_000_060.0)
    wire = state.to_dict()
    assert wire == {
        "stableRevision": "a",
        "targetRevision": "b",
        "phase": "Paused",
        "step": 0,
        "startedAt": "2023-11-14T22:13:20.250000Z",
        "pausedAt": "2023-11-14T22:14:20.000000Z",
        "progressAt": "2023-11-14T22:13:20.250000Z",
        "targetReady": 0,
    }
    assert RolloutState.from_dict(wire) == state
    assert RolloutState.from_dict(None) is None and RolloutState.from_dict({}) is None


def test_observed_revision_from_deployment():
    deployment = {
        "metadata": {
            "name": "resnet-abc",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"torchship.dev/revision": "abc", "app.kubernetes.io/version": "v3"},
        },
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2, "availableReplicas": 1},
    }
    r = ObservedRevision.from_deployment(deployment, failure="CrashLoopBackOff: x")
    assert r == ObservedRevision("abc", 3, 2, 1, "v3", 1767323045.0, "CrashLoopBackOff: x")
    bare = {"metadata": {"labels": {"torchship.dev/revision": "abc"}}}
    assert ObservedRevision.from_deployment(bare) == ObservedRevision("abc", 1)


def test_policy_from_spec_reads_the_api_model():
    from torchship_operator import api

    spec = api.RolloutSpec.model_validate(
        {"strategy": "Canary", "steps": [{"weight": 10, "pauseSeconds": 60}, {"weight": 50}]}
    )
    policy = RolloutPolicy.from_spec(spec)
    assert policy.steps == (Step(10, 60), Step(50, None))
    assert policy.strategy == "Canary" and policy.max_surge == spec.max_surge
    assert policy.when_full == "Wait"
    room = api.RolloutSpec.model_validate({"whenFull": "MakeRoom"})
    assert RolloutPolicy.from_spec(room).when_full == "MakeRoom"
    assert policy.analysis is None
    judged = api.RolloutSpec.model_validate(
        {"strategy": "Canary", "steps": [{"weight": 10}], "analysis": {"maxErrorRatio": 0.02}}
    )
    assert RolloutPolicy.from_spec(judged).analysis == AnalysisPolicy(max_error_ratio=0.02)


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("Unschedulable: 0/4 nodes are available", "Unschedulable"),
        ("CrashLoopBackOff: back-off 5m0s", "CrashLoopBackOff"),
        ("something odd happened", "RevisionFailed"),
        (None, None),
    ],
)
def test_failure_reason(failure, reason):
    assert failure_reason(failure) == reason


# ---------------------------------------------------------------------------------------------
# Properties of single calls over random inputs

NAMES = ("a", "b", "c", "d")


@st.composite
def observed_revisions(draw):
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=4))
    out = []
    for i, name in enumerate(names):
        replicas = draw(st.integers(0, 8))
        ready = draw(st.integers(0, replicas + 1))
        available = draw(st.integers(0, ready))
        failure = draw(st.sampled_from([None, "Unschedulable: no nodes", "odd"]))
        unplaced = draw(st.integers(0, replicas))
        short_of = "1 nvidia.com/gpu" if unplaced else None
        room_on = tuple(sorted(draw(st.lists(st.sampled_from(["n0", "n1"]), max_size=ready))))
        out.append(
            ObservedRevision(
                name,
                replicas,
                ready,
                available,
                None,
                float(i),
                failure,
                unplaced,
                short_of,
                room_on,
            )
        )
    return out


times = st.none() | st.floats(0, 2000).map(round)
maybe_name = st.none() | st.sampled_from(NAMES)
states = st.none() | st.builds(
    RolloutState,
    stable_revision=maybe_name,
    target_revision=maybe_name,
    phase=st.sampled_from(["Stable", "Progressing", "Paused", "Aborted"]),
    step=st.integers(0, 4),
    started_at=times,
    paused_at=times,
    progress_at=times,
    target_ready=st.integers(0, 8),
    aborted_revision=maybe_name,
    reason=st.none() | st.just("Unschedulable"),
    message=st.none() | st.just("m"),
    making_room=st.none() | st.just("making room: m"),
    analysis=st.lists(
        st.builds(StepAnalysis, st.integers(0, 3), st.integers(1, 99), st.integers(0, 2)),
        max_size=2,
    ).map(tuple),
)
policies = st.builds(
    RolloutPolicy,
    strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]),
    steps=st.lists(
        st.builds(Step, st.integers(1, 100), st.none() | st.sampled_from([0, 60, 300])),
        max_size=3,
    ).map(tuple),
    max_surge=st.integers(0, 3),
    max_unavailable=st.integers(0, 3),
    progress_deadline_seconds=st.sampled_from([60, 600]),
    revision_history_limit=st.integers(0, 3),
    exact_weights=st.booleans(),
    when_full=st.sampled_from(["Wait", "MakeRoom"]),
    analysis=st.none()
    | st.builds(
        AnalysisPolicy,
        max_error_ratio=st.sampled_from([0.0, 0.1]),
        min_requests=st.sampled_from([1, 20]),
        failure_limit=st.integers(0, 1),
    ),
)
figures = st.builds(
    Figures, st.integers(0, 100), st.integers(0, 10), st.none() | st.floats(1, 100).map(round)
)
measurements = st.builds(
    Measurement, st.floats(0, 1500).map(round), st.floats(1500, 3000).map(round), figures, figures
)
inputs = st.fixed_dictionaries(
    {
        "policy": policies,
        "desired": st.sampled_from(NAMES),
        "total": st.integers(0, 8),
        "state": states,
        "revisions": observed_revisions(),
        "now": st.floats(0, 3000).map(round),
        "promoted_step": st.none() | st.integers(0, 3),
        "measurement": st.none() | measurements,
    }
)
PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_decision(d: Decision, args: dict) -> None:
    """What holds for any decision, whatever the inputs."""
    assert sum(d.weights.values()) == 100
    assert all(w > 0 for w in d.weights.values())
    assert d.serving == tuple(d.weights)
    assert set(d.serving) <= set(d.replicas)
    if args["total"] > 0:
        assert all(d.replicas[r] > 0 for r in d.serving)
    assert args["desired"] in d.replicas and all(n >= 0 for n in d.replicas.values())
    assert args["desired"] not in d.prune and d.state.stable_revision not in d.prune
    assert not set(d.prune) & set(d.replicas)
    canary_step = d.state.phase in ("Progressing", "Paused") and d.state.stable_revision
    if args["policy"].strategy == "Canary" and args["total"] > 0 and canary_step:
        assert d.replicas[args["desired"]] >= 1
    if d.requeue_after is not None:
        assert d.requeue_after > 0
    assert RolloutState.from_dict(d.state.to_dict()) in (d.state, None)
    # A router's backends: the serving revisions first, then those still running pods.
    assert d.backends[: len(d.serving)] == d.serving and len(set(d.backends)) == len(d.backends)
    assert set(d.backends) <= set(d.replicas)
    steps = args["policy"].canary_steps
    paused = d.state.phase == "Paused" and d.state.step < len(steps)
    if args["policy"].exact_weights and paused and len(d.weights) == 2:
        # (a lone canary pod that replaced the stable one takes it all)
        assert d.weights[args["desired"]] == steps[d.state.step].weight
    observed = {r.revision: r for r in args["revisions"]}
    for r, nodes in d.give_up.items():  # only ready old pods that hold what is lacking go
        assert r != args["desired"] and args["policy"].when_full == "MakeRoom"
        assert set(nodes) <= set(observed[r].room_on)
        assert 0 < len(nodes) <= min(observed[r].ready, observed[r].replicas) - d.replicas[r]


@PROPERTY
@given(inputs)
def test_any_decision_is_well_formed_and_a_fixed_point(args):
    d = plan(**args)
    check_decision(d, args)
    # Called again with the state it produced, nothing new happens.
    again = plan(**(args | {"state": d.state}))
    assert again.events == ()
    assert replace(again, events=d.events) == d


@PROPERTY
@given(inputs)
def test_making_room_never_leaves_fewer_ready_than_the_policy_allows(args):
    """Whatever the cluster shows, a rollout that makes room keeps at least
    total - max(maxUnavailable, 1) pods ready (or as many as were), and adds no pod beyond the
    policy's surge."""
    policy = replace(args["policy"], when_full="MakeRoom")
    d = plan(**(args | {"policy": policy}))
    rollout = d.state.phase in ("Progressing", "Paused") and d.state.stable_revision is not None
    if not rollout or args["total"] == 0:  # (a first revision has nothing to protect)
        return
    # A canary moves the stable and the new revision only (others go at once, as ever).
    moving = (args["desired"], d.state.stable_revision)
    ready = {
        r.revision: max(0, min(r.ready, r.replicas))
        for r in args["revisions"]
        if policy.strategy == "RollingUpdate" or r.revision in moving
    }
    kept = sum(min(n, d.replicas.get(r, 0)) for r, n in ready.items())
    floor = args["total"] - max(policy.budget[1], 1)
    assert kept >= min(sum(ready.values()), floor)
    if policy.strategy == "RollingUpdate":
        decided = sum(r.replicas for r in args["revisions"])
        assert sum(d.replicas.values()) <= max(args["total"] + policy.budget[0], decided)


@st.composite
def aborted_inputs(draw) -> dict:
    """Inputs whose state is an abort of the desired revision, with a stable one to go back to
    among the observed revisions."""
    args = draw(inputs.filter(lambda a: any(r.revision != a["desired"] for r in a["revisions"])))
    stable_name = draw(
        st.sampled_from([r.revision for r in args["revisions"]]).filter(
            lambda n: n != args["desired"]
        )
    )
    state = RolloutState(
        stable_revision=stable_name,
        target_revision=args["desired"],
        phase="Aborted",
        step=draw(st.integers(0, 3)),
        aborted_revision=args["desired"],
        reason="Unschedulable",
        message="m",
    )
    return args | {"state": state}


@PROPERTY
@given(aborted_inputs())
def test_aborted_stays_aborted_until_the_spec_changes(args):
    aborted = plan(**args)
    assert aborted.state.phase == "Aborted"
    assert aborted.state.aborted_revision == args["desired"]
    observed = {r.revision: r for r in args["revisions"]}
    later = plan(**(args | {"state": aborted.state, "now": args["now"] + 10_000}))
    assert later.state == aborted.state and later.events == ()
    desired = args["desired"]
    assert later.replicas[desired] <= (observed[desired].replicas if desired in observed else 0)
    assert desired not in later.serving or args["policy"].strategy == "RollingUpdate"
    # A new spec (another desired revision) leaves the abort behind.
    other = next(n for n in NAMES if n not in (desired, aborted.state.stable_revision))
    moved_on = plan(**(args | {"state": aborted.state, "desired": other}))
    assert moved_on.state.phase != "Aborted" or moved_on.state.aborted_revision == other


# ---------------------------------------------------------------------------------------------
# A simulated cluster: decisions applied, pods scheduled where there is room, ready a tick later

DT = 30.0
GPU_FULL = "Unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


@dataclass
class Pods:
    spec: int
    created_at: float
    starting: int = 0
    ready: int = 0


class Cluster:
    def __init__(self, capacity: int | None = None):
        self.capacity = capacity
        self.broken: frozenset[str] = frozenset()  # pods start but never become ready
        self.unplaceable: frozenset[str] = frozenset()  # pods no node can take
        self.deployments: dict[str, Pods] = {}
        self.created = 0  # Deployments ever created

    def room(self) -> int:
        used = sum(p.starting + p.ready for p in self.deployments.values())
        return 10**6 if self.capacity is None else self.capacity - used

    def observe(self) -> list[ObservedRevision]:
        out = []
        for name, p in self.deployments.items():
            failure, unplaced = None, 0
            pending = p.spec > p.starting + p.ready
            if pending and (self.room() <= 0 or name in self.unplaceable):
                failure = GPU_FULL
                # For lack of a GPU, or for a product no node has (no Insufficient then).
                unplaced = 0 if name in self.unplaceable else p.spec - p.starting - p.ready
            if name in self.broken and p.starting:  # the crash says more than a pending pod
                failure = "CrashLoopBackOff: back-off 5m0s restarting failed container"
            short_of = "1 nvidia.com/gpu" if unplaced else None
            room_on = ("gpu-0",) * p.ready  # every ready pod holds a GPU any other could use
            out.append(
                ObservedRevision(
                    name,
                    p.spec,
                    p.ready,
                    p.ready,
                    None,
                    p.created_at,
                    failure,
                    unplaced,
                    short_of,
                    room_on,
                )
            )
        return out

    def apply(self, d: Decision, now: float) -> None:
        for name in d.prune:
            del self.deployments[name]
        for name, n in d.replicas.items():
            if name not in self.deployments:
                self.deployments[name] = Pods(n, now)
                self.created += 1
            self.deployments[name].spec = n
        for p in self.deployments.values():  # scale down: pods not ready go first
            excess = p.starting + p.ready - p.spec
            if excess > 0:
                gone = min(excess, p.starting)
                p.starting -= gone
                p.ready -= excess - gone
        for name, p in self.deployments.items():
            if name not in self.broken:
                p.ready += p.starting
                p.starting = 0
        for name, p in sorted(self.deployments.items(), key=lambda kv: kv[1].created_at):
            if name not in self.unplaceable:
                p.starting += max(0, min(p.spec - p.starting - p.ready, self.room()))


@dataclass
class Run:
    policy: RolloutPolicy
    cluster: Cluster
    total: int
    state: RolloutState | None = None
    now: float = 0.0
    promoted: int | None = None
    last_total: int | None = None

    def tick(self, desired: str) -> Decision:
        observed = self.cluster.observe()
        args = dict(
            policy=self.policy,
            desired=desired,
            total=self.total,
            state=self.state,
            revisions=observed,
            now=self.now,
            promoted_step=self.promoted,
        )
        d = plan(**args)
        check_decision(d, args)
        assert plan(**(args | {"state": d.state})).events == ()
        if self.policy.strategy == "RollingUpdate" and self.total == self.last_total:
            check_rolling_budget(self.policy, self.total, observed, d)
        self.last_total = self.total
        self.cluster.apply(d, self.now)
        self.state = RolloutState.from_dict(d.state.to_dict())  # through status.rollout
        self.now += DT
        if d.cause and d.cause.reason == "AwaitingPromotion":  # a person releases the step
            self.promoted = d.state.step
        return d

    def until_stable(self, desired: str, ticks: int) -> Decision:
        for _ in range(ticks):
            d = self.tick(desired)
            if d.state == RolloutState(stable_revision=desired) and self.settled(desired):
                return d
        raise AssertionError(f"not stable on {desired} after {ticks} ticks: {d}")

    def settled(self, desired: str) -> bool:
        pods = self.cluster.deployments
        return pods[desired].ready == self.total and all(
            p.spec == 0 for name, p in pods.items() if name != desired
        )


def check_rolling_budget(policy, total, observed, d) -> None:
    surge, unavailable = policy.budget
    if policy.when_full == "MakeRoom":  # no surge then, and one pod at least may go
        unavailable = max(unavailable, 1)
    assert total <= sum(d.replicas.values()) <= total + surge
    ready = {r.revision: min(r.ready, r.replicas) for r in observed}
    floor = min(total - unavailable, sum(ready.values()))
    assert sum(min(n, d.replicas.get(r, 0)) for r, n in ready.items()) >= floor


def bound(policy: RolloutPolicy, total: int) -> int:
    """Ticks enough for one rollout: a few per pod per step, plus the pauses."""
    steps = policy.canary_steps if policy.strategy == "Canary" else ()
    pauses = sum((s.pause_seconds or 0) for s in steps) / DT
    return int(10 + 3 * (total + 2) * (len(steps) + 1) + pauses + 2 * len(steps))


scenarios = st.fixed_dictionaries(
    {
        "policy": st.builds(
            RolloutPolicy,
            strategy=st.sampled_from(["RollingUpdate", "Canary", "BlueGreen"]),
            steps=st.lists(
                st.builds(Step, st.integers(1, 100), st.none() | st.sampled_from([0, 60, 120])),
                min_size=1,
                max_size=4,
            ).map(tuple),
            max_surge=st.integers(0, 2),
            max_unavailable=st.integers(0, 2),
            revision_history_limit=st.integers(0, 2),
            exact_weights=st.booleans(),
            when_full=st.sampled_from(["Wait", "MakeRoom"]),
        ),
        "total": st.integers(0, 6),
        "tight": st.booleans(),
    }
)
SIMULATION = settings(max_examples=150, deadline=None)


def cluster_for(policy: RolloutPolicy, total: int, tight: bool) -> Cluster:
    """The GPUs the strategy needs, and none spare when `tight` and maxSurge is 0 or MakeRoom."""
    surge, _ = policy.budget
    if policy.strategy == "BlueGreen":
        return Cluster(capacity=2 * total)
    weights = [s.weight for s in policy.canary_steps]
    if tight and policy.when_full == "MakeRoom" and weights == sorted(weights):
        # (A step that lowers the weight grows the stable revision: room is made for the new
        # one only, so such a canary needs its surge.)
        return Cluster(capacity=total)
    return Cluster(capacity=total + (0 if tight and surge == 0 else max(surge, 1)))


@SIMULATION
@given(scenarios)
def test_every_strategy_reaches_the_desired_revision_and_rolls_back(scenario):
    policy, total = scenario["policy"], scenario["total"]
    run = Run(policy, cluster_for(policy, total, scenario["tight"]), total)
    run.until_stable("a", 5)
    run.until_stable("b", bound(policy, total))
    created = run.cluster.created
    run.promoted = None
    run.until_stable("a", bound(policy, total))
    if policy.revision_history_limit >= 1:
        assert run.cluster.created == created  # the kept revision came back, no new Deployment


@SIMULATION
@given(scenarios, st.integers(1, 12))
def test_a_spec_changed_mid_rollout_still_converges(scenario, switch_after):
    policy, total = scenario["policy"], scenario["total"]
    run = Run(policy, cluster_for(policy, total, scenario["tight"]), total)
    run.until_stable("a", 5)
    for _ in range(switch_after):
        run.tick("b")
    run.promoted = None
    run.until_stable("c", 2 * bound(policy, total))


@SIMULATION
@given(scenarios.filter(lambda s: s["total"] > 0), st.sampled_from(["crash", "unschedulable"]))
def test_a_broken_revision_aborts_once_and_stays_aborted(scenario, breakage):
    policy, total = scenario["policy"], scenario["total"]
    cluster = cluster_for(policy, total, scenario["tight"])
    if breakage == "crash":
        cluster.broken = frozenset({"b"})
    else:
        cluster.unplaceable = frozenset({"b"})  # e.g. a GPU product no node has
    run = Run(policy, cluster, total)
    run.until_stable("a", 5)
    warnings = []
    for _ in range(bound(policy, total) + 40):
        d = run.tick("b")
        warnings += [e for e in d.events if e.type == "Warning"]
        if d.state.phase == "Aborted":
            break
    assert d.state.phase == "Aborted" and d.state.stable_revision == "a"
    expected = "CrashLoopBackOff" if breakage == "crash" else "Unschedulable"
    assert d.state.reason == expected and d.cause == Cause.failed(expected, d.state.message)
    assert [e.reason for e in warnings] == ["RolloutAborted"]
    for _ in range(3 * (total + 2)):
        d = run.tick("b")
        assert d.state.phase == "Aborted" and d.events == ()
    assert d.weights == {"a": 100} and d.replicas["b"] == 0
    assert run.cluster.deployments["a"].ready == total
    run.promoted = None
    run.until_stable("c", bound(policy, total))


@SIMULATION
@given(scenarios, st.lists(st.tuples(st.integers(0, 10), st.integers(0, 6)), max_size=4))
def test_scaling_during_a_rollout_still_converges(scenario, scale_changes):
    policy, total = scenario["policy"], scenario["total"]
    run = Run(policy, Cluster(), total)  # room for any total
    run.until_stable("a", 5)
    for wait, new_total in scale_changes:
        for _ in range(wait):
            run.tick("b")
        run.total = new_total
    run.promoted = None
    run.until_stable("b", bound(policy, 6))


# ---------------------------------------------------------------------------------------------
# Exact weights (trafficRouting gateway-api)

ROUTED_CANARY = replace(CANARY, steps=(Step(10, 60), Step(50, None)), exact_weights=True)


def test_a_router_carries_each_canary_step_weight_exactly():
    """10% of 4 replicas is one pod (25% of them), but the route gives it 10% of the traffic;
    until a step's pods are ready the route keeps the previous step's weight."""
    d = call(policy=ROUTED_CANARY, state=stable(), revisions=[rev("a", 4)])
    assert d.weights == {"a": 100} and d.backends == ("a", "b")  # b comes up at weight 0
    d = call(policy=ROUTED_CANARY, state=d.state, revisions=[rev("a", 4), rev("b", 1)])
    assert d.state.phase == "Paused" and d.weights == {"b": 10, "a": 90}
    released = replace(d.state, paused_at=0.0)
    d = call(policy=ROUTED_CANARY, state=released, revisions=[rev("a", 4), rev("b", 1)])
    assert d.state.step == 1 and d.state.phase == "Progressing"
    assert d.weights == {"b": 10, "a": 90}  # the 50% step's pods are not ready yet
    d = call(policy=ROUTED_CANARY, state=d.state, revisions=[rev("a", 2), rev("b", 2)])
    assert d.state.phase == "Paused" and d.weights == {"b": 50, "a": 50}
    d = call(policy=ROUTED_CANARY, state=d.state, revisions=[rev("a", 2), rev("b", 2)], promoted=1)
    assert d.state.step == 2 and d.weights == {"b": 50, "a": 50}  # never below the last step
    d = call(policy=ROUTED_CANARY, state=d.state, revisions=[rev("a", 1), rev("b", 3)])
    assert d.weights == {"b": 75, "a": 25}  # and more as its pods take over
    d = call(policy=ROUTED_CANARY, state=d.state, revisions=[rev("a", 0, 1), rev("b", 4)])
    assert d.state == stable("b") and d.weights == {"b": 100}
    assert d.backends == ("b", "a")  # 100/0 while a's last pod drains...
    d = call(policy=ROUTED_CANARY, state=d.state, revisions=[rev("a", 0), rev("b", 4)])
    assert d.backends == ("b",)  # ...then a is dropped


def test_with_a_router_blue_green_and_abort_keep_the_other_backend_at_zero():
    blue_green = replace(BLUE_GREEN, exact_weights=True)
    d = call(policy=blue_green, state=stable(), revisions=[rev("a", 4), rev("b", 4, 2)])
    assert d.weights == {"a": 100} and d.backends == ("a", "b")
    d = call(policy=blue_green, state=d.state, revisions=[rev("a", 4), rev("b", 4)])
    assert d.weights == {"b": 100} and d.backends == ("b", "a")

    failure = "CrashLoopBackOff: back-off 5m0s restarting failed container"
    state = replace(rolling_out(at=0.0), step=1, target_ready=1)  # on its way to 50%
    observed = [rev("a", 3), rev("b", 2, 1, failure=failure)]
    d = call(policy=ROUTED_CANARY, state=state, revisions=observed, now=600.0)
    assert d.state.phase == "Aborted" and d.weights == {"a": 100}
    assert d.backends == ("a", "b")  # b still has its pod (decided to 0, not yet gone)


@pytest.mark.parametrize("strategy", ["RollingUpdate", "Canary"])
def test_on_a_full_cluster_max_surge_1_deadlocks_and_make_room_completes(strategy):
    steps = (Step(50, 0),) if strategy == "Canary" else ()
    wait = RolloutPolicy(strategy=strategy, steps=steps)  # maxSurge 1, maxUnavailable 0
    total = 4
    run = Run(wait, Cluster(capacity=total), total)  # every GPU taken
    run.until_stable("a", 5)
    for _ in range(bound(wait, total)):
        d = run.tick("b")
    assert d.state.phase == "Aborted" and d.state.reason == "Unschedulable"
    assert run.cluster.deployments["a"].ready == total

    room = replace(wait, when_full="MakeRoom")
    run = Run(room, Cluster(capacity=total), total)
    run.until_stable("a", 5)
    causes = []
    for _ in range(bound(room, total)):
        d = run.tick("b")
        causes.append(d.cause.reason if d.cause else None)
        ready = sum(p.ready for p in run.cluster.deployments.values())
        assert ready >= total - 1  # one pod's capacity short while it moves, never more
        if d.state == RolloutState(stable_revision="b") and run.settled("b"):
            break
    assert run.settled("b") and d.state.phase == "Stable"
    assert "MakingRoom" in causes
