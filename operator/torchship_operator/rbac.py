"""The permissions the operator needs, and nothing more, as ClusterRole rules.

    python -m torchship_operator.rbac                 # a ClusterRole named torchship-operator
    python -m torchship_operator.rbac --gateway-api   # ... that may also write HTTPRoutes

The Helm chart renders the same rules, and tests/delivery/test_chart_permissions.py runs the
operator with the chart's ServiceAccount (cluster-wide and namespaced) through every feature,
with no request denied in the audit log: so this list is known to be enough.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from . import api

WATCH = ["get", "list", "watch"]
WRITE = ["create", "patch", "delete"]

RULES: list[dict[str, Any]] = [
    # The API: read ModelServices, write only their status.
    {"apiGroups": [api.GROUP], "resources": [api.PLURAL], "verbs": WATCH},
    {"apiGroups": [api.GROUP], "resources": [f"{api.PLURAL}/status"], "verbs": ["patch"]},
    # Owned children: server-side apply (patch; create when new), scale of older revisions,
    # prune.
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": [*WATCH, *WRITE]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": [*WATCH, *WRITE]},
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers"],
        "verbs": [*WATCH, *WRITE],
    },
    # The model cache: its claim and the Job that fills it (read on demand, not watched).
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", *WRITE]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", *WRITE]},
    # Pods: read, for the reasons in status (scheduling, image pulls, crashes); patched only to
    # mark an old pod that gives up its GPU (rollout.whenFull: MakeRoom, pod-deletion-cost).
    {"apiGroups": [""], "resources": ["pods"], "verbs": [*WATCH, "patch"]},
    # Events for `kubectl describe`.
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # kopf: discovers resources from CRDs and namespaces.
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": WATCH,
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": WATCH},
    # Nodes: read, to say what they offer a pod that waits for a GPU.
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
]


def lease_rules(lease_name: str = "torchship") -> list[dict[str, Any]]:
    """Leader election: the one Lease the replicas share, in the operator's own namespace
    (granted by a Role there, never cluster-wide). Creating cannot be limited to a name."""
    group = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"]}
    return [
        group | {"verbs": ["create"]},
        group | {"resourceNames": [lease_name], "verbs": ["get", "update"]},
    ]


# trafficRouting gateway-api: the HTTPRoute of each ModelService (read each pass, not watched).
# Granted only where asked for (the chart's gatewayAPI.enabled).
GATEWAY_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes"],
        "verbs": ["get", *WRITE],
    },
]


def cluster_role(name: str = "torchship-operator", gateway_api: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "torchship",
                "app.kubernetes.io/part-of": "torchship",
            },
        },
        "rules": RULES + (GATEWAY_RULES if gateway_api else []),
    }


def main() -> None:
    role = cluster_role(gateway_api="--gateway-api" in sys.argv[1:])
    sys.stdout.write(yaml.safe_dump(role, sort_keys=False))


if __name__ == "__main__":
    main()
