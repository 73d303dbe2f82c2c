#!/usr/bin/env python3
"""Operator scale benchmark on the local control plane.

For each N: create N ModelServices at once and measure the time until all are Ready, the
reconciles per second, the API write requests per ModelService (from the apiserver's audit log,
attributed by the operator's own client certificate), the operator's peak RSS, and the writes
per minute once everything has converged (target: zero). The floor, measured side by side on a
fresh control plane: the same API server creating the same Deployments and Services directly
from one client and waiting until they are Available.

Then the operator among unrelated objects: `--unrelated-n` ModelServices twice, once alone and
once in a namespace that also holds `--unrelated-pods` Pods (running on fake nodes) and
`--unrelated-deployments` Deployments that are not torchship's, 40 % created before the
operator starts, 30 % while it idles (its CPU measured then) and 30 % while the ModelServices
come up. It reports the growth of the operator's peak RSS, its CPU while they churn, and how
many watch events about them reached it (its own `torchship_watch_events_total{ours="false"}`).

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
    events_per_modelservice: float = 0.0


@dataclass
class Unrelated:
    """N ModelServices alone, then among unrelated Pods and Deployments, side by side."""

    n: int
    pods: int
    deployments: int
    alone_peak_rss_mb: float
    among_peak_rss_mb: float
    rss_growth_mb: float
    operator_cpu_while_churning: float  # CPU seconds per wall second, ModelServices idle
    churn_seconds: float
    foreign_watch_events: float  # events about the unrelated objects that reached the operator
    own_watch_events: float
    alone_ready_seconds: float
    among_ready_seconds: float


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


def deployment(
    name: str, labels: dict[str, str], replicas: int, container: str, image: str
) -> dict:
    """A Deployment of one container, selecting its pods by `labels`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": container, "image": image}]},
            },
        },
    }


def floor_objects(name: str) -> list[dict]:
    labels = {"app": name}
    return [
        deployment(name, labels, 1, "runtime", "runtime:bench"),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": 8080}]},
        },
    ]


def unrelated_objects(pods: int, deployments: int, nodes: list[str]) -> list[dict]:
    """Pods bound to the fake nodes (kwok runs them: each also changes status), and
    Deployments of no replicas, none of them labelled as torchship's."""
    bodies: list[dict] = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"other-{i:05d}", "labels": {"app": f"other-{i % 50}"}},
            "spec": {
                "nodeName": nodes[i % len(nodes)],
                "containers": [{"name": "app", "image": "other:latest"}],
            },
        }
        for i in range(pods)
    ]
    for i in range(deployments):
        labels = {"app": f"other-deploy-{i:04d}"}
        bodies.append(deployment(f"other-{i:04d}", labels, 0, "app", "other:latest"))
    # Interleaved, so that every share holds both kinds.
    return bodies[::2] + bodies[1::2]


