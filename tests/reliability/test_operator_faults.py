"""The operator under faults, each on a control plane of its own (so nothing else acts there):
SIGKILLs mid-reconcile, an apiserver restart, two replicas with leader election on a Lease, and
fuzzed specs against the real API server."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import testenv
from helpers import condition, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from operatorprocess import install_crds, start_operator, stop_operator

# Each test starts a control plane of its own: `make unit` (-m "not cluster") leaves them out.
pytestmark = [pytest.mark.slow, pytest.mark.cluster]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plane(tmp_path):
    control_plane = testenv.ControlPlane(workdir=tmp_path / "cp", bin_dir=testenv.build_binaries())
    control_plane.start()
    try:
        install_crds(control_plane)
        control_plane.kubectl("create", "namespace", "ml")
        yield control_plane
    finally:
        control_plane.stop()


def modelservices(n: int, prefix: str = "m") -> str:
    items = [
        {
            "apiVersion": "torchship.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": f"{prefix}{i:03d}", "namespace": "ml"},
            "spec": {
                "model": {"uri": "https://models.example.com/m.pt", "format": "torchscript"},
                "replicas": 1 + i % 2,
            },
        }
        for i in range(n)
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def listing(plane, kind: str) -> list[dict]:
    return json.loads(plane.kubectl("get", kind, "-n", "ml", "-o", "json").stdout)["items"]


def all_ready(plane, n: int) -> bool:
    items = listing(plane, "modelservices")
    return len(items) == n and all(condition(i, "Ready").get("status") == "True" for i in items)


def assert_no_duplicates_or_orphans(plane, n: int) -> None:
    names = {m["metadata"]["name"]: m["metadata"]["uid"] for m in listing(plane, "modelservices")}
    deployments = listing(plane, "deployments")
    owners = Counter(d["metadata"]["ownerReferences"][0]["uid"] for d in deployments)
    assert set(owners) == set(names.values())  # every Deployment has a living owner
    assert all(count == 1 for count in owners.values()), owners  # one revision each
    services = listing(plane, "services")
    assert sorted(s["metadata"]["name"] for s in services) == sorted(names)
    assert len(deployments) == n


def test_sigkill_at_random_points_then_everything_converges(plane, tmp_path):
    n = 40
    rng = random.Random(7)
    log = tmp_path / "operator.log"
    running = start_operator(plane, log)
    plane.kubectl("apply", "-f", "-", input=modelservices(n))
    for _ in range(4):
        time.sleep(rng.uniform(0.3, 2.5))
        os.kill(running.process.pid, signal.SIGKILL)
        running.process.wait()
        running = start_operator(plane, log)
    try:
        wait_for(lambda: all_ready(plane, n), timeout=180, interval=1)
        assert_no_duplicates_or_orphans(plane, n)
    finally:
        stop_operator(running)


def test_apiserver_restart_mid_run_then_the_operator_converges(plane, tmp_path):
    running = start_operator(plane, tmp_path / "operator.log")
    try:
        plane.kubectl("apply", "-f", "-", input=modelservices(10, "a"))
        time.sleep(1)
        plane.restart("kube-apiserver")
        plane.kubectl("apply", "-f", "-", input=modelservices(10, "b"))
        wait_for(lambda: all_ready(plane, 20), timeout=180, interval=1)
        assert running.process.poll() is None  # reconnected, not crashed
        assert_no_duplicates_or_orphans(plane, 20)
    finally:
        stop_operator(running)


def writers(plane) -> Counter:
    return Counter(
        e["user"]["username"]
        for e in plane.audit_events()
        if e.get("objectRef", {}).get("resource") in ("deployments", "services")
        and e["user"]["username"].startswith("operator-")
    )


def test_two_replicas_one_acts_and_killing_it_hands_over(plane, tmp_path):
    election = {"TORCHSHIP_LEADER_ELECTION": "true", "TORCHSHIP_LEASE_NAMESPACE": "ml"}
    first = start_operator(plane, tmp_path / "a.log", user="operator-a", **election)
    second = start_operator(plane, tmp_path / "b.log", user="operator-b", **election)
    try:
        wait_for(lambda: first.leads() or second.leads(), timeout=60, interval=0.5)
        plane.kubectl("apply", "-f", "-", input=modelservices(6, "x"))
        wait_for(lambda: all_ready(plane, 6), timeout=120, interval=1)
        time.sleep(2)
        assert first.leads() != second.leads()
        active, standby = (first, second) if first.leads() else (second, first)
        assert set(writers(plane)) == {active.user}  # exactly one acted: the holder
        # Killed, it cannot release the Lease: the standby takes it once it lapses (15 s).
        os.kill(active.process.pid, signal.SIGKILL)
        active.process.wait()
        plane.kubectl("apply", "-f", "-", input=modelservices(3, "y"))
        wait_for(lambda: all_ready(plane, 9), timeout=120, interval=1)
        time.sleep(2)
        assert set(writers(plane)) == {"operator-a", "operator-b"}  # the other took over
        assert standby.leads() and standby.process.poll() is None
    finally:
        stop_operator(first)
        stop_operator(second)


# -- fuzzing specs against the real API server -------------------------------------------------

names = st.sampled_from(["a", "b", "c"])
models = st.fixed_dictionaries(
    {
        "uri": st.sampled_from(
            ["https://h/m.pt", "s3://b/k.pt2", "pvc://c/m.pt", "ftp://x", "", "/m"]
        ),
        "format": st.sampled_from(
            ["torchscript", "exported-program", "state-dict", "handler", "onnx"]
        ),
    },
    optional={
        "entrypoint": st.sampled_from(["pkg.mod:build", "bad entry", ""]),
        "version": st.text(max_size=5),
    },
)
specs = st.fixed_dictionaries(
    {"model": models},
    optional={
        "replicas": st.integers(-2, 6) | st.text(max_size=2),
        "gpu": st.fixed_dictionaries(
            {},
            optional={
                "count": st.integers(-1, 20),
                "product": st.sampled_from(["NVIDIA-H100-80GB-HBM3", "NVIDIA-A10", "X"]),
                "resourceName": st.sampled_from(
                    ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "bad"]
                ),
            },
        ),
        "runtime": st.fixed_dictionaries(
            {},
            optional={
                "device": st.sampled_from(["auto", "cpu", "cuda", "tpu"]),
                "dtype": st.sampled_from(["float32", "bfloat16", "int4"]),
                "batching": st.fixed_dictionaries(
                    {}, optional={"maxBatchSize": st.integers(-1, 2000)}
                ),
            },
        ),
        "autoscaling": st.fixed_dictionaries(
            {"maxReplicas": st.integers(0, 5)}, optional={"minReplicas": st.integers(0, 6)}
        ),
        "rollout": st.fixed_dictionaries(
            {},
            optional={
                "strategy": st.sampled_from(["RollingUpdate", "Canary", "BlueGreen", "Big"]),
                "steps": st.lists(
                    st.fixed_dictionaries({"weight": st.integers(0, 120)}), max_size=3
                ),
                "maxSurge": st.integers(0, 2),
                "maxUnavailable": st.integers(0, 2),
            },
        ),
    },
)


# One cause of an "is invalid" answer: the field path it names, then what is wrong.
CAUSE = re.compile(r"(?:is invalid: |\n\* )((?:spec|metadata)(?:\.[\w\[\]]+)*): ")


def check_rejection(stderr: str, name: str, spec: dict) -> None:
    """Refused by the API server's validation of this object, each cause naming a field of
    what was sent (or metadata.name), never some other failure."""
    assert f'The ModelService "{name}" is invalid' in stderr, stderr
    causes = CAUSE.findall(stderr)
    assert causes, stderr
    for path in causes:
        parts = path.split(".")
        if parts[0] == "metadata":
            assert path == "metadata.name", stderr
        elif len(parts) > 1:
            assert parts[1].split("[")[0] in spec, (path, spec, stderr)


@pytest.fixture
def fuzz_operator(plane, tmp_path):
    running = start_operator(plane, tmp_path / "operator.log")
    yield plane, running
    stop_operator(running)
    assert "Traceback" not in (tmp_path / "operator.log").read_text()


def test_fuzzed_specs_are_rejected_clearly_or_reconciled(fuzz_operator):
    plane, running = fuzz_operator
    accepted: set[str] = set()

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=names, spec=specs)
    def check(name, spec):
        body = {
            "apiVersion": "torchship.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": spec,
        }
        result = plane.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
        if result.returncode != 0:
            check_rejection(result.stderr, name, spec)
        else:
            accepted.add(name)
        assert running.process.poll() is None  # the operator never crashes

    check()

    # Every accepted object ends up observed, with a Ready condition that gives a reason.
    def observed():
        items = listing(plane, "modelservices")
        return all(
            i.get("status", {}).get("observedGeneration") == i["metadata"]["generation"]
            and condition(i, "Ready").get("reason")
            for i in items
        ) and len(items) == len(accepted)

    wait_for(observed, timeout=90, interval=1)

    # ...and then it settles: a window of 10 s in which no object is written twice comes
    # within a minute (a changed spec's rollout may still be finishing on kwok's pods); a hot
    # retry loop writes the same object again and again and never gives one.
    def writes_in_a_window() -> Counter:
        before = len(plane.audit_events())
        time.sleep(10)
        fresh = plane.audit_events()[before:]
        return Counter(
            (e["objectRef"].get("resource"), e["objectRef"].get("name"))
            for e in fresh
            if e["user"]["username"] == "torchship-operator"
            and e["objectRef"].get("resource") != "events"  # each Event is a new object
        )

    for _ in range(6):
        per_object = writes_in_a_window()
        if all(count <= 1 for count in per_object.values()):
            break
    assert all(count <= 1 for count in per_object.values()), per_object
