"""The chart against the real local API server: `helm template` output applied with a
server-side dry run, a real `helm install` into a namespace enforcing PodSecurity "restricted",
what its ServiceAccount may and may not do (SubjectAccessReviews and its own token, the
leader-election Lease included), a namespaced install, `helm upgrade` with a changed CRD, and
`helm uninstall` keeping the CRDs.

The tests of this module share one release and run in file order."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helmchart import (
    CHART,
    can_i,
    helm,
    install_rbac,
    remove_rbac,
    render,
    service_account_kubeconfig,
    value_args,
)

CRDS = ("modelservices.torchship.dev",)
# The shared release runs with leader election (one replica), under a Lease name of its own.
LEASE = "ts-leader"
LEADER_ELECTION = {"leaderElection": {"enabled": True, "leaseName": LEASE}}
LEASES = "leases.coordination.k8s.io"
RESTRICTED = ["pod-security.kubernetes.io/enforce=restricted"]


@dataclass
class Release:
    name: str
    namespace: str
    notes: str

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-torchship"


def create_namespace(control_plane, prefix: str, labels: list[str] = ()) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    if labels:
        control_plane.kubectl("label", "namespace", name, *labels)
    return name


def adopt_crds(control_plane, release: str, namespace: str) -> None:
    """The documented way to hand CRDs installed by other means over to a release."""
    for crd in CRDS:
        if control_plane.kubectl("get", "crd", crd, check=False).returncode != 0:
            continue
        control_plane.kubectl(
            "label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite"
        )
        control_plane.kubectl(
            "annotate", "crd", crd, f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}", "--overwrite",
        )  # fmt: skip


def helm_in(control_plane, *args: str, check: bool = True):
    return helm(*args, env=control_plane.env, check=check, timeout=300)


def crd(control_plane, name: str = "modelservices.torchship.dev") -> dict:
    return json.loads(control_plane.kubectl("get", "crd", name, "-o", "json").stdout)


@pytest.fixture(scope="module")
def release(control_plane) -> Iterator[Release]:
    namespace = create_namespace(control_plane, "torchship-system", RESTRICTED)
    name = f"ts-{uuid.uuid4().hex[:6]}"
    adopt_crds(control_plane, name, namespace)
    proc = helm_in(
        control_plane, "install", name, str(CHART), "--namespace", namespace,
        "--wait", "--timeout", "3m", *value_args(LEADER_ELECTION),
    )  # fmt: skip
    try:
        yield Release(name=name, namespace=namespace, notes=proc.stdout)
    finally:
        helm_in(control_plane, "uninstall", name, "--namespace", namespace, check=False)
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_template_output_passes_a_server_side_dry_run(control_plane, namespace, mode):
    values = {"watchNamespaces": [namespace, "default"]} if mode == "namespaced" else {}
    objects = render(values, release=f"dry-{uuid.uuid4().hex[:6]}", namespace=namespace)
    proc = control_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "--force-conflicts",
        "--field-manager=torchship-tests", "-f", "-",
        input=yaml.safe_dump_all(objects),
    )  # fmt: skip
    applied = [line for line in proc.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(objects), proc.stdout
    # Nothing was created.
    assert control_plane.kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout == ""


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_the_rbac_helper_gives_exactly_the_charts_credentials(
    control_plane, installed_crds, namespace, tmp_path: Path, mode
):
    other = create_namespace(control_plane, "ts-other")
    values = {"watchNamespaces": [namespace]} if mode == "namespaced" else {}
    release = f"rb-{uuid.uuid4().hex[:6]}"
    try:
        account = install_rbac(control_plane, namespace, values, release=release)
        kubeconfig = service_account_kubeconfig(control_plane, namespace, account, tmp_path)
        as_operator = ["--kubeconfig", str(kubeconfig)]
        control_plane.kubectl(*as_operator, "get", "modelservices", "-n", namespace)
        control_plane.kubectl(*as_operator, "get", "deployments", "-n", namespace)
        elsewhere = control_plane.kubectl(
            *as_operator, "get", "modelservices", "-n", other, check=False
        )
        assert (elsewhere.returncode == 0) == (mode == "cluster-wide"), elsewhere.stderr
        secrets = control_plane.kubectl(*as_operator, "get", "secrets", "-n", other, check=False)
        assert "Forbidden" in secrets.stderr
    finally:
        remove_rbac(control_plane, namespace, values, release=release)
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)
    gone = control_plane.kubectl("get", "clusterrole", f"{release}-torchship", check=False)
    assert "NotFound" in gone.stderr


def test_helm_install_runs_the_operator_in_a_restricted_namespace(control_plane, release):
    deployment = json.loads(
        control_plane.kubectl(
            "get", "deployment", f"{release.name}-torchship", "-n", release.namespace, "-o", "json"
        ).stdout
    )
    # Admitted under PodSecurity "restricted" and available (kwok runs no container).
    assert deployment["status"].get("availableReplicas") == 1, deployment["status"]
    for name in CRDS:
        meta = crd(control_plane, name)["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
        assert meta["annotations"]["meta.helm.sh/release-name"] == release.name
    control_plane.wait_established("modelservices.torchship.dev")
    assert f"rollout status deployment/{release.name}-torchship" in release.notes
    assert "kubectl get modelservices --all-namespaces" in release.notes
    assert f"get lease {LEASE}" in release.notes


def test_the_service_account_may_do_the_operators_work_and_nothing_more(
    control_plane, release, tmp_path: Path
):
    sa = release.service_account

    def allowed(*args: str) -> bool:
        return can_i(control_plane, sa, *args)

    assert allowed("watch", "modelservices.torchship.dev", "--all-namespaces")
    assert allowed("patch", "modelservices.torchship.dev", "--subresource=status", "-n", "x")
    for verb in ("create", "patch", "delete"):
        assert allowed(verb, "deployments.apps", "-n", "x")
        assert allowed(verb, "services", "-n", "x")
        assert allowed(verb, "horizontalpodautoscalers.autoscaling", "-n", "x")
    assert allowed("create", "events", "-n", "x")
    # Leader election: its one Lease, in the release namespace only.
    ns = release.namespace
    assert allowed("create", LEASES, "-n", ns)
    for verb in ("get", "update"):
        assert allowed(verb, f"{LEASES}/{LEASE}", "-n", ns)
        assert not allowed(verb, f"{LEASES}/another", "-n", ns)
        assert not allowed(verb, f"{LEASES}/{LEASE}", "-n", "x")
    for verb in ("create", "get", "update"):
        assert not allowed(verb, LEASES, "-n", "x")
        assert not allowed(verb, LEASES, "--all-namespaces")
    assert not allowed("delete", f"{LEASES}/{LEASE}", "-n", ns)
    assert not allowed("list", LEASES, "-n", ns)
    # Nothing of kopf's peering, which leader election no longer uses.
    for verb in ("get", "create", "patch"):
        assert not allowed(verb, "clusterkopfpeerings.kopf.dev")
        assert not allowed(verb, "kopfpeerings.kopf.dev", "-n", ns)
        assert not allowed(verb, "kopfpeerings.kopf.dev", "-n", "x")
    # Never a ModelService's spec, never a Secret, never pods or RBAC.
    for verb in ("create", "update", "patch", "delete"):
        assert not allowed(verb, "modelservices.torchship.dev", "-n", "x")
    assert not allowed("get", "secrets", "-n", "kube-system")
    assert not allowed("list", "secrets", "--all-namespaces")
    assert not allowed("get", "configmaps", "-n", "x")
    assert not allowed("delete", "pods", "-n", "x")
    assert not allowed("create", "clusterrolebindings.rbac.authorization.k8s.io")
    assert not allowed("delete", "customresourcedefinitions.apiextensions.k8s.io")

    # The same with the ServiceAccount's own token, as the operator's pod would present it.
    kubeconfig = service_account_kubeconfig(
        control_plane, release.namespace, f"{release.name}-torchship", tmp_path
    )
    as_operator = ["--kubeconfig", str(kubeconfig)]
    control_plane.kubectl(*as_operator, "get", "modelservices", "--all-namespaces")
    denied = control_plane.kubectl(*as_operator, "get", "secrets", "-n", "default", check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr, denied.stderr
    # The Lease, as leader election takes and renews it (kwok runs no operator to hold it).
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": release.namespace},
        "spec": {"holderIdentity": "test", "leaseDurationSeconds": 15},
    }
    try:
        control_plane.kubectl(*as_operator, "create", "-f", "-", input=json.dumps(lease))
        held = json.loads(
            control_plane.kubectl(
                *as_operator, "get", "lease", LEASE, "-n", release.namespace, "-o", "json"
            ).stdout
        )
        held["spec"]["holderIdentity"] = "test-renewed"
        control_plane.kubectl(*as_operator, "replace", "-f", "-", input=json.dumps(held))
        elsewhere = {**lease, "metadata": {"name": LEASE, "namespace": "default"}}
        denied = control_plane.kubectl(
            *as_operator, "create", "-f", "-", input=json.dumps(elsewhere), check=False
        )
        assert denied.returncode != 0 and "Forbidden" in denied.stderr, denied.stderr
    finally:
        control_plane.kubectl(
            "delete", "lease", LEASE, "-n", release.namespace, "--ignore-not-found"
        )


def test_a_namespaced_install_reaches_only_its_namespaces(control_plane, release):
    operator_ns = create_namespace(control_plane, "ts-ops", RESTRICTED)
    watched = create_namespace(control_plane, "ts-watched")
    other = create_namespace(control_plane, "ts-other")
    name = f"ns-{uuid.uuid4().hex[:6]}"
    try:
        # The CRDs belong to the cluster-wide release: this one leaves them alone.
        helm_in(
            control_plane, "install", name, str(CHART), "--namespace", operator_ns,
            "--wait", "--timeout", "3m",
            *value_args(
                {"watchNamespaces": [watched], "crds": {"install": False}, **LEADER_ELECTION}
            ),
        )  # fmt: skip
        sa = f"system:serviceaccount:{operator_ns}:{name}-torchship"
        assert can_i(control_plane, sa, "watch", "modelservices.torchship.dev", "-n", watched)
        assert can_i(control_plane, sa, "create", "deployments.apps", "-n", watched)
        assert can_i(control_plane, sa, "list", "namespaces")  # rbac.discovery
        # The Lease in the operator's own namespace, not in those it watches.
        assert can_i(control_plane, sa, "create", LEASES, "-n", operator_ns)
        assert can_i(control_plane, sa, "update", f"{LEASES}/{LEASE}", "-n", operator_ns)
        for namespace in (watched, other):
            assert not can_i(control_plane, sa, "create", LEASES, "-n", namespace)
            assert not can_i(control_plane, sa, "get", f"{LEASES}/{LEASE}", "-n", namespace)
        assert not can_i(control_plane, sa, "create", LEASES, "--all-namespaces")
        for namespace in (other, operator_ns):
            assert not can_i(
                control_plane, sa, "list", "modelservices.torchship.dev", "-n", namespace
            )
            assert not can_i(control_plane, sa, "create", "deployments.apps", "-n", namespace)
        assert not can_i(
            control_plane, sa, "list", "modelservices.torchship.dev", "--all-namespaces"
        )
        assert not can_i(control_plane, sa, "get", "secrets", "-n", watched)
        assert not can_i(control_plane, sa, "create", "clusterkopfpeerings.kopf.dev")
        for namespace in (watched, operator_ns):
            assert not can_i(control_plane, sa, "create", "kopfpeerings.kopf.dev", "-n", namespace)
    finally:
        helm_in(control_plane, "uninstall", name, "--namespace", operator_ns, check=False)
        for namespace in (operator_ns, watched, other):
            control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_helm_upgrade_upgrades_the_crd(control_plane, release, tmp_path: Path):
    changed = tmp_path / "torchship"
    shutil.copytree(CHART, changed)
    path = changed / "files" / "crds" / "torchship.dev_modelservices.yaml"
    doc = yaml.safe_load(path.read_text())
    (version,) = doc["spec"]["versions"]
    version["additionalPrinterColumns"].append(
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.uri", "priority": 1}
    )
    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["upgradeProbe"] = {
        "type": "string",
        "description": "A field only the upgraded chart knows.",
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def served(name: str = "modelservices.torchship.dev") -> tuple[list[str], set[str]]:
        (v,) = crd(control_plane, name)["spec"]["versions"]
        spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        return [c["name"] for c in v["additionalPrinterColumns"]], set(spec)

    columns, fields = served()
    assert "Model" not in columns and "upgradeProbe" not in fields

    upgrade = ["upgrade", release.name, "--namespace", release.namespace, "--wait"]
    helm_in(control_plane, *upgrade, str(changed))
    columns, fields = served()
    assert columns[-1] == "Model" and "upgradeProbe" in fields
    history = json.loads(
        helm_in(
            control_plane, "history", release.name, "-n", release.namespace, "-o", "json"
        ).stdout
    )
    assert [h["status"] for h in history][-1] == "deployed" and len(history) == 2

    # And back: the next upgrade removes what the chart no longer has.
    helm_in(control_plane, *upgrade, str(CHART))
    columns, fields = served()
    assert "Model" not in columns and "upgradeProbe" not in fields


def test_helm_uninstall_keeps_the_crds_and_the_modelservices(control_plane, release):
    ms = {
        "apiVersion": "torchship.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "kept", "namespace": release.namespace},
        "spec": {
            "model": {"uri": "file:///models/m.pt2", "format": "exported-program"},
            "runtime": {"device": "cpu"},
        },
    }
    control_plane.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(ms))
    helm_in(control_plane, "uninstall", release.name, "--namespace", release.namespace, "--wait")
    for name in CRDS:
        control_plane.kubectl("get", "crd", name)
    control_plane.kubectl("get", "modelservice", "kept", "-n", release.namespace)
    gone = control_plane.kubectl("get", "clusterrole", f"{release.name}-torchship", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    for kind in ("role", "rolebinding"):
        gone = control_plane.kubectl(
            "get", kind, f"{release.name}-torchship-leader-election", "-n", release.namespace,
            check=False,
        )  # fmt: skip
        assert gone.returncode != 0 and "NotFound" in gone.stderr
