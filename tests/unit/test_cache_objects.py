"""The model cache, rendered and read back: the claim, its fill Job, what the pods mount, the
names that follow the source, a failed Job's words, and which caches are left unused."""

from __future__ import annotations

from typing import Any

from torchship_operator import api, cache, cache_mount, render

OWNER = render.Owner(name="resnet", namespace="ml", uid="u-1")
IMAGE = "ghcr.io/torchship/runtime:0.1.0"
SOURCE = {"uri": "https://models.example.com/resnet.pt", "format": "torchscript", "version": "v1"}


def spec(**model: Any) -> api.ModelServiceSpec:
    fields = {**SOURCE, "cache": {"size": "20Gi"}, **model}
    return api.ModelServiceSpec.model_validate({"model": fields, "gpu": {"count": 1}})


def test_a_cache_is_named_by_the_source_identity():
    name = cache.cache_name("resnet", spec())
    assert name.startswith("resnet-cache-") and len(name) <= 62
    # Another revision of the same source (more replicas, another dtype): the same cache.
    other = api.ModelServiceSpec.model_validate(
        {"model": {**SOURCE, "cache": {"size": "20Gi"}}, "runtime": {"dtype": "float16"}}
    )
    assert cache.cache_name("resnet", other) == name
    # A changed source fills a new one.
    assert cache.cache_name("resnet", spec(version="v2")) != name
    assert cache.cache_name("resnet", spec(uri="https://models.example.com/r2.pt")) != name
    assert len(cache.cache_name("m" * 52, spec())) <= 62


def test_the_claim_and_the_job_that_fills_it():
    s = spec(cache={"size": "20Gi", "storageClassName": "nfs", "accessMode": "ReadWriteMany"})
    claim = cache.render_claim(OWNER, s)
    name = claim["metadata"]["name"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "20Gi"}},
        "storageClassName": "nfs",
    }
    assert claim["metadata"]["ownerReferences"] == [OWNER.reference]
    job = cache.render_job(OWNER, s, IMAGE)
    assert job["metadata"]["name"] == name
    assert job["metadata"]["ownerReferences"] == [OWNER.reference]
    pod = job["spec"]["template"]["spec"]
    (fill,) = pod["containers"]
    assert fill["image"] == IMAGE and fill["args"] == ["fetch"]
    env = {e["name"]: e.get("value") for e in fill["env"]}
    # It writes where the pods read, and downloads (it does not wait for itself).
    assert env["TORCHSHIP_MODEL_CACHE_DIR"] == cache.MOUNT
    assert env["TORCHSHIP_MODEL_URI"] == SOURCE["uri"]
    assert "TORCHSHIP_FETCH_WAIT_SECONDS" not in env
    assert {"name": cache.VOLUME, "mountPath": cache.MOUNT} in fill["volumeMounts"]
    assert pod["volumes"][0] == {"name": cache.VOLUME, "persistentVolumeClaim": {"claimName": name}}
    assert pod["restartPolicy"] == "Never" and "resources" not in fill  # no GPU for a download
    assert pod["securityContext"]["fsGroup"] == render.RUNTIME_UID
    # Its pod is not one of the serving pods (the pod watch follows those only).
    assert render.LABEL_MS not in job["spec"]["template"]["metadata"]["labels"]


def test_every_pod_mounts_the_cache_read_only_and_waits_for_it():
    s = spec()
    name = cache.cache_name("resnet", s)
    revision = render.revision_hash(s, IMAGE)
    pod = render.render(OWNER, s, IMAGE, {revision: 3}).deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[cache.VOLUME]["persistentVolumeClaim"] == {"claimName": name, "readOnly": True}
    (fetch,) = pod["initContainers"]
    runtime = pod["containers"][0]
    for container in (fetch, runtime):
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts[cache.VOLUME] == {
            "name": cache.VOLUME,
            "mountPath": cache.MOUNT,
            "readOnly": True,
        }
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TORCHSHIP_MODEL_CACHE_DIR"] == cache.MOUNT
        assert env["TORCHSHIP_FETCH_WAIT_SECONDS"] == str(cache_mount.WAIT_SECONDS)


