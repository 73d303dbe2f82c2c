"""The little HTTP that the REST adapters share, on bare ASGI: reading a bounded (optionally
compressed) body, bearer-token checks, writing responses, and the adapters' common state."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from .auth import check_bearer
from .errors import BodyTooLarge, InferenceError
from .metrics import ProtocolMeter

if TYPE_CHECKING:
    from .dataplane import DataPlane

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON: Headers = [(b"content-type", b"application/json")]
CLOSE = (b"connection", b"close")


class Adapter:
    """A protocol over HTTP: the data plane it maps onto, its body limit and its meter."""

    protocol = ""

    def __init__(self, plane: DataPlane, max_body: int) -> None:
        self.plane = plane
        self.max_body = max_body
        self.meter = ProtocolMeter(plane.settings.model_name, self.protocol)


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with 413 past `limit` bytes (before reading, when
    Content-Length says so), inflated when sent with Content-Encoding gzip or deflate."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InferenceError("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = header(scope, b"content-encoding")
    if encoding is None or encoding == b"identity":
        return body
    return inflate(body, encoding.decode("latin-1").strip().lower(), limit)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding not in ("gzip", "deflate"):
        raise InferenceError(f"unsupported Content-Encoding {encoding!r} (gzip, deflate)", 415)
    # gzip: a gzip header; deflate: a zlib stream (what HTTP calls deflate).
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)  # never more than the limit in memory
    except zlib.error as error:
        raise InferenceError(f"the {encoding} body does not decompress: {error}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    return data


def authorize(scope: Scope, token: bytes) -> None:
    """`Authorization: Bearer <token>`, compared in constant time."""
    check_bearer(header(scope, b"authorization"), token)


async def respond(send: Send, status: int, body: bytes, headers: Headers) -> None:
    # With its length given, the server writes the body as is (no chunked framing).
    headers = [*headers, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(
    send: Send, status: int, doc: Any, close: bool = False, extra: Headers = ()
) -> None:
    body = doc.model_dump_json().encode() if isinstance(doc, BaseModel) else orjson.dumps(doc)
    headers = [*JSON, *extra, *([CLOSE] if close else [])] if close or extra else JSON
    await respond(send, status, body, headers)


async def respond_empty(send: Send, status: int, close: bool = False) -> None:
    """Health answers: the status says it all, the body is empty (as the protocol asks)."""
    await respond(send, status, b"", [CLOSE] if close else [])
