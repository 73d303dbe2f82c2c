"""`kubectl torchship ...` as a person runs it: the real kubectl finds the plugin on PATH and
talks to the real control plane with the operator running; `infer` reaches a real runtime on
loopback. Output is checked as the text a person reads, and exit codes as a script sees them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import mlp, save_torchscript, serving, torchscript_env
from helpers import wait_for
from test_modelservice import msvc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A directory holding `kubectl-torchship`, as `pip install torchship` puts it on PATH."""
    bin_dir = tmp_path_factory.mktemp("plugin-bin")
    shim = bin_dir / "kubectl-torchship"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m torchship.kubectl "$@"\n')
    shim.chmod(0o755)
    return bin_dir


@pytest.fixture
def kubectl_torchship(control_plane, plugin_path):
    env = dict(control_plane.env)
    env["PATH"] = f"{plugin_path}{os.pathsep}{env['PATH']}"
    roots = [str(ROOT / "sdk"), str(ROOT / "operator"), str(ROOT / "runtime")]
    env["PYTHONPATH"] = os.pathsep.join([*roots, env.get("PYTHONPATH", "")])

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["kubectl", "torchship", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == code, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    return run


def apply(control_plane, namespace: str, name: str, version: str, **spec) -> None:
    model = {"uri": "https://models.example.com/m.pt", "format": "torchscript", "version": version}
    body = msvc(name, model=model, **spec)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=body)


def wait_phase(control_plane, namespace: str, name: str, phase: str) -> None:
    control_plane.kubectl(
        "wait", "-n", namespace, f"--for=jsonpath={{.status.rollout.phase}}={phase}",
        f"msvc/{name}", "--timeout=60s",
    )  # fmt: skip


def section(text: str, title: str) -> list[str]:
    """The indented lines under `title:` in status output."""
    lines = text.splitlines()
    start = lines.index(f"{title}:") + 1
    out = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        out.append(line.strip())
    return out


def columns(line: str) -> list[str]:
    return re.split(r"\s{3,}", line.strip())


CANARY = {"strategy": "Canary", "steps": [{"weight": 50}]}


