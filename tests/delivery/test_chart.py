"""The Helm chart, rendered and linted without a cluster: values, schema, names, labels, pod
security, least-privilege RBAC (cluster-wide and namespaced), CRDs in step with crds/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helmchart import CHART, ROOT, grants, helm, of_kind, render, template_text, value_args

NAMESPACED = {"watchNamespaces": ["team-a", "team-b"]}
VALUE_SETS = {
    "defaults": {},
    "namespaced": NAMESPACED,
    "namespaced-without-discovery": {**NAMESPACED, "rbac": {"discovery": False}},
    "leader-election": {"replicaCount": 2},
    "everything": {
        "replicaCount": 3,
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "regcred"}],
        "extraEnv": [{"name": "TORCHSHIP_EXTRA", "value": "1"}],
        "podAnnotations": {"example.com/a": "b"},
    },
    "no-crds": {"crds": {"install": False}},
}


def lint(values: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return helm("lint", "--strict", str(CHART), *value_args(values), check=False)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict_is_clean(name: str):
    proc = lint(VALUE_SETS[name])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    "values",
    [
        {"unknownValue": 1},
        {"image": {"repository": "x", "tag": 1}},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"watchNamespaces": ["a", "a"]},
        {"logLevel": "TRACE"},
        {"crds": {"install": "yes"}},
        {"metrics": {"port": 0}},
        {"rbac": {"wildcards": True}},
        {"crds": {"kopfPeering": False}},
        {"leaderElection": {"peeringName": "torchship"}},
        {"leaderElection": {"leaseName": "Not_A_Name"}},
    ],
    ids=repr,
)
def test_the_schema_rejects_what_values_yaml_does_not_define(values: dict[str, Any]):
    proc = helm(
        "template", "t", str(CHART), "--kube-version", "1.34.0", *value_args(values), check=False
    )
    assert proc.returncode != 0, f"accepted {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def _paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> tuple[set, set]:
    """Key paths of values.yaml and of the schema, both down to the schema's open objects."""
    props = schema.get("properties", {})
    value_paths = {f"{prefix}{k}" for k in values}
    schema_paths = {f"{prefix}{k}" for k in props}
    for key, sub in props.items():
        if "properties" in sub and isinstance(values.get(key), dict):
            v, s = _paths(values[key], sub, f"{prefix}{key}.")
            value_paths |= v
            schema_paths |= s
    return value_paths, schema_paths


def test_the_schema_and_values_yaml_name_the_same_values():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    value_paths, schema_paths = _paths(values, schema)
    schema_paths.discard("global")  # Helm's own, for subcharts
    assert value_paths == schema_paths, value_paths ^ schema_paths

    def closed(node: dict[str, Any], where: str) -> None:
        if "properties" in node:
            assert node.get("additionalProperties") is False, where
            for key, sub in node["properties"].items():
                closed(sub, f"{where}.{key}")

    closed(schema, "values")


def test_every_value_is_documented_by_a_comment_starting_with_its_name():
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    documented: set[str] = set()
    paths: list[str] = []
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        path = ".".join(k for _, k in stack)
        paths.append(path)
        j = i
        while j > 0 and lines[j - 1].strip().startswith("#"):
            j -= 1
        if j < i and lines[j].strip().startswith((f"# {path} ", f"# {key} ")):
            documented.add(path)

    def covered(path: str) -> bool:
        return any(path == d or path.startswith(d + ".") for d in documented)

    def explained(path: str) -> bool:
        """Documented, inside a documented value, or a group of explained values."""
        children = [p for p in paths if p.rsplit(".", 1)[0] == path and p != path]
        return covered(path) or (bool(children) and all(map(explained, children)))

    undocumented = [p for p in paths if not explained(p)]
    assert not undocumented, f"values without a comment starting with their name: {undocumented}"
    assert len(documented) > 30


def test_names_fit_in_63_characters_and_every_object_has_the_standard_labels():
    release = "a-release-name-long-enough-to-need-truncating-1234567"  # 53: the most Helm allows
    objects = render(VALUE_SETS["everything"], release=release)
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] != "CustomResourceDefinition":
            assert len(meta["name"]) <= 63, meta["name"]
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]), meta["name"]
        labels = meta["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert key in labels, (obj["kind"], meta["name"], key)
        assert all(len(str(v)) <= 63 for v in labels.values()), labels
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), names


def test_one_kind_per_template_file():
    for template in sorted((CHART / "templates").rglob("*.yaml")):
        text = template.read_text()
        kinds = set(re.findall(r"^kind: (\w+)", text, flags=re.M))
        assert len(kinds) <= 1, (template, kinds)


def deployment(values: dict[str, Any]) -> dict[str, Any]:
    (dep,) = of_kind(render(values), "Deployment")
    return dep


