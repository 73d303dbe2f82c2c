"""ModelServices in one namespace: apply, get, wait, promote, abort, rollback, history,
delete. Each maps onto what the operator does with the spec (docs/rollouts.md); nothing here
writes status or anything the operator owns."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from torchship_operator import api
from torchship_operator.render import LABEL_MS, REVISION_FIELDS

from . import revisions
from .errors import NotFound, NothingToDo, NotReady
from .objects import ModelService
from .session import Session, connect

FIELD_MANAGER = "torchship-sdk"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class ModelServices(contextlib.AbstractContextManager):
    """`ModelServices(namespace="ml")`: the ModelServices of one namespace, through the
    standard kubeconfig (or a named `context`), or the service account inside a pod. Writes
    carry `field_manager`, so managedFields tell who changed what."""

    def __init__(
        self,
        namespace: str | None = None,
        *,
        context: str | None = None,
        kubeconfig: str | None = None,
        field_manager: str = FIELD_MANAGER,
        session: Session | None = None,
    ) -> None:
        self.session = session or connect(context, kubeconfig, namespace)
        self.namespace = namespace or self.session.namespace
        self.field_manager = field_manager

    def _path(self, name: str | None = None) -> str:
        base = f"/apis/{api.API_VERSION}/namespaces/{self.namespace}/{api.PLURAL}"
        return f"{base}/{name}" if name else base

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str) -> ModelService:
        """The ModelService as stored; NotFound when there is none."""
        return ModelService.model_validate(self.session.request("GET", self._path(name)))

    def items(self) -> list[ModelService]:
        """Every ModelService of the namespace."""
        items = self.session.request("GET", self._path())["items"]
        return [ModelService.model_validate(item) for item in items]

    def deployments(self, name: str) -> list[dict[str, Any]]:
        """The revisions' Deployments (the operator's children, read only)."""
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
        found = self.session.request("GET", path, labelSelector=f"{LABEL_MS}={name}")
        return found["items"]

    def history(self, name: str) -> list[revisions.Revision]:
        """Revisions that still have a Deployment, newest first, with their weights and
        roles (stable, target, aborted)."""
        return revisions.history(self.get(name), self.deployments(name))

    def events(self, name: str, limit: int = 10) -> list[dict[str, Any]]:
        """The last `limit` Events about the ModelService, oldest first."""
        selector = f"involvedObject.kind={api.KIND},involvedObject.name={name}"
        path = f"/api/v1/namespaces/{self.namespace}/events"
        items = self.session.request("GET", path, fieldSelector=selector)["items"]
        items.sort(key=event_time)
        return items[-limit:] if limit else items

    # -- writing -------------------------------------------------------------------------------

    def apply(self, ms: ModelService, *, force: bool = False) -> ModelService:
        """Server-side apply under this client's field manager. `force` takes over fields
        another manager owns (else Conflict). A spec that starts a new rollout also clears a
        spec.rollout.promotedStep left by an earlier promote (unless it sets one), so that the
        new rollout's manual steps wait for a person again."""
        if ms.metadata.namespace not in (None, self.namespace):
            raise ValueError(f"{ms.name} is for namespace {ms.metadata.namespace}")
        if ms.spec.rollout.promoted_step is None:
            self._clear_stale_promotion(ms)
        body = ms.manifest()
        body["metadata"]["namespace"] = self.namespace
        stored = self.session.request(
            "PATCH",
            self._path(ms.name),
            body=body,
            content_type=APPLY_PATCH,
            fieldManager=self.field_manager,
            force="true" if force else None,
        )
        return ModelService.model_validate(stored)

    def _clear_stale_promotion(self, ms: ModelService) -> None:
        try:
            live = self.get(ms.name)
        except NotFound:
            return  # a first apply
        step = live.spec.rollout.promoted_step
        new = ms.spec.model_dump(mode="json", by_alias=True, include=set(REVISION_FIELDS))
        old = live.spec.model_dump(mode="json", by_alias=True, include=set(REVISION_FIELDS))
        if step is None or new == old:
            return
        ops = [
            {"op": "test", "path": "/spec/rollout/promotedStep", "value": step},
            {"op": "remove", "path": "/spec/rollout/promotedStep"},
        ]
        self._patch(ms.name, ops, JSON_PATCH)

    def _patch(self, name: str, body: Any, content_type: str) -> ModelService:
        stored = self.session.request(
            "PATCH",
            self._path(name),
            body=body,
            content_type=content_type,
            fieldManager=self.field_manager,
        )
        return ModelService.model_validate(stored)

    def promote(self, name: str, step: int | None = None) -> ModelService:
        """Release the canary step that waits for a person: spec.rollout.promotedStep = its
        index (or `step`). Steps with pauseSeconds end on their own and are not waiting."""
        ms = self.get(name)
        if step is None:
            step = awaiting_step(ms)
        return self._patch(name, {"spec": {"rollout": {"promotedStep": step}}}, MERGE_PATCH)

    def abort(self, name: str) -> ModelService:
        """Stop the rollout in progress: the spec goes back to the stable revision, so traffic
        returns to it at once and the new revision scales down (RolloutAbandoned)."""
        ms = self.get(name)
        found = revisions.history(ms, self.deployments(name))
        stable = ms.rollout.get("stableRevision")
        target = next((r for r in found if r.revision == stable), None)
        if stable is None or target is None:
            raise NothingToDo(f"{name} has no stable revision to go back to")
        if target.current:
            raise NothingToDo(
                f"no rollout in progress: the spec asks for the stable revision {target.label}"
            )
        return self._patch(name, revisions.rollback_patch(ms, target), JSON_PATCH)

    def rollback(self, name: str, to: str | None = None) -> ModelService:
        """Set the spec back to a kept revision (`to`: its hash, a prefix, or its
        model.version; default: the newest one the spec does not ask for). The operator rolls
        out to it with the configured strategy, reusing its Deployment."""
        ms = self.get(name)
        target = revisions.choose(revisions.history(ms, self.deployments(name)), to)
        if target.current:
            raise NothingToDo(f"the spec already asks for revision {target.label}")
        return self._patch(name, revisions.rollback_patch(ms, target), JSON_PATCH)

    def delete(self, name: str, *, wait: bool = False, timeout: float = 60) -> None:
        """Delete it; its Deployments and Service go with it (owner references)."""
        self.session.request("DELETE", self._path(name), propagationPolicy="Foreground")
        if wait:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    self.get(name)
                except NotFound:
                    return
                time.sleep(0.5)
            raise TimeoutError(f"{name} still exists after {timeout:g}s")

    # -- waiting -------------------------------------------------------------------------------

    def wait(
        self,
        name: str,
        until: Callable[[ModelService], bool],
        timeout: float = 300,
        poll: float = 1.0,
    ) -> ModelService:
        """Poll until `until(ms)` holds for a status computed from the latest spec; NotReady
        (a TimeoutError) with the Ready condition's reason and message otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            ms = self.get(name)
            if ms.current and until(ms):
                return ms
            if time.monotonic() >= deadline:
                raise not_ready(ms, timeout)
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def wait_ready(self, name: str, timeout: float = 300, poll: float = 1.0) -> ModelService:
        """Return once the latest spec is rolled out and serves: Ready True and no rollout
        under way (Progressing not True; a paused canary serves, Ready, but is not done). Raise
        NotReady at once when the rollout is aborted or the spec invalid (neither changes
        without a new spec), else after `timeout` seconds, with the reason and message the
        operator gave."""

        def ready(ms: ModelService) -> bool:
            cond = ms.condition("Ready")
            progressing = ms.condition("Progressing")
            moving = progressing is not None and progressing.status == "True"
            if cond is not None and cond.status == "True" and not moving:
                return True
            if ms.rollout.get("phase") == "Aborted" or (cond and cond.reason == "InvalidSpec"):
                raise not_ready(ms, None)
            return False

        return self.wait(name, ready, timeout, poll)

    def close(self) -> None:
        self.session.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def awaiting_step(ms: ModelService) -> int:
    """The index of the canary step waiting for promotion, else NothingToDo saying why not."""
    rollout = ms.rollout
    progressing = ms.condition("Progressing")
    reason = progressing.reason if progressing else None
    if rollout.get("phase") == "Paused" and reason == "AwaitingPromotion":
        return int(rollout.get("step", 0))
    if rollout.get("phase") == "Paused":
        message = progressing.message if progressing else ""
        raise NothingToDo(f"nothing awaits promotion: {message} (a timed pause ends on its own)")
    phase = rollout.get("phase", "unknown")
    raise NothingToDo(f"nothing awaits promotion: the rollout is {phase}")


def not_ready(ms: ModelService, waited: float | None) -> NotReady:
    cond = ms.condition("Ready")
    if not ms.current or cond is None:
        generation = ms.metadata.generation
        return NotReady(
            ms.name,
            "NotObserved",
            f"the operator has not reported on generation {generation}",
            waited,
        )
    reason, message = cond.reason, cond.message
    progressing = ms.condition("Progressing")
    if cond.status == "True" and progressing is not None and progressing.status == "True":
        reason, message = progressing.reason, progressing.message  # serving; the rollout waits
    degraded = ms.condition("Degraded")
    if ms.rollout.get("phase") == "Aborted" and degraded is not None:
        reason, message = degraded.reason, degraded.message
    return NotReady(ms.name, reason, message, waited)


def event_time(event: dict[str, Any]) -> tuple[str, int]:
    """When it last happened; ties (timestamps have whole seconds) in the order written."""
    meta = event["metadata"]
    when = event.get("lastTimestamp") or event.get("eventTime") or meta.get("creationTimestamp")
    version = meta.get("resourceVersion", "")
    return when or "", int(version) if version.isdigit() else 0
