"""The real node's own life: it registers beside kwok's nodes, runs a pod, and its stop leaves
nothing behind on the machine (processes, mounts, namespaces, interfaces, routes, cgroups,
iptables rules)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import localnode
import pytest
import testenv
from helpers import get_json
from skips import skip_unless_installable

pytestmark = pytest.mark.cluster


def machine_state() -> dict[str, object]:
    def out(*args: str) -> str:
        return subprocess.run(args, capture_output=True, text=True).stdout

    return {
        "netns": sorted(out("ip", "netns", "list").split()),
        "links": sorted(
            line.split(":")[1].strip() for line in out("ip", "-o", "link").splitlines()
        ),
        "routes": sorted(out("ip", "route").splitlines()),
        # Rules, not the dump's dated header lines.
        "iptables": sorted(
            line for line in out("iptables-save").splitlines() if not line.startswith("#")
        ),
        "mounts": sorted(
            line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        ),
        "cgroups": sorted(
            str(p) for c in localnode.cgroup_controllers() for p in c.glob("torchship-node-*")
        ),
    }


@pytest.fixture
def bare_plane(tmp_path):
    if reason := testenv.real_node_unavailable():
        skip_unless_installable(reason)
    return testenv.ControlPlane(
        workdir=tmp_path / "plane", bin_dir=testenv.build_binaries(), real_node=True
    )


def test_the_node_runs_a_pod_and_its_stop_leaves_nothing_behind(bare_plane):
    before = machine_state()
    bare_plane.start(timeout=180)
    try:
        node = get_json(bare_plane, "node", localnode.NODE_NAME)
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["InternalIP"] == bare_plane.node.slot.node_ip
        nodes = get_json(bare_plane, "nodes")["items"]
        assert {n["metadata"]["name"] for n in nodes} == {
            localnode.NODE_NAME, "gpu-h100-0", "gpu-h100-1", "gpu-a10-0"
        }  # fmt: skip
        # The sandbox image alone (no build needed): a pod of it runs on the real node.
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "containers": [{"name": "pause", "image": localnode.PAUSE_IMAGE}],
                "terminationGracePeriodSeconds": 1,
            },
        }
        bare_plane.kubectl("apply", "-f", "-", input=json.dumps(pod))
        bare_plane.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s")
        running = machine_state()
        assert running["netns"] != before["netns"] and running["cgroups"]
    finally:
        bare_plane.stop()
    # Nothing new is left; what other tests' nodes and pods remove meanwhile is theirs.
    after = machine_state()
    for key, value in before.items():
        assert not set(after[key]) - set(value), key
