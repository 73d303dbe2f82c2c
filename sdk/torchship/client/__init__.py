"""An Open Inference Protocol v2 client: numpy arrays in and out, no torch needed. It speaks the
protocol, not torchship: the same code talks to KServe's and Triton's servers.

    from torchship.client import InferenceClient

    client = InferenceClient("http://127.0.0.1:8080", token=None, timeout=30)
    client.infer("mlp", {"input__0": x})["output__0"]
"""

from .errors import (
    InferenceError,
    InvalidRequest,
    ModelNotFound,
    ProtocolError,
    ServerUnavailable,
    Unauthorized,
)
from .rest import AsyncInferenceClient, InferenceClient, Retry
from .tensors import InferResult

__all__ = [
    "AsyncInferenceClient",
    "InferResult",
    "InferenceClient",
    "InferenceError",
    "InvalidRequest",
    "ModelNotFound",
    "ProtocolError",
    "Retry",
    "ServerUnavailable",
    "Unauthorized",
]