def test_status_promote_abort_rollback_as_a_person_reads_them(
    control_plane, operator, namespace, kubectl_torchship
):
    ns = ["-n", namespace]
    apply(control_plane, namespace, "web", "v1", replicas=2, rollout=CANARY)
    done = kubectl_torchship("wait", "web", *ns, "--timeout", "60")
    assert done.stdout.startswith(f"modelservice {namespace}/web is ready: 2/2 replicas")
    refused = kubectl_torchship("promote", "web", *ns, code=4)
    assert refused.stderr == "error: nothing awaits promotion: the rollout is Stable\n"
    refused = kubectl_torchship("abort", "web", *ns, code=4)
    assert refused.stderr.startswith("error: no rollout in progress: the spec asks for the stable")

    apply(control_plane, namespace, "web", "v2", replicas=2, rollout=CANARY)
    wait_phase(control_plane, namespace, "web", "Paused")

    def status_once_told(reason: str) -> str | None:
        # Events follow the status write that the wait saw.
        out = kubectl_torchship("status", "web", *ns).stdout
        return out if reason in out else None

    out = wait_for(lambda: status_once_told("CanaryStepReached"))
    lines = out.splitlines()
    ms = json.loads(control_plane.kubectl("get", "msvc", "web", *ns, "-o", "json").stdout)
    rollout = ms["status"]["rollout"]
    stable, target = rollout["stableRevision"], rollout["targetRevision"]
    assert lines[0] == "Name:        web"
    assert lines[1] == f"Namespace:   {namespace}"
    assert lines[2] == "Version:     v2"
    # Every replica serves while the step waits: Ready; the Rollout line and Progressing say
    # where the rollout is.
    assert lines[3] == (
        "Ready:       True   Ready: 2 replicas ready for 2; a rollout is under way "
        "(see Progressing)"
    )
    assert lines[4] == "Replicas:    2 ready of 2 desired"
    assert lines[5] == (
        f"Rollout:     Canary   Paused   step 0 of 1 (50%)   stable {stable} (v1)   "
        f"target {target} (v2)"
    )
    revisions = section(out, "Revisions")
    assert columns(revisions[0]) == [
        "REVISION", "VERSION", "ROLE", "WEIGHT", "READY/DESIRED", "PHASE", "AGE",
    ]  # fmt: skip
    assert columns(revisions[1])[:6] == [target, "v2", "target", "50%", "1/1", "Progressing"]
    assert columns(revisions[2])[:6] == [stable, "v1", "stable", "50%", "1/1", "Serving"]
    conditions = {columns(line)[0]: columns(line)[1:] for line in section(out, "Conditions")}
    assert conditions["Progressing"][:2] == ["True", "AwaitingPromotion"]
    assert conditions["Degraded"] == ["False", "AsExpected"]
    events = [columns(line) for line in section(out, "Events")]
    assert events[0] == ["AGE", "TYPE", "REASON", "MESSAGE"]
    assert ["Normal", "CanaryStepReached"] in [e[1:3] for e in events[1:]]
    assert len(events) <= 6  # the last five

    doc = json.loads(kubectl_torchship("status", "web", *ns, "-o", "json").stdout)
    assert {r["version"]: r["weight"] for r in doc["revisions"]} == {"v1": 50, "v2": 50}
    assert doc["status"]["rollout"]["phase"] == "Paused"

    done = kubectl_torchship("promote", "web", *ns)
    assert done.stdout == f"modelservice {namespace}/web promoted: spec.rollout.promotedStep is 0\n"
    kubectl_torchship("wait", "web", *ns, "--timeout", "60")

    # promotedStep 0 still stands (kubectl apply leaves fields it did not set): v3 passes its
    # first step at once and waits at the second, where abort sends it back.
    two_steps = {"strategy": "Canary", "steps": [{"weight": 50}, {"weight": 75}]}
    apply(control_plane, namespace, "web", "v3", replicas=2, rollout=two_steps)
    control_plane.kubectl(
        "wait", *ns, "--for=jsonpath={.status.rollout.step}=1", "msvc/web", "--timeout=60s"
    )
    wait_phase(control_plane, namespace, "web", "Paused")
    done = kubectl_torchship("abort", "web", *ns)
    assert done.stdout.startswith(f"modelservice {namespace}/web aborted: the spec is back on")
    assert "(v2); traffic returns to it" in done.stdout
    kubectl_torchship("wait", "web", *ns, "--timeout", "60")

    history = kubectl_torchship("history", "web", *ns).stdout.splitlines()
    assert columns(history[0]) == [
        "REVISION", "VERSION", "ROLE", "SPEC", "WEIGHT", "READY/DESIRED", "AGE",
    ]  # fmt: skip
    rows = {columns(line)[1]: columns(line) for line in history[1:]}
    assert rows["v2"][2:6] == ["stable", "yes", "100%", "2/2"]
    assert rows["v1"][2:5] == ["-", "0%", "0/0"]

    refused = kubectl_torchship("rollback", "web", *ns, "--to", "v9", code=4)
    assert refused.stderr.startswith("error: no revision v9 (kept revisions: ")
    done = kubectl_torchship("rollback", "web", "--to", "v1", *ns)
    assert done.stdout == (
        f"modelservice {namespace}/web rolling back: the spec is set to the revision of "
        "version v1\n"
    )
    wait_phase(control_plane, namespace, "web", "Paused")  # the canary step, as any rollout
    ms = json.loads(control_plane.kubectl("get", "msvc", "web", *ns, "-o", "json").stdout)
    assert ms["spec"]["model"]["version"] == "v1"


