"""Open Inference Protocol v2 over REST, synchronous and asynchronous, on httpx (one library for
both, with connection pooling and per-request timeouts; the standard library has no async HTTP
client). Each call is described once (`Call`: method, path, body, how to read the answer) and run
by either client, so the two cannot drift apart.

Retries: a 503 (a model still loading, a pod draining) and a failed or reset connection (a pod
going away) are retried with exponential back-off and jitter, honouring Retry-After. Inference
has no side effects, so a request cut off mid-way is safe to send again. Timeouts are not
retried: a slow model stays slow.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from . import tensors
from .errors import InferenceError, ProtocolError, ServerUnavailable, for_status

log = logging.getLogger("torchship.client")

RETRIED_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


@dataclass(frozen=True)
class Retry:
    """`attempts` tries in all; the n-th wait is about `backoff * 2**n` seconds, capped."""

    attempts: int = 5
    backoff: float = 0.1
    max_backoff: float = 5.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_backoff)
        base = min(self.backoff * 2**attempt, self.max_backoff)
        return base * (0.5 + random.random() / 2)


@dataclass(frozen=True)
class Call:
    """One protocol request and how to read its answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], Any]
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    # Health checks answer 503 as a fact, not as "try again".
    retry_503: bool = True

    def send(self, http: httpx.Client | httpx.AsyncClient) -> Any:
        """Send it: httpx's response, or with an AsyncClient the awaitable of it."""
        return http.request(self.method, self.path, content=self.body, headers=self.headers)


def model_path(model: str, version: str | None) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{quote(version, safe='')}" if version else path


def server_message(response: httpx.Response) -> str:
    """The server's words: OIP's {"error": ...}, FastAPI's {"detail": ...}, else the text."""
    text = response.text
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip() or response.reason_phrase
    if isinstance(doc, dict):
        for key in ("error", "detail", "message"):
            if doc.get(key):
                value = doc[key]
                return value if isinstance(value, str) else json.dumps(value)
    return text.strip()


def raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    status = response.status_code
    raise for_status(status)(server_message(response), status, str(response.request.url))


def read_json(response: httpx.Response) -> Any:
    raise_for(response)
    try:
        return response.json()
    except ValueError as error:
        raise ProtocolError(f"not JSON: {response.text[:200]!r}") from error


def read_ok(response: httpx.Response) -> bool:
    if response.status_code in (200, 204):
        return True
    if response.status_code in (404, 503):
        return False
    raise_for(response)
    return False


def read_infer(response: httpx.Response) -> tensors.InferResult:
    raise_for(response)
    length = response.headers.get(tensors.HEADER_LENGTH)
    if length is not None and not length.isdigit():
        raise ProtocolError(f"bad {tensors.HEADER_LENGTH}: {length!r}")
    return tensors.decode_response(response.content, int(length) if length else None)


def infer_call(
    model: str,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None,
    version: str | None,
    binary: bool | None,
    binary_output: bool | None,
    request_id: str | None,
    parameters: Mapping[str, Any] | None,
) -> Call:
    encoded = tensors.encode_request(
        inputs,
        outputs,
        binary=binary,
        binary_output=binary_output,
        request_id=request_id,
        parameters=parameters,
    )
    return Call(
        "POST", model_path(model, version) + "/infer", read_infer, encoded.body, encoded.headers
    )


def headers_for(token: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"user-agent": "torchship-client", **(extra or {})}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


def retryable(response: httpx.Response, call: Call) -> bool:
    return response.status_code == 503 and call.retry_503


def settle(
    retry: Retry,
    attempt: int,
    call: Call,
    base: str,
    error: Exception | None,
    response: httpx.Response | None,
) -> tuple[bool, Any]:
    """After one attempt: (True, the answer) or (False, seconds to wait before the next)."""
    if response is not None and not retryable(response, call):
        return True, call.read(response)
    if attempt + 1 >= retry.attempts:
        if response is not None:
            return True, call.read(response)
        message = f"cannot reach {base}: {type(error).__name__}: {error}"
        raise ServerUnavailable(message, url=base) from error
    wait = retry.delay(attempt, response.headers.get("retry-after") if response else None)
    log.info("retrying %s %s in %.2fs: %s", call.method, call.path, wait, why(error, response))
    return False, wait


class _Calls(abc.ABC):
    """The protocol's calls over REST, shared by both clients; `_run` sends one. A client of
    another transport of the protocol (gRPC) offers these same methods and returns the same
    InferResult, reusing `tensors` for the arrays."""

    _transport: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        retry: Retry | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or Retry()
        self._http = self._transport(
            base_url=self.url, headers=headers_for(token, headers), timeout=timeout, verify=verify
        )

    @abc.abstractmethod
    def _run(self, call: Call) -> Any: ...

    def server_live(self):
        """GET /v2/health/live: the server process answers."""
        return self._run(Call("GET", "/v2/health/live", read_ok, retry_503=False))

    def server_ready(self):
        """GET /v2/health/ready: every model is loaded and the server is not draining."""
        return self._run(Call("GET", "/v2/health/ready", read_ok, retry_503=False))

    def server_metadata(self):
        """GET /v2: name, version and protocol extensions of the server."""
        return self._run(Call("GET", "/v2", read_json))

    def model_ready(self, model: str, version: str | None = None):
        """GET /v2/models/{model}/ready."""
        path = model_path(model, version) + "/ready"
        return self._run(Call("GET", path, read_ok, retry_503=False))

    def model_metadata(self, model: str, version: str | None = None):
        """GET /v2/models/{model}: versions, platform, inputs and outputs (name, datatype,
        shape with -1 for a variable dimension)."""
        return self._run(Call("GET", model_path(model, version), read_json))

    def infer(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
        *,
        version: str | None = None,
        binary: bool | None = None,
        binary_output: bool | None = None,
        request_id: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ):
        """Run `model` on `inputs` (name -> array) and return an InferResult whose `outputs`
        are numpy arrays; `outputs` selects some by name. Large tensors go as raw bytes
        (`binary` forces it either way)."""
        call = infer_call(
            model, inputs, outputs, version, binary, binary_output, request_id, parameters
        )
        return self._run(call)


class InferenceClient(_Calls, contextlib.AbstractContextManager):
    """A blocking Open Inference Protocol v2 client (torchship, KServe, Triton):

    with InferenceClient("http://127.0.0.1:8080") as client:
        result = client.infer("mlp", {"input__0": x})
        y = result["output__0"]
    """

    _transport = httpx.Client

    def _run(self, call: Call) -> Any:
        for attempt in range(self.retry.attempts):
            error, response = None, None
            try:
                response = call.send(self._http)
            except RETRIED_ERRORS as e:
                error = e
            done, value = settle(self.retry, attempt, call, self.url, error, response)
            if done:
                return value
            time.sleep(value)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncInferenceClient(_Calls):
    """The asyncio twin of InferenceClient: the same calls, awaited."""

    _transport = httpx.AsyncClient

    async def _run(self, call: Call) -> Any:
        for attempt in range(self.retry.attempts):
            error, response = None, None
            try:
                response = await call.send(self._http)
            except RETRIED_ERRORS as e:
                error = e
            done, value = settle(self.retry, attempt, call, self.url, error, response)
            if done:
                return value
            await asyncio.sleep(value)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncInferenceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def why(error: Exception | None, response: httpx.Response | None) -> str:
    if response is not None:
        return f"{response.status_code} {server_message(response)}"
    return f"{type(error).__name__}: {error}"


__all__ = ["AsyncInferenceClient", "InferenceClient", "InferenceError", "Retry"]
