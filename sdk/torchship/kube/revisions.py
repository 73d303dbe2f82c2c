"""A ModelService's revisions as a person sees them (history), and the spec change that goes
back to one (rollback, abort). Pure: objects in, values and JSON patches out.

A rollback is declarative, as everything else: it sets the spec's pod-shaping fields (model,
runtime, gpu, service, auth) back to those of the chosen revision, which its Deployment keeps in
the `torchship.dev/spec` annotation. The operator then finds that revision's hash again, reuses
its Deployment and rolls out to it with the configured strategy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torchship_operator import api
from torchship_operator.render import LABEL_REVISION, REVISION_FIELDS, SPEC_ANNOTATION

from .errors import NothingToDo
from .objects import ModelService


@dataclass(frozen=True)
class Revision:
    """One revision: a distinct pod spec, run by one Deployment."""

    revision: str  # the short hash naming it
    deployment: str
    version: str | None  # model.version it serves
    created: str | None  # the Deployment's creationTimestamp
    replicas: int
    ready: int
    weight: int  # percent of the traffic
    phase: str  # Serving, Progressing or Retired
    role: str  # "stable", "target", "aborted" or ""
    spec: (
        Mapping[str, Any] | None
    )  # its spec fields; None on Deployments made before they were kept
    current: bool  # the spec asks for this revision now

    @property
    def label(self) -> str:
        return f"{self.revision} ({self.version})" if self.version else self.revision


def revision_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pod-shaping fields of a spec, normalised through the API types (defaults filled)."""
    parsed = api.ModelServiceSpec.model_validate(dict(spec))
    return parsed.model_dump(
        mode="json", by_alias=True, include=set(REVISION_FIELDS), exclude_none=True
    )


def history(ms: ModelService, deployments: Sequence[Mapping[str, Any]]) -> list[Revision]:
    """Every revision that still has a Deployment, newest first."""
    status = {r.revision: r for r in (ms.status.revisions if ms.status else None) or []}
    rollout = ms.rollout
    wanted = revision_fields(ms.spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    out = []
    for d in deployments:
        meta = d["metadata"]
        rev = meta.get("labels", {}).get(LABEL_REVISION)
        if not rev:
            continue
        raw = (meta.get("annotations") or {}).get(SPEC_ANNOTATION)
        spec = json.loads(raw) if raw else None
        seen = status.get(rev)
        role = ""
        if rev == rollout.get("stableRevision"):
            role = "stable"
        elif rev == rollout.get("abortedRevision") and rollout.get("phase") == "Aborted":
            role = "aborted"
        elif rev == rollout.get("targetRevision") and rollout.get("phase") != "Stable":
            role = "target"
        out.append(
            Revision(
                revision=rev,
                deployment=meta["name"],
                version=meta.get("labels", {}).get("app.kubernetes.io/version"),
                created=meta.get("creationTimestamp"),
                replicas=(d.get("spec") or {}).get("replicas", 0),
                ready=(d.get("status") or {}).get("readyReplicas", 0),
                weight=seen.weight if seen else 0,
                phase=seen.phase if seen else "",
                role=role,
                spec=spec,
                current=spec is not None and revision_fields(spec) == wanted,
            )
        )
    # Timestamps have whole seconds: within one, the spec's revision and then a rollout's
    # target are the newer ones.
    return sorted(out, key=lambda r: (r.created or "", r.current, r.role == "target"), reverse=True)


def choose(revisions: Sequence[Revision], to: str | None) -> Revision:
    """From `revisions` in `history`'s order (newest first): the one `to` names (its hash, a
    prefix of it, or its model.version; the newest when several match), or, with no `to`, the
    one created before the revision the spec asks for now (`kubectl rollout undo` goes back
    one the same way)."""
    if to is None:
        current = next((i for i, r in enumerate(revisions) if r.current), None)
        older = list(revisions) if current is None else list(revisions[current + 1 :])
        if not older:
            raise NothingToDo("no earlier revision to roll back to")
        return older[0]
    matches = [r for r in revisions if r.revision.startswith(to) or r.version == to]
    if not matches:
        known = ", ".join(r.label for r in revisions) or "none"
        raise NothingToDo(f"no revision {to} (kept revisions: {known})")
    return matches[0]


def rollback_patch(ms: ModelService, target: Revision) -> list[dict[str, Any]]:
    """A JSON patch that sets the spec back to `target`'s pod-shaping fields, only if the object
    is still the one read (resourceVersion), and clears spec.rollout.promotedStep so that the
    manual steps of this rollout wait again."""
    if target.spec is None:
        raise NothingToDo(
            f"revision {target.label} does not record its spec (its Deployment predates "
            f"the {SPEC_ANNOTATION} annotation): set the spec back by hand"
        )
    live = ms.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": ms.metadata.resource_version}
    ]
    for name in sorted(REVISION_FIELDS):
        if name in target.spec:
            ops.append({"op": "add", "path": f"/spec/{name}", "value": target.spec[name]})
        elif name in live:
            ops.append({"op": "remove", "path": f"/spec/{name}"})
    if ms.spec.rollout.promoted_step is not None:
        ops.append({"op": "remove", "path": "/spec/rollout/promotedStep"})
    return ops