def test_errors_and_exit_codes(control_plane, operator, namespace, kubectl_torchship):
    missing = kubectl_torchship("status", "ghost", "-n", namespace, code=3)
    assert missing.stderr == 'error: modelservices.torchship.dev "ghost" not found\n'
    for command in ("promote", "abort", "rollback", "history"):
        kubectl_torchship(command, "ghost", "-n", namespace, code=3)
    # Options before the command, as kubectl's own; the context by name.
    kubectl_torchship("-n", namespace, "--context", "testenv", "status", "ghost", code=3)
    wrong = kubectl_torchship("status", "ghost", "--context", "nope", code=1)
    assert wrong.stderr.startswith("error: cannot load the cluster configuration:")
    kubectl_torchship("status", code=2)  # NAME missing

    gpu = {"count": 1, "product": "NVIDIA-B200"}
    apply(control_plane, namespace, "nowhere", "v1", gpu=gpu)
    control_plane.kubectl(
        "wait", "-n", namespace, "--for=condition=Degraded", "msvc/nowhere", "--timeout=60s"
    )  # the scheduler has had its say
    late = kubectl_torchship("wait", "nowhere", "-n", namespace, "--timeout", "3", code=5)
    assert late.stderr.startswith(
        "error: nowhere is not ready after 3s: WaitingForGPU: needs 1 nvidia.com/gpu on "
        "nvidia.com/gpu.product=NVIDIA-B200;"
    )
    out = kubectl_torchship("status", "nowhere", "-n", namespace).stdout
    assert (
        "Ready:       False   WaitingForGPU: needs 1 nvidia.com/gpu on "
        "nvidia.com/gpu.product=NVIDIA-B200;" in out
    )
    conditions = {columns(line)[0]: columns(line)[1:] for line in section(out, "Conditions")}
    assert conditions["Degraded"][:2] == ["True", "WaitingForGPU"]


def test_infer_through_a_given_url(control_plane, operator, namespace, kubectl_torchship, tmp_path):
    # The ModelService names the served model and its token's Secret; the runtime serves that
    # model on loopback with that token.
    served = {"uri": "file:///m.pt", "format": "torchscript", "name": "mlp"}
    auth = {"tokenSecretRef": {"name": "scorer-token"}}
    manifest = msvc("scorer", model=served, auth=auth)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    control_plane.kubectl(
        "create",
        "secret",
        "generic",
        "scorer-token",
        "-n",
        namespace,
        "--from-literal=token=s3cret",
    )
    (tmp_path / "token").write_text("s3cret\n")
    model = mlp()
    path = save_torchscript(model, tmp_path / "mlp.pt")
    x = np.linspace(-1, 1, 2 * 64, dtype=np.float32).reshape(2, 64)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.json").write_text(json.dumps(x.astype(np.float64).tolist()))
    (tmp_path / "bad.json").write_text(json.dumps([[1.0, 2.0]]))
    env = torchscript_env(
        path,
        TORCHSHIP_MODEL_INPUTS='[{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}]',
        TORCHSHIP_AUTH_TOKEN_FILE=str(tmp_path / "token"),
    )
    with serving(tmp_path, **env) as runtime:
        url = ["--url", runtime.url, "-n", namespace]
        npy, bad = f"input__0={tmp_path / 'x.npy'}", f"input__0={tmp_path / 'bad.json'}"
        out = kubectl_torchship("infer", "scorer", "--input", npy, *url)  # token from the Secret
        lines = out.stdout.splitlines()
        assert lines[0] == "model mlp"
        assert lines[1] == "output__0   float32   shape [2, 10]"
        assert lines[2].startswith("[[")
        saved = tmp_path / "out"
        done = kubectl_torchship(
            "infer", "scorer", "-i", f"input__0={tmp_path / 'x.json'}", *url, "-o", "json",
            "--save-dir", str(saved),
        )  # fmt: skip
        doc = json.loads(done.stdout)
        got = np.array(doc["outputs"]["output__0"]["data"], dtype=np.float32)
        np.testing.assert_allclose(got, want, atol=1e-5)  # JSON input cast to the model's FP32
        np.testing.assert_allclose(np.load(saved / "output__0.npy"), want, atol=1e-5)
        refused = kubectl_torchship("infer", "scorer", "-i", bad, *url, code=6)
        assert refused.stderr.startswith("error: input input__0: expected shape [-1, 64]")
        denied = kubectl_torchship("infer", "scorer", "-i", npy, *url, "--token", "nope", code=6)
        assert denied.stderr.startswith("error: ") and "(401 from" in denied.stderr
        kubectl_torchship("infer", "scorer", "-i", "input__0", *url, code=2)
    gone = kubectl_torchship("infer", "scorer", "-i", npy, *url, code=6)
    assert f"cannot reach {runtime.url}" in gone.stderr
    # Without --url it goes through `kubectl port-forward service/scorer`. kwok's nodes have
    # no kubelet (the API server dials 127.0.0.1:10250 for them), so here that stops at
    # kubectl's own error, passed on as an inference failure.
    forward = kubectl_torchship("infer", "scorer", "-i", npy, "-n", namespace, code=6)
    assert forward.stderr.startswith("error: kubectl port-forward service/scorer: error: ")
