"""torchship.kube against the real control plane with the operator running: every call, and
the errors a user meets (unknown names, specs the API server rejects, waits that time out)."""

from __future__ import annotations

import json
import time

import pytest
from helpers import get_json, wait_for

from torchship.kube import (
    CanaryStep,
    Conflict,
    GpuSpec,
    Invalid,
    KubeError,
    Metadata,
    ModelService,
    ModelServices,
    ModelServiceSpec,
    ModelSource,
    NotFound,
    NothingToDo,
    NotReady,
    RolloutSpec,
)
from torchship.kube.session import connect

URI = "https://models.example.com/m.pt"
MANUAL_CANARY = RolloutSpec(strategy="Canary", steps=[CanaryStep(weight=50)])


def services_for(control_plane, namespace: str) -> ModelServices:
    return ModelServices(namespace, kubeconfig=str(control_plane.kubeconfig))


def model_service(name: str, version: str, **spec) -> ModelService:
    source = ModelSource(uri=URI, format="torchscript", version=version)
    return ModelService.of(name, model=source, **spec)


def test_apply_get_wait_history_delete(control_plane, operator, namespace):
    services = services_for(control_plane, namespace)
    source = ModelSource(uri=URI, format="torchscript", version="v1")
    spec = ModelServiceSpec(model=source, replicas=2)
    stored = services.apply(ModelService(metadata=Metadata(name="sdk"), spec=spec))
    assert stored.metadata.generation == 1
    assert stored.spec.replicas == 2 and stored.spec.runtime.device == "auto"  # server defaults
    raw = get_json(control_plane, "msvc", "sdk", "-n", namespace, "--show-managed-fields")
    managers = {(m["manager"], m["operation"]) for m in raw["metadata"]["managedFields"]}
    assert ("torchship-sdk", "Apply") in managers

    ready = services.wait_ready("sdk", timeout=60)
    cond = ready.condition("Ready")
    assert cond.status == "True" and cond.reason == "Ready"
    assert ready.status.ready_replicas == 2
    assert services.get("sdk").spec == ready.spec
    assert [m.name for m in services.items()] == ["sdk"]

    [revision] = services.history("sdk")
    assert (revision.version, revision.role, revision.weight) == ("v1", "stable", 100)
    assert revision.current and (revision.ready, revision.replicas) == (2, 2)
    assert revision.spec["model"] == {"uri": URI, "format": "torchscript", "version": "v1"}
    assert revision.deployment == f"sdk-{revision.revision}"

    # The same apply again changes nothing.
    assert services.apply(model_service("sdk", "v1", replicas=2)).metadata.generation == 1
    # Only the fields the author set are applied: unset, spec.replicas stays whoever's it is.
    assert "replicas" not in model_service("sdk", "v1").manifest()["spec"]
    # A field another manager owns: Conflict with the server's words, unless forced.
    other = {"apiVersion": "torchship.dev/v1alpha1", "kind": "ModelService",
             "metadata": {"name": "sdk"}, "spec": {"replicas": 3}}  # fmt: skip
    apply = ["apply", "--server-side", "--force-conflicts", "--field-manager=someone"]
    control_plane.kubectl(*apply, "-n", namespace, "-f", "-", input=json.dumps(other))
    with pytest.raises(Conflict) as conflict:
        services.apply(model_service("sdk", "v1", replicas=2))
    assert conflict.value.status == 409
    assert 'conflict with "someone"' in conflict.value.message
    assert ".spec.replicas" in conflict.value.message
    assert services.apply(model_service("sdk", "v1", replicas=2), force=True).spec.replicas == 2
    wait_for(lambda: "RevisionCreated" in [e["reason"] for e in services.events("sdk")])

    services.delete("sdk", wait=True)
    with pytest.raises(NotFound):
        services.get("sdk")


