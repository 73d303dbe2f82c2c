"""The KServe Python model server serving a benchmark model over OIP v2, its recommended way.

python bench/peers/kserve_server.py --model small --port 9001 [--grpc-port 9002]

With --grpc-port, KServe's own OIP gRPC server runs too (answers in raw_output_contents, as
tritonclient reads them), and its logger is set to WARNING: its gRPC interceptor logs every call
at INFO otherwise (torchship runs at log level warning in the benchmark too). REST answers stay
JSON.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "hack")]  # the models, and the MLP they build
import models  # noqa: E402


class BenchModel(Model):
    def __init__(self, name: str, kind: str) -> None:
        super().__init__(name)
        self.kind = kind
        self.module: torch.nn.Module | None = None

    def load(self) -> bool:
        self.module = models.build(self.kind)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        array = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        with torch.inference_mode():
            out = self.module(torch.from_numpy(array)).numpy()
        output = InferOutput(name="output__0", shape=list(out.shape), datatype="FP32")
        output.set_data_from_numpy(out, binary_data=payload.from_grpc)
        return InferResponse(
            model_name=self.name, infer_outputs=[output], response_id=payload.id or ""
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(models.SHAPES), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=0, help="also serve OIP gRPC here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = BenchModel(args.model, args.model)
    model.load()
    server = ModelServer(
        http_port=args.port,
        grpc_port=args.grpc_port or 8081,
        enable_grpc=bool(args.grpc_port),
        enable_latency_logging=False,
    )
    if args.grpc_port:  # after ModelServer() configured KServe's logging
        logging.getLogger("kserve").setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
