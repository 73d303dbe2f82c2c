"""The ModelService API (torchship.dev/v1alpha1), modelled once.

The CRD in crds/ is generated from these types (`python -m torchship_operator.crdgen`):
field docstrings become schema descriptions, defaults and enums carry over, and the
`x-kubernetes-validations` CEL rules below are what the API server enforces on every write.
Wire names are camelCase (aliases); Python attributes are snake_case.
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
    return {"rule": expression, "message": message, **extra}


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


# Free-form Kubernetes objects we pass through untouched (tolerations, env, HPA behavior).
FreeForm = dict[str, Any]


class TensorSpec(ApiModel):
    """One input or output tensor, as the Open Inference Protocol describes it."""

    name: str = Field(min_length=1, max_length=128)
    datatype: Literal[
        "BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64", "BYTES"
    ]
    shape: list[int] = Field(description="Dimensions; -1 for a variable one (the batch).")


class ModelSource(ApiModel):
    """What to serve."""

    uri: str = Field(
        max_length=2048,
        description="Where the model lives: file://, pvc://claim/path, http(s)://, s3://, "
        "or an absolute path inside the image.",
    )
    format: Literal["torchscript", "exported-program", "state-dict", "handler"] = Field(
        description="torchscript (torch.jit), exported-program (torch.export .pt2), state-dict "
        "(weights; entrypoint builds the module), handler (a user class)."
    )
    entrypoint: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:callable that builds the nn.Module (state-dict) or the handler class.",
    )
    version: str | None = Field(
        default=None, max_length=63, description="The declared version; shown and served."
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
        max_length=128,
        description="Served model name (default: metadata.name).",
    )
    inputs: list[TensorSpec] | None = Field(default=None, max_length=32)
    outputs: list[TensorSpec] | None = Field(default=None, max_length=32)

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    " || ".join(f"self.uri.startsWith('{s}')" for s in URI_SCHEMES)
                    + " || self.uri.startsWith('/')",
                    "model.uri must start with file://, pvc://, http://, https:// or s3:// "
                    "(or be an absolute path)",
                    fieldPath=".uri",
                    reason="FieldValueInvalid",
                ),
                rule(
                    "!(self.format in ['state-dict', 'handler']) || has(self.entrypoint)",
                    "model.entrypoint (module:callable) is required for the state-dict and "
                    "handler formats",
                    fieldPath=".entrypoint",
                    reason="FieldValueRequired",
                ),
            ]
        }
    )


class Batching(ApiModel):
    """Dynamic batching in the runtime."""

    enabled: bool = True
    max_batch_size: int = Field(default=32, ge=1, le=1024)
    max_delay_ms: float = Field(
        default=5, ge=0, le=1000, description="Counted from the first queued request."
    )


class Resources(ApiModel):
    """Container resources (GPUs come from spec.gpu)."""

    requests: dict[str, int | str] | None = None
    limits: dict[str, int | str] | None = None


class RuntimeSpec(ApiModel):
    """How the torch runtime serves the model."""

    image: str | None = Field(default=None, description="Default: the operator's runtime image.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    quantize: Literal["none", "dynamic-int8"] = "none"
    batching: Batching = defaulted(Batching)
    resources: Resources | None = None
    env: list[FreeForm] | None = Field(default=None, description="Extra container env vars.")
    drain_seconds: int = Field(
        default=10, ge=0, le=600, description="After SIGTERM, keep serving this long."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.quantize != 'dynamic-int8' || self.device == 'cpu'",
                    "runtime.quantize dynamic-int8 runs on CPU only: set runtime.device to cpu",
                    fieldPath=".quantize",
                )
            ]
        }
    )


class GpuSpec(ApiModel):
    """GPUs per replica and where they are."""

    count: int = Field(default=0, ge=0, le=16, description="GPUs per replica.")
    resource_name: str = Field(
        default="nvidia.com/gpu",
        pattern=r"^[a-z0-9.-]+/[a-z0-9.-]+$",
        description="Extended resource, e.g. nvidia.com/gpu or a MIG profile "
        "such as nvidia.com/mig-1g.10gb.",
    )
    product: str | None = Field(
        default=None, max_length=63, description="Node label nvidia.com/gpu.product to require."
    )
    node_selector: dict[str, str] | None = None
    tolerations: list[FreeForm] | None = Field(
        default=None, description="Default when count > 0: tolerate nvidia.com/gpu NoSchedule."
    )
    runtime_class_name: str | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "!has(self.product) || self.count > 0",
                    "gpu.product selects GPU nodes, so it needs gpu.count > 0",
                    fieldPath=".product",
                )
            ]
        }
    )


class MetricTarget(ApiModel):
    type: Literal["cpu", "memory", "inflight"] = Field(
        description="cpu/memory: average utilisation in percent of requests; inflight: the "
        "runtime's in-flight requests per pod."
    )
    target: int = Field(ge=1)


class AutoscalingSpec(ApiModel):
    """A HorizontalPodAutoscaler on this ModelService's scale subresource."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=1)
    metrics: list[MetricTarget] = Field(
        default_factory=lambda: [MetricTarget(type="cpu", target=70)], max_length=8
    )
    behavior: FreeForm | None = Field(default=None, description="Passed to the HPA as is.")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.minReplicas <= self.maxReplicas",
                    "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas",
                    fieldPath=".minReplicas",
                )
            ]
        }
    )


