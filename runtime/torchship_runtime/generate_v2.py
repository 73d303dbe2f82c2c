"""The Open Inference Protocol's generate extension over REST:
`POST /v2/models/{name}[/versions/{v}]/generate` and `/generate_stream` (server-sent events).

    {"text_input": "...", "parameters": {"max_tokens": 64, "temperature": 0, "stop": ["\\n"]}}
    -> {"model_name": "...", "model_version": "", "text_output": "...",
        "details": {"finish_reason": "length", "prompt_tokens": 7, "completion_tokens": 64}}

A streamed answer sends one event per new text (`text_output` the new part); the last one
carries `details`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .asgi import Adapter, Receive, Scope, Send, read_body, respond_json
from .codec import describe
from .errors import InferenceError
from .generation.sampling import SamplingParams
from .generation.service import Stream, TextService
from .sse import event, on_disconnect, stream_events

if TYPE_CHECKING:
    from .dataplane import DataPlane


class GenerateParameters(BaseModel):
    """The engine's sampling parameters; any other is refused by name."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    top_k: Annotated[int, Field(ge=-1)] = 0
    seed: int | None = None
    stop: list[Annotated[str, Field(min_length=1)]] = []
    stop_token_ids: list[int] = []
    ignore_eos: bool = False


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_input: str
    parameters: GenerateParameters = GenerateParameters()


class GenerateV2(Adapter):
    protocol = "v2-generate"

    def __init__(self, plane: DataPlane, max_body: int) -> None:
        super().__init__(plane, max_body)
        self.service = TextService(plane)

    async def open(
        self, scope: Scope, receive: Receive, name: str, version: str | None
    ) -> tuple[Stream, str]:
        generator = self.service.generator(name, version)
        body = await read_body(scope, receive, self.max_body)
        try:
            request = GenerateRequest.model_validate_json(body)
        except ValidationError as error:
            raise InferenceError(describe(error)) from None
        ids = generator.tokenizer(request.text_input)["input_ids"]
        p = request.parameters
        params = SamplingParams(
            max_tokens=generator.check(ids, p.max_tokens),
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=max(p.top_k, 0),
            seed=p.seed,
            stop=tuple(p.stop),
            stop_token_ids=tuple(p.stop_token_ids),
            ignore_eos=p.ignore_eos,
        )
        return self.service.start(generator, ids, params), self.plane.model.version

    async def generate(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        with self.plane.instrumented(self.meter) as served:
            stream, model_version = await self.open(scope, receive, name, version)
            with on_disconnect(receive, stream.cancel):
                answer = await stream.collect()
            doc = {"model_name": name, "model_version": model_version, "text_output": answer.text}
            doc["details"] = details(answer.finish_reason, stream.prompt_tokens, len(answer.tokens))
            served.code = 200
            await respond_json(send, 200, doc, self.plane.draining)

    async def generate_stream(
        self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None
    ) -> None:
        with self.plane.instrumented(self.meter) as served:
            stream, model_version = await self.open(scope, receive, name, version)
            head = {"model_name": name, "model_version": model_version}

            async def events() -> AsyncIterator[bytes]:
                completion = 0
                async for delta in stream:
                    completion += len(delta.tokens)
                    if delta.finish_reason == "abort":
                        return
                    doc = head | {"text_output": delta.text}
                    if delta.finish_reason is not None:
                        doc["details"] = details(
                            delta.finish_reason, stream.prompt_tokens, completion
                        )
                    if delta.text or delta.finish_reason is not None:
                        yield event(orjson.dumps(doc))

            served.code = 200
            with on_disconnect(receive, stream.cancel):
                await stream_events(send, events(), self.plane.draining)


def details(finish_reason: str | None, prompt: int, completion: int) -> dict[str, object]:
    return {
        "finish_reason": finish_reason,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }
