"""Canary analysis on the real node: the operator reads the runtime pods' own /metrics while a
canary step pauses, aborts a canary whose model fails requests and promotes a healthy one, step
by step, with no hand. The figures each test sees are printed (`pytest -s`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from helpers import condition, get_json, wait_for
from modelfiles import Faulty
from workload import (
    LABEL_REVISION,
    Load,
    apply,
    model_service,
    pods,
    post,
    ready,
    ready_endpoints,
    wait_ready,
)

pytestmark = pytest.mark.usefixtures("real_operator")

THRESHOLD = 0.5  # the faulty model raises for a row whose first value is above this
BAD_EVERY = 4  # every 4th request of each load thread sends such a row: a quarter of them
ANALYSIS = {"maxErrorRatio": 0.1, "minRequests": 10, "intervalSeconds": 5}


def body(first: float) -> bytes:
    data = [first] + [((i * 7) % 64) / 64 for i in range(1, 64)]
    return json.dumps(
        {"inputs": [{"name": "input__0", "datatype": "FP32", "shape": [1, 64], "data": data}]}
    ).encode()


GOOD, BAD = body(0.1), body(0.9)


@dataclass
class MixedLoad(Load):
    """The bounded Load, whose every `bad_every`-th request of each thread carries a row the
    faulty model refuses (the stable's model answers it); each pod's answers by status code."""

    bad_every: int = BAD_EVERY
    codes: dict[str, dict[int, int]] = field(default_factory=dict)

    def body(self, sent: int) -> bytes:
        return BAD if sent % self.bad_every == 0 else GOOD

    def _count(self, pod: str, address: str, code: int, why: str) -> None:
        with self._lock:
            counted = self.codes.setdefault(pod, {})
            counted[code] = counted.get(code, 0) + 1
        super()._count(pod, address, code, why)


def patch(plane, namespace: str, name: str, spec: dict) -> None:
    plane.kubectl(
        "patch", "msvc", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec})
    )


def events(plane, namespace: str, name: str, reason: str) -> list[dict]:
    selector = f"reason={reason},involvedObject.name={name}"
    return get_json(plane, "events", "-n", namespace, "--field-selector", selector)["items"]


def revision_codes(load: MixedLoad) -> dict[str, dict[int, int]]:
    """The load's answers summed by the revision of the pod that gave them."""
    revision = {
        p["metadata"]["name"]: p["metadata"]["labels"][LABEL_REVISION]
        for _, _, sampled in load.samples
        for p in sampled
    }
    out: dict[str, dict[int, int]] = {}
    for pod, codes in load.codes.items():
        summed = out.setdefault(revision.get(pod, "?"), {})
        for code, n in codes.items():
            summed[code] = summed.get(code, 0) + n
    return out


# Judged against the stable as well: a window whose stable side was not measured (its pod's
# /metrics not read at both ends, as on a starved machine) is then Inconclusive, never passed.
AGAINST_STABLE = ANALYSIS | {"maxLatencyP99Ratio": 10.0}


def canary_spec(steps: list[dict], analysis: dict = ANALYSIS) -> dict:
    return {"strategy": "Canary", "steps": steps, "analysis": analysis}


def test_a_canary_that_fails_requests_is_aborted_and_the_stable_keeps_serving(
    real_plane, restricted_namespace, mlp_file, tmp_path: Path
):
    ns, name = restricted_namespace, "faulty"
    faulty = tmp_path / "faulty.pt"
    torch.jit.script(Faulty(torch.jit.load(str(mlp_file)), THRESHOLD)).save(str(faulty))
    real_plane.model_volume(ns, "models", {"mlp.pt": mlp_file, "faulty.pt": faulty})
    rollout = canary_spec([{"weight": 50, "pauseSeconds": 60}])
    apply(
        real_plane,
        ns,
        model_service(
            name, "pvc://models/mlp.pt", replicas=2, runtime={"drainSeconds": 3}, rollout=rollout
        ),
    )
    stable = wait_ready(real_plane, ns, name)["status"]["rollout"]["stableRevision"]

    def aborted() -> dict | None:
        ms = get_json(real_plane, "msvc", name, "-n", ns)
        return ms if ms["status"].get("rollout", {}).get("phase") == "Aborted" else None

    with MixedLoad(real_plane, ns, name, model=name, max_requests=8000, max_seconds=200) as load:
        wait_for(lambda: load.sent >= 50, timeout=60)
        started = time.monotonic()
        patch(real_plane, ns, name, {"model": {"uri": "pvc://models/faulty.pt", "version": "v2"}})
        ms = wait_for(aborted, timeout=180, interval=1)
        took = time.monotonic() - started
    seen = revision_codes(load)

    state = ms["status"]["rollout"]
    canary = state["abortedRevision"]
    assert canary != stable and state["stableRevision"] == stable
    assert state["reason"] == "AnalysisFailed"
    ready_condition = condition(ms, "Ready")
    (record,) = state["analysis"]
    print(f"\naborted {took:.0f}s after the change; load answers by revision: {seen}")
    print(f"analysis record: {record}")
    print(f"Ready: {ready_condition['status']} {ready_condition['reason']}: "
          f"{ready_condition['message']}")  # fmt: skip

    # The measurement that failed, in the status and in the condition's words.
    assert (record["step"], record["weight"], record["last"]) == (0, 50, "Failed")
    assert record["failed"] == 1 and record["passed"] == 0
    figures, base = record["canary"], record["stable"]
    assert figures["requests"] >= ANALYSIS["minRequests"]
    assert figures["errors"] / figures["requests"] > ANALYSIS["maxErrorRatio"]
    assert base["requests"] > 0 and base["errors"] == 0
    assert ready_condition["reason"] == "AnalysisFailed"
    message = ready_condition["message"]
    assert "maxErrorRatio 0.1" in message
    assert f"canary {figures['errors']} errors in {figures['requests']} requests" in message
    assert f"stable 0 errors in {base['requests']} requests" in message
    # What the load saw: a quarter of the canary's answers 500, none of the stable's.
    assert seen[canary].get(500, 0) > 0 and set(seen[stable]) == {200}
    share = seen[canary][500] / sum(seen[canary].values())
    assert 0.15 < share < 0.35, seen

    # One Warning Event says it, however many passes follow.
    wait_for(lambda: events(real_plane, ns, name, "AnalysisFailed"), timeout=30)
    time.sleep(10)
    (event,) = events(real_plane, ns, name, "AnalysisFailed")
    assert event["type"] == "Warning" and "maxErrorRatio" in event["message"]

    # Traffic back on the stable revision: the canary scaled to 0 and its pods gone, the
    # stable's back to 2 pods, and they answer everything, the rows the canary refused too.
    def back_on_stable() -> dict[str, str] | None:
        deployments = get_json(
            real_plane, "deployments", "-n", ns, "-l", f"{LABEL_REVISION}={canary}"
        )["items"]
        if any(d["spec"]["replicas"] != 0 for d in deployments):
            return None
        current = pods(real_plane, ns, name)
        if any(p["metadata"]["labels"][LABEL_REVISION] != stable for p in current):
            return None
        endpoints = ready_endpoints(real_plane, ns, name)
        return endpoints if len(endpoints) == 2 and all(ready(p) for p in current) else None

    endpoints = wait_for(back_on_stable, timeout=120, interval=1)
    after = [post(a, name, p)[0] for a in endpoints.values() for p in (GOOD, BAD) * 10]
    print(f"after the abort: {len(after)} requests to the stable pods, codes {set(after)}")
    assert after == [200] * len(after)


def test_a_healthy_canary_is_promoted_step_by_step_on_its_measurements(
    real_plane, restricted_namespace, mlp_file
):
    ns, name = restricted_namespace, "healthy"
    real_plane.model_volume(ns, "models", {"mlp.pt": mlp_file})
    # Pauses shorter than the interval: each step's pause is over before its first window.
    steps = [{"weight": 25, "pauseSeconds": 2}, {"weight": 50, "pauseSeconds": 2}]
    apply(
        real_plane,
        ns,
        model_service(
            name,
            "pvc://models/mlp.pt",
            replicas=2,
            runtime={"drainSeconds": 3},
            rollout=canary_spec(steps, AGAINST_STABLE),
        ),
    )
    old = wait_ready(real_plane, ns, name)["status"]["rollout"]["stableRevision"]
    reasons: list[tuple[int, str]] = []  # (step, Progressing reason), as they changed

    def promoted() -> dict | None:
        ms = get_json(real_plane, "msvc", name, "-n", ns)
        state = ms["status"].get("rollout", {})
        seen = (state.get("step", 0), condition(ms, "Progressing").get("reason", ""))
        if not reasons or reasons[-1] != seen:
            reasons.append(seen)
        done = (
            state.get("phase") == "Stable"
            and state.get("stableRevision") not in (None, old)
            and condition(ms, "Ready").get("status") == "True"
        )
        return ms if done else None

    with Load(real_plane, ns, name, model=name, max_requests=8000, max_seconds=200) as load:
        wait_for(lambda: load.ok >= 50, timeout=60)
        started = time.monotonic()
        patch(real_plane, ns, name, {"model": {"version": "v2"}})
        ms = wait_for(promoted, timeout=180, interval=0.5)
        took = time.monotonic() - started

    records = ms["status"]["rollout"]["analysis"]
    print(f"\npromoted {took:.0f}s after the change; Progressing reasons seen: {reasons}")
    for record in records:
        print(f"analysis record: {record}")
    print(f"load: {load.ok} answered, {len(load.failures)} failed")
    assert not load.failures, load.failures[:5]
    assert [(r["step"], r["weight"]) for r in records] == [(0, 25), (1, 50)]
    for record in records:
        # Released on a passing measurement of the step's own window, none failed.
        assert record["passed"] >= 1 and record["failed"] == 0 and record["last"] == "Passed"
        assert record["canary"]["requests"] >= ANALYSIS["minRequests"]
        assert record["canary"]["errors"] == 0 and record["stable"]["errors"] == 0
        # The stable pod was read at both ends of the window (measured), and served in it.
        assert record["canary"]["pods"] == 1 and record["stable"]["pods"] == 1, record
        assert record["stable"]["requests"] > 0, record
    # Each step's pause ended before a measurement passed: it waited for the analysis.
    assert (0, "AwaitingAnalysis") in reasons and (1, "AwaitingAnalysis") in reasons, reasons
    new = ms["status"]["rollout"]["stableRevision"]
    wait_for(
        lambda: (
            {p["metadata"]["labels"][LABEL_REVISION] for p in pods(real_plane, ns, name)} == {new}
        ),
        timeout=60,
    )
    assert not events(real_plane, ns, name, "AnalysisFailed")
