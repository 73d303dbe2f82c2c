"""Status as a pure function of the observed children: conditions that say why, stable enough that
computing twice from the same world writes nothing."""

from __future__ import annotations

from typing import Any

from torchship_operator import api, render, status
from torchship_operator.kube import Refused
from torchship_operator.reconcile import Observed
from torchship_operator.reconcilers.report import refused_status
from torchship_operator.vocabulary import Cause

OWNER = render.Owner(name="mlp", namespace="ml", uid="u")
REV = "aaaaaaaaaa"
OLD = "bbbbbbbbbb"
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
UNSCHEDULABLE = (
    "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
    "3 node(s) had untolerated taint {nvidia.com/gpu: present}."
)


def deployment(
    revision: str = REV,
    replicas: int = 2,
    ready: int = 2,
    version: str | None = "v1",
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    labels = {render.LABEL_MS: "mlp", render.LABEL_REVISION: revision}
    if version:
        labels["app.kubernetes.io/version"] = version
    return {
        "metadata": {"name": f"mlp-{revision}", "labels": labels, "generation": 1},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": conditions or [],
        },
    }


def pending_pod(name: str = "mlp-aaaaaaaaaa-x", message: str = UNSCHEDULABLE) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {render.LABEL_REVISION: REV}},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                }
            ]
        },
    }


def waiting_pod(reason: str, message: str = "") -> dict[str, Any]:
    waiting = {"reason": reason} | ({"message": message} if message else {})
    return {
        "metadata": {"name": "mlp-aaaaaaaaaa-y", "labels": {render.LABEL_REVISION: REV}},
        "status": {"containerStatuses": [{"name": "runtime", "state": {"waiting": waiting}}]},
    }


def compute(
    deployments, pods=(), previous=None, now=T0, total=2, grpc_address=None, cause=None
) -> dict[str, Any]:
    return status.compute(
        owner=OWNER,
        wanted=status.Wanted(
            revision=REV,
            total=total,
            url="http://mlp.ml.svc.cluster.local:8080",
            grpc_address=grpc_address,
        ),
        children=status.Children(list(deployments), list(pods)),
        generation=3,
        previous=previous or {},
        now=now,
        cause=cause,
        weights={REV: 100},
    )


def conditions(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in s["conditions"]}


def brief(s: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in conditions(s).items()}


def test_all_replicas_of_the_desired_revision_available_is_ready():
    s = compute([deployment()])
    assert brief(s) == {
        "Ready": ("True", "Ready"),
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert (s["observedGeneration"], s["replicas"], s["readyReplicas"]) == (3, 2, 2)
    assert s["selector"] == "torchship.dev/modelservice=mlp"
    assert s["url"] == "http://mlp.ml.svc.cluster.local:8080"
    assert s["revisions"] == [
        {
            "name": "mlp-aaaaaaaaaa",
            "revision": REV,
            "version": "v1",
            "weight": 100,
            "replicas": 2,
            "readyReplicas": 2,
            "phase": "Serving",
        }
    ]
    for cond in s["conditions"]:
        assert set(cond) == {
            "type",
            "status",
            "reason",
            "message",
            "observedGeneration",
            "lastTransitionTime",
        }
        assert cond["observedGeneration"] == 3 and cond["lastTransitionTime"] == T0


def test_pods_coming_up_is_progress():
    s = compute([deployment(ready=1)])
    assert brief(s)["Ready"] == ("False", "RolloutInProgress")
    assert brief(s)["Progressing"] == ("True", "RolloutInProgress")
    assert conditions(s)["Ready"]["message"] == f"1/2 replicas of revision {REV} available"
    assert brief(s)["Degraded"] == ("False", "AsExpected")


def test_unschedulable_pods_say_why_in_the_schedulers_words():
    s = compute([deployment(ready=0)], pods=[pending_pod()])
    ready = conditions(s)["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "Unschedulable",
        UNSCHEDULABLE,
    )
    assert brief(s)["Degraded"] == ("True", "Unschedulable")
    assert brief(s)["Available"] == ("False", "MinimumReplicasUnavailable")


def test_the_first_failing_pod_by_name_speaks_for_the_revision():
    pods = [pending_pod("mlp-aaaaaaaaaa-z", "later"), pending_pod("mlp-aaaaaaaaaa-a", "first")]
    assert conditions(compute([deployment(ready=0)], pods=pods))["Ready"]["message"] == "first"
    pods.reverse()
    assert conditions(compute([deployment(ready=0)], pods=pods))["Ready"]["message"] == "first"


def test_image_pull_and_crash_loops_are_reported():
    for reason in ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff"):
        s = compute([deployment(ready=0)], pods=[waiting_pod(reason, "Back-off pulling image")])
        assert brief(s)["Ready"] == ("False", reason)
        assert conditions(s)["Ready"]["message"] == "Back-off pulling image"
        assert brief(s)["Degraded"] == ("True", reason)
    # Starting up is not a failure.
    s = compute([deployment(ready=0)], pods=[waiting_pod("ContainerCreating")])
    assert brief(s)["Ready"] == ("False", "RolloutInProgress")


def test_progress_deadline_exceeded_from_the_deployment():
    stalled = deployment(
        ready=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "mlp-aaaaaaaaaa-5d8" has timed out progressing.',
            }
        ],
    )
    s = compute([stalled])
    assert brief(s)["Ready"] == ("False", "ProgressDeadlineExceeded")
    assert brief(s)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert brief(s)["Degraded"] == ("True", "ProgressDeadlineExceeded")


