"""The GPU offer: what the nodes offer a pod of the desired revision that waits for its GPU,
read only while one waits and kept a little while, so a burst of reconciles reads once
(offers.py words it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .. import phases
from ..kube import Kube, Refused
from ..offers import node_view, quantity, requested, summary
from ..vocabulary import revision_of

log = logging.getLogger("torchship.offers")

CACHE_SECONDS = 15.0
# Reads that can fail for a reason outside the operator: no RBAC for them (a namespaced install
# has no cluster-wide rules), the API server's error or a lost connection. The scheduler's own
# words then stand alone; anything else is a bug and propagates.
UNREADABLE = (Refused, ApiException, HTTPError)
# Above this many GPU nodes, free GPUs are not counted (a pod list per node).
MAX_NODES_COUNTED = 20


async def gpu_offer(
    pods: Sequence[Mapping[str, Any]], revision: str, kube: Kube, clusterwide: bool = True
) -> str | None:
    """What the nodes offer, read only while a pod of `revision` waits for a GPU."""
    for pod in pods:
        start = pod.get("start")
        if revision_of(pod) != revision or start is None:
            continue
        if phases.pod_start(start).phase == "WaitingForGPU":
            return await describe(kube, start["gpu"], clusterwide)


_cache: dict[str, tuple[float, list[dict[str, Any]], dict[str, int] | None]] = {}


async def describe(kube: Any, need: Mapping[str, Any], clusterwide: bool = True) -> str | None:
    """The offer summary from the cluster; None when the nodes cannot be read (no RBAC for
    them: the scheduler's own words then stand alone). A namespaced install (`clusterwide`
    False) may not list pods cluster-wide, so it says what the nodes have, not what is free,
    and never asks."""
    resource = need["resource"]
    cached = _cache.get(resource)
    if cached is None or time.monotonic() - cached[0] > CACHE_SECONDS:
        try:
            listed = await kube.get("/api/v1/nodes")
        except UNREADABLE as error:
            unreadable("nodes", error)
            return None
        nodes = [node_view(n) for n in (listed or {}).get("items", [])]
        gpu_nodes = [n for n in nodes if quantity(n["allocatable"].get(resource, 0)) > 0]
        used = await _used(kube, gpu_nodes, resource) if clusterwide else None
        cached = (time.monotonic(), nodes, used)
        _cache[resource] = cached
    return summary(need, cached[1], cached[2])


async def _used(kube: Any, nodes: list[dict[str, Any]], resource: str) -> dict[str, int] | None:
    if len(nodes) > MAX_NODES_COUNTED:
        return None
    used: dict[str, int] = {}
    try:
        for node in nodes:
            pods = await kube.get(
                "/api/v1/pods",
                fieldSelector=f"spec.nodeName={node['name']},"
                "status.phase!=Succeeded,status.phase!=Failed",
            )
            used[node["name"]] = sum(requested(p, resource) for p in (pods or {}).get("items", []))
    except UNREADABLE as error:  # a namespaced install cannot list pods cluster-wide
        unreadable("pods on GPU nodes", error)
        return None
    return used


def unreadable(what: str, error: Exception) -> None:
    """Forbidden is how a namespaced install is meant to run: said at debug. An error of the
    API server or the connection is worth a warning."""
    if isinstance(error, Refused) and error.code == 403:
        log.debug("%s not readable: %s", what, error)
    else:
        log.warning("%s not readable: %s", what, error)
