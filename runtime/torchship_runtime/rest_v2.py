"""Open Inference Protocol v2 over REST: model metadata, model readiness and inference, with the
binary tensor data extension both ways. HTTP in, data plane calls, HTTP out."""

from __future__ import annotations

from .asgi import (
    CLOSE,
    Adapter,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    respond,
    respond_empty,
    respond_json,
)
from .codec import decode_request, encode_response
from .errors import InferenceError

OCTETS = (b"content-type", b"application/octet-stream")
JSON_TYPE = (b"content-type", b"application/json")


class RestV2(Adapter):
    protocol = "v2"

    async def server_metadata(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond_json(send, 200, self.plane.server_metadata(), self.plane.draining)

    async def metadata(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        doc = self.plane.model_metadata(name, version)
        await respond_json(send, 200, doc, self.plane.draining)

    async def ready(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        ready = self.plane.model_ready(name, version)
        await respond_empty(send, 200 if ready else 503, self.plane.draining)

    async def infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        plane = self.plane
        with plane.instrumented(self.meter) as served:
            plane.get_model(name, version)  # 404 / 503 before reading any body
            header_length = None
            if (value := header(scope, b"inference-header-content-length")) is not None:
                if not value.isdigit():
                    raise InferenceError("Inference-Header-Content-Length must be an integer")
                header_length = int(value)
            body = await read_body(scope, receive, self.max_body)
            request = decode_request(body, header_length)
            outputs = await plane.infer(name, version, request, served.admission)
            model = plane.model
            payload, json_length = encode_response(model.name, model.version, request, outputs)
            if json_length is None:
                headers = [JSON_TYPE]
            else:
                headers = [OCTETS, (b"inference-header-content-length", b"%d" % json_length)]
            if plane.draining:
                headers.append(CLOSE)
            served.code = 200
            await respond(send, 200, payload, headers)
