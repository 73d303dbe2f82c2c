"""The ModelService API types: wire names, defaults, bounds and the totals derived from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from torchship_operator import api

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MODEL = {"uri": "s3://bucket/m.pt2", "format": "exported-program"}


def spec(**fields) -> api.ModelServiceSpec:
    return api.ModelServiceSpec.model_validate({"model": MODEL} | fields)


def test_there_are_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_modelservices(path: Path):
    for doc in yaml.safe_load_all(path.read_text()):
        assert doc["apiVersion"] == api.API_VERSION
        assert doc["kind"] == api.KIND
        api.ModelServiceSpec.model_validate(doc["spec"])


def test_defaults_fill_what_a_manifest_leaves_out():
    s = spec()
    assert s.replicas == 1
    assert s.gpu is None and s.autoscaling is None and s.auth is None
    assert (s.runtime.device, s.runtime.dtype, s.runtime.quantize) == ("auto", "float32", "none")
    assert (s.runtime.batching.enabled, s.runtime.batching.max_batch_size) == (True, 32)
    assert s.runtime.batching.max_delay_ms == 5
    assert s.service.port == 8080
    assert s.rollout.strategy == "RollingUpdate"
    assert (s.rollout.max_surge, s.rollout.max_unavailable) == (1, 0)
    assert s.rollout.revision_history_limit == 3


def test_wire_names_are_camel_case_both_ways():
    s = spec(
        runtime={"batching": {"maxBatchSize": 8, "maxDelayMs": 2.5}, "drainSeconds": 3},
        gpu={"count": 1, "resourceName": "nvidia.com/mig-1g.10gb", "runtimeClassName": "nvidia"},
        rollout={"maxSurge": 0, "maxUnavailable": 1, "promotedStep": 2},
    )
    assert s.runtime.batching.max_batch_size == 8
    assert s.gpu.resource_name == "nvidia.com/mig-1g.10gb"
    wire = s.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["runtime"]["batching"] == {"enabled": True, "maxBatchSize": 8, "maxDelayMs": 2.5}
    assert wire["gpu"]["runtimeClassName"] == "nvidia"
    assert wire["rollout"]["promotedStep"] == 2


@pytest.mark.parametrize(
    "fields",
    [
        {"gpu": {"count": -1}},
        {"gpu": {"count": 1, "resourceName": "GPU"}},
        {"replicas": -1},
        {"model": {"uri": "/m", "format": "onnx"}},
        {"model": {"uri": "/m", "format": "handler", "entrypoint": "no-colon"}},
        {"runtime": {"batching": {"maxBatchSize": 0}}},
        {"runtime": {"env": [{"value": "no name"}]}},
        {"rollout": {"steps": [{"weight": 101}]}},
        {"autoscaling": {"minReplicas": 1}},
        {"unknown": True},
    ],
)
def test_out_of_bounds_values_are_rejected(fields: dict):
    with pytest.raises(ValidationError):
        spec(**fields)


@pytest.mark.parametrize(
    ("replicas", "bounds", "total"),
    [(3, None, 3), (0, None, 0), (1, (2, 5), 2), (4, (2, 5), 4), (9, (2, 5), 5)],
)
def test_total_replicas_stay_within_the_autoscaler_bounds(replicas, bounds, total):
    scaling = {"minReplicas": bounds[0], "maxReplicas": bounds[1]} if bounds else None
    assert spec(replicas=replicas, autoscaling=scaling).total_replicas == total


def test_autoscaling_defaults_to_cpu():
    s = spec(autoscaling={"maxReplicas": 4})
    assert [(m.type, m.target) for m in s.autoscaling.metrics] == [("cpu", 70)]
    assert s.autoscaling.min_replicas == 1


def test_specs_are_immutable_values():
    s = spec()
    with pytest.raises(ValidationError):
        s.replicas = 2  # type: ignore[misc]
    assert spec() == s


def test_api_reference_in_docs_is_current():
    from torchship_operator import apidoc

    document = (ROOT / "docs" / "api.md").read_text()
    assert apidoc.BEGIN in document and apidoc.END in document
    assert apidoc.splice(document) == document, (
        "docs/api.md is stale: python -m torchship_operator.apidoc --write docs/api.md"
    )
