"""OpenAI's API on the runtime's port: `GET /v1/models`, `POST /v1/completions`,
`/v1/chat/completions` (streamed as server-sent events ending with `data: [DONE]`) and
`/v1/embeddings`. Errors answer OpenAI's error object with their 4xx/5xx status."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ..asgi import CLOSE, JSON, Receive, Scope, Send, read_body, respond
from ..errors import InferenceError
from ..generation.sampling import SamplingParams
from ..generation.sequence import Delta
from ..generation.service import Stream, TextService
from ..metrics import ProtocolMeter
from ..sse import DONE, event, on_disconnect, stream_events
from .protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    OpenAIError,
    Sampling,
    error_object,
    parse,
)

if TYPE_CHECKING:
    from ..dataplane import DataPlane


def sampling(request: Sampling, max_tokens: int) -> SamplingParams:
    temperature = 1.0 if request.temperature is None else request.temperature
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=max(request.top_k or 0, 0),
        seed=request.seed,
        stop=request.stops,
        stop_token_ids=tuple(request.stop_token_ids or ()),
        ignore_eos=request.ignore_eos,
    )


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class OpenAIServing:
    protocol = "openai"

    def __init__(self, plane: DataPlane, max_body: int) -> None:
        self.plane = plane
        self.service = TextService(plane)
        self.max_body = max_body
        self.meter = ProtocolMeter(plane.settings.model_name, self.protocol)
        self.created = int(time.time())

    async def answer(self, send: Send, status: int, body: bytes) -> None:
        await respond(send, status, body, [*JSON, CLOSE] if self.plane.draining else JSON)

    async def guarded(self, send: Send, work: Callable[[], Awaitable[None]]) -> None:
        """Run a handler; its InferenceErrors answer OpenAI's error object."""
        with self.plane.instrumented(self.meter) as served:
            try:
                await work()
                served.code = 200
            except InferenceError as error:
                served.code = error.status
                await self.answer(send, error.status, error_object(error))

    def card(self) -> dict[str, Any]:
        """OpenAI's model object for the served model (`created`: when this server began
        serving it), with vLLM's `max_model_len` for a generator."""
        model = self.plane.model
        card = {"id": model.name, "object": "model", "created": self.created}
        card["owned_by"] = "torchship"
        if getattr(model, "generator", None) is not None:
            card["max_model_len"] = model.generator.context
        return card

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.answer(send, 200, orjson.dumps({"object": "list", "data": [self.card()]}))

    async def model(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        """`GET /v1/models/{name}`: the model object, or OpenAI's 404 for another name."""
        if name != self.plane.model.name:
            served = self.plane.model.name
            raise OpenAIError(f"the model {name} does not exist (served: {served})", "model", 404)
        await self.answer(send, 200, orjson.dumps(self.card()))

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def work() -> None:
            request = parse(CompletionRequest, await read_body(scope, receive, self.max_body))
            generator = self.service.generator(request.model)
            prompt = request.prompt_value()
            ids = prompt if isinstance(prompt, list) else generator.tokenizer(prompt)["input_ids"]
            await self.generate(receive, send, request, ids, generator, chat=False)

        await self.guarded(send, work)

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def work() -> None:
            request = parse(ChatCompletionRequest, await read_body(scope, receive, self.max_body))
            generator = self.service.generator(request.model)
            messages = [{"role": m.role, "content": m.text()} for m in request.messages]
            ids = template(generator.tokenizer, messages)
            await self.generate(receive, send, request, ids, generator, chat=True)

        await self.guarded(send, work)

    async def generate(
        self, receive: Receive, send: Send, request: Any, ids: list[int], generator: Any, chat: bool
    ) -> None:
        limit = request.limit if chat else request.max_tokens
        try:
            max_tokens = generator.check(ids, limit)
        except InferenceError as error:
            raise OpenAIError(error.message, "messages" if chat else "prompt") from None
        stream = self.service.start(generator, ids, sampling(request, max_tokens))
        chunks = Chunks(request.model, chat)
        with on_disconnect(receive, stream.cancel):
            if request.stream:
                include = bool(request.stream_options and request.stream_options.include_usage)
                events = chunks.stream(stream, include)
                await stream_events(send, events, self.plane.draining)
            else:
                answer = await stream.collect()
                await self.answer(send, 200, orjson.dumps(chunks.whole(answer)))

    async def embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def work() -> None:
            request = parse(EmbeddingRequest, await read_body(scope, receive, self.max_body))
            embedder = self.service.model(request.model).embedder
            if embedder is None:
                raise OpenAIError(f"model {request.model} generates text: no embeddings", "model")
            ids = embedder.tokenize(request.inputs())
            embedder.check(ids)
            loop = asyncio.get_running_loop()
            vectors = await loop.run_in_executor(self.plane.executor, embedder.embed, ids)
            data = [
                {"object": "embedding", "index": i, "embedding": encode(v, request.encoding_format)}
                for i, v in enumerate(vectors.numpy())
            ]
            prompt = sum(len(i) for i in ids)
            body = {"object": "list", "data": data, "model": request.model}
            body["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
            await self.answer(send, 200, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))

        await self.guarded(send, work)


def encode(vector: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector


def template(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    if not tokenizer.chat_template:
        raise OpenAIError("this model has no chat template: use /v1/completions", "messages")
    try:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    except Exception as error:  # the template's own checks (roles in order, say)
        raise OpenAIError(f"the chat template refused the messages: {error}", "messages") from None
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


class Chunks:
    """The response documents of one request: whole, or as stream chunks."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model = model
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def whole(self, answer: Delta) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": answer.text}}
        else:
            choice = {"index": 0, "text": answer.text, "logprobs": None}
        choice["finish_reason"] = answer.finish_reason
        body = self.head(self.object) | {"choices": [choice]}
        body["usage"] = usage(answer.prompt_tokens, answer.completion_tokens)
        return body

    def chunk(self, text: str, finish: str | None, first: bool = False) -> bytes:
        if self.chat:
            delta = {"role": "assistant", "content": text} if first else {"content": text}
            choice = {"index": 0, "delta": delta if text or first else {}}
            obj = "chat.completion.chunk"
        else:
            choice, obj = {"index": 0, "text": text, "logprobs": None}, "text_completion"
        choice["finish_reason"] = finish
        return event(orjson.dumps(self.head(obj) | {"choices": [choice]}))

    async def stream(self, stream: Stream, include_usage: bool) -> AsyncIterator[bytes]:
        first, completion = True, 0
        async for delta in stream:
            completion += len(delta.tokens)
            if delta.finish_reason == "abort":
                return
            if delta.text or delta.finish_reason or first:
                yield self.chunk(delta.text, delta.finish_reason, first and self.chat)
                first = False
        if include_usage:
            body = self.head(self.object + ".chunk" if self.chat else self.object)
            body |= {"choices": [], "usage": usage(stream.prompt_tokens, completion)}
            yield event(orjson.dumps(body))
        yield DONE
