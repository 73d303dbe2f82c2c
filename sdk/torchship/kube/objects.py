"""The ModelService object as a whole: metadata, the operator's own spec type, and status.

The spec and status types are the ones the CRD is generated from (torchship_operator.api), so
what the SDK builds is what the API server validates.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from torchship_operator import api


class Metadata(BaseModel):
    """The parts of metav1.ObjectMeta a ModelService's author sets, and what the server adds."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    # Set by the API server.
    uid: str | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    generation: int | None = None
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")


class ModelService(BaseModel):
    """`ModelService(metadata=Metadata(name="resnet"), spec=ModelServiceSpec(...))`"""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    api_version: str = Field(default=api.API_VERSION, alias="apiVersion")
    kind: str = api.KIND
    metadata: Metadata
    spec: api.ModelServiceSpec
    status: api.ModelServiceStatus | None = None

    @classmethod
    def of(cls, name: str, **spec: Any) -> ModelService:
        """`ModelService.of("mlp", model=ModelSource(...), replicas=2)`: a new object by name,
        the keywords being ModelServiceSpec's fields."""
        return cls(metadata=Metadata(name=name), spec=api.ModelServiceSpec(**spec))

    @property
    def name(self) -> str:
        return self.metadata.name

    def manifest(self) -> dict[str, Any]:
        """The object to apply: the fields its author set, and no more. Defaults stay the API
        server's, so an apply never claims spec.replicas from an autoscaler, say."""
        meta = self.metadata.model_dump(include={"name", "namespace", "labels", "annotations"})
        spec = self.spec.model_dump(
            mode="json", by_alias=True, exclude_unset=True, exclude_none=True
        )
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {k: v for k, v in meta.items() if v is not None},
            "spec": spec,
        }

    def condition(self, kind: str) -> api.Condition | None:
        for cond in (self.status.conditions if self.status else None) or []:
            if cond.type == kind:
                return cond
        return None

    @property
    def rollout(self) -> dict[str, Any]:
        """status.rollout: phase, stableRevision, targetRevision, step, reason, message."""
        return dict((self.status.rollout if self.status else None) or {})

    @property
    def current(self) -> bool:
        """The operator has seen the latest spec (status.observedGeneration is current)."""
        observed = self.status.observed_generation if self.status else None
        return observed is not None and observed >= (self.metadata.generation or 0)
