"""Pure rendering: a ModelService in, the Kubernetes objects it needs out, as plain dicts.

No client here. Each distinct pod-relevant spec is a *revision*: one Deployment named after the
ModelService and a short stable hash of that spec. One Service selects the pods of every
revision, so traffic follows the replica split between revisions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import api, cache_mount
from .vocabulary import LABEL_MANAGED_BY, LABEL_MS, LABEL_REVISION, LABEL_VERSION, MANAGED_BY

RUNTIME_PORT = 8080
RUNTIME_GRPC_PORT = 8081
CACHE_DIR = "/var/cache/torchship"
PVC_ROOT = "/mnt/models"
AUTH_DIR = "/var/run/secrets/torchship/auth"
TLS_DIR = "/var/run/secrets/torchship/tls"
# Where the runtime writes why it could not start (its default), for `kubectl describe pod`.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
RUNTIME_UID = 1000
# Work in flight after the drain period: a forward pass, a response being written.
SHUTDOWN_SLACK_SECONDS = 20

# On each revision's Deployment: the spec fields that made it, as JSON, so that a rollback can
# set the ModelService's spec back to exactly that revision (`kubectl torchship rollback`).
SPEC_ANNOTATION = "torchship.dev/spec"
# The spec fields that shape the pods: a change to any of them is a new revision.
REVISION_FIELDS = frozenset({"model", "runtime", "gpu", "service", "tls", "auth"})
# Optional revision fields added after the first release (see revision_hash).
LATER_FIELDS = (("runtime", "compile"), ("model", "cache"))


@dataclass(frozen=True)
class Owner:
    """What rendering needs to know about the ModelService object itself."""

    name: str
    namespace: str
    uid: str

    @property
    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def label_value(text: str) -> str:
    """`text` made a valid label value (<= 63 chars of [A-Za-z0-9._-], alphanumeric ends)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63].strip("-_.")


def common_labels(name: str, spec: api.ModelServiceSpec) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "torchship-runtime",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "torchship",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_MS: name,
    }
    if spec.model.version and (version := label_value(spec.model.version)):
        labels[LABEL_VERSION] = version
    return labels


def selector(name: str) -> dict[str, str]:
    """Selects the pods of every revision of one ModelService."""
    return {LABEL_MS: name}


def service_selector(
    name: str, serving: Sequence[str] = (), running: Iterable[str] = ()
) -> dict[str, str]:
    """The pods that receive traffic. Usually every revision's: replica counts split the
    traffic. When a revision runs pods that must not serve yet (a blue-green preview, an aborted
    target still draining), the Service narrows to the one serving revision."""
    if len(serving) == 1 and not set(running) <= set(serving):
        return {LABEL_MS: name, LABEL_REVISION: serving[0]}
    return selector(name)


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(name).items())


def revision_hash(spec: api.ModelServiceSpec, image: str) -> str:
    """A short stable hash of everything that shapes the pods (not replicas or rollout)."""
    relevant = spec.model_dump(mode="json", by_alias=True, include=set(REVISION_FIELDS))
    # A field added to the API hashes only when set: an upgrade leaves revisions as they are.
    for section, name in LATER_FIELDS:
        if relevant.get(section, {}).get(name, ...) is None:
            del relevant[section][name]
    relevant["image"] = image
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def revision_spec(spec: api.ModelServiceSpec) -> str:
    """The revision's spec fields as compact JSON (what SPEC_ANNOTATION holds)."""
    fields = spec.model_dump(
        mode="json", by_alias=True, include=set(REVISION_FIELDS), exclude_none=True
    )
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def deployment_name(name: str, revision: str) -> str:
    return f"{name}-{revision}"


def service_host(owner: Owner) -> str:
    return f"{owner.name}.{owner.namespace}.svc.cluster.local"


def service_url(owner: Owner, spec: api.ModelServiceSpec) -> str:
    scheme = "https" if spec.tls else "http"
    return f"{scheme}://{service_host(owner)}:{spec.service.port}"


