"""Making room, the facts: which new pods lack their GPU in the scheduler's own words, which old
pods would free it, and which of them the operator marks (room.py, pure)."""

from __future__ import annotations

from torchship_operator import api, render, room, status
from torchship_operator.reconcilers.report import wanted
from torchship_operator.vocabulary import MAKING_ROOM, Cause

H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
INSUFFICIENT = (
    "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, "
    "2 node(s) didn't match Pod's node affinity/selector."
)


def pod(name, revision, node=None, ready=False, message="", selector=H100, count=1, **meta):
    """A pod as the pod cache holds it (handlers.slim_pod): its start facts."""
    scheduled = {"status": "True", "reason": "", "message": ""}
    if node is None:
        scheduled = {"status": "False", "reason": "Unschedulable", "message": message}
    gpu = {"resource": "nvidia.com/gpu", "count": count, "selector": dict(selector)}
    labels = {"torchship.dev/revision": revision}
    return {
        "metadata": {"name": name, "labels": labels, **meta},
        "status": {},
        "start": {"node": node, "scheduled": scheduled, "ready": ready, "gpu": gpu},
    }


OLD = [
    pod("m-a-1", "a", "gpu-1", ready=True),
    pod("m-a-2", "a", "gpu-0", ready=True),
    pod("m-a-3", "a", "gpu-0", ready=True),
    pod("m-a-4", "a", "gpu-1", ready=False),  # not ready: the ReplicaSet removes it first anyway
]


def test_a_pod_short_of_its_gpu_and_the_old_pods_that_hold_one():
    pods = [*OLD, pod("m-b-1", "b", message=INSUFFICIENT), pod("m-b-2", "b", "gpu-2")]
    assert room.facts(pods, "b", "b") == {"unplaced": 1, "short_of": "1 nvidia.com/gpu"}
    assert room.facts(pods, "a", "b") == {"room_on": ("gpu-0", "gpu-0", "gpu-1")}


def test_no_room_to_make_for_a_pod_pending_for_another_reason():
    for message in ("0/4 nodes are available: 4 node(s) didn't match Pod's node selector.", ""):
        pods = [*OLD, pod("m-b-1", "b", message=message)]
        assert room.facts(pods, "b", "b") == {} and room.facts(pods, "a", "b") == {}


def test_old_pods_free_only_what_the_new_pod_asks_for_where_it_may_run():
    a10 = {"nvidia.com/gpu.product": "NVIDIA-A10"}
    pods = [
        pod("m-a-1", "a", "gpu-a10", ready=True, selector=a10),  # another product
        pod("m-a-2", "a", "cpu-0", ready=True, count=0),  # no GPU
        pod("m-a-3", "a", "gpu-0", ready=True, deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("m-b-1", "b", message=INSUFFICIENT),
    ]
    assert room.facts(pods, "a", "b") == {"room_on": ()}


def test_the_pods_given_up_are_one_per_chosen_node_first_by_name():
    pods = [*OLD, pod("m-b-1", "b", message=INSUFFICIENT)]
    assert room.chosen(pods, "a", ("gpu-0",), "b") == ["m-a-2"]
    assert room.chosen(pods, "a", ("gpu-0", "gpu-0", "gpu-1"), "b") == ["m-a-2", "m-a-3", "m-a-1"]
    assert room.chosen(pods, "a", ("gpu-9",), "b") == []
    assert room.chosen(OLD, "a", ("gpu-0",), "b") == []  # nothing pending: nothing to give up
    assert room.deletion_cost_patch() == {
        "metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1000"}}
    }


def test_making_room_explains_the_pending_pod_in_status():
    pending = pod("m-b-1", "b", message=INSUFFICIENT)
    deployment = {
        "metadata": {"name": "m-b", "labels": {"torchship.dev/revision": "b"}, "generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1},
    }
    children = status.Children([deployment], [pending])
    making = Cause.waiting(MAKING_ROOM, "making room: revision a gives up 1 pod on node gpu-0")
    got = compute(children, making)
    assert {c["type"]: (c["status"], c["reason"]) for c in got} == {
        "Ready": ("False", MAKING_ROOM),
        "Available": ("False", "MinimumReplicasUnavailable"),
        "Progressing": ("True", MAKING_ROOM),
        "Degraded": ("False", "AsExpected"),
    }
    # Without it (whenFull: Wait) the pod's own wait is the news, as ever.
    ready = next(c for c in compute(children, None) if c["type"] == "Ready")
    assert ready["reason"] == "WaitingForGPU"


def compute(children: status.Children, cause: Cause | None) -> list[dict]:
    owner = render.Owner(name="m", namespace="ns", uid="u")
    return status.compute(
        owner=owner,
        wanted=status.Wanted(revision="b", total=1),
        children=children,
        generation=1,
        previous={},
        now="2026-01-01T00:00:00Z",
        cause=cause,
    )["conditions"]


def test_the_facts_read_pods_as_the_pod_cache_holds_them():
    from torchship_operator.handlers import slim_pod

    def cached(name, revision, node, ready, deleting=None):
        spec = {
            "nodeName": node,
            "nodeSelector": H100,
            "containers": [{"name": "runtime", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        }
        scheduled = {"type": "PodScheduled", "status": "True"}
        if node is None:
            scheduled = scheduled | {"status": "False", "reason": "Unschedulable"}
            scheduled["message"] = INSUFFICIENT
        conditions = [scheduled, {"type": "Ready", "status": "True" if ready else "False"}]
        labels = {"torchship.dev/revision": revision}
        return slim_pod(name, labels, spec, {"conditions": conditions}, deleting)

    pods = [
        cached("m-a-1", "a", "gpu-0", ready=True),
        cached("m-a-2", "a", "gpu-1", ready=True, deleting="2026-01-01T00:00:00Z"),
        cached("m-b-1", "b", None, ready=False),
    ]
    assert room.facts(pods, "b", "b") == {"unplaced": 1, "short_of": "1 nvidia.com/gpu"}
    assert room.facts(pods, "a", "b") == {"room_on": ("gpu-0",)}  # m-a-2 is going already


def test_make_room_accepts_one_pod_short_only_while_a_rollout_moves_pods():
    """whenFull MakeRoom: an old pod gives its GPU up before the new pod on it is ready, so
    Available counts maxUnavailable as at least 1 during a rollout; a steady service one pod
    short is not Available."""
    owner = render.Owner(name="m", namespace="ns", uid="u")
    deployment = {
        "metadata": {"name": "m-a", "labels": {render.LABEL_REVISION: "a"}, "generation": 1},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "readyReplicas": 1, "availableReplicas": 1},
    }

    def available(rollout: dict, phase: str) -> str:
        spec = api.ModelServiceSpec.model_validate(
            {"model": {"uri": "file:///m.pt", "format": "torchscript"}, "replicas": 2}
            | {"rollout": rollout}
        )
        computed = status.compute(
            owner=owner,
            wanted=wanted(owner, spec, "a"),
            children=status.Children([deployment]),
            generation=1,
            previous={},
            now="2026-01-01T00:00:00Z",
            rollout={"phase": phase, "stableRevision": "a"},
        )
        return next(c for c in computed["conditions"] if c["type"] == "Available")["status"]

    make_room = {"whenFull": "MakeRoom"}
    assert available(make_room, "Progressing") == "True"
    assert available(make_room, "Paused") == "True"
    assert available(make_room, "Stable") == "False"
    assert available(make_room, "Aborted") == "False"
    assert available({}, "Progressing") == "False"
    assert available({"maxUnavailable": 1}, "Stable") == "True"
