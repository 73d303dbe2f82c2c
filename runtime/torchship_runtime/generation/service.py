"""The generation requests of the event loop, whatever their wire protocol: the served model
looked up, a prompt checked against the context, and its Deltas as an async stream that a
disconnect cancels. Admission is bounded by the engine's waiting queue (429 past it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..errors import InferenceError
from .engine import QueueFull
from .model import TextGenerator, TransformersModel
from .sampling import SamplingParams
from .sequence import Delta, Sequence

if TYPE_CHECKING:
    from ..dataplane import DataPlane


class TooManyRequests(InferenceError):
    status = 429


class Stream:
    """One request's Deltas, in order, ending with the one that has a finish reason."""

    def __init__(self, generator: TextGenerator, ids: list[int], params: SamplingParams) -> None:
        self.engine = generator.engine
        self.queue: asyncio.Queue[Delta] = asyncio.Queue()
        self.prompt_tokens = len(ids)
        self.finish_reason: str | None = None
        if not self.engine.healthy:
            raise InferenceError("the generation engine has failed (liveness says so)", 503)
        try:
            self.sequence: Sequence = self.engine.submit(
                ids, params, self.queue, asyncio.get_running_loop()
            )
        except QueueFull as error:
            raise TooManyRequests(f"the server is at capacity ({error}): retry later") from None

    async def __aiter__(self) -> AsyncIterator[Delta]:
        while self.finish_reason is None:
            delta = await self.queue.get()
            self.finish_reason = delta.finish_reason
            if delta.finish_reason == "error":
                raise InferenceError("the generation engine failed", 500)
            yield delta

    def cancel(self) -> None:
        """The client went away: the engine drops the sequence at its next step."""
        if self.finish_reason is None:
            self.engine.cancel(self.sequence)
            self.queue.put_nowait(Delta("", [], "abort"))

    async def collect(self) -> Delta:
        """The whole answer as one Delta."""
        text: list[str] = []
        tokens: list[int] = []
        last = None
        async for last in self:
            text.append(last.text)
            tokens += last.tokens
        return Delta("".join(text), tokens, last.finish_reason, self.prompt_tokens, len(tokens))


class TextService:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def model(self, name: str, version: str | None = None) -> TransformersModel:
        """The served model: 404 for another name, 503 while loading. While draining, requests
        are still admitted (the endpoints lag the SIGTERM), as every protocol's are, until the
        listener closes; running streams finish within the shutdown timeout."""
        return self.plane.get_model(name, version)

    def generator(self, name: str, version: str | None = None) -> TextGenerator:
        model = self.model(name, version)
        if model.generator is None:
            raise InferenceError(f"model {name} is an embedding model: it does not generate")
        return model.generator

    @staticmethod
    def start(generator: TextGenerator, ids: list[int], params: SamplingParams) -> Stream:
        return Stream(generator, ids, params)