def grpc_address(owner: Owner, spec: api.ModelServiceSpec) -> str | None:
    """host:port of the gRPC Service port, None when gRPC is off."""
    return f"{service_host(owner)}:{spec.service.grpc_port}" if spec.service.grpc_port else None


def runtime_env(name: str, spec: api.ModelServiceSpec) -> list[dict[str, Any]]:
    model, runtime = spec.model, spec.runtime
    values: dict[str, str] = {
        "TORCHSHIP_MODEL_URI": model.uri,
        "TORCHSHIP_MODEL_FORMAT": model.format,
        "TORCHSHIP_MODEL_NAME": model.name or name,
        "TORCHSHIP_MODEL_VERSION": model.version or "",
        "TORCHSHIP_DEVICE": runtime.device,
        "TORCHSHIP_DTYPE": runtime.dtype,
        "TORCHSHIP_QUANTIZE": runtime.quantize,
        "TORCHSHIP_BATCHING": "true" if runtime.batching.enabled else "false",
        "TORCHSHIP_MAX_BATCH_SIZE": str(runtime.batching.max_batch_size),
        "TORCHSHIP_MAX_DELAY_MS": f"{runtime.batching.max_delay_ms:g}",
        "TORCHSHIP_PORT": str(RUNTIME_PORT),
        "TORCHSHIP_GRPC_PORT": str(RUNTIME_GRPC_PORT if spec.service.grpc_port else 0),
        "TORCHSHIP_MODEL_CACHE_DIR": CACHE_DIR,
        "TORCHSHIP_PVC_ROOT": PVC_ROOT,
        "TORCHSHIP_DRAIN_SECONDS": str(runtime.drain_seconds),
    }
    if model.entrypoint:
        values["TORCHSHIP_MODEL_ENTRYPOINT"] = model.entrypoint
    if runtime.compile:
        values["TORCHSHIP_COMPILE_MODE"] = runtime.compile.mode
        # Compiled kernels on the pod's cache volume: a restarted container finds them there
        # (and, with model.cache, the next replica: on the claim, below).
        values["TORCHINDUCTOR_CACHE_DIR"] = f"{CACHE_DIR}/inductor"
        values["TRITON_CACHE_DIR"] = f"{CACHE_DIR}/triton"
        if runtime.compile.ahead_of_time:
            values["TORCHSHIP_COMPILE_AHEAD_OF_TIME"] = "true"
            values["TORCHSHIP_COMPILE_CACHE_DIR"] = f"{CACHE_DIR}/aot"
    if model.cache:
        values |= cache_mount.pod_env(spec)
    for key, tensors in (("INPUTS", model.inputs), ("OUTPUTS", model.outputs)):
        if tensors:
            values[f"TORCHSHIP_MODEL_{key}"] = json.dumps(
                [t.model_dump(mode="json") for t in tensors], separators=(",", ":")
            )
    if spec.tls:
        values["TORCHSHIP_TLS_CERT_FILE"] = f"{TLS_DIR}/tls.crt"
        values["TORCHSHIP_TLS_KEY_FILE"] = f"{TLS_DIR}/tls.key"
    if spec.auth:
        values["TORCHSHIP_AUTH_TOKEN_FILE"] = f"{AUTH_DIR}/{spec.auth.token_secret_ref.key}"
    user = [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in runtime.env or []]
    # A user's variable of the same name replaces ours (a list-map allows each name once).
    overridden = {e["name"] for e in user}
    # An empty value is stored as no value: rendering it so keeps live and desired equal.
    ours = [
        {"name": k, "value": v} if v else {"name": k}
        for k, v in values.items()
        if k not in overridden
    ]
    return ours + [{k: v for k, v in e.items() if v != ""} for e in user]


REMOTE_SCHEMES = ("http://", "https://", "s3://")


