"""OpenAI's request bodies for completions, chat completions and embeddings, as pydantic models.

What the engine does not do is refused, naming the parameter, never ignored: a parameter these
models do not know (extra="forbid"), or a known one set to anything but its neutral value (n > 1,
penalties, logprobs, tools, ...). `top_k`, `stop_token_ids` and `ignore_eos` are vLLM's
extensions, taken under the same names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InferenceError

# Parameters the engine does not implement, with the values that mean "not used".
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "best_of": (None, 1),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "repetition_penalty": (None, 1, 1.0),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "echo": (None, False),
    "suffix": (None, ""),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "response_format": (None, {"type": "text"}),
}


class OpenAIError(InferenceError):
    """An error with the parameter it is about (OpenAI's error object has `param`)."""

    def __init__(self, message: str, param: str | None = None, status: int | None = None) -> None:
        super().__init__(message, status)
        self.param = param


ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_exceeded"}


def error_object(error: InferenceError) -> bytes:
    """OpenAI's error object, the body of every error under `/v1` (the route table's shape
    there): `{"error": {"message", "type", "param", "code"}}`, `code` the HTTP status."""
    kind = ERROR_TYPES.get(error.status, "invalid_request_error" if error.status < 500 else "")
    return orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": kind or "server_error",
                "param": getattr(error, "param", None),
                "code": error.status,
            }
        }
    )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class Sampling(BaseModel):
    """The fields completions and chat completions share."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=-1)] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # an end user's id: OpenAI's monitoring field, read by no one here
    n: Any = None
    best_of: Any = None
    presence_penalty: Any = None
    frequency_penalty: Any = None
    repetition_penalty: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    logit_bias: Any = None
    echo: Any = None
    suffix: Any = None
    tools: Any = None
    tool_choice: Any = None
    response_format: Any = None

    @model_validator(mode="after")
    def refuse_unsupported(self) -> Sampling:
        for name, neutral in NEUTRAL.items():
            if name in type(self).model_fields and getattr(self, name) not in neutral:
                raise ValueError(f"unsupported parameter {name}={getattr(self, name)!r}")
        if isinstance(self.stop, list) and not all(self.stop):
            raise ValueError("stop strings must not be empty")
        if self.stop == "":
            raise ValueError("stop strings must not be empty")
        return self

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class CompletionRequest(Sampling):
    """`POST /v1/completions`: one prompt, as text or token ids."""

    prompt: str | list[str] | list[int] | list[list[int]]

    def prompt_value(self) -> str | list[int]:
        prompt = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str | list):
            if len(prompt) != 1:
                raise OpenAIError("one prompt per request (a list of one)", "prompt")
            prompt = prompt[0]
        if not prompt:
            raise OpenAIError("the prompt is empty", "prompt")
        return prompt


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(Sampling):
    """`POST /v1/chat/completions`: messages through the tokenizer's chat template."""

    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    parallel_tool_calls: Any = None

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class EmbeddingRequest(BaseModel):
    """`POST /v1/embeddings`."""

    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: None = None
    user: str | None = None

    def inputs(self) -> list[str] | list[list[int]]:
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]
        if not value:
            raise OpenAIError("input is empty", "input")
        return value


def parse(model: type[BaseModel], body: bytes) -> Any:
    """The request, or a 400 naming the first wrong parameter."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "extra_forbidden":
            raise OpenAIError(f"unsupported parameter {param}", param) from None
        message = first["msg"].removeprefix("Value error, ")
        if message.startswith("unsupported parameter "):
            param = message.removeprefix("unsupported parameter ").partition("=")[0]
            raise OpenAIError(message, param) from None
        raise OpenAIError(f"{param}: {message}" if param else message, param) from None
