"""The API server sends the operator its children only: an unrelated Pod or Deployment in a
namespace it watches (a cluster-wide operator watches them all) never reaches it, so never its
caches, while its own children keep arriving on the same watches."""

from __future__ import annotations

import json
import re
import urllib.request

from helpers import wait_for
from test_modelservice import msvc, wait_ready

from torchship_operator import render
from torchship_operator.selection import SELECTOR


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def total(text: str, name: str, **labels: str) -> float:
    """The sum of `name` over the series whose labels include `labels` (0 when none)."""
    found = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            found += float(match.group(2))
    return found


def pod(name: str, labels: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }


UNRELATED = [
    pod("web", {"app": "web"}),
    # Half of our labels is not ours: another manager, or no ModelService.
    pod("impostor", {"app.kubernetes.io/managed-by": "helm", render.LABEL_MS: "served"}),
    pod("orphan", {"app.kubernetes.io/managed-by": "torchship"}),
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    },
]


def test_an_unrelated_pod_never_reaches_the_operator(control_plane, operator, namespace):
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=msvc("served", replicas=1))
    wait_ready(control_plane, namespace, "msvc/served")
    items = {"apiVersion": "v1", "kind": "List", "items": UNRELATED}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(items))
    control_plane.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "deployment/web", "--timeout=60s"
    )
    control_plane.kubectl("label", "-n", namespace, "pod", "web", "touched=yes")
    # Our own change after theirs, on the same watches: once it is Ready again, every event
    # about the unrelated objects would have arrived before it.
    control_plane.kubectl(
        "patch", "-n", namespace, "msvc", "served", "--type=merge", "-p", '{"spec":{"replicas":2}}'
    )
    control_plane.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=jsonpath={.status.readyReplicas}=2",
        "msvc/served",
        "--timeout=60s",
    )
    wait_ready(control_plane, namespace, "msvc/served")

    text = metrics(operator.metrics_port)
    assert total(text, "torchship_watch_events_total", resource="pods", ours="true") >= 2
    assert total(text, "torchship_watch_events_total", ours="false") == 0

    def cache_holds_ours_alone() -> bool:
        listed = control_plane.kubectl("get", "pods", "-A", "-l", SELECTOR, "-o", "name")
        cached = total(metrics(operator.metrics_port), "torchship_cached_objects", cache="pod")
        return cached == len(listed.stdout.split())

    wait_for(cache_holds_ours_alone, 30)