def fetch_container(spec: api.ModelServiceSpec, container: dict[str, Any]) -> dict[str, Any] | None:
    """The init container that downloads a remote model into the cache volume before the
    runtime starts (`torchship-runtime fetch`, the runtime's own fetch code): the download is a
    phase of its own in the pod's status, with its start and end times. Same image, env, mounts
    and security as the runtime; no GPU (it only writes files)."""
    if not spec.model.uri.startswith(REMOTE_SCHEMES):
        return None
    fetch = {
        k: container[k]
        for k in ("image", "env", "securityContext", "volumeMounts", "terminationMessagePath")
        if k in container
    }
    # Its report (JSON: bytes, seconds) is its termination message, for the operator's Event.
    fetch |= {"name": "fetch", "args": ["fetch"], "terminationMessagePolicy": "File"}
    limits = {k: v for k, v in (container.get("resources") or {}).items()}
    gpu = spec.gpu.resource_name if spec.gpu else None
    trimmed = {
        part: {k: v for k, v in values.items() if k != gpu}
        for part, values in limits.items()
        if any(k != gpu for k in values)
    }
    if trimmed:
        fetch["resources"] = trimmed
    return fetch


def pvc_claim(uri: str) -> str | None:
    if not uri.startswith("pvc://"):
        return None
    return uri.removeprefix("pvc://").split("/", 1)[0]


def resources(spec: api.ModelServiceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.runtime.resources:
        for part in ("requests", "limits"):
            if values := getattr(spec.runtime.resources, part):
                out[part] = {k: str(v) for k, v in values.items()}
    if spec.gpu and spec.gpu.count > 0:
        out.setdefault("limits", {})[spec.gpu.resource_name] = str(spec.gpu.count)
    return out


def scheduling(spec: api.ModelServiceSpec) -> dict[str, Any]:
    gpu = spec.gpu
    if gpu is None:
        return {}
    out: dict[str, Any] = {}
    node_selector = dict(gpu.node_selector or {})
    if gpu.product:
        node_selector["nvidia.com/gpu.product"] = gpu.product
    if node_selector:
        out["nodeSelector"] = node_selector
    if gpu.tolerations is not None:
        out["tolerations"] = [dict(t) for t in gpu.tolerations]
    elif gpu.count > 0:
        out["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    if gpu.runtime_class_name:
        out["runtimeClassName"] = gpu.runtime_class_name
    return out


def probe(path: str, period: int, failures: int, tls: bool) -> dict[str, Any]:
    # Over TLS the kubelet speaks HTTPS (and checks no certificate).
    get = {"path": path, "port": "http", **({"scheme": "HTTPS"} if tls else {})}
    return {
        "httpGet": get,
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def pod_volumes(name: str, spec: api.ModelServiceSpec) -> tuple[list[dict], list[dict]]:
    """The pod's volumes and the runtime container's mounts of them."""
    mounts = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        # torch DataLoader workers and IPC need more than the container default of 64 MiB.
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "cache", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if claim := pvc_claim(spec.model.uri):
        mounts.append({"name": "model", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
        volumes.append(
            {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    if spec.model.cache:
        volume, claim_mounts = cache_mount.pod_volume(name, spec)
        volumes.append(volume)
        mounts.extend(claim_mounts)
    if spec.tls:
        # A whole-Secret volume (no subPath): the kubelet swaps in a renewed certificate.
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "tls",
                "secret": {
                    "secretName": spec.tls.secret_ref.name,
                    "items": [{"key": k, "path": k} for k in ("tls.crt", "tls.key")],
                    "defaultMode": 0o440,
                },
            }
        )
    if spec.auth:
        mounts.append({"name": "auth", "mountPath": AUTH_DIR, "readOnly": True})
        ref = spec.auth.token_secret_ref
        volumes.append(
            {
                "name": "auth",
                "secret": {
                    "secretName": ref.name,
                    "items": [{"key": ref.key, "path": ref.key}],
                    "defaultMode": 0o440,
                },
            }
        )
    return volumes, mounts


def pod_spec(name: str, spec: api.ModelServiceSpec, image: str) -> dict[str, Any]:
    volumes, mounts = pod_volumes(name, spec)
    ports = [{"name": "http", "containerPort": RUNTIME_PORT, "protocol": "TCP"}]
    if spec.service.grpc_port:
        ports.append({"name": "grpc", "containerPort": RUNTIME_GRPC_PORT, "protocol": "TCP"})
    tls = spec.tls is not None
    container: dict[str, Any] = {
        "name": "runtime",
        "image": image,
        "ports": ports,
        "env": runtime_env(name, spec),
        # Passes once the model is loaded (Loading -> WarmingUp); allows 10 minutes for a load
        # and the warm-up's compile before liveness counts. The download is the fetch's.
        "startupProbe": probe("/v2/health/started", period=1, failures=600, tls=tls),
        # The kubelet probes readiness once when the startup probe passes, mid warm-up, and
        # then every period: 1 s lets a warmed pod serve within a second, not five (cold
        # starts, docs/benchmarks.md). Five misses before a ready pod is taken out of service.
        "readinessProbe": probe("/v2/health/ready", period=1, failures=5, tls=tls),
        "livenessProbe": probe("/v2/health/live", period=10, failures=3, tls=tls),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        # A crash before the runtime could write its reason still leaves the log's tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if res := resources(spec):
        container["resources"] = res
    fetch = fetch_container(spec, container)
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": spec.runtime.drain_seconds + SHUTDOWN_SLACK_SECONDS,
        **scheduling(spec),
        **({"initContainers": [fetch]} if fetch else {}),
        "containers": [container],
        "volumes": volumes,
    }


def render_deployment(
    owner: Owner, spec: api.ModelServiceSpec, revision: str, replicas: int, image: str
) -> dict[str, Any]:
    """The Deployment of one revision (its pod template depends only on the revision's spec)."""
    labels = {**common_labels(owner.name, spec), LABEL_REVISION: revision}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(owner.name, revision),
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": {SPEC_ANNOTATION: revision_spec(spec)},
            "ownerReferences": [owner.reference],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {LABEL_MS: owner.name, LABEL_REVISION: revision}},
            "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
            "revisionHistoryLimit": 1,
            # A revision's template never changes; scaling is the operator's to do.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": pod_spec(owner.name, spec, image),
            },
        },
    }


def render_service(
    owner: Owner,
    spec: api.ModelServiceSpec,
    serving: Sequence[str] = (),
    running: Iterable[str] = (),
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": common_labels(owner.name, spec),
            "ownerReferences": [owner.reference],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": service_selector(owner.name, serving, running),
            "ports": service_ports(spec),
        },
    }


