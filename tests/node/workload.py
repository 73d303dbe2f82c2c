"""What the real-node tests share: ModelService manifests, pods and EndpointSlices read from the
API server, and a bounded load that follows the Service's ready endpoints to the pods' own
addresses (on the local node's pod network, which no route takes off this machine)."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from helpers import get_json

LABEL_REVISION = "torchship.dev/revision"
# The images hack/build-images.sh builds, under the names the chart and the operator default to.
RUNTIME_IMAGE = "ghcr.io/torchship/runtime:0.1.0"
OPERATOR_IMAGE = "ghcr.io/torchship/operator:0.1.0"


# Straight to the pods' own addresses, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def model_service(name: str, uri: str, **spec: object) -> str:
    """A CPU ModelService serving the 64 -> 10 MLP from `uri`, as JSON for `kubectl apply`."""
    body = {
        "model": {
            "uri": uri,
            "format": "torchscript",
            "version": "v1",
            "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [-1, 64]}],
        },
        "replicas": 1,
        **spec,
    }
    return json.dumps(
        {
            "apiVersion": "torchship.dev/v1alpha1",
            "kind": "ModelService",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def apply(plane, namespace: str, manifest: str) -> None:
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def wait_ready(plane, namespace: str, name: str, timeout: int = 240) -> dict:
    """Rolled out and serving: no rollout under way for the latest spec, then Ready (a rollout
    keeps Ready while every replica serves)."""
    for condition in ("Progressing=False", "Ready"):
        plane.kubectl(
            "wait", "-n", namespace, f"--for=condition={condition}", f"msvc/{name}",
            f"--timeout={timeout}s", timeout=timeout + 30,
        )  # fmt: skip
    return get_json(plane, "msvc", name, "-n", namespace)


def served_model(tmp_path: Path, mlp_file: Path) -> Path:
    """A folder for a file server, holding the model as mlp.pt."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "mlp.pt").write_bytes(mlp_file.read_bytes())
    return www


def infer_body(rows: int = 1) -> bytes:
    data = [((i * 7) % 64) / 64 for i in range(64 * rows)]
    request = {
        "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [rows, 64], "data": data}]
    }
    return json.dumps(request).encode()


def post(address: str, model: str, body: bytes, port: int = 8080) -> tuple[int, str]:
    """One inference request straight to a pod: its status code (0 when none came) and, for
    any other than 200, why."""
    request = urllib.request.Request(
        f"http://{address}:{port}/v2/models/{model}/infer",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with DIRECT.open(request, timeout=10) as answer:
            answer.read()
            return answer.status, ""
    except urllib.error.HTTPError as error:
        return error.code, str(error)
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error)


def pods(plane, namespace: str, name: str) -> list[dict]:
    return get_json(plane, "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}")[
        "items"
    ]


def ready(pod: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def ready_endpoints(plane, namespace: str, service: str) -> dict[str, str]:
    """Pod name -> address of the endpoints the Service's EndpointSlices list as ready."""
    slices = get_json(
        plane, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    out = {}
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            if endpoint.get("conditions", {}).get("ready") and endpoint.get("targetRef"):
                out[endpoint["targetRef"]["name"]] = endpoint["addresses"][0]
    return out


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Load:
    """Requests from a few threads, each to a random ready endpoint of the Service, refreshed
    from its EndpointSlices; bounded by `max_requests` and `max_seconds`. Every sample of the
    slices is kept, with the pods read right after it, for the tests to judge."""

    plane: object
    namespace: str
    service: str
    threads: int = 4
    max_requests: int = 20000
    max_seconds: float = 240
    port: int = 8080
    model: str = ""
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    by_pod: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[datetime, dict[str, str], list[dict]]] = field(default_factory=list)
    _endpoints: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._refresh()
        self._workers = [threading.Thread(target=self._watch, daemon=True)]
        self._workers += [
            threading.Thread(target=self._send, daemon=True) for _ in range(self.threads)
        ]
        self._started = time.monotonic()
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    @property
    def sent(self) -> int:
        return self.ok + len(self.failures)

    def _refresh(self) -> None:
        at = now_utc()
        endpoints = ready_endpoints(self.plane, self.namespace, self.service)
        current = pods(self.plane, self.namespace, self.service)
        with self._lock:
            self._endpoints = endpoints
            self.samples.append((at, endpoints, current))

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            self._refresh()

    def _done(self) -> bool:
        return (
            self._stop.is_set()
            or self.sent >= self.max_requests
            or time.monotonic() - self._started > self.max_seconds
        )

    def _send(self) -> None:
        sent = 0  # by this thread
        while not self._done():
            with self._lock:
                choices = list(self._endpoints.items())
            if not choices:
                time.sleep(0.05)
                continue
            pod, address = random.choice(choices)
            code, why = post(address, self.model, self.body(sent), self.port)
            sent += 1
            self._count(pod, address, code, why)
            time.sleep(0.01)  # a steady stream, not a flood: 2 cores also run the node

    def body(self, sent: int) -> bytes:
        """What a thread sends as its request number `sent`."""
        return infer_body()

    def _count(self, pod: str, address: str, code: int, why: str) -> None:
        with self._lock:
            if code == 200:
                self.ok += 1
                self.by_pod[pod] = self.by_pod.get(pod, 0) + 1
            else:
                self.failures.append(f"{pod} {address}: {why}")


def endpoints_only_ready_pods(samples, allowed_revisions: set[str]) -> list[str]:
    """Each sampled ready endpoint must be a pod of an allowed revision that was Ready when the
    slices were read (its Ready condition True, or turned False only after the read)."""
    problems = []
    for at, endpoints, current in samples:
        by_name = {p["metadata"]["name"]: p for p in current}
        for name in endpoints:
            pod = by_name.get(name)
            if pod is None:
                continue  # deleted after the read: it was listed while it existed
            revision = pod["metadata"]["labels"].get(LABEL_REVISION)
            if revision not in allowed_revisions:
                problems.append(f"{at}: {name} of revision {revision} took traffic")
            cond = next(
                (c for c in pod["status"].get("conditions", []) if c["type"] == "Ready"), None
            )
            if cond is None or (
                cond["status"] != "True" and parse_time(cond["lastTransitionTime"]) < at
            ):
                problems.append(f"{at}: {name} listed ready while not Ready ({cond})")
    return problems
