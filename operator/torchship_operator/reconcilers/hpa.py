"""The HorizontalPodAutoscaler's own reconcile: applied when spec.autoscaling asks for one,
deleted when it no longer does."""

from __future__ import annotations

from .. import api, autoscaling, render
from ..kube import Kube
from .common import Observed, Outcome, first, note_apply


async def reconcile(
    owner: render.Owner,
    spec: api.ModelServiceSpec,
    observed: Observed,
    kube: Kube,
    outcome: Outcome,
) -> None:
    live = first(observed.hpas)
    if spec.autoscaling is None:
        if live is not None:
            await kube.delete(
                "autoscaling/v2", "HorizontalPodAutoscaler", owner.namespace, owner.name
            )
            outcome.writes.append("delete/hpa")
        return
    hpa = autoscaling.render_hpa(
        name=owner.name,
        namespace=owner.namespace,
        labels=render.common_labels(owner.name, spec),
        owner_reference=owner.reference,
        autoscaling=spec.autoscaling.model_dump(mode="json", by_alias=True, exclude_none=True),
    )
    note_apply(outcome, "HorizontalPodAutoscaler", owner.name, await kube.apply(hpa, live))
