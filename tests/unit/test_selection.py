"""What the API server is asked to send: our children only, by one label selector on every
child kind's list and watch, and nothing on the ModelServices themselves."""

from __future__ import annotations

import kopf
import pytest
from kopf._cogs.structs.references import Resource

from torchship_operator import render, selection

CHILD_KINDS = [
    Resource("apps", "v1", "deployments", kind="Deployment"),
    Resource("", "v1", "services", kind="Service"),
    Resource("autoscaling", "v2", "horizontalpodautoscalers", kind="HorizontalPodAutoscaler"),
    Resource("", "v1", "pods", kind="Pod"),
]
NOT_SELECTED = [
    Resource("torchship.dev", "v1alpha1", "modelservices", kind="ModelService", namespaced=True),
    Resource("coordination.k8s.io", "v1", "leases", kind="Lease", namespaced=True),
    Resource("", "v1", "namespaces", kind="Namespace"),
    Resource("", "v1", "configmaps", kind="ConfigMap"),
]


@pytest.fixture
def settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    selection.select_children(settings)
    return settings


@pytest.mark.parametrize("resource", CHILD_KINDS, ids=lambda r: r.plural)
def test_every_child_kind_is_selected_server_side(settings, resource):
    assert settings.watching.label_selectors.collect(resource) == [selection.SELECTOR]


@pytest.mark.parametrize("resource", NOT_SELECTED, ids=lambda r: r.plural)
def test_modelservices_leases_and_discovery_are_not(settings, resource):
    assert settings.watching.label_selectors.collect(resource) == []


def test_the_selector_selects_what_render_labels():
    spec = render.api.ModelServiceSpec.model_validate(
        {"model": {"uri": "s3://b/m.pt", "format": "torchscript"}}
    )
    labels = render.common_labels("mlp", spec)
    assert selection.ours(labels)
    assert selection.SELECTOR.split(",") == [
        "app.kubernetes.io/managed-by=torchship",
        render.LABEL_MS,
    ]


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"app": "web"},
        {"app.kubernetes.io/managed-by": "helm", render.LABEL_MS: "mlp"},
        {"app.kubernetes.io/managed-by": "torchship"},
        {render.LABEL_MS: "mlp"},
    ],
)
def test_anything_else_is_not_ours(labels):
    assert not selection.ours(labels)
