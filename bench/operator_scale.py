#!/usr/bin/env python3
"""Operator scale benchmark on the local control plane.

For each N: create N ModelServices at once and measure the time until all are Ready, the
reconciles per second, the API write requests per ModelService (from the apiserver's audit log,
attributed by the operator's own client certificate), the operator's peak RSS, and the writes
per minute once everything has converged (target: zero). The floor, measured side by side on a
fresh control plane: the same API server creating the same Deployments and Services directly
from one client and waiting until they are Available.

    .venv/bin/python bench/operator_scale.py --sizes 100 500 1000 --json bench/results/scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))  # a script: testenv and the harness live in hack/
import harness  # noqa: E402
import testenv  # noqa: E402
from procstat import cpu_seconds, pyplot  # noqa: E402

OPERATOR_USER = "torchship-operator"
CRD = ROOT / "crds" / "torchship.dev_modelservices.yaml"


@dataclass
class Result:
    n: int
    all_ready_seconds: float
    floor_seconds: float
    ratio_to_floor: float
    reconciles_per_second: float
    writes_per_modelservice: float
    steady_writes_per_minute: float
    operator_peak_rss_mb: float
    # Until all are Ready: CPU seconds per wall second (of all cores), where the time goes.
    operator_cpu: float = 0.0
    control_plane_cpu: float = 0.0


def modelservice(name: str) -> dict:
    return {
        "apiVersion": "torchship.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "https://models.example.com/mlp/v1/model.pt", "format": "torchscript"},
            "replicas": 1,
        },
    }


def floor_objects(name: str) -> list[dict]:
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "runtime", "image": "runtime:bench"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": 8080}]},
        },
    ]


COLLECTIONS = {
    "ModelService": "/apis/torchship.dev/v1alpha1/namespaces/{ns}/modelservices",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
}


def create(api, namespace: str, body: dict) -> None:
    method, url, headers, _, post = api.param_serialize(
        method="POST",
        resource_path=COLLECTIONS[body["kind"]].format(ns=namespace),
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, body, post, _request_timeout=60)
    response.read()
    if response.status >= 300:
        raise RuntimeError(f"create {body['kind']} failed: {response.status}")


async def create_all(api, namespace: str, bodies: list[dict], concurrency: int = 16) -> None:
    """POST every object from one client, `concurrency` requests in flight."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(body: dict) -> None:
        async with semaphore:
            await asyncio.to_thread(create, api, namespace, body)

    await asyncio.gather(*(one(b) for b in bodies))


# What "done" means for each kind: (group, version, plural, condition).
WATCHED = {
    "modelservices": ("torchship.dev", "v1alpha1", "modelservices", "Ready"),
    "deployments": ("apps", "v1", "deployments", "Available"),
}


def wait_all(plane: testenv.ControlPlane, namespace: str, kind: str, n: int, timeout: float):
    """Seconds until n objects of `kind` have their condition True, followed through a watch
    (polling would LIST every object each second and load the API server being measured)."""
    from kubernetes import client, config, watch

    group, version, plural, condition = WATCHED[kind]
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(plane.kubeconfig)))
    started = time.monotonic()
    done: set[str] = set()
    while True:
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object, group, version, namespace, plural, timeout_seconds=30
        )
        for event in stream:
            item = event["object"]
            conditions = (item.get("status") or {}).get("conditions") or []
            if any(c["type"] == condition and c["status"] == "True" for c in conditions):
                done.add(item["metadata"]["name"])
            else:
                done.discard(item["metadata"]["name"])
            if len(done) >= n:
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"only {len(done)} of {n} {kind} ready within {timeout}s")


def operator_writes(plane: testenv.ControlPlane, since: float = 0.0) -> int:
    return sum(
        1
        for e in plane.audit_events()
        if e["user"]["username"] == OPERATOR_USER
        and _event_time(e) >= since
        and e.get("objectRef", {}).get("resource") != "events"
    )


def _event_time(event: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(
        event["requestReceivedTimestamp"].replace("Z", "+00:00")
    ).timestamp()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reconciles_total(metrics_port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("torchship_reconciles_total{")
    )


def fresh_plane(tmp: Path, name: str, n: int) -> testenv.ControlPlane:
    """A control plane with room for n pods: fake CPU nodes of 250 pods each."""
    plane = testenv.ControlPlane(workdir=tmp / name, bin_dir=testenv.build_binaries())
    plane.start()
    nodes = [
        testenv.node_manifest(testenv.FakeNode(f"bench-cpu-{i}", pods="250"))
        for i in range(n // 250 + 1)
    ]
    plane.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes})
    )
    plane.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
    return plane


