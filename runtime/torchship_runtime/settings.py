"""Runtime settings: one pydantic-settings model, from TORCHSHIP_* environment variables,
overridable by command-line flags (parsed in main(), never at import time)."""

from __future__ import annotations

import argparse
import json
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TensorMeta(BaseModel):
    """An input or output as the Open Inference Protocol's metadata names it."""

    name: str
    datatype: str = "FP32"
    shape: list[int] = Field(default_factory=lambda: [-1])


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TORCHSHIP_", extra="ignore")

    model_uri: str
    model_format: Literal["torchscript", "exported-program", "state-dict", "handler"]
    model_name: str = "model"
    model_version: str = ""
    model_entrypoint: str = ""
    model_inputs: list[TensorMeta] | None = None
    model_outputs: list[TensorMeta] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    quantize: Literal["none", "dynamic-int8"] = "none"
    batching: bool = True
    max_batch_size: int = Field(default=32, ge=1)
    max_delay_ms: float = Field(default=5.0, ge=0)
    host: str = "0.0.0.0"
    port: int = 8080
    model_cache_dir: str = "/var/cache/torchship"
    pvc_root: str = "/mnt/models"
    drain_seconds: float = Field(default=10.0, ge=0)
    max_body_bytes: int = 64 * 2**20
    auth_token_file: str = ""
    torch_threads: int = 0
    log_level: str = "INFO"

    @field_validator("model_inputs", "model_outputs", mode="before")
    @classmethod
    def parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else None
        return value


def from_args(argv: list[str] | None = None) -> RuntimeSettings:
    """Environment first, then any flag given on the command line (--model-uri, --port, ...)."""
    parser = argparse.ArgumentParser(prog="torchship-runtime", description=__doc__)
    for name, field in RuntimeSettings.model_fields.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=field.description)
    args = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return RuntimeSettings(**args)
