"""ModelServices served by real pods: the runtime image on the real node, its probes, its
security context, its failures as the ModelService reports them, and traffic through
rollouts and pod deletion."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from helpers import condition, get_json, wait_for
from workload import (
    DIRECT,
    RUNTIME_IMAGE,
    Load,
    apply,
    endpoints_only_ready_pods,
    model_service,
    pods,
    ready,
    ready_endpoints,
    wait_ready,
)

pytestmark = pytest.mark.usefixtures("real_operator")


def served_by(plane, namespace: str, name: str, mlp_file) -> None:
    plane.model_volume(namespace, "models", {"mlp.pt": mlp_file})
    apply(plane, namespace, model_service(name, "pvc://models/mlp.pt"))


def test_a_modelservice_is_served_by_its_pod_under_restricted_pod_security(
    real_plane, restricted_namespace, mlp_file, tmp_path
):
    ns, name = restricted_namespace, "mlp"
    served_by(real_plane, ns, name, mlp_file)
    wait_ready(real_plane, ns, name)

    (pod,) = pods(real_plane, ns, name)
    assert pod["spec"]["nodeName"] == real_plane.node.name
    (status,) = pod["status"]["containerStatuses"]
    assert status["image"] == RUNTIME_IMAGE and status["ready"] and status["imageID"]

    # tritonclient, unmodified, through the Service's port-forward.
    with real_plane.port_forward(ns, f"svc/{name}", 8080) as port:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live() and client.is_model_ready(name)
        rows = np.random.default_rng(0).random((3, 64), dtype=np.float32)
        tensor = triton.InferInput("input__0", [3, 64], "FP32")
        tensor.set_data_from_numpy(rows, binary_data=True)
        answer = client.infer(name, [tensor]).as_numpy("output__0")
    model = torch.jit.load(str(mlp_file))
    with torch.inference_mode():
        expected = model(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-6)

    # The same pod over OIP gRPC, on the Service's gRPC port.
    with real_plane.port_forward(ns, f"svc/{name}", 8081) as port:
        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_ready() and client.is_model_ready(name)
        tensor = triton_grpc.InferInput("input__0", [3, 64], "FP32")
        tensor.set_data_from_numpy(rows)
        over_grpc = client.infer(name, [tensor]).as_numpy("output__0")
        client.close()
    np.testing.assert_allclose(over_grpc, expected, rtol=1e-5, atol=1e-6)

    # The kubectl plugin, through its own port-forward to the Service.
    np.save(tmp_path / "rows.npy", rows)
    plugin = subprocess.run(
        [sys.executable, "-m", "torchship.kubectl", "infer", name, "-n", ns,
         "--input", f"input__0={tmp_path / 'rows.npy'}", "-o", "json"],
        env=real_plane.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plugin.returncode == 0, plugin.stderr
    output = json.loads(plugin.stdout)["outputs"]["output__0"]
    np.testing.assert_allclose(np.asarray(output["data"]), expected, rtol=1e-5, atol=1e-6)

    # The pod as rendered: non-root uid, read-only root, writable volumes where they belong.
    def sh(command: str, check: bool = True):
        return real_plane.kubectl(
            "exec", "-n", ns, pod["metadata"]["name"], "-c", "runtime", "--",
            "sh", "-c", command, check=check,
        )  # fmt: skip

    assert sh("id -u; id -g").stdout.split() == ["1000", "1000"]
    # Nothing in the image installs packages.
    assert sh("python -m pip --version", check=False).returncode != 0
    denied = sh("touch /opt/torchship/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    assert sh("touch /tmp/x /var/cache/torchship/x /dev/shm/x && echo ok").stdout.strip() == "ok"
    mounts = {line.split()[1]: line.split() for line in sh("cat /proc/mounts").stdout.splitlines()}
    assert mounts["/"][3].startswith("ro")
    assert mounts["/mnt/models/models"][3].startswith("ro")
    assert mounts["/dev/shm"][2] == "tmpfs"
    for writable in ("/tmp", "/var/cache/torchship"):
        assert mounts[writable][3].startswith("rw"), mounts[writable]


def test_a_model_that_cannot_load_reports_the_runtimes_own_message(
    real_plane, restricted_namespace, tmp_path
):
    ns, name = restricted_namespace, "broken"
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a TorchScript archive")
    real_plane.model_volume(ns, "models", {"broken.pt": broken})
    apply(real_plane, ns, model_service(name, "pvc://models/broken.pt"))

    def crashing():
        ms = get_json(real_plane, "msvc", name, "-n", ns)
        cond = condition(ms, "Ready")
        return cond if cond.get("reason") == "CrashLoopBackOff" else None

    cond = wait_for(crashing, timeout=180, interval=1)
    assert cond["status"] == "False"
    # The runtime's termination message, not the kubelet's back-off text.
    assert "the model could not be loaded" in cond["message"], cond
    assert "back-off" not in cond["message"]
    (pod,) = pods(real_plane, ns, name)
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 1 and "could not be loaded" in last["message"]


def test_a_missing_image_reports_the_pull_failure(real_plane, restricted_namespace, mlp_file):
    ns, name = restricted_namespace, "noimage"
    real_plane.model_volume(ns, "models", {"mlp.pt": mlp_file})
    # A registry on the node's own loopback, where nothing listens: the pull fails at once.
    image = "localhost:5999/torchship/missing:0.0.0"
    apply(
        real_plane,
        ns,
        model_service(name, "pvc://models/mlp.pt", runtime={"image": image}),
    )

    def pull_failure():
        cond = condition(get_json(real_plane, "msvc", name, "-n", ns), "Ready")
        return cond if cond.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    cond = wait_for(pull_failure, timeout=120, interval=1)
    assert cond["status"] == "False" and image in cond["message"], cond


def rollout_under_load(plane, ns: str, name: str, change: dict, done) -> Load:
    """Apply `change` to the spec while a bounded load runs; return the load once `done()`."""
    with Load(plane, ns, name, model=name, max_seconds=300) as load:
        wait_for(lambda: load.ok >= 50, timeout=60)
        plane.kubectl("patch", "msvc", name, "-n", ns, "--type=merge", "-p",
                      json.dumps({"spec": change}))  # fmt: skip
        wait_for(done, timeout=300, interval=1)
        # Traffic keeps flowing to the result for a moment before the load stops.
        settled = load.ok
        wait_for(lambda: load.ok >= settled + 50, timeout=60)
    return load


def revisions(plane, ns: str, name: str) -> dict[str, dict]:
    ms = get_json(plane, "msvc", name, "-n", ns)
    return {r["version"]: r for r in ms.get("status", {}).get("revisions", [])}


def test_a_rolling_update_under_load_fails_no_request(real_plane, restricted_namespace, mlp_file):
    ns, name = restricted_namespace, "rolling"
    real_plane.model_volume(ns, "models", {"mlp.pt": mlp_file})
    apply(
        real_plane,
        ns,
        model_service(name, "pvc://models/mlp.pt", replicas=2, runtime={"drainSeconds": 3}),
    )
    wait_ready(real_plane, ns, name)
    old = {p["metadata"]["labels"]["torchship.dev/revision"] for p in pods(real_plane, ns, name)}

    def rolled():
        current = pods(real_plane, ns, name)
        ms = get_json(real_plane, "msvc", name, "-n", ns)
        return (
            condition(ms, "Ready").get("status") == "True"
            and ms["status"].get("observedGeneration") == ms["metadata"]["generation"]
            and len(current) == 2
            and all(ready(p) and p["metadata"]["labels"]["torchship.dev/revision"] not in old
                    for p in current)
        )  # fmt: skip

    load = rollout_under_load(real_plane, ns, name, {"model": {"version": "v2"}}, rolled)
    assert not load.failures, load.failures[:5]
    new = {p["metadata"]["labels"]["torchship.dev/revision"] for p in pods(real_plane, ns, name)}
    assert endpoints_only_ready_pods(load.samples, old | new) == []
    # Both revisions served while the rollout ran; only the new one at the end.
    assert set(load.by_pod) > set(load.samples[-1][1])
    final = load.samples[-1]
    assert {p["metadata"]["labels"]["torchship.dev/revision"] for p in final[2]
            if p["metadata"]["name"] in final[1]} == new  # fmt: skip


def test_a_canary_step_under_load_fails_no_request(real_plane, restricted_namespace, mlp_file):
    ns, name = restricted_namespace, "canary"
    real_plane.model_volume(ns, "models", {"mlp.pt": mlp_file})
    rollout = {"strategy": "Canary", "steps": [{"weight": 50}]}  # paused until promoted
    apply(
        real_plane,
        ns,
        model_service(
            name, "pvc://models/mlp.pt", replicas=2, runtime={"drainSeconds": 3}, rollout=rollout
        ),
    )
    wait_ready(real_plane, ns, name)
    old = {p["metadata"]["labels"]["torchship.dev/revision"] for p in pods(real_plane, ns, name)}

    def at_half():
        revs = revisions(real_plane, ns, name)
        current = pods(real_plane, ns, name)
        serving = {p["metadata"]["labels"]["torchship.dev/revision"] for p in current if ready(p)}
        return revs.get("v2", {}).get("weight") == 50 and len(serving) == 2

    load = rollout_under_load(real_plane, ns, name, {"model": {"version": "v2"}}, at_half)
    assert not load.failures, load.failures[:5]
    current = pods(real_plane, ns, name)
    both = {p["metadata"]["labels"]["torchship.dev/revision"] for p in current}
    assert old < both
    assert endpoints_only_ready_pods(load.samples, both) == []
    # At the step, both revisions take traffic (one pod each of two).
    final_endpoints = load.samples[-1][1]
    assert len(final_endpoints) == 2
    assert all(load.by_pod.get(p, 0) > 0 for p in final_endpoints)


def test_a_deleted_pod_drains_before_it_stops_answering(real_plane, restricted_namespace, mlp_file):
    ns, name = restricted_namespace, "drain"
    drain = 4
    real_plane.model_volume(ns, "models", {"mlp.pt": mlp_file})
    apply(
        real_plane,
        ns,
        model_service(name, "pvc://models/mlp.pt", replicas=2, runtime={"drainSeconds": drain}),
    )
    wait_ready(real_plane, ns, name)
    victim = sorted(pods(real_plane, ns, name), key=lambda p: p["metadata"]["name"])[0]
    victim_name, address = victim["metadata"]["name"], victim["status"]["podIP"]
    grace = victim["spec"]["terminationGracePeriodSeconds"]
    direct = f"http://{address}:8080/v2/models/{name}/infer"

    def answers() -> bool:
        request = urllib.request.Request(
            direct, data=b'{"inputs":[{"name":"input__0","datatype":"FP32","shape":[1,64],'
            b'"data":[' + b",".join([b"0.5"] * 64) + b"]}]}",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with DIRECT.open(request, timeout=5) as answer:
                return answer.status == 200
        except urllib.error.HTTPError:
            return True  # it answered (a refusal is still an answer)
        except OSError:
            return False

    with Load(real_plane, ns, name, model=name, max_seconds=120) as load:
        wait_for(lambda: load.by_pod.get(victim_name, 0) >= 20, timeout=60)
        deleted_at = time.monotonic()
        real_plane.kubectl("delete", "pod", "-n", ns, victim_name, "--wait=false")
        left_endpoints = stopped_answering = None
        while time.monotonic() - deleted_at < grace + 15:
            now = time.monotonic() - deleted_at
            if left_endpoints is None and victim_name not in ready_endpoints(real_plane, ns, name):
                left_endpoints = now
            if stopped_answering is None and not answers():
                stopped_answering = now
            if left_endpoints is not None and stopped_answering is not None:
                break
            time.sleep(0.1)
        wait_for(
            lambda: victim_name not in {p["metadata"]["name"] for p in pods(real_plane, ns, name)},
            timeout=grace + 30,
        )
        gone_after = time.monotonic() - deleted_at
    assert not load.failures, load.failures[:5]
    assert left_endpoints is not None and stopped_answering is not None
    # It leaves the endpoints first and keeps answering through the drain period.
    assert left_endpoints < stopped_answering, (left_endpoints, stopped_answering)
    assert stopped_answering >= drain - 1, stopped_answering
    assert gone_after < grace + 10, (gone_after, grace)
