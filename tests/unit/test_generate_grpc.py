"""The runtime's generated gRPC code is what its proto generates (`make generate-grpc`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_grpc_code_is_the_generated_one():
    spec = importlib.util.spec_from_file_location("generate_grpc", ROOT / "hack/generate_grpc.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.stale() == [], "the generated gRPC code is stale: run make generate-grpc"
