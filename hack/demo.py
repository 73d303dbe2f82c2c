#!/usr/bin/env python3
"""The main job on the embedded default, end to end:

1. a local control plane with fake GPU nodes (hack/testenv.py),
2. the ModelService CRD installed and the operator running,
3. a sample ModelService applied and becoming Ready, its pods on an H100 node,
4. the runtime serving that same sample model locally, configured exactly as the operator
   configured the pods, and one real inference request answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
sys.path.insert(0, str(HACK))
import testenv  # noqa: E402

SAMPLE = """\
apiVersion: torchship.dev/v1alpha1
kind: ModelService
metadata:
  name: sample
  namespace: demo
spec:
  model:
    uri: file://{model}
    format: torchscript
    version: "v1"
    inputs: [{{name: input__0, datatype: FP32, shape: [-1, 64]}}]
  runtime:
    batching: {{maxBatchSize: 32, maxDelayMs: 5}}
  gpu:
    count: 1
    product: NVIDIA-H100-80GB-HBM3
  replicas: 2
"""


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def save_sample_model(path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    ).eval()
    torch.jit.script(model).save(str(path))


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="torchship-demo-") as tmp_dir:
        tmp = Path(tmp_dir)
        step("starting the local control plane (etcd, kube-apiserver, controllers, kwok)")
        plane = testenv.ControlPlane(workdir=tmp / "cluster", bin_dir=testenv.build_binaries())
        plane.start()
        processes: list[subprocess.Popen] = []
        try:
            print(plane.kubectl("get", "nodes", "-L", "nvidia.com/gpu.product").stdout)

            step("installing the CRDs and starting the operator")
            plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
            plane.kubectl("wait", "--for=condition=Established", "crd", "--all")
            operator_log = (tmp / "operator.log").open("wb")
            env = {
                **plane.env,
                "TORCHSHIP_METRICS_PORT": str(testenv.free_port()),
                "TORCHSHIP_HEALTH_PORT": str(testenv.free_port()),
            }
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "torchship_operator"],
                    env=env,
                    stdout=operator_log,
                    stderr=subprocess.STDOUT,
                )
            )

            step("applying a sample ModelService (1 GPU per replica, H100 nodes)")
            model_path = tmp / "sample" / "mlp.pt"
            model_path.parent.mkdir()
            save_sample_model(model_path)
            manifest = SAMPLE.format(model=model_path)
            print(manifest)
            plane.kubectl("create", "namespace", "demo")
            plane.kubectl("apply", "-f", "-", input=manifest)
            plane.kubectl(
                "wait", "-n", "demo", "--for=condition=Ready", "msvc/sample", "--timeout=120s"
            )
            print(plane.kubectl("get", "msvc", "-n", "demo").stdout)
            print(plane.kubectl("get", "pods", "-n", "demo", "-o", "wide").stdout)

            step("serving the same model locally, with the env the operator gave the pods")
            deployment = json.loads(
                plane.kubectl("get", "deployments", "-n", "demo", "-o", "json").stdout
            )["items"][0]
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            port = testenv.free_port()
            runtime_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
            runtime_env |= {
                "TORCHSHIP_HOST": "127.0.0.1",
                "TORCHSHIP_PORT": str(port),
                "TORCHSHIP_MODEL_CACHE_DIR": str(tmp / "cache"),
            }
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "torchship_runtime"],
                    env={**os.environ, **runtime_env},
                    stdout=(tmp / "runtime.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/v2/health/ready")

            step("one inference request (Open Inference Protocol v2)")
            request = {
                "id": "demo-1",
                "inputs": [
                    {
                        "name": "input__0",
                        "datatype": "FP32",
                        "shape": [1, 64],
                        "data": [i / 64 for i in range(64)],
                    }
                ],
            }
            print(f"POST {base}/v2/models/sample/infer")
            req = urllib.request.Request(
                f"{base}/v2/models/sample/infer",
                data=json.dumps(request).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                answer = json.loads(r.read())
            print(json.dumps(answer, indent=2))
            print("\nDone: the ModelService is Ready and the model answered.")
            return 0
        finally:
            for proc in processes:
                proc.terminate()
            for proc in processes:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            plane.stop()


if __name__ == "__main__":
    sys.exit(main())
