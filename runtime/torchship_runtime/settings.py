"""Runtime settings: one pydantic-settings model read from TORCHSHIP_* environment variables (what
the operator sets on pods), any of which a command-line flag overrides. Flags are parsed in
main(), never at import time."""

from __future__ import annotations

import argparse
import json
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .protocol import TensorMetadata

MODEL_FORMATS = ("torchscript", "exported-program", "state-dict", "handler", "transformers")
# Kubernetes' default terminationMessagePath, which the operator's pods keep.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TORCHSHIP_", extra="ignore")

    model_uri: str = Field(
        description="file:///path, /path, pvc://claim/path, http(s)://..., s3://bucket/key"
    )
    model_format: Literal[
        "torchscript", "exported-program", "state-dict", "handler", "transformers"
    ] = Field(description="how the model is stored (transformers: a Hugging Face-style directory)")
    model_name: str = Field(min_length=1, description="the served model name")
    model_version: str = Field("", description="the declared version (OIP model version)")
    model_entrypoint: str = Field(
        "", description="pkg.module:callable that builds the nn.Module (state-dict) or the handler"
    )
    model_inputs: list[TensorMetadata] | None = Field(
        None, description='JSON list of {"name","datatype","shape"}, -1 for the batch'
    )
    model_outputs: list[TensorMetadata] | None = Field(None, description="as model_inputs")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    quantize: Literal["none", "dynamic-int8"] = "none"
    batching: bool = True
    max_batch_size: int = Field(32, ge=1, description="rows per forward pass at most")
    max_delay_ms: float = Field(
        5.0, ge=0, description="longest wait for a batch to fill, from its first request"
    )
    compile_mode: Literal[
        "", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ] = Field("", description="torch.compile the module in this mode during warm-up ('': off)")
    compile_ahead_of_time: bool = Field(
        False, description="compile once with AOTInductor into a package, loaded by later starts"
    )
    compile_cache_dir: str = Field(
        "/var/cache/torchship/aot", description="where ahead-of-time packages are kept"
    )
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    grpc_port: int = Field(
        8081, ge=0, le=65535, description="OIP v2 gRPC and grpc.health.v1 (0: no gRPC)"
    )
    tls_cert_file: str = Field("", description="PEM certificate (chain): HTTPS and gRPC over TLS")
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file")
    tls_reload_seconds: float = Field(
        10.0, gt=0, description="how often the certificate files are checked for a rotation"
    )
    model_cache_dir: str = Field("/var/cache/torchship", description="where downloads are kept")
    fetch_wait_seconds: float = Field(
        0.0,
        ge=0,
        description="`fetch` only: another fills the cache directory (a shared model cache); "
        "wait this long for the model to appear there, never download (0: download)",
    )
    pvc_root: str = Field("/mnt/models", description="pvc://claim/path -> {pvc_root}/claim/path")
    drain_seconds: float = Field(
        10.0, ge=0, description="after SIGTERM: not ready, still serving, for this long"
    )
    shutdown_timeout_seconds: float = Field(
        15.0, ge=0, description="after the drain: the longest wait for in-flight requests"
    )
    max_body_bytes: int = Field(64 * 2**20, ge=1, description="larger request bodies get 413")
    auth_token_file: str = Field("", description="bearer token file; health and metrics stay open")
    termination_message_path: str = Field(
        TERMINATION_MESSAGE_PATH,
        description="where a start-up failure's reason is written (the pod's "
        "terminationMessagePath)",
    )
    # transformers format (docs/generation.md): the generation engine.
    kv_cache_bytes: int = Field(
        0, ge=0, description="the paged KV cache's size in bytes (0: kv_cache_memory_fraction)"
    )
    kv_cache_memory_fraction: float = Field(
        0.1,
        gt=0,
        le=0.9,
        description="the KV cache's share of the device's memory (a GPU's, or on CPU the "
        "container's memory limit, else the machine's), when kv_cache_bytes is 0",
    )
    kv_block_size: int = Field(16, ge=1, le=1024, description="tokens per KV cache block")
    max_model_length: int = Field(
        0, ge=0, description="the context in tokens, prompt and output (0: the model's own)"
    )
    max_running_requests: int = Field(
        64, ge=1, description="sequences in the running batch at most (one forward pass)"
    )
    max_waiting_requests: int = Field(
        256, ge=0, description="generation requests waiting for the batch; past it, 429"
    )
    prefill_chunk_tokens: int = Field(
        512, ge=16, description="tokens per step at most: longer prompts are prefilled in chunks"
    )
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads (0: torch's default)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def tls_pair(self) -> RuntimeSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(f"grpc_port {self.grpc_port} is the REST port too")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    @field_validator("model_inputs", "model_outputs", mode="before")
    @classmethod
    def parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def from_args(argv: list[str] | None = None) -> RuntimeSettings:
    """The environment, then any flag given (`--model-uri`, `--port`, ...) on top."""
    parser = argparse.ArgumentParser(
        prog="torchship-runtime",
        description="Serve one PyTorch model over the Open Inference Protocol. Every flag also "
        "reads from its TORCHSHIP_* environment variable (--max-batch-size: "
        "TORCHSHIP_MAX_BATCH_SIZE).",
    )
    for name, field in RuntimeSettings.model_fields.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=field.description)
    flags = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    # pydantic-settings gives init arguments priority over the environment.
    return RuntimeSettings(**flags)
