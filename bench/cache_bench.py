"""The model cache on the real node: time from scale-up to Ready for the second replica, with
and without spec.model.cache, for a model of at least 500 MB.

    sudo -E .venv/bin/python bench/cache_bench.py [--mb 540] [--rate-mbps 50] [--json PATH]

It starts a control plane whose CPU node is a real kubelet (hack/testenv.py, real_node; the
images from hack/build-images.sh) and the operator, serves a TorchScript MLP of --mb megabytes
over HTTP from this machine at --rate-mbps (a remote store's bandwidth, not loopback's), and for
each case applies a one-replica ModelService, waits for Ready, scales it to two and times the
second replica. Without the cache the new pod downloads the model again; with it, the fill
Job's download serves both pods.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "hack"), str(ROOT / "tests"), str(ROOT / "tests" / "node")]
import harness  # noqa: E402 (hack/ is not a package)
import testenv  # noqa: E402
from integration.conftest import install_crds, start_operator, stop_operator  # noqa: E402
from workload import RUNTIME_IMAGE, model_service, pods, ready  # noqa: E402

CLASS = "torchship-bench-cache"


def model_file(path: Path, megabytes: int) -> Path:
    """A TorchScript MLP of about `megabytes` (float32 weights), 64 inputs, 10 outputs."""
    width = int((megabytes * 1e6 / 4) ** 0.5)  # the width x width layer is nearly all of it
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, width), nn.Linear(width, width), nn.Linear(width, 10))
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_(0, 0.01)
    torch.jit.save(torch.jit.script(mlp.eval()), str(path))
    return path


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def stamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def start_breakdown(pod: dict) -> dict[str, float]:
    """Seconds from the pod's creation to each signal of its start (the API's timestamps have
    one-second resolution): scheduled, the fetch init container's start and end, the runtime's
    start, and Ready."""
    created = stamp(pod["metadata"]["creationTimestamp"])
    status = pod["status"]
    marks = {
        f"{c['type']}": stamp(c.get("lastTransitionTime"))
        for c in status.get("conditions", [])
        if c["type"] in ("PodScheduled", "Ready")
    }
    for c in status.get("initContainerStatuses", []):
        terminated = (c.get("state") or {}).get("terminated") or {}
        marks[f"{c['name']}Started"] = stamp(terminated.get("startedAt"))
        marks[f"{c['name']}Finished"] = stamp(terminated.get("finishedAt"))
    for c in status.get("containerStatuses", []):
        marks[f"{c['name']}Started"] = stamp(
            ((c.get("state") or {}).get("running") or {}).get("startedAt")
        )
    return {k: round(v - created, 1) for k, v in marks.items() if v is not None}


def second_replica(plane, ns: str, name: str, manifest: str) -> tuple[float, dict[str, float]]:
    """Seconds from the scale-up to two ready replicas, and how the new pod's start went."""
    plane.kubectl("apply", "-n", ns, "-f", "-", input=manifest)
    plane.kubectl("wait", "-n", ns, "--for=condition=Ready", f"msvc/{name}", "--timeout=900s",
                  timeout=930)  # fmt: skip
    first = {p["metadata"]["name"] for p in pods(plane, ns, name)}
    started = time.monotonic()
    plane.kubectl("scale", "msvc", name, "-n", ns, "--replicas=2")
    wait(lambda: sum(ready(p) for p in pods(plane, ns, name)) == 2, 900, "second replica")
    seconds = time.monotonic() - started
    (new,) = [p for p in pods(plane, ns, name) if p["metadata"]["name"] not in first]
    return seconds, start_breakdown(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=540, help="model size in MB (>= 500)")
    parser.add_argument("--rate-mbps", type=float, default=50.0, help="server bandwidth, MB/s")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if reason := testenv.real_node_unavailable():
        sys.exit(f"no real node here: {reason}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        www = work / "www"
        www.mkdir()
        model = model_file(www / "big.pt", args.mb)
        plane = testenv.ControlPlane(workdir=work / "plane", bin_dir=testenv.build_binaries(),
                                     real_node=True, images=testenv.build_images())  # fmt: skip
        plane.start(timeout=300)
        operator = None
        try:
            install_crds(plane)
            operator = start_operator(plane, work / "operator.log",
                                      TORCHSHIP_RUNTIME_IMAGE=RUNTIME_IMAGE)  # fmt: skip
            volume = work / "cache-volume"
            volume.mkdir(mode=0o777)
            volume.chmod(0o777)
            pv = {
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "bench-cache"},
                "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": "Retain", "storageClassName": CLASS,
                         "hostPath": {"path": str(volume), "type": "Directory"}},
            }  # fmt: skip
            plane.kubectl("apply", "-f", "-", input=json.dumps(pv))
            hits: list[str] = []
            rate = args.rate_mbps * 1e6
            results = {}
            with harness.file_server(www, plane.node.slot.host_ip, hits=hits, rate=rate) as base:
                cached = {"size": "10Gi", "storageClassName": CLASS}
                for case, cache in (("without", None), ("with", cached)):
                    ns = f"bench-{case}"
                    plane.kubectl("create", "namespace", ns)
                    body = json.loads(model_service("big", f"{base}/big.pt"))
                    if cache:
                        body["spec"]["model"]["cache"] = cache
                    before = len(hits)
                    seconds, marks = second_replica(plane, ns, "big", json.dumps(body))
                    results[case] = {"second_replica_ready_s": round(seconds, 1),
                                     "downloads": len(hits) - before,
                                     "pod_start_s": marks}  # fmt: skip
                    downloads = len(hits) - before
                    print(f"{case:7} cache: second replica Ready {seconds:.1f} s after the "
                          f"scale-up; downloads in the case {downloads}; its start, seconds "
                          f"from creation: {marks}", flush=True)  # fmt: skip
            ratio = results["without"]["second_replica_ready_s"] / max(
                results["with"]["second_replica_ready_s"], 0.1
            )
            print(f"with the cache: x{ratio:.1f} sooner (model {model.stat().st_size / 1e6:.0f} "
                  f"MB at {args.rate_mbps:g} MB/s)")  # fmt: skip
            out = {"model_mb": round(model.stat().st_size / 1e6), "rate_mbps": args.rate_mbps,
                   "cases": results, "speedup": round(ratio, 1)}  # fmt: skip
            if args.json:
                args.json.write_text(json.dumps(out, indent=2) + "\n")
        finally:
            if operator is not None:
                stop_operator(operator)
            plane.stop()


if __name__ == "__main__":
    main()
