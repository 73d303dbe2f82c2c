"""The operator's ClusterRole: every resource it writes or watches, with the verbs it uses."""

from __future__ import annotations

from torchship_operator import kube, rbac


def test_rbac_rules_cover_what_the_operator_writes_and_watches():
    granted = {
        (group, resource, verb)
        for rule in rbac.cluster_role()["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for path in kube.PATHS.values():
        # /apis/<group>/<version>/namespaces/{namespace}/<resource> or /api/v1/...
        parts = path.strip("/").split("/")
        group = parts[1] if parts[0] == "apis" else ""
        # The model cache's claims and Jobs are read when needed, never watched.
        watched = parts[-1] not in ("persistentvolumeclaims", "jobs")
        for verb in ("get", "list", *(["watch"] if watched else []), "create", "patch", "delete"):
            assert (group, parts[-1], verb) in granted, (group, parts[-1], verb)
        assert watched or (group, parts[-1], "watch") not in granted
    assert ("torchship.dev", "modelservices/status", "patch") in granted
    assert ("", "pods", "watch") in granted
    assert ("kopf.dev", "clusterkopfpeerings", "create") in granted
