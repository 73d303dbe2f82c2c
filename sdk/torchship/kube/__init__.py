"""ModelServices from Python, typed with the same pydantic models the CRD is generated from.

from torchship.kube import ModelService, ModelServices, Metadata, ModelServiceSpec, ModelSource

services = ModelServices(namespace="ml")
spec = ModelServiceSpec(model=ModelSource(uri="s3://models/mlp/v1.pt", format="torchscript"))
services.apply(ModelService(metadata=Metadata(name="mlp"), spec=spec))
services.wait_ready("mlp", timeout=300)
"""

from torchship_operator.api import (
    AuthSpec,
    AutoscalingSpec,
    Batching,
    CanaryStep,
    EnvVar,
    GpuSpec,
    MetricTarget,
    ModelServiceSpec,
    ModelServiceStatus,
    ModelSource,
    Resources,
    RolloutSpec,
    RuntimeSpec,
    SecretKeyRef,
    ServiceSpec,
    TensorSpec,
)

from .client import FIELD_MANAGER, ModelServices
from .errors import Conflict, Invalid, KubeError, NotFound, NothingToDo, NotReady
from .objects import Metadata, ModelService
from .revisions import Revision

__all__ = [
    "FIELD_MANAGER",
    "AuthSpec",
    "AutoscalingSpec",
    "Batching",
    "CanaryStep",
    "Conflict",
    "EnvVar",
    "GpuSpec",
    "Invalid",
    "KubeError",
    "Metadata",
    "MetricTarget",
    "ModelService",
    "ModelServiceSpec",
    "ModelServiceStatus",
    "ModelServices",
    "ModelSource",
    "NotFound",
    "NotReady",
    "NothingToDo",
    "Resources",
    "Revision",
    "RolloutSpec",
    "RuntimeSpec",
    "SecretKeyRef",
    "ServiceSpec",
    "TensorSpec",
]
