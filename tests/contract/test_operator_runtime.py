"""The operator-to-runtime contract: any spec the API server accepts renders a pod whose
environment the runtime parses and whose model it loads.

Specs are drawn over every enum value of the generated CRD (a value added there is drawn here)
and kept only when the CRD's own CEL rules, evaluated on the defaulted object as the API server
does, accept them. Each is rendered, the runtime container's env goes to the runtime's settings
model, and a small real model of the drawn format is loaded and warmed up with those settings.
No cluster: the pod is rendered, not run.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import celpy
import modelfiles
import pytest
import torch
from hypothesis import HealthCheck, assume, example, find, given, settings
from hypothesis import strategies as st
from podenv import container_env, load_as_pod, pvc_file
from pydantic import ValidationError

from torchship_operator import api, render
from torchship_operator.analysis import AnalysisPolicy, Counters, Figures, Measurement, judge
from torchship_operator.crdgen import crd
from torchship_runtime.metrics import LATENCY_BUCKETS

SCHEMA = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
CEL = celpy.Environment()
PROGRAMS: dict[str, Any] = {}
SECRET_VALUE = "from-a-secret"


def at(path: str) -> dict[str, Any]:
    node = SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
    return node


def enum(path: str) -> list[Any]:
    return at(path)["enum"]


def defaulted(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in, as the API server stores it."""
    if not isinstance(value, dict) or "properties" not in schema:
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [defaulted(schema["items"], v) for v in value]
        return value
    out = dict(value)
    for name, child in schema["properties"].items():
        if name not in out and "default" in child:
            out[name] = copy.deepcopy(child["default"])
        if name in out:
            out[name] = defaulted(child, out[name])
    return out