class CanaryStep(ApiModel):
    weight: int = Field(ge=1, le=100, description="Percent of traffic on the new revision.")
    pause_seconds: int | None = Field(
        default=None, ge=0, description="Unset: wait until promoted (spec.rollout.promotedStep)."
    )


class RolloutSpec(ApiModel):
    """How a new revision replaces the old one."""

    strategy: Literal["RollingUpdate", "Canary", "BlueGreen"] = "RollingUpdate"
    steps: list[CanaryStep] | None = Field(default=None, max_length=20)
    max_surge: int = Field(default=1, ge=0, description="0: make room first (full GPU nodes).")
    max_unavailable: int = Field(default=0, ge=0)
    progress_deadline_seconds: int = Field(default=600, ge=10)
    revision_history_limit: int = Field(default=3, ge=0, le=20)
    traffic_routing: Literal["replicas", "gateway-api"] = "replicas"
    promoted_step: int | None = Field(
        default=None, ge=0, description="Index of the last manual canary step released."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.strategy != 'Canary' || (has(self.steps) && size(self.steps) > 0)",
                    "rollout.strategy Canary needs at least one step in rollout.steps",
                    fieldPath=".steps",
                ),
                rule(
                    "self.maxSurge > 0 || self.maxUnavailable > 0",
                    "rollout.maxSurge and rollout.maxUnavailable cannot both be 0",
                ),
            ]
        }
    )


class ServiceSpec(ApiModel):
    port: int = Field(default=8080, ge=1, le=65535)


class SecretKeyRef(ApiModel):
    name: str = Field(min_length=1)
    key: str = Field(default="token", min_length=1)


class AuthSpec(ApiModel):
    """Require a bearer token on inference requests (health and metrics stay open)."""

    token_secret_ref: SecretKeyRef


class ModelServiceSpec(ApiModel):
    """The desired state of a served model."""

    model: ModelSource
    runtime: RuntimeSpec = defaulted(RuntimeSpec)
    gpu: GpuSpec | None = None
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Total replicas across revisions; the scale subresource. With autoscaling "
        "the HorizontalPodAutoscaler sets it (leave it out of GitOps manifests then).",
    )
    autoscaling: AutoscalingSpec | None = None
    rollout: RolloutSpec = defaulted(RolloutSpec)
    service: ServiceSpec = defaulted(ServiceSpec)
    auth: AuthSpec | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                rule(
                    "self.runtime.device != 'cuda' || (has(self.gpu) && self.gpu.count > 0)",
                    "runtime.device cuda needs gpu.count > 0",
                    fieldPath=".runtime.device",
                ),
            ]
        }
    )

    @property
    def total_replicas(self) -> int:
        if self.autoscaling is None:
            return self.replicas
        scaling = self.autoscaling
        return min(max(self.replicas, scaling.min_replicas), scaling.max_replicas)


class Condition(ApiModel):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    observed_generation: int | None = None
    last_transition_time: str


class RevisionStatus(ApiModel):
    name: str
    revision: str
    version: str | None = None
    weight: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    phase: str = ""


class ModelServiceStatus(ApiModel):
    """Observed state, written by the operator only."""

    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    selector: str | None = None
    url: str | None = None
    revisions: list[RevisionStatus] | None = None
    rollout: FreeForm | None = Field(default=None, description="Rollout state machine progress.")
