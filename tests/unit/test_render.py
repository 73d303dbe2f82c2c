"""Pure rendering: golden files for whole objects, and the rules behind them one by one.

Golden files live in tests/golden/; after an intended change, rewrite them with
    TORCHSHIP_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from torchship_operator import api, render
from torchship_operator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
IMAGE = Settings().runtime_image
OWNER = render.Owner(name="mlp", namespace="ml", uid="00000000-0000-0000-0000-00000000abcd")
INPUTS = {
    "cpu-model": ROOT / "examples" / "cpu-model.yaml",
    "gpu-model": ROOT / "examples" / "gpu-model.yaml",
    "full-spec": GOLDEN / "full-spec.input.yaml",
}
MODEL = {"uri": "https://models.example.com/m.pt", "format": "torchscript"}


def spec(**fields: Any) -> api.ModelServiceSpec:
    return api.ModelServiceSpec.model_validate({"model": MODEL} | fields)


def rendered(s: api.ModelServiceSpec, owner: render.Owner = OWNER) -> render.Desired:
    image = s.runtime.image or IMAGE
    revision = render.revision_hash(s, image)
    return render.render(owner, s, image, {revision: s.total_replicas}, serving=(revision,))


def pod(s: api.ModelServiceSpec) -> dict[str, Any]:
    return rendered(s).deployment["spec"]["template"]["spec"]


def env(s: api.ModelServiceSpec) -> dict[str, Any]:
    entries = pod(s)["containers"][0]["env"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), names
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in entries}


@pytest.mark.parametrize("case", sorted(INPUTS))
def test_golden(case: str):
    manifest = yaml.safe_load(INPUTS[case].read_text())
    owner = render.Owner(
        name=manifest["metadata"]["name"],
        namespace="ml",
        uid="00000000-0000-0000-0000-0000000000ff",
    )
    desired = rendered(api.ModelServiceSpec.model_validate(manifest["spec"]), owner)
    text = yaml.safe_dump(
        {
            "revision": desired.revision,
            "service": desired.service,
            "deployment": desired.deployment,
        },
        sort_keys=False,
        width=100,
    )
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("TORCHSHIP_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with TORCHSHIP_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} differs from what render() produces"


# -- revisions ---------------------------------------------------------------------------------


def test_revision_hash_is_stable_and_short():
    first = render.revision_hash(spec(), IMAGE)
    assert first == render.revision_hash(spec(), IMAGE)
    assert len(first) == 10 and first.isalnum() and first.islower()


@pytest.mark.parametrize(
    "change",
    [
        {"replicas": 7},
        {"autoscaling": {"maxReplicas": 9}},
        {"rollout": {"strategy": "BlueGreen", "revisionHistoryLimit": 1}},
    ],
)
def test_scaling_and_rollout_settings_do_not_make_a_revision(change):
    assert render.revision_hash(spec(**change), IMAGE) == render.revision_hash(spec(), IMAGE)


@pytest.mark.parametrize(
    "change",
    [
        {"model": MODEL | {"version": "v2"}},
        {"model": MODEL | {"uri": "https://models.example.com/other.pt"}},
        {"runtime": {"dtype": "float16"}},
        {"runtime": {"env": [{"name": "A", "value": "1"}]}},
        {"gpu": {"count": 1}},
        {"service": {"port": 9000}},
        {"auth": {"tokenSecretRef": {"name": "s"}}},
    ],
)
def test_pod_relevant_changes_make_a_new_revision(change):
    assert render.revision_hash(spec(**change), IMAGE) != render.revision_hash(spec(), IMAGE)


def test_the_runtime_image_is_part_of_the_revision():
    assert render.revision_hash(spec(), "a:1") != render.revision_hash(spec(), "a:2")


def test_deployment_names_fit_in_a_label_at_the_longest_modelservice_name():
    owner = render.Owner(name="m" * 52, namespace="ml", uid="u")
    deployment = rendered(spec(), owner).deployment
    assert len(deployment["metadata"]["name"]) <= 63
    assert deployment["metadata"]["name"].startswith("m" * 52 + "-")


def test_replica_split_is_an_input():
    s = spec(replicas=4)
    revision = render.revision_hash(s, IMAGE)
    desired = render.render(OWNER, s, IMAGE, {revision: 1, "0ld0ld0ld0": 3, "0lder0lder": 0})
    assert desired.revision == revision
    assert desired.deployment["spec"]["replicas"] == 1
    assert desired.scales == {"0ld0ld0ld0": 3, "0lder0lder": 0}
    # With no decision yet, the desired revision takes the total.
    assert render.render(OWNER, s, IMAGE, {}).deployment["spec"]["replicas"] == 4


def test_labels_and_owner_reference():
    s = spec(model=MODEL | {"version": "v3"})
    desired = rendered(s)
    revision = desired.revision
    labels = desired.deployment["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "torchship-runtime",
        "app.kubernetes.io/instance": "mlp",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "torchship",
        "app.kubernetes.io/managed-by": "torchship",
        "app.kubernetes.io/version": "v3",
        "torchship.dev/modelservice": "mlp",
        "torchship.dev/revision": revision,
    }
    assert desired.deployment["spec"]["template"]["metadata"]["labels"] == labels
    assert desired.deployment["spec"]["selector"]["matchLabels"] == {
        "torchship.dev/modelservice": "mlp",
        "torchship.dev/revision": revision,
    }
    for obj in (desired.deployment, desired.service):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "torchship.dev/v1alpha1",
            "kind": "ModelService",
            "name": "mlp",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@pytest.mark.parametrize(
    ("version", "label"),
    [("v1", "v1"), ("2024.06-rc1+build.7", "2024.06-rc1-build.7"), ("-x-", "x"), ("+", None)],
)
def test_versions_become_valid_label_values(version, label):
    labels = rendered(spec(model=MODEL | {"version": version})).deployment["metadata"]["labels"]
    assert labels.get("app.kubernetes.io/version") == label


# -- the Service -------------------------------------------------------------------------------


def test_service_selects_every_revision_while_all_running_ones_serve():
    everyone = {"torchship.dev/modelservice": "mlp"}
    for serving, running in [
        (("new",), ("new",)),  # steady state
        (("new",), ()),  # scaled to zero
        (("old", "new"), ("old", "new")),  # canary or rolling update: split by replicas
        ((), ("new",)),  # nothing decided yet
    ]:
        service = render.render_service(OWNER, spec(), serving, running)
        assert service["spec"]["selector"] == everyone, (serving, running)


def test_service_narrows_to_the_serving_revision_while_another_runs_beside_it():
    # Blue-green: the new revision is up in full but takes no traffic until the switch.
    service = render.render_service(OWNER, spec(), ("blue",), ("blue", "green"))
    assert service["spec"]["selector"] == {
        "torchship.dev/modelservice": "mlp",
        "torchship.dev/revision": "blue",
    }
    desired = render.render(OWNER, spec(), IMAGE, {"blue": 2, "green": 2}, serving=("blue",))
    assert desired.service["spec"]["selector"]["torchship.dev/revision"] == "blue"


def test_service_port_and_url():
    s = spec(service={"port": 9000})
    http, grpc = render.render_service(OWNER, s)["spec"]["ports"]
    assert http == {"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}
    assert grpc == {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP"}
    assert render.service_url(OWNER, s) == "http://mlp.ml.svc.cluster.local:9000"
    assert render.grpc_address(OWNER, s) == "mlp.ml.svc.cluster.local:8081"
    assert render.selector_string("mlp") == "torchship.dev/modelservice=mlp"


def test_grpc_port_zero_turns_grpc_off():
    s = spec(service={"grpcPort": 0})
    assert [p["name"] for p in render.render_service(OWNER, s)["spec"]["ports"]] == ["http"]
    assert [p["name"] for p in pod(s)["containers"][0]["ports"]] == ["http"]
    assert env(s)["TORCHSHIP_GRPC_PORT"] == "0"
    assert render.grpc_address(OWNER, s) is None


def test_tls_mounts_the_secret_and_probes_speak_https():
    s = spec(tls={"secretRef": {"name": "mlp-tls"}})
    p = pod(s)
    (volume,) = [v for v in p["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "mlp-tls"
    assert [i["key"] for i in volume["secret"]["items"]] == ["tls.crt", "tls.key"]
    (mount,) = [m for m in p["containers"][0]["volumeMounts"] if m["name"] == "tls"]
    assert mount == {"name": "tls", "mountPath": render.TLS_DIR, "readOnly": True}
    assert "subPath" not in mount  # a renewed Secret reaches the pod only without subPath
    values = env(s)
    assert values["TORCHSHIP_TLS_CERT_FILE"] == f"{render.TLS_DIR}/tls.crt"
    assert values["TORCHSHIP_TLS_KEY_FILE"] == f"{render.TLS_DIR}/tls.key"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert p["containers"][0][probe]["httpGet"]["scheme"] == "HTTPS"
    assert render.service_url(OWNER, s) == "https://mlp.ml.svc.cluster.local:8080"
    assert render.revision_hash(s, IMAGE) != render.revision_hash(spec(), IMAGE)
    assert "TORCHSHIP_TLS_CERT_FILE" not in env(spec())


# -- the pod -------------------------------------------------------------------------------------


def test_runtime_contract_env():
    values = env(
        spec(
            model=MODEL
            | {"version": "v2", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]},
            runtime={"batching": {"maxDelayMs": 2.5}},
        )
    )
    assert values == {
        "TORCHSHIP_MODEL_URI": "https://models.example.com/m.pt",
        "TORCHSHIP_MODEL_FORMAT": "torchscript",
        "TORCHSHIP_MODEL_NAME": "mlp",
        "TORCHSHIP_MODEL_VERSION": "v2",
        "TORCHSHIP_DEVICE": "auto",
        "TORCHSHIP_DTYPE": "float32",
        "TORCHSHIP_QUANTIZE": "none",
        "TORCHSHIP_BATCHING": "true",
        "TORCHSHIP_MAX_BATCH_SIZE": "32",
        "TORCHSHIP_MAX_DELAY_MS": "2.5",
        "TORCHSHIP_PORT": "8080",
        "TORCHSHIP_GRPC_PORT": "8081",
        "TORCHSHIP_MODEL_CACHE_DIR": "/var/cache/torchship",
        "TORCHSHIP_PVC_ROOT": "/mnt/models",
        "TORCHSHIP_DRAIN_SECONDS": "10",
        "TORCHSHIP_MODEL_INPUTS": '[{"name":"x","datatype":"FP32","shape":[-1,3]}]',
    }
    assert json.loads(values["TORCHSHIP_MODEL_INPUTS"])[0]["shape"] == [-1, 3]


def test_user_env_is_appended_and_replaces_a_runtime_variable_of_the_same_name():
    s = spec(
        runtime={
            "env": [{"name": "EXTRA", "value": "1"}, {"name": "TORCHSHIP_DTYPE", "value": "x"}]
        }
    )
    entries = pod(s)["containers"][0]["env"]
    assert entries[-2:] == [
        {"name": "EXTRA", "value": "1"},
        {"name": "TORCHSHIP_DTYPE", "value": "x"},
    ]
    assert env(s)["TORCHSHIP_DTYPE"] == "x"


def test_auth_token_is_a_mounted_file_never_a_value():
    s = spec(auth={"tokenSecretRef": {"name": "creds", "key": "bearer"}})
    p = pod(s)
    container = p["containers"][0]
    assert env(s)["TORCHSHIP_AUTH_TOKEN_FILE"] == "/var/run/secrets/torchship/auth/bearer"
    assert not [e for e in container["env"] if "valueFrom" in e]
    volume = next(v for v in p["volumes"] if v["name"] == "auth")
    assert volume["secret"]["secretName"] == "creds"
    assert volume["secret"]["items"] == [{"key": "bearer", "path": "bearer"}]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth")
    assert mount == {
        "name": "auth",
        "mountPath": "/var/run/secrets/torchship/auth",
        "readOnly": True,
    }
    assert "TORCHSHIP_AUTH_TOKEN_FILE" not in env(spec())


def test_volumes_shm_cache_and_pvc():
    p = pod(spec(model={"uri": "pvc://store/models/a.pt", "format": "torchscript"}))
    volumes = {v["name"]: v for v in p["volumes"]}
    assert volumes["dshm"] == {"name": "dshm", "emptyDir": {"medium": "Memory"}}
    assert "emptyDir" in volumes["cache"]
    assert volumes["model"]["persistentVolumeClaim"] == {"claimName": "store", "readOnly": True}
    mounts = {m["mountPath"]: m for m in p["containers"][0]["volumeMounts"]}
    assert mounts["/dev/shm"]["name"] == "dshm"
    assert mounts["/var/cache/torchship"]["name"] == "cache"
    assert mounts["/mnt/models/store"] == {
        "name": "model",
        "mountPath": "/mnt/models/store",
        "readOnly": True,
    }
    assert "model" not in {v["name"] for v in pod(spec())["volumes"]}


def test_probes_hit_the_runtime_health_endpoints():
    container = pod(spec())["containers"][0]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    # Started once the model is loaded (Loading -> WarmingUp), ready once warmed up.
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/started", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    # The startup probe allows a slow load and compile before liveness counts.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize(
    "uri", ["https://models.example.com/m.pt", "http://10.0.0.1/m.pt", "s3://bucket/m.pt"]
)
def test_a_remote_model_is_fetched_by_an_init_container_of_the_runtime_image(uri: str):
    resources = {"requests": {"cpu": "2"}, "limits": {"memory": "4Gi"}}
    p = pod(spec(model={"uri": uri, "format": "torchscript"}, gpu={"count": 2},
                 runtime={"resources": resources}))  # fmt: skip
    (fetch,) = p["initContainers"]
    runtime = p["containers"][0]
    assert fetch["name"] == "fetch" and fetch["args"] == ["fetch"]
    assert fetch["image"] == runtime["image"]
    # The same settings and cache volume: the runtime then finds the model in the cache.
    assert fetch["env"] == runtime["env"]
    assert fetch["volumeMounts"] == runtime["volumeMounts"]
    assert fetch["securityContext"] == runtime["securityContext"]
    # Its report is its termination message; it takes no GPU, only the CPU and memory.
    assert fetch["terminationMessagePolicy"] == "File"
    assert fetch["resources"] == resources
    assert "nvidia.com/gpu" in runtime["resources"]["limits"]


@pytest.mark.parametrize("uri", ["/models/m.pt", "file:///models/m.pt", "pvc://store/m.pt"])
def test_a_local_model_needs_no_fetch(uri: str):
    assert "initContainers" not in pod(spec(model={"uri": uri, "format": "torchscript"}))


def test_security_context_meets_pod_security_restricted():
    p = pod(spec(gpu={"count": 1}))
    assert p["securityContext"]["runAsNonRoot"] is True
    assert p["securityContext"]["runAsUser"] == 1000
    assert p["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = p["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    assert p["automountServiceAccountToken"] is False
    # Restricted allows only these volume types.
    for volume in p["volumes"]:
        assert set(volume) - {"name"} <= {"emptyDir", "secret", "persistentVolumeClaim"}


def test_grace_period_covers_the_drain_and_the_work_after_it():
    p = pod(spec(runtime={"drainSeconds": 45}))
    assert p["terminationGracePeriodSeconds"] > 45
    assert env(spec(runtime={"drainSeconds": 45}))["TORCHSHIP_DRAIN_SECONDS"] == "45"


# -- GPUs and scheduling -------------------------------------------------------------------------


def test_no_gpu_means_no_gpu_scheduling():
    p = pod(spec())
    assert "nodeSelector" not in p and "tolerations" not in p and "runtimeClassName" not in p
    assert "resources" not in p["containers"][0]


def test_gpu_count_becomes_a_limit_and_tolerates_the_gpu_taint():
    p = pod(spec(gpu={"count": 2}, runtime={"resources": {"limits": {"memory": "8Gi"}}}))
    assert p["containers"][0]["resources"] == {"limits": {"memory": "8Gi", "nvidia.com/gpu": "2"}}
    assert p["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_mig_resource_product_and_node_selector_merge():
    p = pod(
        spec(
            gpu={
                "count": 1,
                "resourceName": "nvidia.com/mig-1g.10gb",
                "product": "NVIDIA-H100-80GB-HBM3",
                "nodeSelector": {"pool": "inference"},
                "runtimeClassName": "nvidia",
            }
        )
    )
    assert p["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": "1"}
    assert p["nodeSelector"] == {
        "pool": "inference",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }
    assert p["runtimeClassName"] == "nvidia"


def test_explicit_tolerations_replace_the_default():
    mine = {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
    assert pod(spec(gpu={"count": 1, "tolerations": [mine]}))["tolerations"] == [mine]
    # An empty list says: no tolerations at all.
    assert pod(spec(gpu={"count": 1, "tolerations": []})).get("tolerations", []) == []


def test_quantities_render_as_strings():
    res = pod(spec(runtime={"resources": {"requests": {"cpu": 2, "memory": "1Gi"}}}))
    assert res["containers"][0]["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}}


def test_empty_env_values_are_left_out_as_the_server_stores_them():
    entries = pod(spec(runtime={"env": [{"name": "EMPTY", "value": ""}]}))["containers"][0]["env"]
    assert {"name": "TORCHSHIP_MODEL_VERSION"} in entries  # no model.version
    assert {"name": "EMPTY"} in entries
    assert all(e.get("value") != "" for e in entries)


# ---------------------------------------------------------------------------------------------
# Each revision's Deployment keeps the spec fields that made it (render.SPEC_ANNOTATION); put
# back into a ModelService, they name the same revision again: that is what a rollback does.

ROLLBACK_CASES = [
    *sorted(GOLDEN.glob("*.input.yaml")),
    ROOT / "examples" / "cpu-model.yaml",
    ROOT / "examples" / "gpu-model.yaml",
]


@pytest.mark.parametrize("path", ROLLBACK_CASES, ids=lambda p: p.name)
def test_the_annotation_brings_back_the_same_revision(path: Path):
    spec = api.ModelServiceSpec.model_validate(yaml.safe_load(path.read_text())["spec"])
    image = "ghcr.io/torchship/runtime:test"
    deployment = render.render_deployment(OWNER, spec, render.revision_hash(spec, image), 1, image)
    kept = json.loads(deployment["metadata"]["annotations"][render.SPEC_ANNOTATION])
    assert set(kept) <= render.REVISION_FIELDS and "model" in kept
    # The rest of the spec (replicas, rollout, autoscaling) is the user's to keep as it is.
    live = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    restored = {k: v for k, v in live.items() if k not in render.REVISION_FIELDS} | kept
    again = api.ModelServiceSpec.model_validate(restored)
    assert render.revision_hash(again, image) == render.revision_hash(spec, image)
    assert again == spec


def test_the_annotation_is_outside_the_pod_template():
    # Pods of an existing revision must not restart for it.
    spec = api.ModelServiceSpec(model=api.ModelSource(uri="/m.pt", format="torchscript"))
    deployment = render.render_deployment(OWNER, spec, "abc", 1, "img")
    assert "annotations" not in deployment["spec"]["template"]["metadata"]


def test_compile_sets_the_mode_and_keeps_the_kernels_on_the_cache_volume():
    compiled = env(spec(runtime={"compile": {"mode": "max-autotune"}}))
    assert compiled["TORCHSHIP_COMPILE_MODE"] == "max-autotune"
    assert compiled["TORCHINDUCTOR_CACHE_DIR"] == f"{render.CACHE_DIR}/inductor"
    assert compiled["TRITON_CACHE_DIR"] == f"{render.CACHE_DIR}/triton"
    assert "TORCHSHIP_COMPILE_MODE" not in env(spec())  # off by default