def broken_rules(schema: dict[str, Any], value: Any, path: str = "spec") -> list[str]:
    """Messages of the x-kubernetes-validations rules `value` breaks, anywhere below."""
    broken = []
    for entry in schema.get("x-kubernetes-validations", []):
        program = PROGRAMS.get(entry["rule"])
        if program is None:
            program = PROGRAMS[entry["rule"]] = CEL.program(CEL.compile(entry["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            broken.append(f"{path}: {entry['message']}")
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                broken += broken_rules(child, value[name], f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            broken += broken_rules(schema["items"], item, f"{path}[{i}]")
    return broken


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """A field drawn or left out (None is dropped from the object)."""
    return st.none() | strategy


# Mostly true: a spec that leaves out what its format needs is drawn, but seldom (the rules
# would only filter it away).
mostly = st.sampled_from([True] * 9 + [False])


def compact(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


@st.composite
def models(draw) -> dict[str, Any]:
    fmt = draw(st.sampled_from(enum("model.format")))
    scheme = draw(st.sampled_from([*api.URI_SCHEMES, "/"]))
    suffix = modelfiles.suffix(fmt)
    uri = {
        "file://": f"file:///models/m{suffix}",
        "pvc://": f"pvc://models-claim/team/m{suffix}",
        "/": f"/opt/models/m{suffix}",
    }.get(scheme, f"{scheme}models.example.com/m{suffix}")
    return compact(
        {
            "uri": uri,
            "format": fmt,
            "entrypoint": modelfiles.ENTRYPOINTS.get(fmt) if draw(mostly) else None,
            "version": draw(optional(st.sampled_from(["v1", "2024-06-01", "1.0+build.7"]))),
            "name": draw(optional(st.sampled_from(["resnet", "m.v2"]))),
            "inputs": modelfiles.declared_inputs() if draw(st.booleans()) else None,
            "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]}]
            if draw(st.booleans())
            else None,
        }
    )


user_env = st.lists(
    st.sampled_from(
        [
            {"name": "OMP_NUM_THREADS", "value": "1"},
            {"name": "TORCHSHIP_LOG_LEVEL", "value": "DEBUG"},  # replaces the runtime's own
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "EMPTY", "value": ""},
        ]
    ),
    max_size=3,
    unique_by=lambda e: e["name"],
)


@st.composite
def runtimes(draw) -> dict[str, Any]:
    batching = compact(
        {
            "enabled": draw(optional(st.booleans())),
            "maxBatchSize": draw(optional(st.integers(1, 1024))),
            "maxDelayMs": draw(optional(st.sampled_from([0, 0.5, 2, 1000]))),
        }
    )
    return compact(
        {
            "device": draw(st.sampled_from(enum("runtime.device"))) if draw(mostly) else None,
            "dtype": draw(st.sampled_from(enum("runtime.dtype"))) if draw(mostly) else None,
            "quantize": draw(st.sampled_from(enum("runtime.quantize"))) if draw(mostly) else None,
            "batching": batching or None,
            "env": draw(optional(user_env)) or None,
            "drainSeconds": draw(optional(st.integers(0, 600))),
        }
    )


gpus = st.builds(
    lambda count, product, runtime_class: compact(
        {"count": count, "product": product, "runtimeClassName": runtime_class}
    ),
    st.sampled_from([1, 1, 2, 0]),
    optional(st.just("NVIDIA-H100-80GB-HBM3")),
    optional(st.just("nvidia")),
)

specs = st.builds(
    lambda model, runtime, gpu, auth: compact(
        {"model": model, "runtime": runtime or None, "gpu": gpu, "auth": auth}
    ),
    models(),
    runtimes(),
    optional(gpus),
    optional(st.just({"tokenSecretRef": {"name": "model-token"}})),
)


def accepted(spec: dict[str, Any]) -> dict[str, Any] | None:
    stored = defaulted(SCHEMA, spec)
    return None if broken_rules(SCHEMA, stored) else stored


@pytest.mark.parametrize(
    ("fmt", "dtype", "quantize"),
    [
        ("exported-program", "bfloat16", "none"),
        ("exported-program", "float16", "none"),
        ("torchscript", "float16", "none"),
        ("state-dict", "float32", "dynamic-int8"),
        ("handler", "float32", "none"),
    ],
)
def test_the_strategy_reaches_the_combinations_that_matter(fmt, dtype, quantize):
    """The drawn specs, once the rules have filtered them, include these pairs."""

    def match(spec: dict[str, Any]) -> bool:
        stored = accepted(spec)
        runtime = (stored or {}).get("runtime", {})
        return (
            bool(stored)
            and (stored["model"]["format"], runtime["dtype"]) == (fmt, dtype)
            and (runtime["quantize"] == quantize)
        )

    # A search, not a timed property: on a busy machine one example may take longer than 200 ms.
    find(specs, match, settings=settings(max_examples=5000, database=None, deadline=None))


def test_the_rules_filter_what_the_runtime_refuses():
    """Over many drawn specs: no accepted one pairs dynamic-int8 with another format or dtype,
    nor a handler with a half-precision dtype."""
    seen: set[tuple[str, str, str]] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(specs)
    def collect(spec):
        if stored := accepted(spec):
            rt = stored["runtime"]
            seen.add((stored["model"]["format"], rt["dtype"], rt["quantize"]))

    collect()
    assert len(seen) >= 5, seen
    assert not {s for s in seen if s[2] == "dynamic-int8" and s[:2] != ("state-dict", "float32")}
    assert not {s for s in seen if s[0] == "handler" and s[1] != "float32"}


@pytest.mark.parametrize(
    ("fmt", "runtime", "message"),
    [
        ("torchscript", {"quantize": "dynamic-int8", "device": "cpu"}, "needs model.format"),
        ("exported-program", {"quantize": "dynamic-int8", "device": "cpu"}, "needs model.format"),
        ("handler", {"dtype": "float16"}, "a handler chooses its own dtype"),
        ("state-dict", {"quantize": "dynamic-int8"}, "runs on CPU only"),
        (
            "state-dict",
            {"quantize": "dynamic-int8", "device": "cpu", "dtype": "float16"},
            "leave runtime.dtype float32",
        ),
        ("torchscript", {"compile": {}}, "runtime.compile needs model.format state-dict"),
        ("handler", {"compile": {"mode": "max-autotune"}}, "runtime.compile needs model.format"),
        (
            "state-dict",
            {"compile": {}, "quantize": "dynamic-int8", "device": "cpu"},
            "do not go together",
        ),
    ],
)
def test_the_rules_refuse_what_the_runtime_cannot_serve(fmt, runtime, message):
    spec = {"model": {"uri": "/m", "format": fmt, "entrypoint": "m:H"}, "runtime": runtime}
    assert any(message in m for m in broken_rules(SCHEMA, defaulted(SCHEMA, spec)))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"format": "torchscript", "entrypoint": "m:build"}, "carries its own code"),
        (
            {"format": "exported-program", "inputs": [{"name": "q", "datatype": "BYTES",
                                                       "shape": [-1]}]},
            "BYTES inputs are served by the handler format only",
        ),
    ],
)  # fmt: skip
def test_the_rules_refuse_model_fields_the_format_ignores_or_cannot_take(model, message):
    spec = {"model": {"uri": "/m"} | model}
    assert any(message in m for m in broken_rules(SCHEMA, defaulted(SCHEMA, spec)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("contract")


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
@given(spec=specs)
# The pairs the runtime once refused after the API server had accepted them, always tried.
@example(
    spec={
        "model": {"uri": "s3://m/r.pt2", "format": "exported-program"},
        "runtime": {"device": "cuda", "dtype": "float16"},
        "gpu": {"count": 1},
    }
)
@example(
    spec={
        "model": {"uri": "/m.pt2", "format": "exported-program"},
        "runtime": {"device": "cpu", "dtype": "bfloat16"},
    }
)
@example(
    spec={
        "model": {
            "uri": "pvc://c/w.pt",
            "format": "state-dict",
            "entrypoint": "contractmodel:build",
        },
        "runtime": {"device": "cpu", "quantize": "dynamic-int8"},
    }
)
@example(
    spec={
        "model": {"uri": "https://h/m.pt", "format": "torchscript"},
        "runtime": {"dtype": "bfloat16", "env": [{"name": "OMP_NUM_THREADS", "value": "1"}]},
        "auth": {"tokenSecretRef": {"name": "t"}},
    }
)
# torch.compile during the warm-up, on CPU (Inductor's C++ kernels).
@example(
    spec={
        "model": {"uri": "/m.pt", "format": "state-dict", "entrypoint": "contractmodel:build"},
        "runtime": {"device": "cpu", "compile": {"mode": "default"}},
    }
)
def test_every_accepted_spec_renders_a_pod_the_runtime_serves(spec, workdir):
    stored = defaulted(SCHEMA, spec)
    assume(not broken_rules(SCHEMA, stored))
    # What the API server accepts, the operator parses (its schema is the same one).
    parsed = api.ModelServiceSpec.model_validate(stored)
    pod = render.pod_spec("contract", parsed, "torchship-runtime:test")
    env = container_env(pod, resolved={"HF_TOKEN": SECRET_VALUE})

    fmt = parsed.model.format
    here = workdir / f"{fmt}-{abs(hash(repr(sorted(stored.items(), key=str))))}"
    model_file = modelfiles.write(fmt, here / "files")
    uri = None
    if parsed.model.uri.startswith("pvc://"):  # mounted: the file is where the pod finds it
        target = pvc_file(parsed.model.uri, here)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(model_file.path.read_bytes())
        (target.parent / "contractmodel.py").write_text(modelfiles.MODULE)
    else:  # downloaded or in the image: a local file of the same name stands in
        uri = str(model_file.path)
    extra = {}
    if parsed.auth:  # the Secret's file as the pod mounts it
        token = here / "token"
        token.write_text("s3cret\n")
        assert env["TORCHSHIP_AUTH_TOKEN_FILE"].startswith(render.AUTH_DIR)
        extra["TORCHSHIP_AUTH_TOKEN_FILE"] = str(token)
    settings_, model = load_as_pod(env, here, uri=uri, extra=extra)
    (container,) = pod["containers"]
    assert container["terminationMessagePath"] == settings_.termination_message_path

    assert model.ready
    assert settings_.model_format == fmt
    assert settings_.model_name == (parsed.model.name or "contract")
    assert settings_.dtype == parsed.runtime.dtype and settings_.quantize == parsed.runtime.quantize
    assert settings_.max_batch_size == parsed.runtime.batching.max_batch_size
    assert settings_.batching == parsed.runtime.batching.enabled
    assert settings_.drain_seconds == parsed.runtime.drain_seconds
    # One real request through the loaded model, as the data plane would run it.
    x = torch.linspace(-1, 1, 2 * modelfiles.WIDTH).reshape(2, modelfiles.WIDTH)
    batch = {modelfiles.INPUT: x.numpy() if fmt == "handler" else x}
    outputs = model.predict(batch)
    if parsed.model.outputs:  # declared output names name what the model returns
        assert list(outputs) == [t.name for t in parsed.model.outputs]
    if model.outputs:  # once known (declared, or from the warm-up), metadata names the same
        assert [m.name for m in model.outputs] == list(outputs)
    (out,) = outputs.values()
    want = model_file.module(x)
    got = torch.as_tensor(out).float()
    tolerance = (
        0.05 if parsed.runtime.dtype != "float32" or parsed.runtime.quantize != "none" else 1e-5
    )
    torch.testing.assert_close(got, want.detach(), atol=tolerance, rtol=tolerance)


def test_every_latency_limit_the_crd_accepts_can_be_crossed_on_what_the_runtime_measures():
    """A p99 beyond the runtime's largest finite latency bucket reads as that bound, so
    maxLatencyP99Ms stays below it: the slowest canary fails any limit the CRD accepts."""
    largest_ms = max(b for b in LATENCY_BUCKETS if not math.isinf(b)) * 1000
    bound = at("rollout.analysis.maxLatencyP99Ms")
    assert (bound["maximum"], bound["exclusiveMaximum"]) == (largest_ms, True)
    with pytest.raises(ValidationError, match="less than 10000"):
        api.AnalysisSpec(max_latency_p99_ms=largest_ms)
    # Every request slower than every finite bucket, as the runtime's histogram counts it.
    buckets = (*((le, 0.0) for le in LATENCY_BUCKETS), (math.inf, 50.0))
    canary = Figures.of([Counters(requests=50, buckets=buckets)])
    assert canary.p99_ms == largest_ms
    highest = api.AnalysisSpec(max_latency_p99_ms=math.nextafter(largest_ms, 0))
    verdict = judge(AnalysisPolicy.from_spec(highest), Measurement(0, 30, canary, Figures()))
    assert verdict.result == "Failed", verdict
