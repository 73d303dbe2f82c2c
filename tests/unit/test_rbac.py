"""The operator's ClusterRole: every resource it writes or watches, with the verbs it uses."""

from __future__ import annotations

from torchship_operator import kube, rbac


def test_rbac_rules_cover_what_the_operator_writes_and_watches():
    granted = {
        (group, resource, verb)
        for rule in rbac.cluster_role(gateway_api=True)["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for path in kube.PATHS.values():
        # /apis/<group>/<version>/namespaces/{namespace}/<resource> or /api/v1/...
        parts = path.strip("/").split("/")
        group = parts[1] if parts[0] == "apis" else ""
        # The model cache's claims and Jobs are read when needed, never watched; an HTTPRoute
        # is read by name.
        watched = parts[-1] not in ("persistentvolumeclaims", "jobs", "httproutes")
        listed = parts[-1] != "httproutes"
        reads = ["get", *(["list"] if listed else []), *(["watch"] if watched else [])]
        for verb in (*reads, "create", "patch", "delete"):
            assert (group, parts[-1], verb) in granted, (group, parts[-1], verb)
        assert watched or (group, parts[-1], "watch") not in granted
    assert ("torchship.dev", "modelservices/status", "patch") in granted
    assert ("", "pods", "watch") in granted
    assert not any(group == "kopf.dev" for group, _, _ in granted)


def test_the_lease_is_granted_by_name_except_its_creation():
    create, by_name = rbac.lease_rules("models")
    assert create == {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["create"],
    }
    assert by_name["resourceNames"] == ["models"] and by_name["verbs"] == ["get", "update"]
    # Nothing of it is cluster-wide: a Role in the operator's namespace grants it.
    assert not any("leases" in rule["resources"] for rule in rbac.RULES)


def test_httproutes_are_granted_only_when_asked_for():
    def groups(role: dict) -> set[str]:
        return {g for rule in role["rules"] for g in rule["apiGroups"]}

    assert "gateway.networking.k8s.io" not in groups(rbac.cluster_role())
    assert "gateway.networking.k8s.io" in groups(rbac.cluster_role(gateway_api=True))