COLLECTIONS = {
    "ModelService": "/apis/torchship.dev/v1alpha1/namespaces/{ns}/modelservices",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Pod": "/api/v1/namespaces/{ns}/pods",
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


def operator_writes(plane: testenv.ControlPlane, since: float = 0.0, events: bool = False) -> int:
    """The operator's write requests (Events apart, or Events alone) since `since`."""
    return sum(
        1
        for e in plane.audit_events()
        if e["user"]["username"] == OPERATOR_USER
        and _event_time(e) >= since
        and (e.get("objectRef", {}).get("resource") == "events") == events
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


def metric_total(metrics_port: int, name: str, *labels: str) -> float:
    """The sum of the operator's series `name` whose labels include each of `labels`."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(label in line for label in labels)
    )


def reconciles_total(metrics_port: int) -> float:
    return metric_total(metrics_port, "torchship_reconciles_total")


def bench_nodes(n: int) -> list[str]:
    return [f"bench-cpu-{i}" for i in range(n // 250 + 1)]


def fresh_plane(tmp: Path, name: str, n: int) -> testenv.ControlPlane:
    """A control plane with room for n pods: fake CPU nodes of 250 pods each."""
    plane = testenv.ControlPlane(workdir=tmp / name, bin_dir=testenv.build_binaries())
    plane.start()
    nodes = [testenv.node_manifest(testenv.FakeNode(node, pods="250")) for node in bench_nodes(n)]
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


@dataclass
class Run:
    """One operator run; `churn` is filled when unrelated objects were created."""

    result: Result
    churn_seconds: float = 0.0
    churn_cpu: float = 0.0
    foreign_events: float = 0.0
    own_events: float = 0.0


async def create_with(api, namespace: str, bodies: list[dict], others: list[dict]) -> None:
    """The ModelServices and, at the same time, unrelated objects from a second client."""
    await asyncio.gather(create_all(api, namespace, bodies), create_all(api, namespace, others))


def measure_operator(
    tmp: Path,
    n: int,
    timeout: float,
    steady_seconds: float,
    unrelated: tuple[int, int] = (0, 0),
    name: str = "",
) -> Run:
    from kubernetes import config

    pods, deployments = unrelated
    name = name or f"operator-{n}"
    plane = fresh_plane(tmp, name, n + pods)
    operator = None
    try:
        plane.kubectl("apply", "--server-side", "-f", str(CRD))
        plane.wait_established()
        plane.kubectl("create", "namespace", "bench")
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        others = unrelated_objects(pods, deployments, bench_nodes(n + pods))
        before, idle, during = (
            others[: len(others) * 4 // 10],
            others[len(others) * 4 // 10 : len(others) * 7 // 10],
            others[len(others) * 7 // 10 :],
        )
        asyncio.run(create_all(api, "bench", before))
        kubeconfig = str(plane.kubeconfig_for(OPERATOR_USER, ("system:masters",)))
        launched = harness.start_operator(
            {**plane.env, "KUBECONFIG": kubeconfig},
            tmp / f"{name}.log",
            TORCHSHIP_LOG_LEVEL="WARNING",
        )
        operator, metrics_port = launched.proc, launched.metrics_port
        time.sleep(3)  # the operator's watches are established
        run = Run(result=Result(0, 0, 0, 0, 0, 0, 0, 0))
        if idle:
            cpu, started = cpu_seconds(operator.pid), time.monotonic()
            asyncio.run(create_all(api, "bench", idle))
            time.sleep(2)  # the last of them reach whoever watches them
            run.churn_seconds = time.monotonic() - started
            run.churn_cpu = (cpu_seconds(operator.pid) - cpu) / run.churn_seconds
        bodies = [modelservice(f"m{i:04d}") for i in range(n)]
        plane_pids = [p.pid for p in plane.procs.values()]
        cpu_before = cpu_seconds(operator.pid), sum(map(cpu_seconds, plane_pids))
        started = time.monotonic()
        asyncio.run(create_with(api, "bench", bodies, during))
        wait_all(plane, "bench", "modelservices", n, timeout)
        elapsed = time.monotonic() - started
        operator_cpu = (cpu_seconds(operator.pid) - cpu_before[0]) / elapsed
        plane_cpu = (sum(map(cpu_seconds, plane_pids)) - cpu_before[1]) / elapsed
        reconciles = reconciles_total(metrics_port)
        time.sleep(5)  # let the audit batch flush and late status writes land
        writes = operator_writes(plane)
        events = operator_writes(plane, events=True)
        steady_from = time.time()
        time.sleep(steady_seconds)
        time.sleep(2)  # the audit log's batch delay
        steady = operator_writes(plane, since=steady_from)
        run.foreign_events = metric_total(
            metrics_port, "torchship_watch_events_total", 'ours="false"'
        )
        run.own_events = metric_total(metrics_port, "torchship_watch_events_total", 'ours="true"')
        run.result = Result(
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
            events_per_modelservice=round(events / n, 2),
        )
        return run
    finally:
        if operator is not None:
            harness.stop(operator, 30)
        plane.stop()


def measure_unrelated(tmp: Path, n: int, pods: int, deployments: int, timeout: float) -> Unrelated:
    alone = measure_operator(tmp, n, timeout, 5, name=f"alone-{n}")
    among = measure_operator(tmp, n, timeout, 5, (pods, deployments), name=f"among-{n}")
    return Unrelated(
        n=n,
        pods=pods,
        deployments=deployments,
        alone_peak_rss_mb=alone.result.operator_peak_rss_mb,
        among_peak_rss_mb=among.result.operator_peak_rss_mb,
        rss_growth_mb=round(
            among.result.operator_peak_rss_mb - alone.result.operator_peak_rss_mb, 1
        ),
        operator_cpu_while_churning=round(among.churn_cpu, 4),
        churn_seconds=round(among.churn_seconds, 1),
        foreign_watch_events=among.foreign_events,
        own_watch_events=among.own_events,
        alone_ready_seconds=alone.result.all_ready_seconds,
        among_ready_seconds=among.result.all_ready_seconds,
    )


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
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 500, 1000])
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--steady-seconds", type=float, default=60)
    parser.add_argument("--unrelated-n", type=int, default=100, help="0: skip that part")
    parser.add_argument("--unrelated-pods", type=int, default=10_000)
    parser.add_argument("--unrelated-deployments", type=int, default=1_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: list[Result] = []
    unrelated: Unrelated | None = None
    with tempfile.TemporaryDirectory(prefix="torchship-scale-") as tmp:
        if args.unrelated_n:
            unrelated = measure_unrelated(
                Path(tmp),
                args.unrelated_n,
                args.unrelated_pods,
                args.unrelated_deployments,
                args.timeout,
            )
            print(json.dumps(asdict(unrelated)), flush=True)
        for n in args.sizes:
            result = measure_operator(Path(tmp), n, args.timeout, args.steady_seconds).result
            result.floor_seconds = round(measure_floor(Path(tmp), n, args.timeout), 2)
            result.ratio_to_floor = round(result.floor_seconds / result.all_ready_seconds, 2)
            results.append(result)
            print(json.dumps(asdict(result)), flush=True)
    header = (
        "| N | all Ready (s) | direct-create floor (s) | operator speed / floor | reconciles/s "
        "| writes per ModelService | Events per ModelService | writes/min after convergence "
        "| operator peak RSS (MB) | operator CPU | control plane CPU |"
    )
    print("\n" + header + "\n|" + "---|" * 11)
    for r in results:
        print(
            f"| {r.n} | {r.all_ready_seconds} | {r.floor_seconds} | {r.ratio_to_floor} "
            f"| {r.reconciles_per_second} | {r.writes_per_modelservice} "
            f"| {r.events_per_modelservice} | {r.steady_writes_per_minute} "
            f"| {r.operator_peak_rss_mb} | {r.operator_cpu} | {r.control_plane_cpu} |"
        )
    if unrelated is not None:
        u = unrelated
        print(
            f"\n{u.n} ModelServices among {u.pods} unrelated Pods and {u.deployments} "
            f"unrelated Deployments:\n"
            f"| | alone | among them | |\n|---|---|---|---|\n"
            f"| operator peak RSS (MB) | {u.alone_peak_rss_mb} | {u.among_peak_rss_mb} "
            f"| +{u.rss_growth_mb} |\n"
            f"| all Ready (s) | {u.alone_ready_seconds} | {u.among_ready_seconds} | |\n"
            f"| operator CPU while they churn ({u.churn_seconds} s) | | "
            f"{u.operator_cpu_while_churning} | |\n"
            f"| watch events about them received | | {u.foreign_watch_events:.0f} "
            f"| (own children: {u.own_watch_events:.0f}) |"
        )
    print(
        f"\nmachine: {len(os.sched_getaffinity(0))} cores usable; {sys.platform}; CPU columns: "
        "CPU seconds per wall second until all were Ready"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "sizes": [asdict(r) for r in results],
            "unrelated": asdict(unrelated) if unrelated else None,
        }
        args.json.write_text(json.dumps(report, indent=2))
        if results:
            plot(results, args.json.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
