"""Operator settings, from the environment, in one place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace() -> str:
    """The namespace a pod runs in, from its service account's mount; outside a pod, default."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class Settings(BaseModel):
    """Each field is read from TORCHSHIP_<FIELD NAME IN CAPITALS>; the Helm chart sets them."""

    runtime_image: str = Field(default="ghcr.io/torchship/runtime:0.1.0", min_length=1)
    """Runtime image of ModelServices that name none."""
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch, comma-separated; empty: cluster-wide."""
    metrics_port: int = Field(default=8080, ge=1, le=65535)
    """Prometheus metrics (/metrics)."""
    health_port: int = Field(default=8081, ge=1, le=65535)
    """Liveness (/healthz)."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    leader_election: bool = False
    """Run several replicas of which one, the holder of a Lease, reconciles."""
    lease_name: str = Field(default="torchship", min_length=1, max_length=253)
    """Name of the Lease the replicas share."""
    lease_namespace: str = Field(default_factory=own_namespace, min_length=1)
    """Namespace of that Lease: the operator's own (its service account's), else default."""
    workers: int = Field(default=16, ge=1, le=256)
    """ModelServices reconciled at once."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    @field_validator("log_level", mode="before")
    @classmethod
    def upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("namespaces", mode="before")
    @classmethod
    def split(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = dict(os.environ if environ is None else environ)
        prefix = "TORCHSHIP_"
        values = {
            key[len(prefix) :].lower(): value
            for key, value in environ.items()
            if key.startswith(prefix) and key[len(prefix) :].lower() in cls.model_fields
        }
        return cls.model_validate(values)

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces
