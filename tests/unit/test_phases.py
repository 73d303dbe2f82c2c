"""Start phases from recorded pod states: what the scheduler and the kubelet write, as tables."""

from __future__ import annotations

from typing import Any

import pytest

from torchship_operator import offers, phases, starts, status

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:05Z"
T2 = "2026-01-01T00:00:47Z"
T3 = "2026-01-01T00:00:50Z"
T4 = "2026-01-01T00:01:02Z"

GPU_SPEC = {
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-B300"},
    "containers": [{"name": "runtime", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
}
CPU_SPEC = {"containers": [{"name": "runtime", "resources": {"limits": {"memory": "2Gi"}}}]}
SCHEDULED = {"type": "PodScheduled", "status": "True", "lastTransitionTime": T0}
UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector.",
    "lastTransitionTime": T0,
}
READY = {"type": "Ready", "status": "True", "lastTransitionTime": T4}
NOT_READY = {"type": "Ready", "status": "False", "lastTransitionTime": T0}


def waiting(name: str, reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}, **extra}


def running(name: str, at: str, started: bool = False, ready: bool = False, **extra: Any):
    state = {"running": {"startedAt": at}}
    return {"name": name, "state": state, "started": started, "ready": ready, **extra}


def done(name: str, start: str, end: str, code: int = 0, message: str = "", reason: str = ""):
    terminated = {
        "exitCode": code,
        "reason": reason or ("Completed" if code == 0 else "Error"),
        "startedAt": start,
        "finishedAt": end,
        "message": message,
    }
    return {"name": name, "state": {"terminated": terminated}}


FETCHED = done("fetch", T1, T2, message='{"bytes":6300000000,"seconds":41.2,"cached":false}')


def facts(conditions, init=(), containers=(), spec=None, node="node-a") -> dict[str, Any]:
    spec = {**(spec or CPU_SPEC), **({"nodeName": node} if node else {})}
    body = {
        "conditions": list(conditions),
        "initContainerStatuses": list(init),
        "containerStatuses": list(containers),
    }
    return phases.facts(spec, body)


