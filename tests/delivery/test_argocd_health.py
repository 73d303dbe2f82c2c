"""The Argo CD health check for ModelService, run as Argo CD runs it: a Lua 5.1 chunk (Argo CD
embeds gopher-lua, a Lua 5.1) with the live object in the global `obj`, returning
{status, message}."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml
from healthchecks import LUA_SCRIPT as SCRIPT
from healthchecks import argocd_health, argocd_run, as_lua_sees

ROOT = Path(__file__).resolve().parents[2]
ARGOCD_CM = ROOT / "examples/argocd/argocd-cm.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "health"
EXPECTED = {
    "healthy": "Healthy",
    "progressing": "Progressing",
    "suspended": "Suspended",
    "degraded": "Degraded",
}


def run(obj: dict[str, Any], script: str | None = None) -> tuple[dict[str, Any], Any]:
    return argocd_run(obj, script)


def health(obj: dict[str, Any], script: str | None = None) -> dict[str, Any]:
    return argocd_health(obj, script)


def fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def test_fixtures_cover_each_health():
    prefixes = {path.name.split("-", 1)[0] for path in fixtures()}
    assert prefixes == set(EXPECTED), prefixes


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_health_of_fixture(path: Path):
    expected = EXPECTED[path.name.split("-", 1)[0]]
    result = health(json.loads(path.read_text()))
    assert result["status"] == expected, result
    assert isinstance(result["message"], str) and result["message"], result


def ms(generation: int = 2, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "torchship.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "m", "namespace": "ns", "generation": generation},
        "spec": {"model": {"uri": "file:///m.pt2", "format": "exported-program"}},
    }
    if status:
        obj["status"] = status
    return obj


def cond(kind: str, status: str, reason: str = "", message: str = "", gen: int = 2) -> dict:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": gen,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }


READY = cond("Ready", "True", "Ready", "2/2 replicas ready")
NOT_DEGRADED = cond("Degraded", "False", "AsExpected")


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        (ms(), "Progressing", "Waiting for the operator to report status"),
        (
            ms(3, observedGeneration=2, conditions=[READY, NOT_DEGRADED]),
            "Progressing",
            "Waiting for the operator to observe generation 3",
        ),
        (ms(conditions=[READY]), "Progressing", "Waiting for the operator to observe generation 2"),
        (
            ms(observedGeneration=2, conditions=[READY, NOT_DEGRADED]),
            "Healthy",
            "2/2 replicas ready",
        ),
        (ms(observedGeneration=2, conditions=[cond("Ready", "True")]), "Healthy", "Ready"),
        (
            ms(
                observedGeneration=2,
                conditions=[
                    cond("Ready", "False", "Unschedulable", "0/4 nodes are available"),
                    cond("Degraded", "True", "Unschedulable", "0/4 nodes are available"),
                ],
            ),
            "Degraded",
            "0/4 nodes are available",
        ),
        # Degraded wins over Ready: an aborted rollout still serving the old version.
        (
            ms(
                observedGeneration=2,
                conditions=[READY, cond("Degraded", "True", "RolloutAborted", "")],
            ),
            "Degraded",
            "RolloutAborted",
        ),
        # A paused canary serves (Ready) and waits: Suspended, whatever Ready says.
        (
            ms(
                observedGeneration=2,
                conditions=[
                    READY,
                    cond("Progressing", "True", "CanaryPaused", "canary at 10% of traffic"),
                    NOT_DEGRADED,
                ],
            ),
            "Suspended",
            "canary at 10% of traffic",
        ),
        (
            ms(
                observedGeneration=2,
                conditions=[
                    cond("Ready", "False", "AwaitingPromotion", "step 0 at 50%"),
                    cond("Progressing", "True", "AwaitingPromotion", "step 0 at 50%"),
                    NOT_DEGRADED,
                ],
            ),
            "Suspended",
            "step 0 at 50%",
        ),
        # Serving at capacity while a rollout moves on its own: not Healthy until it is over.
        (
            ms(
                observedGeneration=2,
                conditions=[
                    READY,
                    cond("Progressing", "True", "RolloutInProgress", "1/2 replicas of v2"),
                    NOT_DEGRADED,
                ],
            ),
            "Progressing",
            "1/2 replicas of v2",
        ),
        (
            ms(
                observedGeneration=2,
                conditions=[
                    READY,
                    cond("Progressing", "True", "AwaitingAnalysis", "step 0: measuring"),
                    NOT_DEGRADED,
                ],
            ),
            "Progressing",
            "step 0: measuring",
        ),
        (
            ms(
                observedGeneration=2,
                conditions=[
                    READY,
                    cond("Progressing", "False", "RolloutComplete", "2/2"),
                    NOT_DEGRADED,
                ],
            ),
            "Healthy",
            "2/2 replicas ready",
        ),
        (
            ms(observedGeneration=2, conditions=[cond("Ready", "Unknown", "Starting", "")]),
            "Progressing",
            "Starting",
        ),
        (ms(observedGeneration=2), "Progressing", "Waiting for the ModelService to become Ready"),
        (
            ms(observedGeneration=2, conditions=[]),
            "Progressing",
            "Waiting for the ModelService to become Ready",
        ),
        # A condition left from an older generation is not believed.
        (
            ms(3, observedGeneration=3, conditions=[cond("Ready", "True", "Ready", "old", gen=2)]),
            "Progressing",
            "Waiting for the ModelService to become Ready",
        ),
        (
            ms(3, observedGeneration=3, conditions=[cond("Degraded", "True", "X", "old", gen=2)]),
            "Progressing",
            "Waiting for the ModelService to become Ready",
        ),
    ],
)
def test_health_table(obj: dict, status: str, message: str):
    assert health(obj) == {"status": status, "message": message}


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_the_script_leaves_the_object_as_it_was(path: Path):
    """Argo CD hands the script the live object; the script only reads it. The table the
    script saw is read back after it ran."""
    obj = json.loads(path.read_text())
    _, after = run(obj)
    assert after == as_lua_sees(obj)


def test_a_script_that_writes_to_the_object_is_caught():
    writes = 'obj.metadata.name = "changed"\n' + SCRIPT.read_text()
    obj = ms(observedGeneration=2, conditions=[READY])
    _, after = run(obj, writes)
    assert after != as_lua_sees(obj)


def test_the_argocd_cm_snippet_is_the_script():
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    assert set(data) == {"resource.customizations.health.torchship.dev_ModelService"}
    snippet = data["resource.customizations.health.torchship.dev_ModelService"]
    assert snippet == SCRIPT.read_text(), (
        "examples/argocd/argocd-cm.yaml must carry health.lua unchanged: copy it there"
    )


def test_a_broken_script_fails_the_check():
    broken = SCRIPT.read_text().replace('hs.status = "Healthy"', 'hs.status = "Progressing"')
    obj = ms(observedGeneration=2, conditions=[READY])
    assert health(obj, broken)["status"] == "Progressing"
    with pytest.raises(lua51.LuaError):
        health(obj, "return obj.status.nothing.here")
