"""Which children the operator watches, selected by the API server.

kopf's `labels=` filters on handlers and indexes are applied in the operator, after every
event of every object of the kind has been received, decoded and given a worker: in a
namespace with thousands of other pods that is most of the operator's CPU and memory. A label
selector in `settings.watching.label_selectors` goes into the list and watch requests
themselves (`?labelSelector=...`), so the API server sends only our children and the
operator's cost depends on the number of ModelServices alone. The ModelService watch is not
selected.
"""

from __future__ import annotations

from collections.abc import Mapping

import kopf

from . import render
from .metrics import WATCH_EVENTS

MANAGED_BY = "app.kubernetes.io/managed-by"

# Every child carries both labels (the pod template too): managed by torchship, and whose.
SELECTOR = f"{MANAGED_BY}={render.MANAGED_BY},{render.LABEL_MS}"

# (group, version, plural) of the watched children.
CHILDREN = (
    ("apps", "v1", "deployments"),
    ("v1", "services"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("v1", "pods"),
)


def select_children(settings: kopf.OperatorSettings) -> None:
    """Make every list and watch of a child kind carry `SELECTOR`."""
    for resource in CHILDREN:
        settings.watching.label_selectors[resource] = SELECTOR


def ours(labels: Mapping[str, str]) -> bool:
    """What `SELECTOR` selects, checked once more on what arrives."""
    return labels.get(MANAGED_BY) == render.MANAGED_BY and render.LABEL_MS in labels


def seen(resource: str, labels: Mapping[str, str]) -> bool:
    """Count one watch event by whether it is about a child; True when it is.

    `ours="false"` stays at zero while the API server selects: it is the measure of what
    the selection saves.
    """
    mine = ours(labels)
    WATCH_EVENTS.labels(resource, "true" if mine else "false").inc()
    return mine
