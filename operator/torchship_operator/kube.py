"""The only module that talks to the API server: apply, scale, delete, status, nothing else.

It knows the client, not ModelService semantics. Writes are skipped when the live object
already holds every field we would apply (compared semantically), so a converged system
makes no write requests at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from . import api, transport
from .metrics import WRITES

log = logging.getLogger("torchship.apply")

FIELD_MANAGER = "torchship"
USER_AGENT = "torchship-operator"
FINGERPRINT = f"{api.GROUP}/applied"
PATHS = {
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
    ),
    ("v1", "PersistentVolumeClaim"): "/api/v1/namespaces/{namespace}/persistentvolumeclaims",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{namespace}/jobs",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): (
        "/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes"
    ),
}
MS_PATH = f"/apis/{api.API_VERSION}/namespaces/{{namespace}}/{api.PLURAL}/{{name}}"


def make_api_client(pool_size: int = 32) -> client.ApiClient:
    """In-cluster credentials when there, else KUBECONFIG."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    api_client = client.ApiClient(configuration)
    api_client.user_agent = USER_AGENT
    return api_client


# Maps the API declares atomic (`+mapType=atomic`): an apply replaces them whole, so a key
# someone else added is drift too.
ATOMIC_MAPS = frozenset({"selector", "nodeSelector"})


def resource_of(path: str) -> str:
    """`deployments`, `deployments/scale`, `modelservices/status`, ... of an API path."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts[:-1]:
        parts = parts[parts.index("namespaces") + 2 :]
        return parts[0] + (f"/{parts[2]}" if len(parts) > 2 else "")
    return parts[-1]


def omitted(value: Any) -> bool:
    """A value the API server leaves out when it stores an object (Go's omitempty)."""
    return value is None or value is False or (isinstance(value, str | list | dict) and not value)


def contains(live: Any, desired: Any, exact: bool = False) -> bool:
    """True when `live` already has every field of `desired` with an equal value.

    Fields the API server adds (defaults, status, managedFields) are ignored; quantities
    compare by value ("1000m" == "1"); within atomic maps, keys must match exactly.
    """
    if isinstance(desired, Mapping):
        return (
            isinstance(live, Mapping)
            and (not exact or set(live) == set(desired))
            and all(
                contains(live[k], v, exact or k in ATOMIC_MAPS) if k in live else omitted(v)
                for k, v in desired.items()
            )
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b, exact) for a, b in zip(live, desired, strict=True))
        )
    if live == desired:
        return True
    if isinstance(live, str | int) and isinstance(desired, str | int):
        try:
            return parse_quantity(live) == parse_quantity(desired)
        except ValueError:
            return False
    return False


