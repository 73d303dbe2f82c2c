"""Operator settings, from the environment, in one place."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, field_validator


class Settings(BaseModel):
    runtime_image: str = "ghcr.io/torchship/runtime:0.1.0"
    namespaces: list[str] = Field(default_factory=list, description="Empty: cluster-wide.")
    metrics_port: int = 8080
    health_port: int = 8081
    log_level: str = "INFO"
    leader_election: bool = False
    peering_name: str = "torchship"
    workers: int = 8

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