def test_a_known_failure_wins():
    s = compute([deployment()], cause=Cause.failed("InvalidSpec", "spec.x: bad"))
    assert conditions(s)["Ready"]["reason"] == "InvalidSpec"
    assert conditions(s)["Degraded"]["message"] == "spec.x: bad"


def test_a_rollout_step_that_waits_is_named():
    step = Cause.waiting("AwaitingPromotion", "step 0 of revision x at 10%: waiting")
    s = compute([deployment(ready=1)], cause=step)
    assert brief(s)["Ready"] == ("False", "AwaitingPromotion")
    assert brief(s)["Progressing"] == ("True", "AwaitingPromotion")
    assert brief(s)["Degraded"] == ("False", "AsExpected")


def test_a_paused_canary_that_serves_every_replica_is_ready_and_progressing():
    """Ready says the service answers at its capacity; Progressing says the rollout waits."""
    step = Cause.waiting("CanaryPaused", "step 0 of revision x at 50%: paused for 3600s")
    canary = [deployment(replicas=1, ready=1), deployment(revision=OLD, replicas=1, ready=1)]
    s = compute(canary, cause=step)
    assert brief(s) == {
        "Ready": ("True", "Ready"),
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "CanaryPaused"),
        "Degraded": ("False", "AsExpected"),
    }
    assert conditions(s)["Progressing"]["message"] == step.message
    # One pod short of the promised capacity: not Ready, and the step says why it waits.
    short = [deployment(replicas=1, ready=1), deployment(revision=OLD, replicas=1, ready=0)]
    assert brief(compute(short, cause=step))["Ready"] == ("False", "CanaryPaused")
    # A failure is never Ready, whatever serves.
    failed = compute(canary, cause=Cause.failed("ApplyRefused", "forbidden"))
    assert brief(failed)["Ready"] == ("False", "ApplyRefused")


def test_grpc_address_beside_the_url():
    s = compute([deployment()], grpc_address="mlp.ml.svc.cluster.local:8081")
    assert s["url"] == "http://mlp.ml.svc.cluster.local:8080"
    assert s["grpcAddress"] == "mlp.ml.svc.cluster.local:8081"
    assert "grpcAddress" not in compute([deployment()])


def test_scaled_to_zero():
    s = compute([deployment(replicas=0, ready=0)], total=0)
    assert brief(s)["Ready"] == ("False", "ScaledToZero")
    assert brief(s)["Progressing"] == ("False", "RolloutComplete")


def test_old_revisions_still_running_keep_it_progressing():
    s = compute([deployment(), deployment(revision=OLD, replicas=1, ready=1, version="v0")])
    # Every replica serves: Ready; the rollout is not over: Progressing.
    assert brief(s)["Ready"] == ("True", "Ready")
    assert brief(s)["Progressing"] == ("True", "RolloutInProgress")
    assert conditions(s)["Ready"]["message"] == (
        "3 replicas ready for 2; a rollout is under way (see Progressing)"
    )
    assert (s["replicas"], s["readyReplicas"]) == (3, 3)
    phases = {r["revision"]: r["phase"] for r in s["revisions"]}
    assert phases == {REV: "Progressing", OLD: "Serving"}
    retired = compute([deployment(), deployment(revision=OLD, replicas=0, ready=0)])
    assert brief(retired)["Ready"] == ("True", "Ready")
    assert {r["revision"]: r["phase"] for r in retired["revisions"]}[OLD] == "Retired"


def test_same_world_same_status():
    world = ([deployment(ready=0)], [pending_pod()])
    first = compute(*world, now=T0)
    assert compute(*world, previous=first, now=T1) == first


def test_last_transition_time_moves_only_when_status_flips():
    first = compute([deployment(ready=1)], now=T0)
    later = compute([deployment(ready=2)], previous=first, now=T1)
    assert conditions(later)["Ready"]["lastTransitionTime"] == T1  # False -> True
    assert conditions(later)["Degraded"]["lastTransitionTime"] == T0  # False -> False
    assert conditions(later)["Progressing"]["lastTransitionTime"] == T1  # True -> False


def test_a_deployment_without_spec_replicas_counts_as_one_replica():
    bare = deployment(ready=0)
    del bare["spec"]["replicas"]
    s = compute([bare])
    assert s["replicas"] == 1
    assert s["revisions"][0]["replicas"] == 1


def test_a_crash_loop_speaks_with_the_containers_own_termination_message():
    pod = waiting_pod("CrashLoopBackOff", "back-off 20s restarting failed container=runtime pod=x")
    last = {"terminated": {"exitCode": 1, "reason": "Error", "message": "model could not load\n"}}
    pod["status"]["containerStatuses"][0]["lastState"] = last
    s = compute([deployment(ready=0)], pods=[pod])
    assert brief(s)["Ready"] == ("False", "CrashLoopBackOff")
    # The runtime's words, stable across restarts, not the back-off text naming the pod.
    assert conditions(s)["Ready"]["message"] == "model could not load"


def test_a_refused_write_is_ready_false_and_degraded_in_the_api_servers_words():
    spec = api.ModelServiceSpec.model_validate(
        {"model": {"uri": "/m.pt", "format": "torchscript"}, "replicas": 2}
    )
    before = compute([deployment(ready=2)])
    before["rollout"] = {"stableRevision": REV, "phase": "Stable"}
    meta = {"name": "mlp", "namespace": "ml", "uid": "u", "generation": 4}

    def observed(previous: dict[str, Any]) -> Observed:
        body = {"metadata": meta, "status": previous}
        return Observed(body=body, deployments=[deployment(ready=2)], services=[], hpas=[], pods=[])

    refused = Refused(
        "HorizontalPodAutoscaler", "mlp", 422, 'spec.behavior: Unsupported value: "X"'
    )
    after = refused_status(spec, REV, observed(before), refused)
    message = 'HorizontalPodAutoscaler mlp: spec.behavior: Unsupported value: "X"'
    for kind in ("Ready", "Degraded"):
        cond = conditions(after)[kind]
        assert (cond["reason"], cond["message"], cond["observedGeneration"]) == (
            "ApplyRefused",
            message,
            4,
        )
    assert brief(after)["Ready"][0] == "False" and brief(after)["Degraded"][0] == "True"
    # What was last applied still holds: the split and the rollout state are kept.
    assert after["rollout"] == before["rollout"]
    assert [r["weight"] for r in after["revisions"]] == [100]
    # Computed again from the same world: the same status, so nothing is written.
    assert refused_status(spec, REV, observed(after), refused) == after


def test_the_event_tells_ready_or_where_a_serving_rollout_is():
    """A status's Event follows Ready's reason, and Progressing's while a rollout moves under a
    Ready that serves (a canary pause, old pods making room)."""
    step = Cause.waiting("CanaryPaused", "step 0 of revision x at 50%: paused for 3600s")
    canary = [deployment(replicas=1, ready=1), deployment(revision=OLD, replicas=1, ready=1)]
    assert status.cause_told(compute(canary, cause=step))["reason"] == "CanaryPaused"
    short = [deployment(replicas=1, ready=1), deployment(revision=OLD, replicas=1, ready=0)]
    told = status.cause_told(compute(short, cause=step))
    assert (told["type"], told["reason"]) == ("Ready", "CanaryPaused")
    assert status.cause_told(compute([deployment()]))["reason"] == "Ready"
    assert status.cause_told({}) is None