def test_errors_carry_the_api_servers_and_operators_words(control_plane, operator, namespace):
    services = services_for(control_plane, namespace)
    for call in (
        services.get,
        services.history,
        services.promote,
        services.abort,
        services.rollback,
        services.delete,
    ):
        with pytest.raises(NotFound) as missing:
            call("ghost")
        assert missing.value.message == 'modelservices.torchship.dev "ghost" not found'

    # Valid for pydantic, refused by the CRD's validation rules: the server's message shows.
    both_zero = RolloutSpec(max_surge=0, max_unavailable=0)
    with pytest.raises(Invalid) as invalid:
        services.apply(model_service("bad", "v1", rollout=both_zero))
    assert "rollout.maxSurge and rollout.maxUnavailable cannot both be 0" in invalid.value.message
    assert invalid.value.status == 422
    with pytest.raises(Invalid) as invalid:
        services.apply(model_service("bad", "v1", gpu=GpuSpec(product="NVIDIA-H100-80GB-HBM3")))
    assert "gpu.product selects GPU nodes, so it needs gpu.count > 0" in invalid.value.message

    # No node has this GPU: the wait times out with the scheduler's reason.
    services.apply(model_service("nowhere", "v1", gpu=GpuSpec(count=1, product="NVIDIA-B200")))

    def degraded(ms: ModelService) -> bool:
        cond = ms.condition("Degraded")
        return cond is not None and cond.status == "True"

    services.wait("nowhere", degraded, timeout=60)  # the scheduler has had its say
    with pytest.raises(NotReady) as late:
        services.wait_ready("nowhere", timeout=3)
    assert late.value.reason == "WaitingForGPU"
    assert "nodes are available" in late.value.message
    assert str(late.value).startswith(
        "nowhere is not ready after 3s: WaitingForGPU: needs 1 nvidia.com/gpu on "
        "nvidia.com/gpu.product=NVIDIA-B200;"
    )

    # A rollout that aborts (its pods cannot be placed) fails the wait at once, with the cause.
    services.apply(model_service("stuck", "v1"))
    services.wait_ready("stuck", timeout=60)
    deadline = RolloutSpec(progress_deadline_seconds=10)
    b200 = GpuSpec(count=1, product="NVIDIA-B200")
    services.apply(model_service("stuck", "v2", gpu=b200, rollout=deadline))
    services.wait("stuck", lambda ms: ms.rollout.get("phase") == "Aborted", timeout=60)
    started = time.monotonic()
    with pytest.raises(NotReady) as aborted:
        services.wait_ready("stuck", timeout=60)
    assert time.monotonic() - started < 10
    assert aborted.value.reason == "WaitingForGPU"
    assert "traffic went back to revision" in aborted.value.message
    assert aborted.value.message in str(aborted.value)


