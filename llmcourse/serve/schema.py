"""What the OpenAI-compatible server accepts and answers: request bodies, errors, and validation.

The request bodies are pydantic models (`CompletionRequest`, `ChatRequest` and their parts) whose
JSON schemas become the server's /openapi.json, the document /docs shows and the schema fuzzer
(`benchmarks/fuzz_serve.py`) attacks. They are strict as OpenAI's API is: 0 is not `false` and "1"
is not 1; unknown fields are ignored. Errors have OpenAI's shape {"error": {"message", "type",
"param", "code"}} (`ErrorResponse`): an `APIError` raised anywhere becomes one, with its status.

`completion_job` and `chat_job` turn a validated body into a `Job`: prompt ids, stop strings and
tokens, and sampling settings checked against the served model (its name, its context length).
The HTTP side (routes, streaming) is `llmcourse.serve.create_app`.

References: OpenAI's API reference for /v1/completions and /v1/chat/completions (fields, defaults,
error codes such as `context_length_exceeded`); vLLM's OpenAI-compatible server for `top_k` and
`max_model_len`. Left out: n > 1, logprobs (false is accepted), echo/suffix, best_of, presence/frequency penalties and
logit_bias (accepted only at their defaults, else a 400 "not supported").
"""

from __future__ import annotations

import json
import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llmcourse.serve.backends import Backend


