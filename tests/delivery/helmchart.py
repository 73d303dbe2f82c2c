"""The Helm chart from tests: render it, and install what its ServiceAccount may do.

The delivery tests reuse `install_rbac` and `service_account_kubeconfig` to run the operator
with exactly the chart's credentials:

    import helmchart

    sa = helmchart.install_rbac(control_plane, namespace, release="op")
    kubeconfig = helmchart.service_account_kubeconfig(control_plane, namespace, sa, tmp_path)
    ...  # run the operator with KUBECONFIG=kubeconfig
    helmchart.remove_rbac(control_plane, namespace, release="op")
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from harness import run_tool  # hack/, on pytest's pythonpath

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "torchship"
# `helm template` has no cluster to ask; the test cluster's minor version.
KUBE_VERSION = "1.34.0"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def helm_bin() -> Path:
    """The helm binary built with the local control plane's binaries (cached)."""
    import testenv  # hack/, on pytest's pythonpath

    return testenv.build_binaries() / "helm"


def helm(
    *args: str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    return run_tool([str(helm_bin()), *args], env=env, check=check, timeout=timeout)


def value_args(values: Mapping[str, Any] | None, workdir: Path | None = None) -> list[str]:
    """`--values FILE` for a dict of values (written next to the chart's temp files)."""
    if not values:
        return []
    import tempfile

    directory = workdir or Path(tempfile.mkdtemp(prefix="torchship-values-"))
    path = directory / f"values-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return ["--values", str(path)]


def template_text(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "torchship",
    namespace: str = "torchship-system",
    chart: Path = CHART,
    extra: Iterable[str] = (),
) -> str:
    return helm(
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *value_args(values),
        *extra,
    ).stdout


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "torchship",
    namespace: str = "torchship-system",
    chart: Path = CHART,
) -> list[dict[str, Any]]:
    """The chart's objects as dicts, in Helm's install order."""
    text = template_text(values, release=release, namespace=namespace, chart=chart)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(objects: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def grants(rules: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """RBAC rules as (apiGroup, resource, verb) triples, to compare them whatever their grouping."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def install_rbac(
    control_plane,
    namespace: str,
    values: Mapping[str, Any] | None = None,
    release: str | None = None,
) -> str:
    """Install the chart's ServiceAccount and RBAC (no CRDs, no Deployment) as the release
    `release` in `namespace`; return the ServiceAccount's name. Cluster-scoped objects are
    named after the release, so each call gets its own (a random release name by default)."""
    release = release or f"ts-{uuid.uuid4().hex[:8]}"
    merged = dict(values or {})
    merged["crds"] = {**dict(merged.get("crds", {})), "install": False}
    objects = render(merged, release=release, namespace=namespace)
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=torchship-tests", "-f", "-",
        input=yaml.safe_dump_all(rbac),
    )  # fmt: skip
    (account,) = [o for o in rbac if o["kind"] == "ServiceAccount"]
    return account["metadata"]["name"]


def remove_rbac(
    control_plane, namespace: str, values: Mapping[str, Any] | None = None, release: str = ""
) -> None:
    """Delete what `install_rbac` created with the same arguments."""
    merged = dict(values or {})
    merged["crds"] = {**dict(merged.get("crds", {})), "install": False}
    objects = render(merged, release=release, namespace=namespace)
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    control_plane.kubectl(
        "delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(rbac)
    )


def service_account_kubeconfig(
    control_plane, namespace: str, service_account: str, directory: Path, duration: str = "2h"
) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a token from TokenRequest,
    exactly as the operator's pod would."""
    token = control_plane.kubectl(
        "create", "token", service_account, "--namespace", namespace, f"--duration={duration}"
    ).stdout.strip()
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"]).read_bytes()
        cluster = {
            "server": cluster["server"],
            "certificate-authority-data": base64.b64encode(ca).decode(),
        }
    user = f"system:serviceaccount:{namespace}:{service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "testenv", "user": user}}],
        "current-context": "sa",
    }
    path = directory / f"kubeconfig-{namespace}-{service_account}"
    path.write_text(json.dumps(config))
    return path


def can_i(control_plane, user: str, *args: str) -> bool:
    """`kubectl auth can-i` as `user` (impersonated by the admin): a SubjectAccessReview."""
    proc = control_plane.kubectl("auth", "can-i", f"--as={user}", *args, check=False)
    answer = proc.stdout.strip()
    if answer not in ("yes", "no"):
        raise AssertionError(f"kubectl auth can-i {' '.join(args)}: {proc.stderr}{answer}")
    return answer == "yes"