def test_canary_promote_abort_and_rollback(control_plane, operator, namespace):
    services = services_for(control_plane, namespace)
    services.apply(model_service("canary", "v1", replicas=2, rollout=MANUAL_CANARY))
    services.wait_ready("canary", timeout=60)
    with pytest.raises(NothingToDo, match="nothing awaits promotion: the rollout is Stable"):
        services.promote("canary")
    with pytest.raises(NothingToDo, match="no rollout in progress"):
        services.abort("canary")
    with pytest.raises(NothingToDo, match="no earlier revision"):
        services.rollback("canary")

    def paused(ms: ModelService) -> bool:
        return ms.rollout.get("phase") == "Paused"

    # v2 stops at its manual step, half the pods each; promote releases it.
    services.apply(model_service("canary", "v2", replicas=2, rollout=MANUAL_CANARY))
    services.wait("canary", paused, timeout=60)
    by_version = {r.version: r for r in services.history("canary")}
    assert (by_version["v2"].role, by_version["v2"].weight) == ("target", 50)
    assert (by_version["v1"].role, by_version["v1"].weight) == ("stable", 50)
    assert by_version["v2"].current and not by_version["v1"].current
    promoted = services.promote("canary")
    assert promoted.spec.rollout.promoted_step == 0
    services.wait_ready("canary", timeout=60)
    assert services.history("canary")[0].role == "stable"

    # v3: apply clears the old promotion, so its manual step waits again; abort goes back.
    services.apply(model_service("canary", "v3", replicas=2, rollout=MANUAL_CANARY))
    assert services.get("canary").spec.rollout.promoted_step is None
    services.wait("canary", paused, timeout=60)
    aborted = services.abort("canary")
    assert aborted.spec.model.version == "v2"
    ready = services.wait_ready("canary", timeout=60)
    assert ready.rollout["phase"] == "Stable"
    # Events follow the status write that a wait sees.
    wait_for(lambda: "RolloutAbandoned" in [e["reason"] for e in services.events("canary")])
    roles = {r.version: (r.role, r.weight) for r in services.history("canary")}
    assert roles == {"v3": ("", 0), "v2": ("stable", 100), "v1": ("", 0)}

    # Rollback goes one back by default (v2 -> v1), reusing v1's Deployment.
    deployments = {d["metadata"]["name"] for d in services.deployments("canary")}
    with pytest.raises(NothingToDo, match=r"no revision v9 \(kept revisions: "):
        services.rollback("canary", to="v9")
    with pytest.raises(NothingToDo, match="the spec already asks for revision"):
        services.rollback("canary", to="v2")
    back = services.rollback("canary")
    assert back.spec.model.version == "v1"
    services.wait("canary", paused, timeout=60)  # an ordinary rollout: the canary step again
    services.promote("canary")
    services.wait_ready("canary", timeout=60)
    assert {d["metadata"]["name"] for d in services.deployments("canary")} == deployments
    current = next(r for r in services.history("canary") if r.current)
    assert (current.version, current.role) == ("v1", "stable")
    # A hash prefix names a revision too; the rollback also clears the last promotion.
    v3 = next(r for r in services.history("canary") if r.version == "v3")
    assert services.rollback("canary", to=v3.revision[:6]).spec.model.version == "v3"
    raw = get_json(control_plane, "msvc", "canary", "-n", namespace)
    assert raw["spec"]["model"]["version"] == "v3"
    assert "promotedStep" not in raw["spec"]["rollout"]
    assert raw["metadata"]["generation"] > 1


def test_in_cluster_with_a_service_accounts_token(control_plane, operator, namespace, tmp_path):
    # What a pod has: the service account's token, the cluster CA and its namespace, mounted;
    # and the API server's address in its environment.
    kubectl = control_plane.kubectl
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl("create", "role", "reader", "-n", namespace, "--verb=get,list",
            "--resource=modelservices.torchship.dev,deployments.apps,events")  # fmt: skip
    kubectl("create", "rolebinding", "reader", "-n", namespace, "--role=reader",
            f"--serviceaccount={namespace}:reader")  # fmt: skip
    token = kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_bytes((control_plane.pki / "ca.crt").read_bytes())
    (tmp_path / "namespace").write_text(namespace)
    host, port = control_plane.server.removeprefix("https://").rsplit(":", 1)
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    admin = services_for(control_plane, namespace)
    admin.apply(model_service("seen", "v1"))
    admin.wait_ready("seen", timeout=60)

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        session = connect(in_cluster=True, service_account=tmp_path)
    reader = ModelServices(session=session)
    assert reader.namespace == namespace  # the pod's own
    assert reader.get("seen").spec.model.version == "v1"
    assert [(r.version, r.role) for r in reader.history("seen")] == [("v1", "stable")]
    assert reader.events("seen")  # events are readable with the same rights
    with pytest.raises(KubeError) as forbidden:
        reader.apply(model_service("seen", "v2"))
    assert forbidden.value.status == 403
    assert f'User "system:serviceaccount:{namespace}:reader" cannot patch' in (
        forbidden.value.message
    )