def test_with_compile_the_next_replica_finds_the_kernels_an_earlier_one_compiled():
    """The model stays read-only; only the claim's kernels/ is written, and Inductor's and
    Triton's caches are there rather than on the pod's own volume."""
    s = api.ModelServiceSpec.model_validate(
        {
            "model": {
                **SOURCE,
                "format": "state-dict",
                "entrypoint": "m:build",
                "cache": {"size": "1Gi"},
            },
            "runtime": {"compile": {}},
        }
    )
    revision = render.revision_hash(s, IMAGE)
    pod = render.render(OWNER, s, IMAGE, {revision: 2}).deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[cache.VOLUME]["persistentVolumeClaim"]
    assert claim == {"claimName": cache.cache_name("resnet", s)}  # the mounts say what is written
    runtime = pod["containers"][0]
    mounts = [m for m in runtime["volumeMounts"] if m["name"] == cache.VOLUME]
    assert mounts == [
        {"name": cache.VOLUME, "mountPath": cache.MOUNT, "readOnly": True},
        {
            "name": cache.VOLUME,
            "mountPath": cache_mount.KERNELS_MOUNT,
            "subPath": cache_mount.KERNELS_SUBPATH,
        },
    ]
    env = {e["name"]: e.get("value") for e in runtime["env"]}
    assert env["TORCHINDUCTOR_CACHE_DIR"] == f"{cache_mount.KERNELS_MOUNT}/inductor"
    assert env["TRITON_CACHE_DIR"] == f"{cache_mount.KERNELS_MOUNT}/triton"
    # Without the cache, the pod's own volume: a restart finds them, the next replica not.
    alone = api.ModelServiceSpec.model_validate(
        {
            "model": {**SOURCE, "format": "state-dict", "entrypoint": "m:build"},
            "runtime": {"compile": {}},
        }
    )
    env = {e["name"]: e.get("value") for e in render.runtime_env("resnet", alone)}
    assert env["TORCHINDUCTOR_CACHE_DIR"] == f"{render.CACHE_DIR}/inductor"


def test_ahead_of_time_packages_go_where_the_kernels_go():
    def env_of(model: dict) -> dict[str, str]:
        s = api.ModelServiceSpec.model_validate(
            {
                "model": {**SOURCE, "format": "state-dict", "entrypoint": "m:build", **model},
                "runtime": {"compile": {"aheadOfTime": True}},
            }
        )
        return {e["name"]: e.get("value") for e in render.runtime_env("resnet", s)}

    shared = env_of({"cache": {"size": "1Gi"}})
    assert shared["TORCHSHIP_COMPILE_AHEAD_OF_TIME"] == "true"
    assert shared["TORCHSHIP_COMPILE_CACHE_DIR"] == f"{cache_mount.KERNELS_MOUNT}/aot"
    assert env_of({})["TORCHSHIP_COMPILE_CACHE_DIR"] == f"{render.CACHE_DIR}/aot"
    jit = render.runtime_env("resnet", api.ModelServiceSpec.model_validate(
        {"model": {**SOURCE, "format": "state-dict", "entrypoint": "m:build"},
         "runtime": {"compile": {}}}
    ))  # fmt: skip
    assert not {e["name"] for e in jit} & {"TORCHSHIP_COMPILE_AHEAD_OF_TIME"}


def test_a_spec_without_a_cache_keeps_its_revision():
    plain = api.ModelServiceSpec.model_validate({"model": SOURCE})
    assert "cache" not in render.revision_spec(plain)
    digest = render.revision_hash(plain, IMAGE)
    # The field's absence hashes as before it existed: upgrading starts no rollout.
    relevant = plain.model_dump(mode="json", by_alias=True, include=set(render.REVISION_FIELDS))
    assert relevant["model"]["cache"] is None and relevant["runtime"]["compile"] is None
    assert render.revision_hash(spec(), IMAGE) != digest


def job(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "resnet-cache-abc"}, "status": {"conditions": conditions}}


def test_what_a_fill_job_says():
    assert cache.job_state(None) == "Filling"
    assert cache.job_state(job([])) == "Filling"
    assert cache.job_state(job([{"type": "Complete", "status": "True"}])) == "Filled"
    failed = job(
        [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
    )
    assert cache.job_state(failed) == "Failed"
    pod = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": 1,
                            "message": "the model could not be fetched from https://models."
                            "example.com/resnet.pt: HTTPError: HTTP Error 403: Forbidden",
                        }
                    }
                }
            ]
        },
    }
    assert cache.job_failure(failed, [pod]) == (
        "the Job resnet-cache-abc that fills the model cache failed (BackoffLimitExceeded: Job "
        "has reached the specified backoff limit): the model could not be fetched from "
        "https://models.example.com/resnet.pt: HTTPError: HTTP Error 403: Forbidden"
    )


def deployment(claim: str | None) -> dict[str, Any]:
    volumes = [{"name": "cache", "emptyDir": {}}]
    if claim:
        volumes.append({"name": cache.VOLUME, "persistentVolumeClaim": {"claimName": claim}})
    return {"spec": {"template": {"spec": {"volumes": volumes}}}}


def test_caches_no_revision_mounts_are_the_ones_to_delete():
    kept = [deployment("c-v1"), deployment("c-v2"), deployment(None)]
    assert cache.unused(["c-v0", "c-v1", "c-v2", "c-v3"], kept, "c-v3") == ["c-v0"]
    assert cache.unused(["c-v1"], [], None) == ["c-v1"]
