"""Server-sent events on bare ASGI, for streamed generation: the response head, one `data:`
event per chunk, and a watch on the request's receive channel that notices a client that went
away (so its sequence is cancelled rather than generated for nobody)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

from .asgi import CLOSE, Receive, Send

EVENT_STREAM = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies pass each event on at once
]
DONE = b"data: [DONE]\n\n"


async def stream_events(send: Send, events: AsyncIterator[bytes], close: bool = False) -> None:
    """A 200 with one event per JSON document that `events` yields."""
    headers = [*EVENT_STREAM, CLOSE] if close else EVENT_STREAM
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    async for data in events:
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


@contextlib.contextmanager
def on_disconnect(receive: Receive, callback: Callable[[], None]) -> Iterator[None]:
    """While the block runs, `callback()` is called if the client disconnects (the body has
    been read already: the next message can only be the disconnect)."""

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        callback()

    task = asyncio.get_running_loop().create_task(watch())
    try:
        yield
    finally:
        task.cancel()
