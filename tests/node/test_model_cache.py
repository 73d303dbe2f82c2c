"""The model cache on the real node: one ModelService scaled from 1 to 3 replicas downloads its
model once (the fill Job's request, counted by the model server), and every pod reads it from
the claim, read-only."""

from __future__ import annotations

import json
import re

import pytest
from harness import file_server
from helpers import condition, get_json, wait_for
from workload import model_service, pods, ready, served_model

pytestmark = pytest.mark.usefixtures("real_operator")
CLASS = "torchship-node-cache"


def test_scaling_from_one_to_three_downloads_the_model_once(
    real_plane, restricted_namespace, mlp_file, tmp_path
):
    ns, name = restricted_namespace, "cached"
    www = served_model(tmp_path, mlp_file)
    real_plane.writable_volume(f"{ns}-cache", CLASS)
    hits: list[str] = []
    try:
        with file_server(www, real_plane.node.slot.host_ip, hits=hits) as base:
            cache = {"size": "1Gi", "storageClassName": CLASS}
            manifest = json.loads(model_service(name, f"{base}/mlp.pt"))
            manifest["spec"]["model"]["cache"] = cache
            real_plane.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
            real_plane.kubectl(
                "wait", "-n", ns, "--for=condition=Ready", f"msvc/{name}", "--timeout=300s",
                timeout=330,
            )  # fmt: skip
            real_plane.kubectl("scale", "msvc", name, "-n", ns, "--replicas=3")

            def three_ready():
                ms = get_json(real_plane, "msvc", name, "-n", ns)
                current = pods(real_plane, ns, name)
                return (
                    ms
                    if condition(ms, "Ready").get("status") == "True"
                    and len(current) == 3
                    and all(ready(p) for p in current)
                    else None
                )

            wait_for(three_ready, timeout=300, interval=1)
    finally:
        real_plane.kubectl("delete", "pv", f"{ns}-cache", "--wait=false", check=False)
    assert hits.count("/mlp.pt") == 1, hits  # the fill Job's download, and no other
    for pod in pods(real_plane, ns, name):
        (fetch,) = pod["status"]["initContainerStatuses"]
        report = json.loads(fetch["state"]["terminated"]["message"])
        assert report["cached"] is True and report["bytes"] == mlp_file.stat().st_size
        mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert mounts["model-cache"]["readOnly"] is True
    events = get_json(real_plane, "events", "-n", ns)["items"]
    fetched = [e["message"] for e in events if e["reason"] == "ModelFetched"]
    assert len(fetched) == 3 and all(
        re.search(r"model fetched in [\d.]+ s, [\d.]+ kB \(already in the cache\)$", m)
        for m in fetched
    ), fetched


def test_a_failed_fill_reports_the_jobs_reason_and_the_fetchs_words(
    real_plane, restricted_namespace, tmp_path
):
    ns, name = restricted_namespace, "nofill"
    www = tmp_path / "www"
    www.mkdir()
    real_plane.writable_volume(f"{ns}-cache", CLASS)
    try:
        with file_server(www, real_plane.node.slot.host_ip) as base:
            manifest = json.loads(model_service(name, f"{base}/missing.pt"))
            manifest["spec"]["model"]["cache"] = {"size": "1Gi", "storageClassName": CLASS}
            real_plane.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))

            def failed():
                cond = condition(get_json(real_plane, "msvc", name, "-n", ns), "Degraded")
                return cond if cond.get("reason") == "CacheFillFailed" else None

            cond = wait_for(failed, timeout=300, interval=1)  # three tries, with back-off
    finally:
        real_plane.kubectl("delete", "pv", f"{ns}-cache", "--wait=false", check=False)
    assert cond["status"] == "True"
    assert "(BackoffLimitExceeded" in cond["message"], cond
    assert "the model could not be fetched from" in cond["message"]
    assert "HTTP Error 404" in cond["message"], cond