def measure_floor(tmp: Path, n: int, timeout: float) -> float:
    from kubernetes import config

    plane = fresh_plane(tmp, f"floor-{n}", n)
    try:
        plane.kubectl("create", "namespace", "bench")
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        bodies = [o for i in range(n) for o in floor_objects(f"m{i:04d}")]
        started = time.monotonic()
        asyncio.run(create_all(api, "bench", bodies))
        wait_all(plane, "bench", "deployments", n, timeout)
        return time.monotonic() - started
    finally:
        plane.stop()


def measure_operator(tmp: Path, n: int, timeout: float, steady_seconds: float) -> Result:
    from kubernetes import config

    plane = fresh_plane(tmp, f"operator-{n}", n)
    operator = None
    try:
        plane.kubectl("apply", "--server-side", "-f", str(CRD))
        plane.kubectl("wait", "--for=condition=Established", "crd", "--all")
        plane.kubectl("create", "namespace", "bench")
        kubeconfig = str(plane.kubeconfig_for(OPERATOR_USER, ("system:masters",)))
        started = harness.start_operator(
            {**plane.env, "KUBECONFIG": kubeconfig},
            tmp / f"operator-{n}.log",
            TORCHSHIP_LOG_LEVEL="WARNING",
        )
        operator, metrics_port = started.proc, started.metrics_port
        time.sleep(3)  # the operator's watches are established
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        bodies = [modelservice(f"m{i:04d}") for i in range(n)]
        plane_pids = [p.pid for p in plane.procs.values()]
        cpu_before = cpu_seconds(operator.pid), sum(map(cpu_seconds, plane_pids))
        started = time.monotonic()
        asyncio.run(create_all(api, "bench", bodies))
        wait_all(plane, "bench", "modelservices", n, timeout)
        elapsed = time.monotonic() - started
        operator_cpu = (cpu_seconds(operator.pid) - cpu_before[0]) / elapsed
        plane_cpu = (sum(map(cpu_seconds, plane_pids)) - cpu_before[1]) / elapsed
        reconciles = reconciles_total(metrics_port)
        time.sleep(5)  # let the audit batch flush and late status writes land
        writes = operator_writes(plane)
        steady_from = time.time()
        time.sleep(steady_seconds)
        time.sleep(2)  # the audit log's batch delay
        steady = operator_writes(plane, since=steady_from)
        return Result(
            n=n,
            all_ready_seconds=round(elapsed, 2),
            floor_seconds=0.0,
            ratio_to_floor=0.0,
            reconciles_per_second=round(reconciles / elapsed, 1),
            writes_per_modelservice=round(writes / n, 2),
            steady_writes_per_minute=round(steady * 60 / steady_seconds, 2),
            operator_peak_rss_mb=round(peak_rss_mb(operator.pid), 1),
            operator_cpu=round(operator_cpu, 2),
            control_plane_cpu=round(plane_cpu, 2),
        )
    finally:
        if operator is not None:
            harness.stop(operator, 30)
        plane.stop()


def plot(results: list[Result], path: Path) -> None:
    """Time until all are Ready against N, the operator beside the direct-create floor."""
    plt = pyplot()
    if plt is None:
        return
    sizes = [r.n for r in results]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(sizes, [r.all_ready_seconds for r in results], marker="o", label="torchship operator")
    ax.plot(sizes, [r.floor_seconds for r in results], marker="o", label="direct-create floor")
    ax.set_xlabel("ModelServices created at once")
    ax.set_ylabel("seconds until all Ready / Available")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--steady-seconds", type=float, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="torchship-scale-") as tmp:
        for n in args.sizes:
            result = measure_operator(Path(tmp), n, args.timeout, args.steady_seconds)
            result.floor_seconds = round(measure_floor(Path(tmp), n, args.timeout), 2)
            result.ratio_to_floor = round(result.floor_seconds / result.all_ready_seconds, 2)
            results.append(result)
            print(json.dumps(asdict(result)), flush=True)
    header = (
        "| N | all Ready (s) | direct-create floor (s) | floor/operator speed | reconciles/s "
        "| writes per ModelService | writes/min after convergence | operator peak RSS (MB) "
        "| operator CPU | control plane CPU |"
    )
    print("\n" + header + "\n|" + "---|" * 10)
    for r in results:
        print(
            f"| {r.n} | {r.all_ready_seconds} | {r.floor_seconds} | {r.ratio_to_floor} "
            f"| {r.reconciles_per_second} | {r.writes_per_modelservice} "
            f"| {r.steady_writes_per_minute} | {r.operator_peak_rss_mb} "
            f"| {r.operator_cpu} | {r.control_plane_cpu} |"
        )
    print(
        f"\nmachine: {len(os.sched_getaffinity(0))} cores usable; {sys.platform}; CPU columns: "
        "CPU seconds per wall second until all were Ready"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
        plot(results, args.json.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
