"""A pod event wakes its ModelService while the pod reports a failure and once when it stops:
a healthy pod's many events are told by its Deployment's."""

from __future__ import annotations

from torchship_operator.wakeups import FailingPods


def pod(waiting: str | None = None, unschedulable: bool = False) -> dict:
    status: dict = {"conditions": [], "containerStatuses": []}
    if unschedulable:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "x"}
        ]
    if waiting:
        status["containerStatuses"] = [
            {"name": "runtime", "state": {"waiting": {"reason": waiting}}}
        ]
    return {"metadata": {"name": "p", "labels": {}}, "status": status}


def test_a_healthy_pod_coming_up_wakes_nothing():
    pods = FailingPods()
    for event in (pod(), pod(waiting="ContainerCreating"), pod()):
        assert not pods.wakes("ml", "p", event, deleted=False)
    assert not pods.wakes("ml", "p", pod(), deleted=True)


def test_a_failure_wakes_while_it_lasts_and_once_when_it_ends():
    pods = FailingPods()
    assert pods.wakes("ml", "p", pod(unschedulable=True), deleted=False)
    assert pods.wakes("ml", "p", pod(waiting="CrashLoopBackOff"), deleted=False)
    assert pods.wakes("ml", "p", pod(), deleted=False)  # recovered: clear the reason
    assert not pods.wakes("ml", "p", pod(), deleted=False)


def test_a_failing_pod_that_goes_wakes_once():
    pods = FailingPods()
    assert pods.wakes("ml", "p", pod(waiting="ImagePullBackOff"), deleted=False)
    assert pods.wakes("ml", "p", pod(waiting="ImagePullBackOff"), deleted=True)
    assert not pods.failing


def test_each_start_phase_wakes_once():
    from test_phases import CASES

    pods = FailingPods()

    def event(case: str) -> bool:
        return pods.wakes("ml", "p", {**pod(), "start": CASES[case][0]}, deleted=False)

    assert event("downloading")
    assert not event("downloading")  # the same phase again: nothing new to say
    assert event("loading") and event("warming up") and event("ready")
    assert not event("ready")
    assert not pods.wakes("ml", "p", {**pod(), "start": CASES["ready"][0]}, deleted=True)
    assert not pods.phase
