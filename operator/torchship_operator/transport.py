"""One request through the official client's configured transport (its credentials, TLS and
connection pool), answered raw: the operator's Kube and the SDK's Session both send through it
and read the answer their own way. Needs nothing but the kubernetes client."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes import client


def send(
    api_client: client.ApiClient,
    method: str,
    path: str,
    body: Any = None,
    content_type: str | None = None,
    query: Iterable[tuple[str, Any]] = (),
    timeout: float = 30,
) -> tuple[int, str | None, bytes]:
    """The status code, reason and body of one JSON request (a dict body is serialized by the
    client itself, for JSON and apply's YAML alike)."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    method, url, headers, _, post = api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query),
        header_params=headers,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(method, url, headers, body, post, _request_timeout=timeout)
    return response.status, response.reason, response.read()
