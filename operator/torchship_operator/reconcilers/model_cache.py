"""The model cache's own reconcile: its claim and the Job that fills it when the spec asks for
one, and the deletion of caches no revision mounts any more."""

from __future__ import annotations

from .. import api, cache, render, rollout
from ..kube import Kube
from ..vocabulary import Cause, one_line, revision_of
from .common import Observed, Outcome, note_apply

# How often a model cache's fill Job is read while it runs.
CACHE_POLL_SECONDS = 5.0
# ... and after it failed, for a person deleting it to start a new one.
CACHE_FAILED_POLL_SECONDS = 30.0


async def reconcile(
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    image: str,
    decision: rollout.Decision,
    observed: Observed,
    kube: Kube,
    outcome: Outcome,
) -> Cause | bool | None:
    """The model cache: its claim and fill Job when asked for, and the deletion of caches no
    revision mounts any more. Says True while the fill runs, the failed Cause when it failed, None
    otherwise. Read on demand (a GET or two), and only for ModelServices that have caches."""
    remaining = [d for d in observed.deployments if revision_of(d) not in decision.prune]
    wanted = cache.cache_name(owner.name, spec) if spec.model.cache else None
    if wanted is None and not cache.claims_in_use(observed.deployments):
        return None
    result: Cause | bool | None = None
    if wanted is not None:
        claim = cache.render_claim(owner, spec)
        live = await kube.read("v1", "PersistentVolumeClaim", owner.namespace, wanted)
        note_apply(outcome, "PersistentVolumeClaim", wanted, await kube.apply(claim, live))
        job = await kube.read("batch/v1", "Job", owner.namespace, wanted)
        if job is None:  # created once; a Job's template cannot change, nor needs to
            await kube.apply(cache.render_job(owner, spec, image), None)
            outcome.writes.append(f"job/{wanted}")
            outcome.emit(
                "Normal",
                "CacheFilling",
                f"filling model cache {wanted} ({spec.model.cache.size}) from {spec.model.uri}",
            )
        state = cache.job_state(job)
        if state == "Filling":
            result = True
        elif state == "Failed":
            pods = await kube.get(
                f"/api/v1/namespaces/{owner.namespace}/pods",
                labelSelector=f"{cache.LABEL_CACHE}={wanted}",
            )
            message = cache.job_failure(job, (pods or {}).get("items", []))
            result = Cause.failed("CacheFillFailed", one_line(message, 600))
    listed = await kube.get(
        f"/api/v1/namespaces/{owner.namespace}/persistentvolumeclaims",
        labelSelector=f"{render.LABEL_MS}={owner.name},{cache.LABEL_CACHE}",
    )
    names = [c["metadata"]["name"] for c in (listed or {}).get("items", [])]
    for name in cache.unused(names, remaining, wanted):
        await kube.delete("batch/v1", "Job", owner.namespace, name)
        await kube.delete("v1", "PersistentVolumeClaim", owner.namespace, name)
        outcome.writes.append(f"delete/cache/{name}")
        outcome.emit("Normal", "CacheDeleted", f"deleted model cache {name}: no revision uses it")
    return result


def poll_seconds(filling: Cause | bool | None) -> float | None:
    """The fill Job is not watched: asked again while it runs, or after it failed."""
    if filling is None:
        return None
    return CACHE_POLL_SECONDS if filling is True else CACHE_FAILED_POLL_SECONDS
