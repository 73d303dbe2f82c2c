"""The ModelService API (torchship.dev/v1alpha1), modelled once.

The CRD in crds/ is generated from these types (`python -m torchship_operator.crdgen`):
class and field docstrings become schema descriptions (what `kubectl explain` shows), defaults
and enums carry over, and the `x-kubernetes-validations` CEL rules below are what the API server
enforces on every write. Wire names are camelCase (aliases); Python attributes are snake_case.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "torchship.dev"
VERSION = "v1alpha1"
KIND = "ModelService"
PLURAL = "modelservices"
API_VERSION = f"{GROUP}/{VERSION}"

URI_SCHEMES = ("file://", "pvc://", "http://", "https://", "s3://")


def defaulted(factory: Any, **kwargs: Any) -> Any:
    """A nested object the API server fills in, whole, when it is omitted."""

    def default_schema(schema: dict[str, Any]) -> None:
        schema["default"] = factory().model_dump(mode="json", by_alias=True, exclude_none=True)

    return Field(default_factory=factory, json_schema_extra=default_schema, **kwargs)


def rule(expression: str, message: str, **extra: Any) -> dict[str, Any]:
    """One x-kubernetes-validations entry: a CEL expression and what a person reads."""
    return {"rule": expression, "message": message, **extra}


def validations(*rules: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(rules)})


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


# Free-form Kubernetes objects passed through untouched (tolerations, valueFrom, HPA behavior).
FreeForm = dict[str, Any]


class TensorSpec(ApiModel):
    """One input or output tensor, as the Open Inference Protocol describes it."""

    name: str = Field(min_length=1, max_length=128)
    """Tensor name in requests and responses."""
    datatype: Literal[
        "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64", "BYTES"
    ]
    """Open Inference Protocol datatype."""
    shape: list[int] = Field(max_length=16)
    """Dimensions; -1 for a variable one (the batch)."""


class ModelCache(ApiModel):
    """Download the model once for every pod of this ModelService: a PersistentVolumeClaim,
    filled by a Job that runs the runtime's own fetch, mounted read-only by every pod. The next
    replica and the next revision of the same source start without downloading. One claim per
    source (uri and version): a changed source fills a new one; one that no revision uses any
    more is deleted, and all go with the ModelService (owner references)."""

    size: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$", max_length=32)
    """Storage to request: the model and some room, e.g. 20Gi."""
    storage_class_name: str | None = Field(default=None, max_length=253)
    """StorageClass of the claim (default: the cluster's default class)."""
    access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = "ReadWriteMany"
    """ReadWriteMany: pods on any node mount it. ReadWriteOnce, where the storage offers
    nothing else: the fill Job and every pod share one node's attachment (see
    docs/cold-starts.md)."""


class ModelSource(ApiModel):
    """What to serve. Changing any of it starts a new revision."""

    uri: str = Field(max_length=2048)
    """Where the model lives: file://, pvc://claim/path, http(s)://, s3://, or an absolute path
    inside the image."""
    format: Literal["torchscript", "exported-program", "state-dict", "handler"]
    """torchscript (torch.jit), exported-program (torch.export .pt2), state-dict (weights; the
    entrypoint builds the module), handler (a user class)."""
    entrypoint: str | None = Field(default=None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """module:callable that builds the nn.Module (state-dict) or the handler class."""
    version: str | None = Field(default=None, max_length=63)
    """The declared version: shown in `kubectl get`, labelled on the pods, served."""
    name: str | None = Field(default=None, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", max_length=128)
    """Served model name (default: metadata.name)."""
    inputs: list[TensorSpec] | None = Field(default=None, max_length=32)
    """Input tensors, for model metadata and request checks."""
    outputs: list[TensorSpec] | None = Field(default=None, max_length=32)
    """Output tensors, for model metadata and response names."""
    cache: ModelCache | None = None
    """A volume the model is downloaded into once, shared by the pods (http(s):// and s3://
    sources; off when absent: each pod downloads into its own)."""

    model_config = validations(
        rule(
            "!has(self.cache) || self.uri.startsWith('http://') || self.uri.startsWith('https://')"
            " || self.uri.startsWith('s3://')",
            "model.cache holds downloads: it takes an http://, https:// or s3:// model.uri (a "
            "path or a pvc:// claim is read in place)",
            fieldPath=".cache",
        ),
        rule(
            " || ".join(f"self.uri.startsWith('{s}')" for s in URI_SCHEMES)
            + " || self.uri.startsWith('/')",
            "model.uri must start with file://, pvc://, http://, https:// or s3:// "
            "(or be an absolute path)",
            fieldPath=".uri",
            reason="FieldValueInvalid",
        ),
        rule(
            "!self.uri.startsWith('pvc://') || self.uri.matches('^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?$')",
            "model.uri pvc://<claim>/<path> needs a PersistentVolumeClaim name (a DNS label)",
            fieldPath=".uri",
            reason="FieldValueInvalid",
        ),
        rule(
            "!(self.format in ['state-dict', 'handler']) || has(self.entrypoint)",
            "model.entrypoint (module:callable) is required for the state-dict and handler formats",
            fieldPath=".entrypoint",
            reason="FieldValueRequired",
        ),
        rule(
            "!has(self.entrypoint) || self.format in ['state-dict', 'handler']",
            "model.entrypoint is used by the state-dict and handler formats only: a torchscript "
            "or exported-program file carries its own code",
            fieldPath=".entrypoint",
        ),
        rule(
            "self.format == 'handler' || !has(self.inputs) "
            "|| self.inputs.all(i, i.datatype != 'BYTES')",
            "BYTES inputs are served by the handler format only: a torch model takes tensors",
            fieldPath=".inputs",
        ),
    )


class EnvVar(ApiModel):
    """A container environment variable, as in a Pod spec."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    """Variable name."""
    value: str | None = None
    """Literal value."""
    value_from: FreeForm | None = None
    """configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef, as in a Pod spec."""

    model_config = validations(
        rule(
            "!(has(self.value) && has(self.valueFrom))",
            "an env var has either value or valueFrom, not both",
        )
    )


class Batching(ApiModel):
    """Dynamic batching in the runtime."""

    enabled: bool = True
    """Queue concurrent requests and run them as one forward pass."""
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    """A batch closes when it holds this many requests..."""
    max_delay_ms: float = Field(default=5, ge=0, le=1000)
    """...or this many milliseconds after its first request was queued."""


class Resources(ApiModel):
    """Container resources (GPUs come from spec.gpu)."""

    requests: dict[str, int | str] | None = None
    """Requested quantities, e.g. cpu: "2", memory: 4Gi."""
    limits: dict[str, int | str] | None = None
    """Limits, e.g. memory: 8Gi."""


class CompileSpec(ApiModel):
    """torch.compile the module while the pod warms up, before it is ready; Inductor's cache
    directory is on the pod's cache volume (with model.cache, on the claim, which every
    replica mounts), so a restarted container reuses the compiled kernels. Needs a C++
    compiler in the runtime image (see docs/cold-starts.md)."""

    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "default"
    )
    """torch.compile's mode."""
    ahead_of_time: bool = False
    """Compile once, not at every start: the first start exports the module (torch.export, the
    batch dimension dynamic) and compiles it with AOTInductor into a package on the same
    volume as the kernels; a later start that finds the package there (a restarted container)
    loads it, with no tracing, no compiling and no C++ compiler. The module must be one
    torch.export can capture."""

    model_config = validations(
        rule(
            "!self.aheadOfTime || self.mode != 'reduce-overhead'",
            "runtime.compile.aheadOfTime has no CUDA graphs (reduce-overhead): choose mode "
            "default or max-autotune, or leave aheadOfTime off",
            fieldPath=".mode",
        ),
    )


class RuntimeSpec(ApiModel):
    """How the torch runtime serves the model. Changing it starts a new revision."""

    image: str | None = None
    """Runtime image (default: the operator's TORCHSHIP_RUNTIME_IMAGE)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when the pod has a GPU, else CPU."""
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """Floating point type the model runs in: its weights are cast at load, floating point
    inputs on each request (a handler chooses its own: float32 only)."""
    quantize: Literal["none", "dynamic-int8"] = "none"
    """dynamic-int8: quantize Linear layers at load (CPU, state-dict format, dtype float32: it
    rewrites an nn.Module)."""
    batching: Batching = defaulted(Batching)
    resources: Resources | None = None
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Extra container env vars, after the runtime's own; one of the same name replaces the
    runtime's."""
    drain_seconds: int = Field(default=10, ge=0, le=600)
    """After SIGTERM, keep serving this long while the Service drops the pod."""
    compile: CompileSpec | None = None
    """Compile the module during warm-up (off when absent)."""

    model_config = validations(
        rule(
            "self.quantize != 'dynamic-int8' || self.device == 'cpu'",
            "runtime.quantize dynamic-int8 runs on CPU only: set runtime.device to cpu",
            fieldPath=".quantize",
        ),
        rule(
            "self.quantize != 'dynamic-int8' || self.dtype == 'float32'",
            "runtime.quantize dynamic-int8 quantizes float32 Linear layers and computes the rest "
            "in float32: leave runtime.dtype float32",
            fieldPath=".dtype",
        ),
    )


class GpuSpec(ApiModel):
    """GPUs per replica and the nodes that have them. Changing it starts a new revision."""

    count: int = Field(default=0, ge=0, le=16)
    """GPUs per replica (resources.limits[resourceName])."""
    resource_name: str = Field(default="nvidia.com/gpu", pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$")
    """Extended resource, e.g. nvidia.com/gpu or a MIG profile such as nvidia.com/mig-1g.10gb."""
    product: str | None = Field(default=None, max_length=63)
    """Required value of the node label nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3."""
    node_selector: dict[str, str] | None = None
    """More node labels to require (merged with product)."""
    tolerations: list[FreeForm] | None = Field(default=None, max_length=32)
    """Pod tolerations. Default when count > 0: tolerate the nvidia.com/gpu NoSchedule taint."""
    runtime_class_name: str | None = Field(default=None, max_length=253)
    """RuntimeClass of the pods, e.g. nvidia."""

    model_config = validations(
        rule(
            "!has(self.product) || self.count > 0",
            "gpu.product selects GPU nodes, so it needs gpu.count > 0",
            fieldPath=".product",
        )
    )


class MetricTarget(ApiModel):
    """One signal the autoscaler follows."""

    type: Literal["cpu", "memory", "inflight"]
    """cpu/memory: average utilisation in percent of requests; inflight: the runtime's in-flight
    requests per pod."""
    target: int = Field(ge=1)
    """Target value per pod (percent for cpu and memory)."""


class AutoscalingSpec(ApiModel):
    """A HorizontalPodAutoscaler on this ModelService's scale subresource: it sets
    spec.replicas, and the operator splits that total between revisions."""

    min_replicas: int = Field(default=1, ge=1)
    """Lower bound (at least 1: there is no scale to zero)."""
    max_replicas: int = Field(ge=1)
    """Upper bound."""
    metrics: list[MetricTarget] = Field(
        default_factory=lambda: [MetricTarget(type="cpu", target=70)], max_length=8
    )
    """Signals to scale on (default: 70% CPU)."""
    behavior: FreeForm | None = None
    """HorizontalPodAutoscaler behavior (scaleUp/scaleDown policies), passed as is."""

    model_config = validations(
        rule(
            "self.minReplicas <= self.maxReplicas",
            "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas",
            fieldPath=".minReplicas",
        )
    )


class CanaryStep(ApiModel):
    """One canary step."""

    weight: int = Field(ge=1, le=100)
    """Percent of the traffic on the new revision. Its replicas are that share rounded to whole
    pods; with trafficRouting replicas the traffic follows the pods (10% of 4 replicas is 1 pod,
    25% of the traffic), with gateway-api the route gives it exactly this."""
    pause_seconds: int | None = Field(default=None, ge=0)
    """How long to hold the step. Unset: wait until promoted (spec.rollout.promotedStep)."""


class GatewayRef(ApiModel):
    """The Gateway whose listener the ModelService's HTTPRoute attaches to (its parentRef)."""

    name: str = Field(min_length=1, max_length=253)
    """Gateway name."""
    namespace: str | None = Field(default=None, max_length=63)
    """Gateway namespace (default: the ModelService's; another one must allow routes from it)."""
    section_name: str | None = Field(default=None, max_length=253)
    """The Gateway listener to attach to (default: every listener that allows the route)."""


class AnalysisSpec(ApiModel):
    """Canary analysis: each step is judged on the canary pods' own metrics against the
    stable's, measured over windows of intervalSeconds; a step passes after its pause (or
    promotion) once a measurement passed, and a step whose failed measurements exceed
    failureLimit aborts the rollout with reason AnalysisFailed."""

    max_error_ratio: float | None = Field(default=None, ge=0, le=1)
    """Most share of the canary's requests that may fail with a server error (5xx: a failure
    inside the model is one; input refused before the model ran is a 4xx and is not)."""
    max_latency_p99_ms: float | None = Field(default=None, ge=1, lt=10_000)
    """Highest p99 request latency of the canary, in milliseconds; under 10000, because the
    runtime's largest latency bucket is 10 s and a p99 beyond it reads as 10 s: a limit of 10
    s or more could never be crossed."""
    max_latency_p99_ratio: float | None = Field(default=None, ge=1)
    """Highest canary p99 latency as a multiple of the stable revision's, in the same window."""
    min_requests: int = Field(default=20, ge=1)
    """Requests a window needs (on the canary, and on the stable for the ratio) to judge;
    fewer, and the measurement is inconclusive and the step waits."""
    interval_seconds: int = Field(default=30, ge=5, le=3600)
    """Length of one measurement window."""
    failure_limit: int = Field(default=0, ge=0, le=100)
    """Failed measurements a step tolerates; one more aborts the rollout."""

    model_config = validations(
        rule(
            "has(self.maxErrorRatio) || has(self.maxLatencyP99Ms) || has(self.maxLatencyP99Ratio)",
            "rollout.analysis needs at least one of maxErrorRatio, maxLatencyP99Ms, "
            "maxLatencyP99Ratio",
        ),
    )


class RolloutSpec(ApiModel):
    """How a new revision replaces the serving one."""

    strategy: Literal["RollingUpdate", "Canary", "BlueGreen"] = "RollingUpdate"
    """RollingUpdate: replace pods within maxSurge/maxUnavailable. Canary: shift traffic in
    steps. BlueGreen: bring the new revision up in full, then switch all traffic at once."""
    steps: list[CanaryStep] | None = Field(default=None, max_length=20)
    """Canary steps, in order; 100% follows the last."""
    max_surge: int = Field(default=1, ge=0)
    """Pods above the total during a rollout. 0: make room first (full GPU nodes)."""
    max_unavailable: int = Field(default=0, ge=0)
    """Pods below the total that may be missing during a rollout."""
    progress_deadline_seconds: int = Field(default=600, ge=10)
    """A new revision that makes no progress this long is aborted and traffic goes back."""
    revision_history_limit: int = Field(default=3, ge=0, le=20)
    """Old revisions kept at 0 replicas for a fast rollback."""
    traffic_routing: Literal["replicas", "gateway-api"] = "replicas"
    """replicas: one Service, traffic split by ready pods. gateway-api: a Service per serving
    revision and an HTTPRoute on rollout.gateway whose backend weights are exactly the
    rollout's (the Gateway API CRDs must be installed)."""
    gateway: GatewayRef | None = None
    """The Gateway of the HTTPRoute (trafficRouting gateway-api)."""
    promoted_step: int | None = Field(default=None, ge=0)
    """Index of the last canary step released by hand (steps without pauseSeconds wait for it).
    Declarative, so GitOps can promote."""
    analysis: AnalysisSpec | None = None
    """Judge each canary step on the canary's metrics (Canary only)."""
    when_full: Literal["Wait", "MakeRoom"] = "Wait"
    """What a rollout does when a new pod cannot be placed for lack of the GPU it asks for (the
    scheduler's Insufficient nvidia.com/gpu). Wait: the pod waits, and the rollout aborts at
    progressDeadlineSeconds. MakeRoom: old pods give up their GPUs to it one at a time (maxSurge
    counts as 0 while room is made, maxUnavailable as at least 1 until the rollout ends,
    Available's included). RollingUpdate and Canary only."""

    model_config = validations(
        rule(
            "self.strategy != 'Canary' || (has(self.steps) && size(self.steps) > 0)",
            "rollout.strategy Canary needs at least one step in rollout.steps",
            fieldPath=".steps",
        ),
        rule(
            "self.maxSurge > 0 || self.maxUnavailable > 0",
            "rollout.maxSurge and rollout.maxUnavailable cannot both be 0",
        ),
        rule(
            "self.trafficRouting != 'gateway-api' || has(self.gateway)",
            "rollout.trafficRouting gateway-api needs rollout.gateway (the Gateway the HTTPRoute "
            "attaches to)",
            fieldPath=".gateway",
            reason="FieldValueRequired",
        ),
        rule(
            "!has(self.gateway) || self.trafficRouting == 'gateway-api'",
            "rollout.gateway is used by trafficRouting gateway-api only: set it, or remove "
            "rollout.gateway",
            fieldPath=".gateway",
        ),
        rule(
            "!has(self.analysis) || self.strategy == 'Canary'",
            "rollout.analysis judges canary steps: set rollout.strategy Canary, or remove "
            "rollout.analysis",
            fieldPath=".analysis",
        ),
        rule(
            "self.whenFull != 'MakeRoom' || self.strategy != 'BlueGreen'",
            "rollout.whenFull MakeRoom gives up old pods while the new ones come up; BlueGreen "
            "keeps every old pod until it switches, so it needs room for both: choose "
            "RollingUpdate or Canary, or leave whenFull Wait",
            fieldPath=".whenFull",
        ),
    )


class ServiceSpec(ApiModel):
    """The Service in front of the model."""

    port: int = Field(default=8080, ge=1, le=65535)
    """Service port of REST (OIP v2 and v1; the runtime listens on 8080)."""
    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """Service port of OIP v2 gRPC and grpc.health.v1 (the runtime listens on 8081); 0 turns
    gRPC off."""

    model_config = validations(
        rule(
            "self.grpcPort != self.port",
            "service.grpcPort and service.port must differ",
            fieldPath=".grpcPort",
        ),
    )


class SecretKeyRef(ApiModel):
    """A key of a Secret in the ModelService's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Secret name."""
    key: str = Field(default="token", min_length=1, max_length=253)
    """Key within the Secret."""


class SecretRef(ApiModel):
    """A Secret in the ModelService's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Secret name."""


class TlsSpec(ApiModel):
    """Serve REST (HTTPS) and gRPC over TLS, terminated by the runtime itself."""

    secret_ref: SecretRef
    """A kubernetes.io/tls Secret (tls.crt, tls.key), such as cert-manager writes; a renewed
    certificate is served without restarting the pods."""


class AuthSpec(ApiModel):
    """Require a bearer token on inference requests (health and metrics stay open)."""

    token_secret_ref: SecretKeyRef
    """The token, mounted into the pods as a file; its value never appears in env or status."""


class ModelServiceSpec(ApiModel):
    """The desired state of a served model."""

    model: ModelSource
    runtime: RuntimeSpec = defaulted(RuntimeSpec)
    gpu: GpuSpec | None = None
    replicas: int = Field(default=1, ge=0, le=1000)
    """Total replicas across revisions; the scale subresource. With autoscaling the
    HorizontalPodAutoscaler sets it (leave it out of GitOps manifests then)."""
    autoscaling: AutoscalingSpec | None = None
    rollout: RolloutSpec = defaulted(RolloutSpec)
    service: ServiceSpec = defaulted(ServiceSpec)
    tls: TlsSpec | None = None
    auth: AuthSpec | None = None

    model_config = validations(
        rule(
            "self.runtime.device != 'cuda' || (has(self.gpu) && self.gpu.count > 0)",
            "runtime.device cuda needs gpu.count > 0",
            fieldPath=".runtime.device",
        ),
        rule(
            "!has(self.runtime.compile) || self.model.format in ['state-dict', 'exported-program']",
            "runtime.compile needs model.format state-dict or exported-program (an nn.Module "
            "torch.compile can trace; a TorchScript file or a handler is not one)",
            fieldPath=".runtime.compile",
        ),
        rule(
            "!has(self.runtime.compile) || self.runtime.quantize == 'none'",
            "runtime.compile and runtime.quantize dynamic-int8 do not go together: choose one",
            fieldPath=".runtime.compile",
        ),
        rule(
            "self.runtime.quantize != 'dynamic-int8' || self.model.format == 'state-dict'",
            "runtime.quantize dynamic-int8 needs model.format state-dict (an nn.Module it can "
            "rewrite; torchscript and exported programs are fixed graphs)",
            fieldPath=".runtime.quantize",
        ),
        rule(
            "self.model.format != 'handler' || self.runtime.dtype == 'float32'",
            "runtime.dtype float16/bfloat16 casts a torch model; a handler chooses its own "
            "dtype: leave runtime.dtype float32",
            fieldPath=".runtime.dtype",
        ),
    )

    @property
    def total_replicas(self) -> int:
        """Replicas across revisions; within the autoscaler's bounds before it first acts."""
        if self.autoscaling is None:
            return self.replicas
        scaling = self.autoscaling
        return min(max(self.replicas, scaling.min_replicas), scaling.max_replicas)


class Condition(ApiModel):
    """A condition in metav1.Condition shape."""

    type: str
    """Ready, Available, Progressing, Degraded, and Routed with trafficRouting gateway-api."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str
    """Why, in one CamelCase word (e.g. Unschedulable, ImagePullBackOff)."""
    message: str = ""
    """Details for a person, e.g. the scheduler's own message."""
    observed_generation: int | None = None
    """metadata.generation the condition was computed for."""
    last_transition_time: str
    """When status last changed."""


class RevisionStatus(ApiModel):
    """One revision: a distinct pod spec, run by one Deployment."""

    name: str
    """Its Deployment."""
    revision: str
    """Short hash of its pod-relevant spec."""
    version: str | None = None
    """model.version it serves."""
    weight: int = 0
    """Percent of the traffic it serves: its share of the ready pods behind the Service."""
    replicas: int = 0
    """Replicas wanted for it."""
    ready_replicas: int = 0
    """Replicas ready."""
    phase: str = ""
    """Serving, Progressing or Retired."""


class ModelServiceStatus(ApiModel):
    """Observed state, written by the operator only."""

    observed_generation: int | None = None
    """metadata.generation this status was computed for."""
    conditions: list[Condition] | None = None
    """Ready (every replica serves, whichever revision; no failure), Available (enough replicas
    serving), Progressing (a rollout under way, and where it is), Degraded (something needs a
    person), Routed (the
    HTTPRoute as its Gateway reports it; trafficRouting gateway-api only)."""
    replicas: int | None = None
    """Replicas across revisions (the scale subresource)."""
    ready_replicas: int | None = None
    """Ready replicas across revisions."""
    selector: str | None = None
    """Label selector of the pods, for the scale subresource and the autoscaler."""
    url: str | None = None
    """In-cluster URL of the Service's REST port (https:// with spec.tls)."""
    grpc_address: str | None = None
    """In-cluster host:port of the Service's gRPC port (absent when gRPC is off)."""
    revisions: list[RevisionStatus] | None = None
    """Revisions that still have a Deployment, by name."""
    rollout: FreeForm | None = None
    """Rollout state machine progress (stable and target revision, phase, step)."""
