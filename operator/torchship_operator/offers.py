"""What the nodes offer a pod that waits for a GPU: "needs 1 nvidia.com/gpu on
nvidia.com/gpu.product=NVIDIA-B300; nodes with that product: none; NVIDIA-H100-80GB-HBM3:
2 nodes, 0 free". Pure: reconcilers/gpu_offer.py reads the nodes (and the pods on the GPU
nodes, for what is free) and keeps the answer a little while.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PRODUCT_LABEL = "nvidia.com/gpu.product"
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