def env_of(dep: dict[str, Any]) -> dict[str, str]:
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_operator_pod_meets_the_restricted_pod_security_standard():
    spec = deployment({})["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}


def test_operator_settings_come_from_values():
    env = env_of(
        deployment(
            {
                "runtime": {"image": "registry.example.com/runtime:1.2.3"},
                "watchNamespaces": ["a", "b"],
                "logLevel": "DEBUG",
                "metrics": {"port": 9090},
                "health": {"port": 9091},
                "leaderElection": {"leaseName": "models"},
            }
        )
    )
    assert env["TORCHSHIP_RUNTIME_IMAGE"] == "registry.example.com/runtime:1.2.3"
    assert env["TORCHSHIP_NAMESPACES"] == "a,b"
    assert env["TORCHSHIP_LOG_LEVEL"] == "DEBUG"
    assert env["TORCHSHIP_METRICS_PORT"] == "9090"
    assert env["TORCHSHIP_HEALTH_PORT"] == "9091"
    assert env["TORCHSHIP_LEASE_NAME"] == "models"
    assert "TORCHSHIP_PEERING_NAME" not in env
    defaults = env_of(deployment({}))
    assert defaults["TORCHSHIP_RUNTIME_IMAGE"] == "ghcr.io/torchship/runtime:0.1.0"
    assert defaults["TORCHSHIP_NAMESPACES"] == ""
    assert defaults["TORCHSHIP_LEASE_NAME"] == "torchship"


def test_the_lease_namespace_is_the_pods_own_from_the_downward_api():
    (container,) = deployment({"replicaCount": 2})["spec"]["template"]["spec"]["containers"]
    (env,) = [e for e in container["env"] if e["name"] == "TORCHSHIP_LEASE_NAMESPACE"]
    assert env == {
        "name": "TORCHSHIP_LEASE_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    }


def test_the_settings_the_chart_sets_are_the_operators():
    from torchship_operator.settings import Settings

    env = env_of(deployment({}))
    fields = {f"TORCHSHIP_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    # What the downward API gives the pod (metadata.namespace): the release namespace.
    assert env["TORCHSHIP_LEASE_NAMESPACE"] is None
    env["TORCHSHIP_LEASE_NAMESPACE"] = "torchship-system"
    settings = Settings.from_env(env)
    assert settings.clusterwide and not settings.leader_election
    assert (settings.lease_name, settings.lease_namespace) == ("torchship", "torchship-system")


@pytest.mark.parametrize(
    ("values", "elected", "strategy"),
    [
        ({}, "false", "Recreate"),
        ({"leaderElection": {"enabled": True}}, "true", "RollingUpdate"),
        ({"replicaCount": 2}, "true", "RollingUpdate"),
        ({"replicaCount": 2, "leaderElection": {"enabled": False}}, "true", "RollingUpdate"),
    ],
)
def test_leader_election_is_on_whenever_more_than_one_replica_runs(values, elected, strategy):
    dep = deployment(values)
    assert env_of(dep)["TORCHSHIP_LEADER_ELECTION"] == elected
    assert dep["spec"]["strategy"]["type"] == strategy
    assert dep["spec"]["replicas"] == values.get("replicaCount", 1)


def test_image_from_app_version_tag_or_digest():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    def image(values):
        return deployment(values)["spec"]["template"]["spec"]["containers"][0]["image"]

    assert image({}) == f"ghcr.io/torchship/operator:{chart['appVersion']}"
    assert image({"image": {"tag": "dev"}}) == "ghcr.io/torchship/operator:dev"
    digest = "sha256:" + "0" * 64
    assert image({"image": {"digest": digest}}) == f"ghcr.io/torchship/operator@{digest}"


def test_pod_values_reach_the_operator_pod():
    values = {
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app": "torchship"}},
                        },
                    }
                ]
            }
        },
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops",
                         "effect": "NoSchedule"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                      "limits": {"memory": "1Gi"}},
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "ml"},
    }  # fmt: skip
    pod = deployment(values)["spec"]["template"]
    spec, (container,) = pod["spec"], pod["spec"]["containers"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["affinity"] == values["affinity"]
    assert spec["tolerations"] == values["tolerations"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert container["resources"] == values["resources"]
    assert env_of(deployment(values))["HTTPS_PROXY"] == "http://proxy:3128"
    assert pod["metadata"]["annotations"]["example.com/a"] == "b"
    assert pod["metadata"]["labels"]["team"] == "ml"
    # Left out, none of them is rendered.
    bare = deployment({})["spec"]["template"]["spec"]
    assert not {"priorityClassName", "affinity", "tolerations", "imagePullSecrets"} & set(bare)
    assert bare["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_service_monitor_settings():
    values = {
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "interval": "15s",
                "scrapeTimeout": "5s",
                "labels": {"release": "prometheus"},
            }
        }
    }
    (monitor,) = of_kind(render(values), "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"], endpoint["path"]) == (
        "15s",
        "5s",
        "/metrics",
    )
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["torchship-system"]}