def service_ports(spec: api.ModelServiceSpec) -> list[dict[str, Any]]:
    ports = [{"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}]
    if spec.service.grpc_port:
        # Named "grpc": Istio picks the protocol from the port name.
        grpc = {"name": "grpc", "port": spec.service.grpc_port, "targetPort": "grpc"}
        ports.append({**grpc, "protocol": "TCP"})
    return ports


@dataclass(frozen=True)
class Desired:
    """Every object one ModelService should own, for one replica split between revisions."""

    revision: str  # the desired revision's hash
    service: dict[str, Any]
    deployment: dict[str, Any]  # the desired revision's Deployment
    # Older revisions keep their own (immutable) template; only their replica count is ours.
    scales: dict[str, int]  # revision -> replicas


def render(
    owner: Owner,
    spec: api.ModelServiceSpec,
    image: str,
    revision_replicas: Mapping[str, int],
    serving: Sequence[str] = (),
) -> Desired:
    """The desired objects. `revision_replicas` is the split the rollout decided (the desired
    revision and every kept older one); `serving` the revisions that take traffic."""
    revision = revision_hash(spec, image)
    replicas = revision_replicas.get(revision, spec.total_replicas)
    return Desired(
        revision=revision,
        service=render_service(
            owner, spec, serving, running=[r for r, n in revision_replicas.items() if n > 0]
        ),
        deployment=render_deployment(owner, spec, revision, replicas, image),
        scales={r: n for r, n in revision_replicas.items() if r != revision},
    )