class APIError(Exception):
    """An error the client caused; becomes {"error": {...}} with this status."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        *,
        code: str | None = None,
        type: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.body = (
            status,
            {"message": message, "type": type, "param": param, "code": code},
        )


# ---- request bodies: their JSON schemas become /openapi.json (what the schema fuzzer attacks) ----
class _Body(BaseModel):
    # strict: 0 is not `false` and "1" is not 1, as in OpenAI's API; unknown fields are ignored
    model_config = ConfigDict(strict=True, extra="ignore")


class Sampling(_Body):
    model: str
    max_tokens: int | None = Field(
        None, ge=1, description="new tokens at most; default fills the context"
    )
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="vLLM extension; -1 or null = off")
    stop: str | list[str] | None = Field(None, description="up to 4 strings that end the answer")
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="only 1 choice per request")
    stream: bool = False
    stream_options: dict | None = None
    # accepted only at their defaults (anything else is a 400 "not supported"); logprobs also at false
    logprobs: bool | int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict | None = None


class CompletionRequest(Sampling):
    prompt: str | list[int] | list[str] = Field(
        description="text, a one-element list of text, or token ids"
    )
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


class TextPart(_Body):
    type: Literal["text"]
    text: str


class FunctionCall(_Body):
    name: str
    arguments: str  # JSON text


class ToolCall(_Body):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionSpec(_Body):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionSpec


class FunctionName(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: FunctionName


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="newer name for max_tokens")
    tools: list[Tool] | None = None
    # as OpenAI: "none", "auto", "required", or one of the request's tools by name. Not enforced on the
    # model's output (no constrained decoding): "none" hides the tools, a named one offers only it.
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (when one is set)"},
    403: {"model": ErrorResponse, "description": "Host name not allowed (--allow-host)"},
    404: {"model": ErrorResponse, "description": "Unknown model"},
    408: {"model": ErrorResponse, "description": "Request body too slow (--read-timeout)"},
    413: {"model": ErrorResponse, "description": "Request body too large (--max-body-mb)"},
}
# a POST answers JSON, or with `stream: true` server-sent events, each {"data": a JSON chunk or "[DONE]"}
SSE_EVENT = {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}
GENERATION = {200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}, **ERRORS}
UNSUPPORTED = {
    "logprobs": None,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "logit_bias": None,
    "echo": False,
    "suffix": None,
    "best_of": 1,
}  # field -> the only value we accept (or unset)


# ---- validation: request -> Job ----
class Job:
    """One validated request: prompt ids, stop conditions and sampling settings."""

    def __init__(
        self,
        req: Sampling,
        ids: list[int],
        backend: Backend,
        *,
        stop_ids: set[int],
        extra_stops: list[str] = (),
        tools: set[str] | None = None,
        default_max: int | None = None,
    ):
        if req.model != backend.name:
            raise APIError(
                404,
                f"The model `{req.model}` does not exist; this server has `{backend.name}`.",
                "model",
                code="model_not_found",
            )
        for field, ok in UNSUPPORTED.items():
            value = getattr(req, field, ok)
            if value is not None and value is not False and value != ok:
                raise APIError(
                    400, f"{field} is not supported by this server", field, code="unsupported_value"
                )
        self.stops = ([req.stop] if isinstance(req.stop, str) else list(req.stop or [])) + list(
            extra_stops
        )
        if len(self.stops) - len(extra_stops) > 4 or not all(self.stops):
            raise APIError(400, "stop: at most 4 non-empty strings", "stop", code="invalid_value")
        limit, asked = (
            backend.context_length,
            getattr(req, "max_completion_tokens", None) or req.max_tokens,
        )
        if len(ids) >= limit or (asked is not None and len(ids) + asked > limit):
            raise APIError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(ids) + (asked or 1)} tokens ({len(ids)} in the prompt, {asked or 1} in the "
                "completion).",
                "max_tokens"
                if len(ids) < limit
                else "messages"
                if isinstance(req, ChatRequest)
                else "prompt",
                code="context_length_exceeded",
            )
        self.ids, self.stop_ids, self.tools = ids, stop_ids, tools
        self.max_tokens = asked or min(limit - len(ids), default_max or limit)
        # Tiny values are clamped: logits / 1e-300 overflow to inf (NaN probabilities), and a top_p below
        # float32's smallest number rounds to 0 and drops every token. Both limits are greedy in practice.
        self.temperature = req.temperature if req.temperature >= 1e-5 else 0.0
        self.top_p = max(req.top_p, 1e-6)
        self.top_k = req.top_k if req.top_k and req.top_k > 0 else None
        self.seed = (req.seed if req.seed is not None else secrets.randbits(63)) % 2**63
        self.tool_calls: list[dict] = []  # filled by Engine.run when the answer calls tools

    def usage(self, n: int) -> dict:
        return {
            "prompt_tokens": len(self.ids),
            "completion_tokens": n,
            "total_tokens": len(self.ids) + n,
        }


def _utf8(text: str, param: str) -> str:
    # JSON can smuggle in lone surrogates ("\ud800"): no tokenizer takes those
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(
            400, f"{param} is not valid UTF-8 text", param, code="invalid_value"
        ) from None
    return text


def completion_job(req: CompletionRequest, backend: Backend) -> Job:
    prompt = req.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise APIError(
                400, "send exactly one prompt per request", "prompt", code="invalid_value"
            )
        prompt = prompt[0]
    if isinstance(prompt, str):
        # "" starts at <eos>
        ids = backend.encode(_utf8(prompt, "prompt")) or sorted(backend.eos_ids)[:1]
    elif prompt and all(0 <= i < backend.vocab_size for i in prompt):
        ids = list(prompt)
    else:
        raise APIError(
            400,
            f"prompt token ids must be in [0, {backend.vocab_size})",
            "prompt",
            code="invalid_value",
        )
    if not ids:
        raise APIError(400, "prompt is empty", "prompt", code="invalid_value")
    # 16: OpenAI's default max_tokens
    return Job(req, ids, backend, stop_ids=backend.eos_ids, default_max=16)


def chat_job(req: ChatRequest, backend: Backend) -> Job:
    messages = [m.model_dump(exclude_none=True) for m in req.messages]
    for m in messages:
        if isinstance(m.get("content"), list):  # [{"type": "text", "text": ...}, ...] -> one string
            m["content"] = "".join(part["text"] for part in m["content"])
        m["content"] = _utf8(m.get("content") or "", "messages")
        # chat templates want a call's arguments as an object, not JSON text
        for call in m.get("tool_calls", []):
            call["function"]["arguments"] = _maybe_json(call["function"]["arguments"])
    tools = _offered_tools(req)
    try:
        ids, extra_stops = backend.chat_ids(messages, tools)
    except Exception as exc:  # e.g. a jinja2 TemplateError: the template refuses these messages
        raise APIError(
            400,
            f"the chat template cannot render these messages: {exc}",
            "messages",
            code="invalid_value",
        ) from None
    names = {t["function"]["name"] for t in tools} if tools else None
    return Job(
        req, ids, backend, stop_ids=backend.chat_stop_ids, extra_stops=extra_stops, tools=names
    )


def _offered_tools(req: ChatRequest) -> list[dict] | None:
    """The tools to describe to the model, after checking `tool_choice` against `tools` as OpenAI does."""
    choice, tools = req.tool_choice, [t.model_dump(exclude_none=True) for t in req.tools or []]
    names = [t["function"]["name"] for t in tools]
    if choice in (None, "auto"):
        return tools or None
    if choice == "none":
        return None
    if not tools:
        raise APIError(
            400,
            "tool_choice other than 'none' or 'auto' needs `tools`: the request offers none",
            "tool_choice",
            code="invalid_value",
        )
    if choice == "required":
        return tools
    if choice.function.name not in names:
        raise APIError(
            400,
            f"tool_choice names the function `{choice.function.name}`, which is not among the "
            f"request's tools ({', '.join(names)})",
            "tool_choice",
            code="invalid_value",
        )
    return [t for t in tools if t["function"]["name"] == choice.function.name]


def _maybe_json(arguments: str):
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments
