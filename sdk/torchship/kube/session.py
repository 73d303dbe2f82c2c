"""Credentials and requests: the standard kubeconfig (KUBECONFIG, ~/.kube/config, a context of
it) or, inside a pod, the service account; plus one request function that turns the API
server's Status answers into typed errors."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from torchship_operator import transport

from .errors import Conflict, Invalid, KubeError, NotFound

# What Kubernetes mounts into every pod: the service account's token, the cluster CA, the
# pod's namespace.
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class Session:
    api_client: client.ApiClient
    namespace: str  # the context's namespace, the pod's own, or "default"
    context: str | None = None
    kubeconfig: str | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        timeout: float = 30,
        **query: Any,
    ) -> Any:
        query_params = [(k, v) for k, v in query.items() if v is not None]
        status, _, data = transport.send(
            self.api_client, method, path, body, content_type, query_params, timeout
        )
        if not 200 <= status < 300:
            raise error_of(status, data)
        return json.loads(data) if data else None

    def close(self) -> None:
        self.api_client.close()


def error_of(status: int, data: bytes) -> KubeError:
    """The Status body's message (what kubectl prints), typed by its code."""
    try:
        doc = json.loads(data)
        message, reason = doc.get("message") or "", doc.get("reason")
    except ValueError:
        message, reason = data.decode(errors="replace").strip(), None
    kind = {404: NotFound, 422: Invalid, 409: Conflict}.get(status, KubeError)
    return kind(message or f"HTTP {status}", status, reason)


def has_kubeconfig(kubeconfig: str | None) -> bool:
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return True
    return Path(os.path.expanduser(config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)).exists()


def connect(
    context: str | None = None,
    kubeconfig: str | None = None,
    namespace: str | None = None,
    *,
    in_cluster: bool | None = None,
    service_account: Path = SERVICE_ACCOUNT,
) -> Session:
    """kubectl's order: a kubeconfig when there is one (or a context is named), else the pod's
    service account. `in_cluster=True` takes the service account whatever is there."""
    if in_cluster is None:
        in_cluster = not (context or has_kubeconfig(kubeconfig))
    if not in_cluster:
        api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        if namespace is None:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                active = next((c for c in contexts if c["name"] == context), active)
            namespace = (active or {}).get("context", {}).get("namespace")
    else:
        configuration = client.Configuration()
        config.incluster_config.InClusterConfigLoader(
            token_filename=str(service_account / "token"),
            cert_filename=str(service_account / "ca.crt"),
        ).load_and_set(configuration)
        api_client = client.ApiClient(configuration)
        if namespace is None and (service_account / "namespace").exists():
            namespace = (service_account / "namespace").read_text().strip()
    api_client.user_agent = "torchship-sdk"
    return Session(api_client, namespace or "default", context, kubeconfig)