CASES = {
    "waiting for a GPU": (
        facts([UNSCHEDULABLE], spec=GPU_SPEC, node=None),
        "WaitingForGPU",
        T0,
    ),
    "waiting for the scheduler": (facts([], node=None), "Scheduling", None),
    "pulling the image": (
        facts(
            [SCHEDULED, NOT_READY],
            [waiting("fetch", "PodInitializing")],
            [waiting("runtime", "PodInitializing")],
        ),
        "PullingImage",
        T0,
    ),
    "pulling, without a fetch": (
        facts([SCHEDULED], containers=[waiting("runtime", "ContainerCreating")]),
        "PullingImage",
        T0,
    ),
    "downloading": (
        facts(
            [SCHEDULED, NOT_READY],
            [running("fetch", T1)],
            [waiting("runtime", "PodInitializing")],
        ),
        "Downloading",
        T1,
    ),
    "fetched, runtime being created": (
        facts([SCHEDULED], [FETCHED], [waiting("runtime", "ContainerCreating")]),
        "Loading",
        T2,
    ),
    "loading": (
        facts([SCHEDULED, NOT_READY], [FETCHED], [running("runtime", T3)]),
        "Loading",
        T3,
    ),
    "warming up": (
        facts([SCHEDULED, NOT_READY], [FETCHED], [running("runtime", T3, started=True)]),
        "WarmingUp",
        None,
    ),
    "ready": (
        facts([SCHEDULED, READY], [FETCHED], [running("runtime", T3, True, True)]),
        "Ready",
        T4,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_phase_of_a_pod(case: str):
    recorded, phase, since = CASES[case]
    start = phases.pod_start(recorded)
    assert (start.phase, start.since) == (phase, since)
    assert phases.failure(recorded) is None


FAILURES = {
    "fetch crashing": (
        facts(
            [SCHEDULED],
            [
                waiting(
                    "fetch",
                    "CrashLoopBackOff",
                    "back-off 10s restarting failed container=fetch pod=x",
                    lastState={
                        "terminated": {
                            "exitCode": 1,
                            "reason": "Error",
                            "message": "the model could not be fetched from http://m/x.pt: "
                            "HTTPError: HTTP Error 404: Not Found",
                        }
                    },
                )
            ],
        ),
        "FetchFailed",
        "the model fetch failed: the model could not be fetched from http://m/x.pt: "
        "HTTPError: HTTP Error 404: Not Found",
    ),
    "fetch just failed": (
        facts([SCHEDULED], [done("fetch", T1, T2, code=1, message="no space left on device")]),
        "FetchFailed",
        "the model fetch failed: no space left on device",
    ),
    "image pull error": (
        facts(
            [SCHEDULED],
            [waiting("fetch", "ErrImagePull", 'failed to pull image "torchship-runtime:nope"')],
        ),
        "ErrImagePull",
        'failed to pull image "torchship-runtime:nope"',
    ),
    "image pull back-off, no fetch": (
        facts(
            [SCHEDULED],
            containers=[waiting("runtime", "ImagePullBackOff", 'Back-off pulling image "x"')],
        ),
        "ImagePullBackOff",
        'Back-off pulling image "x"',
    ),
    "OOMKilled while loading": (
        facts(
            [SCHEDULED],
            [FETCHED],
            [
                running(
                    "runtime",
                    T3,
                    restartCount=1,
                    lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                )
            ],
        ),
        "OOMKilled",
        "the runtime was killed for memory while loading the model (memory limit 2Gi): "
        "raise spec.runtime.resources.limits.memory",
    ),
    "runtime crashing": (
        facts(
            [SCHEDULED],
            [FETCHED],
            [
                waiting(
                    "runtime",
                    "CrashLoopBackOff",
                    "back-off",
                    lastState={"terminated": {"exitCode": 1, "message": "no entrypoint x:y"}},
                )
            ],
        ),
        "CrashLoopBackOff",
        "no entrypoint x:y",
    ),
}


@pytest.mark.parametrize("case", FAILURES)
def test_failure_of_a_pod_start(case: str):
    recorded, reason, message = FAILURES[case]
    assert phases.failure(recorded) == phases.StartFailure(reason, message)


def pod(name: str, start: dict[str, Any], revision: str = "r1") -> dict[str, Any]:
    labels = {"torchship.dev/revision": revision}
    return {"metadata": {"name": name, "labels": labels}, "start": start}


def test_a_revision_reports_its_least_advanced_pod():
    pods = [CASES["ready"][0], CASES["loading"][0], CASES["downloading"][0]]
    start = phases.revision_start(pods)
    assert (start.phase, start.since) == ("Downloading", T1)
    assert phases.message(start) == f"the least advanced pod is downloading the model since {T1}"
    assert phases.revision_start([CASES["ready"][0]]) is None


def test_a_gpu_pod_the_scheduler_cannot_place_waits_for_a_gpu_with_the_offer():
    offer = "needs 1 nvidia.com/gpu on nvidia.com/gpu.product=NVIDIA-B300; nodes with that..."
    failure = status.pod_failure([pod("p", CASES["waiting for a GPU"][0])], offer)
    assert failure.reason == "WaitingForGPU"
    assert failure.message == f"{offer}; scheduler: {UNSCHEDULABLE['message']}"
    # Without the nodes (no RBAC for them), what was asked still leads.
    failure = status.pod_failure([pod("p", CASES["waiting for a GPU"][0])])
    assert failure.message.startswith(
        "needs 1 nvidia.com/gpu on nvidia.com/gpu.product=NVIDIA-B300; scheduler: 0/4 nodes"
    )
    cpu = facts([UNSCHEDULABLE], node=None)
    assert status.pod_failure([pod("p", cpu)]).reason == "Unschedulable"


def node(name: str, product: str | None, gpus: int, cordoned: bool = False) -> dict[str, Any]:
    labels = {"nvidia.com/gpu.product": product} if product else {}
    return {
        "name": name,
        "labels": labels,
        "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "8"} if gpus else {"cpu": "8"},
        "unschedulable": cordoned,
    }


NODES = [
    node("h100-0", "NVIDIA-H100-80GB-HBM3", 4),
    node("h100-1", "NVIDIA-H100-80GB-HBM3", 4),
    node("a10-0", "NVIDIA-A10", 2),
    node("cpu-0", None, 0),
    node("a10-cordoned", "NVIDIA-A10", 2, cordoned=True),
]
NEED = {"resource": "nvidia.com/gpu", "count": 1, "selector": {"nvidia.com/gpu.product": "X"}}


@pytest.mark.parametrize(
    ("need", "used", "expected"),
    [
        (
            {**NEED, "selector": {"nvidia.com/gpu.product": "NVIDIA-B300"}},
            {"h100-0": 4, "h100-1": 4, "a10-0": 0},
            "needs 1 nvidia.com/gpu on nvidia.com/gpu.product=NVIDIA-B300; nodes with that "
            "product: none; NVIDIA-A10: 1 node, 2 free; NVIDIA-H100-80GB-HBM3: 2 nodes, 0 free",
        ),
        (
            {**NEED, "count": 8, "selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
            {"h100-0": 1},
            "needs 8 nvidia.com/gpu on nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3; nodes with "
            "that product: 2 nodes, 7 free; NVIDIA-A10: 1 node, 2 free",
        ),
        (
            {**NEED, "selector": {}},
            None,  # the pods on the nodes could not be read
            "needs 1 nvidia.com/gpu; NVIDIA-A10: 1 node, 2 nvidia.com/gpu allocatable; "
            "NVIDIA-H100-80GB-HBM3: 2 nodes, 8 nvidia.com/gpu allocatable",
        ),
        (
            {**NEED, "resource": "nvidia.com/mig-1g.10gb", "selector": {}},
            {},
            "needs 1 nvidia.com/mig-1g.10gb; no node offers nvidia.com/mig-1g.10gb",
        ),
    ],
)
def test_what_the_nodes_offer(need, used, expected):
    assert offers.summary(need, NODES, used) == expected


def test_an_event_per_finished_phase_with_its_duration():
    events = starts.StartEvents()
    key = ("ml", "m")
    sequence = [
        CASES["pulling the image"][0],
        CASES["downloading"][0],
        CASES["loading"][0],
        CASES["warming up"][0],
        CASES["ready"][0],
    ]
    told = []
    now = 1767225653.0  # T3 + 3 s: the startup probe was seen passing then
    for recorded in sequence:
        told += events.observe(key, [pod("m-1", recorded)], now)
    assert [(e.reason, e.message) for e in told] == [
        ("ImagePulled", "pod m-1: image pulled and started in 5 s"),
        ("ModelFetched", "pod m-1: model fetched in 41.2 s, 6.3 GB"),
        ("ModelLoaded", "pod m-1: model loaded in 3.0 s"),
        ("WarmedUp", "pod m-1: warmed up in 9.0 s"),
    ]
    # Nothing is told twice, and a pod first seen ready tells nothing.
    assert events.observe(key, [pod("m-1", CASES["ready"][0])], now) == []
    assert starts.StartEvents().observe(key, [pod("m-2", CASES["ready"][0])], now) == []


def test_loading_and_warm_up_seen_as_one():
    events = starts.StartEvents()
    key = ("ml", "m")
    events.observe(key, [pod("m-1", CASES["loading"][0])], 0.0)
    told = events.observe(key, [pod("m-1", CASES["ready"][0])], 0.0)
    assert [(e.reason, e.message) for e in told] == [
        ("ModelLoaded", "pod m-1: model loaded and warmed up in 12.0 s")
    ]


def test_status_names_the_start_phase_while_pods_come_up_and_is_stable():
    from test_status import REV, brief, compute, deployment

    pods = [pod("mlp-a", CASES["ready"][0], REV), pod("mlp-b", CASES["downloading"][0], REV)]
    first = compute([deployment(ready=1)], pods)
    message = (
        f"1/2 replicas of revision {REV} available; the least advanced pod is downloading the "
        f"model since {T1}"
    )
    assert brief(first)["Ready"] == ("False", "Downloading")
    assert brief(first)["Progressing"] == ("True", "Downloading")
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["message"] == message
    # The same pods later: the same status (a start time, never an elapsed one), no write.
    assert compute([deployment(ready=1)], pods, previous=first, now="2026-01-01T01:00:00Z") == first
