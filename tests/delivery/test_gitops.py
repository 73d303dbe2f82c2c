"""The GitOps examples: the kustomize overlays build and apply to the real API server and stay
diff-stable; the Argo CD and Flux manifests point at what exists and pass the chart's schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from healthchecks import flux_expressions, flux_health
from helmchart import ROOT, render

KUSTOMIZE = ROOT / "examples" / "kustomize"
OVERLAYS = {"dev": ("NVIDIA-A10", 1), "prod": ("NVIDIA-H100-80GB-HBM3", 3)}


def build(control_plane, overlay: str) -> list[dict[str, Any]]:
    out = control_plane.kubectl("kustomize", str(KUSTOMIZE / "overlays" / overlay)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_differs_in_gpu_product_and_replicas(control_plane, overlay):
    objects = build(control_plane, overlay)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ModelService", "Namespace"]
    (ns,) = [o for o in objects if o["kind"] == "Namespace"]
    (ms,) = [o for o in objects if o["kind"] == "ModelService"]
    assert ns["metadata"]["name"] == ms["metadata"]["namespace"] == f"ml-{overlay}"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    product, replicas = OVERLAYS[overlay]
    assert ms["spec"]["gpu"] == {"count": 1, "product": product}
    assert ms["spec"]["replicas"] == replicas
    assert ms["spec"]["runtime"]["device"] == "cuda"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_applies_and_a_second_apply_changes_nothing(control_plane, installed_crds, overlay):
    manifest = control_plane.kubectl("kustomize", str(KUSTOMIZE / "overlays" / overlay)).stdout
    namespace = f"ml-{overlay}"
    apply = ["apply", "--server-side", "--field-manager=gitops-example", "-f", "-"]
    try:
        control_plane.kubectl(*apply, input=manifest)
        first = json.loads(
            control_plane.kubectl(
                "get", "modelservice", "resnet", "-n", namespace, "-o", "json"
            ).stdout
        )
        again = control_plane.kubectl(*apply, input=manifest)
        assert "serverside-applied" in again.stdout
        second = json.loads(
            control_plane.kubectl(
                "get", "modelservice", "resnet", "-n", namespace, "-o", "json"
            ).stdout
        )
        assert second["metadata"]["generation"] == first["metadata"]["generation"] == 1
        assert second["spec"] == first["spec"]
        # What a GitOps tool would show: no difference between the repository and the cluster.
        diff = control_plane.kubectl("diff", "--server-side", "--field-manager=gitops-example",
                                     "-f", "-", input=manifest, check=False)  # fmt: skip
        assert diff.returncode == 0, diff.stdout + diff.stderr
    finally:
        control_plane.kubectl(
            "delete", "namespace", namespace, "--wait=true", "--timeout=60s", check=False
        )


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_argocd_applications_point_at_paths_in_this_repository():
    apps = [
        d
        for p in sorted((ROOT / "examples" / "argocd").glob("application-*.yaml"))
        for d in load(p)
    ]
    assert {a["kind"] for a in apps} == {"Application"}
    paths = {a["spec"]["source"]["path"] for a in apps}
    assert paths == {"charts/torchship", "examples/kustomize/overlays/prod"}
    for app in apps:
        assert (ROOT / app["spec"]["source"]["path"]).is_dir()
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_the_charts_values_in_argocd_and_flux_pass_its_schema():
    (app,) = load(ROOT / "examples" / "argocd" / "application-operator.yaml")
    (release,) = load(ROOT / "examples" / "flux" / "helmrelease.yaml")
    for values in (app["spec"]["source"]["helm"]["valuesObject"], release["spec"]["values"]):
        objects = render(values)
        assert any(o["kind"] == "Deployment" for o in objects)
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    (source,) = load(ROOT / "examples" / "flux" / "ocirepository.yaml")
    assert release["spec"]["chartRef"] == {
        "kind": source["kind"],
        "name": source["metadata"]["name"],
        "namespace": source["metadata"]["namespace"],
    }


def test_flux_kustomization_points_at_an_overlay_and_checks_modelservice_health():
    (kustomization,) = load(ROOT / "examples" / "flux" / "kustomization-models.yaml")
    (git,) = load(ROOT / "examples" / "flux" / "gitrepository.yaml")
    assert kustomization["spec"]["sourceRef"] == {
        "kind": "GitRepository",
        "name": git["metadata"]["name"],
    }
    assert (ROOT / kustomization["spec"]["path"]).is_dir()
    (check,) = kustomization["spec"]["healthCheckExprs"]
    assert (check["apiVersion"], check["kind"]) == ("torchship.dev/v1alpha1", "ModelService")


# kstatus has no Suspended: a paused canary serves, and is Current.
FLUX_STATUS = {
    "healthy": "Current",
    "progressing": "InProgress",
    "suspended": "Current",
    "degraded": "Failed",
}
FIXTURES = ROOT / "tests" / "delivery" / "fixtures" / "health"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_flux_health_check_evaluates_each_status_as_argo_cd_does(path: Path):
    """The expressions evaluated by CEL (cel-go, as the kustomize-controller runs them) on
    ModelServices as the operator reports them: the same verdict as the Argo CD check."""
    expected = FLUX_STATUS[path.name.split("-", 1)[0]]
    assert flux_health(json.loads(path.read_text())) == expected


def test_a_broken_flux_expression_changes_the_verdict():
    healthy = json.loads((FIXTURES / "healthy-serving.json").read_text())
    expressions = flux_expressions() | {"current": "false"}
    assert flux_health(healthy, expressions) == "InProgress"
    typo = flux_expressions() | {"failed": "status.conditions.exists(e, e.typo == 'Degraded')"}
    assert flux_health(healthy, typo) == "InProgress"  # cannot be evaluated: never healthy
