"""The generated CRD: committed copy up to date, structural, and carrying what kubectl and the
API server need (subresources, printer columns, CEL rules with messages)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from torchship_operator import crdgen

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "torchship.dev_modelservices.yaml"
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const"}


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return crdgen.crd()


@pytest.fixture(scope="module")
def version(crd) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only


@pytest.fixture(scope="module")
def schema(version) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_committed_crd_is_the_generated_one():
    assert COMMITTED.read_text() == crdgen.render(), (
        "crds/ is stale: python -m torchship_operator.crdgen > " + str(COMMITTED.relative_to(ROOT))
    )


def test_schema_is_structural(schema):
    for path, node in nodes(schema):
        assert not FORBIDDEN & set(node), f"{path or '<root>'} has {FORBIDDEN & set(node)}"
        typed = (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        )
        assert typed, f"{path} has no type"
        if node.get("type") == "object" and "properties" in node:
            assert set(node.get("required", [])) <= set(node["properties"]), path
        # OpenAPI v3.0: exclusive bounds are booleans beside minimum/maximum (pydantic's gt/lt
        # write JSON Schema's numbers, which the API server refuses).
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, False), bool), f"{path}.{bound}"


def test_every_spec_and_status_field_is_described(schema):
    for part in ("spec", "status"):
        for path, node in nodes(schema["properties"][part], part):
            if not path.endswith(("[]", "{}")):
                assert node.get("description"), f"{path} has no description for kubectl explain"


def test_defaults_and_enums_survive(schema):
    spec = schema["properties"]["spec"]
    assert at(spec, "replicas")["default"] == 1
    assert at(spec, "service")["default"] == {"port": 8080, "grpcPort": 8081}
    assert at(spec, "runtime")["default"]["batching"] == {
        "enabled": True,
        "maxBatchSize": 32,
        "maxDelayMs": 5.0,
    }
    assert at(spec, "model.format")["enum"] == [
        "torchscript",
        "exported-program",
        "state-dict",
        "handler",
    ]
    assert at(spec, "runtime.device")["enum"] == ["auto", "cpu", "cuda"]
    assert at(spec, "rollout.strategy")["enum"] == ["RollingUpdate", "Canary", "BlueGreen"]
    assert at(spec, "rollout.trafficRouting")["enum"] == ["replicas", "gateway-api"]
    assert at(spec, "autoscaling.metrics.[].type")["enum"] == ["cpu", "memory", "inflight"]
    assert at(spec, "gpu.count")["minimum"] == 0
    assert at(spec, "rollout.steps.[].weight")["maximum"] == 100
    assert at(spec, "model.uri")["type"] == "string"
    assert set(spec["required"]) == {"model"}


def test_quantities_are_int_or_string(schema):
    limits = at(schema, "spec.runtime.resources.limits")
    assert limits["additionalProperties"] == {"x-kubernetes-int-or-string": True}


def test_pass_through_objects_keep_unknown_fields(schema):
    for path in ("spec.autoscaling.behavior", "spec.gpu.tolerations.[]", "status.rollout"):
        assert at(schema, path)["x-kubernetes-preserve-unknown-fields"] is True, path


def test_env_and_conditions_are_list_maps(schema):
    env = at(schema, "spec.runtime.env")
    assert (env["x-kubernetes-list-type"], env["x-kubernetes-list-map-keys"]) == ("map", ["name"])
    conditions = at(schema, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


def rules(schema) -> dict[str, list[dict[str, str]]]:
    return {
        path: node["x-kubernetes-validations"]
        for path, node in nodes(schema)
        if "x-kubernetes-validations" in node
    }


def test_cel_rules_have_messages(schema):
    found = rules(schema)
    assert sum(len(v) for v in found.values()) >= 9
    for path, entries in found.items():
        for entry in entries:
            assert entry["rule"].strip() and len(entry["message"]) > 20, (path, entry)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        (".spec.autoscaling", "self.minReplicas <= self.maxReplicas"),
        (".spec.gpu", "!has(self.product) || self.count > 0"),
        (".spec.model", "self.uri.startsWith('s3://')"),
        (".spec.model", "has(self.entrypoint)"),
        (".spec", "self.runtime.device != 'cuda'"),
        (".spec.rollout", "size(self.steps) > 0"),
        (".spec.rollout", "self.whenFull != 'MakeRoom' || self.strategy != 'BlueGreen'"),
        ("", "size(self.metadata.name) <= 52"),
    ],
)
def test_cross_field_rules_sit_where_they_apply(schema, path, fragment):
    assert any(fragment in r["rule"] for r in rules(schema).get(path, [])), rules(schema).keys()


def test_names_subresources_and_columns(crd, version):
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "modelservices.torchship.dev"
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "ModelService",
        "modelservices",
        ["msvc"],
    )
    assert crd["spec"]["scope"] == "Namespaced"
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert [c.upper() for c in columns] == ["READY", "PHASE", "VERSION", "REPLICAS", "URL", "AGE"]
    ready = version["additionalPrinterColumns"][0]
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
