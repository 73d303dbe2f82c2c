"""The examples that need no GPU, run for real: applied as a user would, their model fetched by
the pods over HTTP from a server on this machine (the host's end of the node's veth, which the
pods reach through the node), Ready through the pods' own probes, and answering through
`kubectl port-forward`. The GPU examples are placed on kwok's nodes in
tests/integration/test_examples.py."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit

import modelfiles
import pytest
import yaml
from harness import file_server
from helpers import get_json
from integration.test_examples import EXAMPLES, check_listing, needs_gpu, the_modelservice

# The manifests in examples/ (the README's and the overlays' are GPU ones).
FILE_EXAMPLES = [e for e in EXAMPLES if e.id != "readme" and not e.id.startswith("kustomize")]
CPU_EXAMPLES = [e for e in FILE_EXAMPLES if not needs_gpu(the_modelservice(e.manifest(None), "x"))]

pytestmark = pytest.mark.usefixtures("real_operator")


@pytest.mark.parametrize("example", CPU_EXAMPLES, ids=lambda e: e.id)
def test_a_cpu_example_is_served_by_its_pods(real_plane, restricted_namespace, example, tmp_path):
    ns = restricted_namespace
    body = the_modelservice(example.manifest(real_plane), ns)
    name, model = body["metadata"]["name"], body["spec"]["model"]
    path = urlsplit(model["uri"]).path
    model_file = modelfiles.write(model["format"], tmp_path / "files")
    served = tmp_path / "www" / path.lstrip("/")
    served.parent.mkdir(parents=True)
    served.write_bytes(model_file.path.read_bytes())
    hits: list[str] = []
    with file_server(tmp_path / "www", real_plane.node.slot.host_ip, hits=hits) as base:
        # Same path, this machine's server instead of the example's host.
        model["uri"] = f"{base}{path}"
        real_plane.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(body))
        real_plane.kubectl(
            "wait", "-n", ns, "--for=condition=Ready", f"msvc/{name}", "--timeout=300s",
            timeout=330,
        )  # fmt: skip
    replicas = body["spec"].get("replicas", 1)
    assert hits.count(path) == replicas, hits  # each pod fetched the model once
    pods = get_json(real_plane, "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")
    assert len(pods["items"]) == replicas
    assert {p["spec"]["nodeName"] for p in pods["items"]} == {real_plane.node.name}
    check_listing(real_plane, ns, body)

    (declared,) = model["inputs"]
    request = {
        "inputs": [
            {
                "name": declared["name"],
                "datatype": declared["datatype"],
                "shape": [2, modelfiles.WIDTH],
                "data": [0.25] * (2 * modelfiles.WIDTH),
            }
        ]
    }
    with real_plane.port_forward(ns, f"svc/{name}", 8080) as port:
        call = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/{name}/infer",
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(call, timeout=30) as answer:
            outputs = json.loads(answer.read())["outputs"]
    assert outputs and outputs[0]["shape"][0] == 2