def test_metrics_service_and_service_monitor():
    objects = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    (service,) = of_kind(objects, "Service")
    (dep,) = of_kind(objects, "Deployment")
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert not of_kind(render({}), "ServiceMonitor")
    proc = helm(
        "template", "t", str(CHART), "--kube-version", "1.34.0",
        *value_args({"metrics": {"service": {"enabled": False},
                                 "serviceMonitor": {"enabled": True}}}),
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "needs metrics.service.enabled" in proc.stderr


# -- RBAC --------------------------------------------------------------------------------------


def rbac_objects(values):
    objects = render(values)
    return {
        kind: of_kind(objects, kind)
        for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    }


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rbac_has_no_wildcards(name: str):
    for kind, objects in rbac_objects(VALUE_SETS[name]).items():
        for obj in objects:
            for rule in obj.get("rules", []):
                for field in (
                    "apiGroups",
                    "resources",
                    "verbs",
                    "resourceNames",
                    "nonResourceURLs",
                ):
                    assert not any("*" in item for item in rule.get(field, [])), (kind, rule)


def test_cluster_wide_rbac_is_exactly_the_operators_documented_rules():
    from torchship_operator import rbac

    objects = rbac_objects({})
    (role,) = objects["ClusterRole"]
    (binding,) = objects["ClusterRoleBinding"]
    assert not objects["Role"] and not objects["RoleBinding"]
    assert grants(role["rules"]) == grants(rbac.RULES)
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    (account,) = of_kind(render({}), "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


def test_httproutes_are_granted_only_with_gateway_api_enabled():
    from torchship_operator import rbac

    (role,) = rbac_objects({"gatewayAPI": {"enabled": True}})["ClusterRole"]
    assert grants(role["rules"]) == grants(rbac.RULES + rbac.GATEWAY_RULES)
    (role,) = rbac_objects({})["ClusterRole"]
    assert not any(group == "gateway.networking.k8s.io" for group, _, _ in grants(role["rules"]))


def test_the_operator_cannot_write_a_modelservice_spec_nor_read_secrets():
    (role,) = rbac_objects({})["ClusterRole"]
    granted = grants(role["rules"])
    for verb in ("create", "update", "patch", "delete"):
        assert ("torchship.dev", "modelservices", verb) not in granted
    assert not any(resource == "secrets" for _, resource, _ in granted)


def test_namespaced_install_grants_modelservice_access_only_in_its_namespaces():
    from torchship_operator import rbac

    objects = rbac_objects(NAMESPACED)
    roles = {r["metadata"]["namespace"]: r for r in objects["Role"]}
    bindings = {b["metadata"]["namespace"]: b for b in objects["RoleBinding"]}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for namespace, binding in bindings.items():
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[namespace]["metadata"]["name"],
        }
        assert binding["subjects"][0]["namespace"] == "torchship-system"
    # Only the cluster-scoped reads (kopf's, and the nodes' GPUs): no ModelService, no
    # children, no Lease.
    (cluster_role,) = objects["ClusterRole"]
    cluster_grants = grants(cluster_role["rules"])
    assert {group for group, _, _ in cluster_grants} == {"apiextensions.k8s.io", ""}
    assert {resource for _, resource, _ in cluster_grants} == {
        "customresourcedefinitions",
        "namespaces",
        "nodes",
    }
    assert {verb for _, _, verb in cluster_grants} == {"get", "list", "watch"}
    # Together they are the documented rules.
    namespaced = grants(roles["team-a"]["rules"]) | cluster_grants
    assert namespaced == grants(rbac.RULES)
    # And nothing cluster-scoped at all without rbac.discovery.
    bare = rbac_objects({**NAMESPACED, "rbac": {"discovery": False}})
    assert not bare["ClusterRole"] and not bare["ClusterRoleBinding"]
    assert len(bare["Role"]) == 2


def test_rbac_create_false_renders_no_rbac():
    objects = rbac_objects({"rbac": {"create": False}})
    assert not any(objects.values())
    objects = rbac_objects({"rbac": {"create": False}, "replicaCount": 2})
    assert not any(objects.values())


def leader_election_rbac(values):
    """The leader-election Role and RoleBinding, and the other RBAC objects."""
    objects = rbac_objects(values)
    ours = {"Role": [], "RoleBinding": []}
    for kind in ours:
        for obj in list(objects[kind]):
            if obj["metadata"]["name"] == "torchship-leader-election":
                ours[kind].append(obj)
                objects[kind].remove(obj)
    return ours, objects


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 2},
        {"leaderElection": {"enabled": True}},
        {"replicaCount": 3, "leaderElection": {"leaseName": "models"}},
        {**NAMESPACED, "leaderElection": {"enabled": True, "leaseName": "models"}},
        {"watchNamespaces": ["torchship-system"], "replicaCount": 2, "rbac": {"discovery": False}},
    ],
    ids=repr,
)
def test_leader_election_is_granted_one_lease_in_the_release_namespace_only(values):
    from torchship_operator import rbac

    lease = values.get("leaderElection", {}).get("leaseName", "torchship")
    ours, others = leader_election_rbac(values)
    (role,), (binding,) = ours["Role"], ours["RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "torchship-system"
    assert role["rules"] == rbac.lease_rules(lease)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    (account,) = of_kind(render(values), "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": "torchship-system",
        }
    ]
    assert role["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    # Nothing else grants a Lease, nor anything of kopf's peering; the rest is unchanged.
    for objs in others.values():
        for obj in objs:
            granted = grants(obj.get("rules", []))
            assert not any(group == "coordination.k8s.io" for group, _, _ in granted), obj
            assert not any(group == "kopf.dev" for group, _, _ in granted), obj
    if not values.get("watchNamespaces"):
        (cluster_role,) = others["ClusterRole"]
        assert grants(cluster_role["rules"]) == grants(rbac.RULES)


@pytest.mark.parametrize(
    "values", [{}, NAMESPACED, {"leaderElection": {"enabled": False, "leaseName": "models"}}]
)
def test_one_replica_without_leader_election_has_no_lease_role(values):
    ours, others = leader_election_rbac(values)
    assert not ours["Role"] and not ours["RoleBinding"]
    assert all(o["metadata"].get("namespace") != "torchship-system" for o in others["Role"])


# -- CRDs --------------------------------------------------------------------------------------


def _crd_docs(directory: Path) -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["metadata"]["name"]] = doc
    return docs