def difference(live: Any, desired: Any, path: str = "", exact: bool = False) -> str | None:
    """Where `live` first fails to contain `desired` (for logs), or None."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return path or "."
        if exact and set(live) != set(desired):
            return f"{path} (keys {sorted(set(live) ^ set(desired))})"
        for k, v in desired.items():
            if k not in live:
                if omitted(v):
                    continue
                return f"{path}.{k} (missing)"
            found = difference(live[k], v, f"{path}.{k}", exact or k in ATOMIC_MAPS)
            if found:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return f"{path} (length)"
        for i, (a, b) in enumerate(zip(live, desired, strict=True)):
            if found := difference(a, b, f"{path}[{i}]", exact):
                return found
        return None
    return None if contains(live, desired) else f"{path} ({live!r} != {desired!r})"


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: keys that went are sent as
    null (a plain merge would leave them behind); lists are replaced whole."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(old.get(k), Mapping):
            if inner := merge_patch(old[k], v):
                patch[k] = inner
        elif old.get(k) != v or k not in old:
            patch[k] = v
    return patch


class Applied(enum.Enum):
    """What an apply did. Falsy when nothing was written."""

    UNCHANGED = "unchanged"
    CREATED = "created"
    UPDATED = "updated"  # what we want changed
    SCALED = "scaled"  # only spec.replicas differed
    CORRECTED = "corrected"  # someone else changed our fields: they were restored

    def __bool__(self) -> bool:
        return self is not Applied.UNCHANGED


def annotation(obj: Mapping[str, Any], key: str) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(key)


def fingerprinted(desired: Mapping[str, Any]) -> dict[str, Any]:
    """`desired` with an annotation holding a hash of itself (replicas aside).

    `contains` alone cannot see a field we stopped wanting (a removed label stays on the live
    object and still "contains" the rest); a changed fingerprint can. It changes only when what
    we apply changes, so it never makes a converged object look different. Replicas are left
    out so that a scale tells apart from a change of intent.
    """
    meta = dict(desired["metadata"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != FINGERPRINT}
    spec = {k: v for k, v in (desired.get("spec") or {}).items() if k != "replicas"}
    hashed = {**desired, "metadata": {**meta, "annotations": annotations}, "spec": spec}
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    meta["annotations"] = {
        **annotations,
        FINGERPRINT: hashlib.sha256(canonical.encode()).hexdigest()[:16],
    }
    return {**desired, "metadata": meta}


def classify(desired: Mapping[str, Any], live: Mapping[str, Any]) -> Applied:
    """Why `live` (which differs from `desired`) needs an apply."""
    if annotation(live, FINGERPRINT) != annotation(desired, FINGERPRINT):
        return Applied.UPDATED
    live_spec = live.get("spec") or {}
    if "replicas" in live_spec and "replicas" in (desired.get("spec") or {}):
        rescaled = {**desired, "spec": {**desired["spec"], "replicas": live_spec["replicas"]}}
        if contains(live, rescaled):
            return Applied.SCALED
    return Applied.CORRECTED


class Refused(Exception):
    """The API server refused a request (a write, or a read of a child) for a reason only a
    change can fix (invalid, forbidden, over quota): `message` is its own words."""

    def __init__(self, kind: str, name: str, code: int, message: str) -> None:
        super().__init__(f"{kind} {name}: {message}" if name else f"{kind}: {message}")
        self.kind, self.name, self.code, self.message = kind, name, code, message


# Client errors that a retry can cure on its own: a conflict, throttling, a timeout.
TRANSIENT = {408, 409, 429}


def server_message(error: ApiException) -> str:
    """The `message` of the metav1.Status the API server sent, else its HTTP reason."""
    try:
        body = json.loads(error.body or b"")
    except (ValueError, TypeError):
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return message or f"{error.status} {error.reason}"


@contextlib.contextmanager
def refusals(kind: str, name: str, passing: frozenset[int] = frozenset()) -> Iterator[None]:
    """Turn a 4xx that no retry cures into `Refused`; the rest (and the codes in `passing`,
    which the caller reads itself) propagates unchanged."""
    try:
        yield
    except ApiException as error:
        code = error.status
        if code is not None and 400 <= code < 500 and code not in TRANSIENT | passing:
            raise Refused(kind, name, code, server_message(error)) from error
        raise


def resource_version(obj: Mapping[str, Any]) -> int | None:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def newer(written: Mapping[str, Any], cached: Mapping[str, Any]) -> bool:
    """Whether what a write returned is newer than the cached copy. Resource versions are
    etcd revisions, so they order; one that does not parse leaves the cache in charge."""
    ours, theirs = resource_version(written), resource_version(cached)
    return ours is not None and theirs is not None and ours > theirs


# How long what a write returned stands in for a watch cache that has not caught up yet.
# Longer than any watch lag; short, so that an object deleted meanwhile is soon recreated.
WRITTEN_SECONDS = 10.0

Key = tuple[str, str, str]  # kind, namespace, name


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def event_of(
    involved: Mapping[str, Any], kind: str, reason: str, message: str, now: str
) -> dict[str, Any]:
    """A core/v1 Event about `involved`, as the operator reports it."""
    meta = involved["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved["apiVersion"],
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "torchship-operator"},
        "reportingComponent": "torchship.dev/operator",
        "reportingInstance": "torchship-operator",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class Kube:
    """Async facade over the (synchronous) official client: calls run in worker threads.

    A pool of its own, as large as the client's connection pool: asyncio's default executor
    has only a few threads on a small machine, and every reconcile worker would queue there.

    It remembers, for a few seconds, the object each of its writes returned: a pass that runs
    before the watch cache has seen our own write (another child's event came first) would
    otherwise take the older copy for the truth and write the same thing again.
    """

    def __init__(self, api_client: client.ApiClient, threads: int = 32) -> None:
        self.api_client = api_client
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        self.written: dict[Key, tuple[float, dict[str, Any]]] = {}

    def remember(self, written: dict[str, Any] | None) -> None:
        if not written or "metadata" not in written or "kind" not in written:
            return
        key, now = key_of(written), time.monotonic()
        meta = {k: v for k, v in written["metadata"].items() if k != "managedFields"}
        self.written.pop(key, None)  # re-inserted last: the dict stays in order of time
        self.written[key] = (now, {**written, "metadata": meta})
        while (oldest := next(iter(self.written.values()))) and now - oldest[0] > WRITTEN_SECONDS:
            del self.written[next(iter(self.written))]

    def forget(self, key: Key) -> None:
        """The object is gone (its watch said so): the cache is right about it now."""
        self.written.pop(key, None)

    def latest(self, key: Key, cached: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The cached object, or what our last write of it returned when that is newer (or the
        cache does not have it yet) and recent."""
        entry = self.written.get(key)
        if entry is None:
            return cached
        at, written = entry
        if time.monotonic() - at > WRITTEN_SECONDS or (
            cached is not None and not newer(written, cached)
        ):
            del self.written[key]  # the cache has caught up (or it is too old to trust)
            return cached
        return written

    async def _call(
        self, method: str, path: str, body: Any = None, content_type: str | None = None, **query
    ) -> dict[str, Any] | None:
        if method != "GET":
            WRITES.labels(resource_of(path)).inc()
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, self._call_sync, method, path, body, content_type, query
        )

    def _call_sync(
        self, method: str, path: str, body: Any, content_type: str | None, query: dict
    ) -> dict[str, Any] | None:
        status, reason, data = transport.send(
            self.api_client, method, path, body, content_type, query.items()
        )
        if not 200 <= status < 300:
            raise ApiException(status=status, reason=reason, body=data)
        return json.loads(data) if data else None

    async def get(self, path: str, **query: Any) -> dict[str, Any] | None:
        """A read outside the watch caches; `Refused` when forbidden, as a refused write (a
        404 stays an ApiException for the caller)."""
        with refusals(resource_of(path), "", passing=frozenset({404})):
            return await self._call("GET", path, **query)

    async def read(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        """One object, None when there is none; `Refused` when the read is refused."""
        path = f"{PATHS[(api_version, kind)].format(namespace=namespace)}/{name}"
        try:
            with refusals(kind, name, passing=frozenset({404})):
                return await self._call("GET", path)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def apply(self, desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> Applied:
        """Server-side apply `desired` unless `live` already matches; says what it did."""
        desired = fingerprinted(desired)
        meta = desired["metadata"]
        live = self.latest((desired["kind"], meta["namespace"], meta["name"]), live)
        if live is not None and contains(live, desired):
            return Applied.UNCHANGED
        if live is not None:
            log.debug(
                "%s %s/%s differs at %s",
                desired["kind"],
                meta["namespace"],
                meta["name"],
                difference(live, desired),
            )
        base = PATHS[(desired["apiVersion"], desired["kind"])].format(namespace=meta["namespace"])
        with refusals(desired["kind"], meta["name"]):
            written = await self._call(
                "PATCH",
                f"{base}/{meta['name']}",
                body=desired,
                content_type="application/apply-patch+yaml",
                fieldManager=FIELD_MANAGER,
                force="true",
            )
        self.remember(written)
        return Applied.CREATED if live is None else classify(desired, live)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        path = PATHS[("apps/v1", "Deployment")].format(namespace=namespace)
        with refusals("Deployment", name):
            await self._call(
                "PATCH",
                f"{path}/{name}/scale",
                body={"spec": {"replicas": replicas}},
                content_type="application/merge-patch+json",
                fieldManager=FIELD_MANAGER,
            )

    async def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """A merge patch of one pod (an annotation: pods belong to their ReplicaSet)."""
        with refusals("Pod", name):
            await self._call(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/pods/{name}",
                body=patch,
                content_type="application/merge-patch+json",
                fieldManager=FIELD_MANAGER,
            )

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        path = PATHS[(api_version, kind)].format(namespace=namespace)
        try:
            with refusals(kind, name):
                await self._call("DELETE", f"{path}/{name}", propagationPolicy="Background")
        except Refused as refused:
            if refused.code != 404:
                raise

    async def post_event(
        self, involved: Mapping[str, Any], kind: str, reason: str, message: str, now: str
    ) -> None:
        event = event_of(involved, kind, reason, message, now)
        await self._call(
            "POST", f"/api/v1/namespaces/{event['metadata']['namespace']}/events", body=event
        )

    async def patch_status(
        self, namespace: str, name: str, previous: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        """Make the stored status `status`, sending only what changed from `previous`."""
        written = await self._call(
            "PATCH",
            MS_PATH.format(namespace=namespace, name=name) + "/status",
            body={"status": merge_patch(previous, status)},
            content_type="application/merge-patch+json",
            fieldManager=FIELD_MANAGER,
        )
        self.remember(written)

    async def allowed(self, verb: str, group: str, resource: str) -> bool:
        """Whether this identity may `verb` `resource` cluster-wide (a SelfSubjectAccessReview,
        which every authenticated user may create)."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource}},
        }
        answer = await self._call(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review
        )
        return bool((answer or {}).get("status", {}).get("allowed"))

    async def write(self, method: str, path: str, body: dict[str, Any]) -> dict | None:
        """A plain create (POST) or replace (PUT), such as the leader election's Lease."""
        return await self._call(method, path, body=body, fieldManager=FIELD_MANAGER)
