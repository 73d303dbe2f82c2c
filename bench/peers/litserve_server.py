"""LitServe serving a benchmark model with its dynamic batching, taking the OIP v2 request body
at the OIP v2 path so the same load generator drives every server.

    python bench/peers/litserve_server.py --model small --port 9002 [--max-batch-size 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import litserve as ls
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "hack")]  # the models, and the MLP they build
import models  # noqa: E402


class BenchAPI(ls.LitAPI):
    def __init__(self, kind: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def setup(self, device: str) -> None:
        self.module = models.build(self.kind)

    def decode_request(self, request: dict) -> torch.Tensor:
        tensor = request["inputs"][0]
        return torch.tensor(tensor["data"], dtype=torch.float32).reshape(tensor["shape"])

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(inputs)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output.split(1))

    def encode_response(self, output: torch.Tensor) -> dict:
        array = np.asarray(output)
        return {
            "model_name": self.kind,
            "outputs": [
                {
                    "name": "output__0",
                    "datatype": "FP32",
                    "shape": list(array.shape),
                    "data": array.ravel().tolist(),
                }
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(models.SHAPES), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.005)
    args = parser.parse_args()
    torch.set_num_threads(2)
    api = BenchAPI(
        args.model,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        api_path=f"/v2/models/{args.model}/infer",
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, fast_queue=True)
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False)


if __name__ == "__main__":
    main()