def test_the_chart_carries_the_crds_of_crds_dir():
    proc = subprocess.run(
        [str(ROOT / "hack" / "sync-chart-crds.sh"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "crds").glob("*.yaml")
    )


def test_the_sync_check_fails_on_a_stale_copy(tmp_path: Path):
    for part in ("crds", "hack", "charts/torchship/files"):
        shutil.copytree(ROOT / part, tmp_path / part)
    script = tmp_path / "hack" / "sync-chart-crds.sh"
    target = tmp_path / "charts/torchship/files/crds/torchship.dev_modelservices.yaml"
    target.write_text(target.read_text() + "# edited\n")
    stale = subprocess.run([str(script), "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "out of date" in stale.stderr
    subprocess.run([str(script)], check=True, capture_output=True)
    assert target.read_text() == (tmp_path / "crds/torchship.dev_modelservices.yaml").read_text()
    (tmp_path / "crds" / "new.yaml").write_text("{}\n")
    added = subprocess.run([str(script), "--check"], capture_output=True, text=True)
    assert added.returncode == 1


def test_rendered_crds_are_those_of_crds_dir_kept_on_uninstall():
    expected = _crd_docs(ROOT / "crds")
    rendered = {o["metadata"]["name"]: o for o in of_kind(render({}), "CustomResourceDefinition")}
    assert set(rendered) == set(expected)
    for name, crd in rendered.items():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert crd["metadata"]["labels"].items() >= expected[name]["metadata"]["labels"].items()
        strip = lambda d: {k: v for k, v in d.items() if k != "metadata"}  # noqa: E731
        assert strip(crd) == strip(expected[name]), name


def test_crd_values():
    def crds(values):
        return sorted(
            o["metadata"]["name"] for o in of_kind(render(values), "CustomResourceDefinition")
        )

    assert crds({}) == ["modelservices.torchship.dev"]
    assert crds({"replicaCount": 2}) == ["modelservices.torchship.dev"]  # no kopf peering
    assert crds({"crds": {"install": False}}) == []
    kept = of_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert all(
        "helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {}) for c in kept
    )


def test_a_missing_crd_file_fails_the_render(tmp_path: Path):
    chart = tmp_path / "torchship"
    shutil.copytree(CHART, chart)
    (chart / "files" / "crds" / "torchship.dev_modelservices.yaml").unlink()
    proc = helm("template", "t", str(chart), "--kube-version", "1.34.0", check=False)
    assert proc.returncode != 0 and "sync-chart-crds.sh" in proc.stderr


def test_template_output_is_plain_yaml_for_kubectl():
    text = template_text({})
    assert "{{" not in text and "<no value>" not in text


def test_the_packaged_chart_carries_its_crds(tmp_path: Path):
    helm("package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("torchship-*.tgz")
    text = helm("template", "t", str(package), "--kube-version", "1.34.0").stdout
    names = {
        o["metadata"]["name"]
        for o in yaml.safe_load_all(text)
        if o and o["kind"] == "CustomResourceDefinition"
    }
    assert names == set(_crd_docs(ROOT / "crds"))
