"""What the nodes offer a pod that waits for a GPU: "needs 1 nvidia.com/gpu on
nvidia.com/gpu.product=NVIDIA-B300; nodes with that product: none; NVIDIA-H100-80GB-HBM3:
2 nodes, 0 free". `summary` is pure; `describe` reads the nodes (and the pods on the GPU nodes,
for what is free) and keeps the answer a little while, so a burst of reconciles reads once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .kube import Refused

log = logging.getLogger("torchship.offers")

PRODUCT_LABEL = "nvidia.com/gpu.product"
CACHE_SECONDS = 15.0
# Reads that can fail for a reason outside the operator: no RBAC for them (a namespaced install
# has no cluster-wide rules), the API server's error or a lost connection. The scheduler's own
# words then stand alone; anything else is a bug and propagates.
UNREADABLE = (Refused, ApiException, HTTPError)

# Above this many GPU nodes, free GPUs are not counted (a pod list per node).
MAX_NODES_COUNTED = 20
MAX_GROUPS = 6


def quantity(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def head(need: Mapping[str, Any]) -> str:
    selector = need.get("selector") or {}
    where = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    return f"needs {need['count']} {need['resource']}" + (f" on {where}" if where else "")


def _group(nodes: Sequence[Mapping[str, Any]], resource: str, used: Mapping[str, int] | None):
    count = len(nodes)
    text = f"{count} node{'s' if count != 1 else ''}"
    allocatable = [quantity(n["allocatable"].get(resource, 0)) for n in nodes]
    if used is None:
        return f"{text}, {sum(allocatable)} {resource} allocatable"
    free = sum(max(0, a - used.get(n["name"], 0)) for a, n in zip(allocatable, nodes, strict=True))
    return f"{text}, {free} free"


def summary(
    need: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    used: Mapping[str, int] | None,
) -> str:
    """`nodes`: {name, labels, allocatable, unschedulable}; `used`: GPUs requested per node by
    the pods there (None when unknown)."""
    resource = need["resource"]
    selector = need.get("selector") or {}
    offering = [
        n
        for n in nodes
        if quantity(n["allocatable"].get(resource, 0)) > 0 and not n.get("unschedulable")
    ]
    parts = [head(need)]
    if not offering:
        parts.append(f"no node offers {resource}")
        return "; ".join(parts)
    matching = [n for n in offering if all(n["labels"].get(k) == v for k, v in selector.items())]
    if selector:
        noun = "that product" if set(selector) == {PRODUCT_LABEL} else "those labels"
        parts.append(
            f"nodes with {noun}: " + (_group(matching, resource, used) if matching else "none")
        )
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for node in offering:
        if node in matching and selector:
            continue
        groups.setdefault(node["labels"].get(PRODUCT_LABEL, "other"), []).append(node)
    for product in sorted(groups)[:MAX_GROUPS]:
        parts.append(f"{product}: {_group(groups[product], resource, used)}")
    return "; ".join(parts)


def node_view(node: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": node["metadata"]["name"],
        "labels": node["metadata"].get("labels") or {},
        "allocatable": (node.get("status") or {}).get("allocatable") or {},
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
    }


def requested(pod: Mapping[str, Any], resource: str) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers", []):
        limits = (container.get("resources") or {}).get("limits") or {}
        total += quantity(limits.get(resource, 0))
    return total


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
