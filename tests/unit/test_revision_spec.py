"""Each revision's Deployment keeps the spec fields that made it (render.SPEC_ANNOTATION); put
back into a ModelService, they name the same revision again: that is what a rollback does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from torchship_operator import api, render

ROOT = Path(__file__).resolve().parents[2]
OWNER = render.Owner(name="m", namespace="ml", uid="00000000-0000-0000-0000-0000000000ff")
CASES = [
    *sorted((ROOT / "tests" / "golden").glob("*.input.yaml")),
    ROOT / "examples" / "cpu-model.yaml",
    ROOT / "examples" / "gpu-model.yaml",
]


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_the_annotation_brings_back_the_same_revision(path: Path):
    spec = api.ModelServiceSpec.model_validate(yaml.safe_load(path.read_text())["spec"])
    image = "ghcr.io/torchship/runtime:test"
    deployment = render.render_deployment(OWNER, spec, render.revision_hash(spec, image), 1, image)
    kept = json.loads(deployment["metadata"]["annotations"][render.SPEC_ANNOTATION])
    assert set(kept) <= render.REVISION_FIELDS and "model" in kept
    # The rest of the spec (replicas, rollout, autoscaling) is the user's to keep as it is.
    live = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    restored = {k: v for k, v in live.items() if k not in render.REVISION_FIELDS} | kept
    again = api.ModelServiceSpec.model_validate(restored)
    assert render.revision_hash(again, image) == render.revision_hash(spec, image)
    assert again == spec


def test_the_annotation_is_outside_the_pod_template():
    # Pods of an existing revision must not restart for it.
    spec = api.ModelServiceSpec(model=api.ModelSource(uri="/m.pt", format="torchscript"))
    deployment = render.render_deployment(OWNER, spec, "abc", 1, "img")
    assert "annotations" not in deployment["spec"]["template"]["metadata"]
