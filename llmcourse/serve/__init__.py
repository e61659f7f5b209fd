"""An OpenAI-compatible HTTP server for the models the course trains, plus a chat page at `/`.

    python -m llmcourse.serve --model out/sft-gpt [--host 127.0.0.1] [--port 8000] [--name NAME]
        [--api-key KEY] [--allow-host NAME] [--max-body-mb 1] [--read-timeout 30] [--keep-alive-timeout 5]

`--model` is a Hugging Face-format directory: a GPT-2 layout runs in our `GPT`, a Llama layout (e.g.
`llama_to_hf(model).save_pretrained(dir)`, or SmolLM2) in our `Llama`, both with our own decoding;
`--engine transformers` runs any causal LM in transformers instead (`serve_models.load_backend`).

Then any OpenAI client can talk to it (`OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="none")`):
  GET  /v1/models                 the one served model (its name: --name, default the directory's name)
  POST /v1/completions            raw text continuation of `prompt`
  POST /v1/chat/completions       `messages` rendered by the chat template, answer as an assistant turn
Both POST endpoints take `stream: true` (server-sent events: one JSON chunk per piece of text, then
`data: [DONE]`), temperature, top_p, top_k (a vLLM extension), max_tokens, stop, seed, n=1, and report
`usage`. Chat requests may carry `tools`: they are described to the model (see `serve_models`), and a
`<tool_call>{...}</tool_call>` in its answer comes back as OpenAI `tool_calls`; `tool_choice` is checked
as OpenAI does ("none", "auto", "required", or a function among `tools`, which is then the only one
offered), but not enforced on what the model writes.
Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}} with a 4xx status: unknown
model 404; bad field values, malformed JSON, a prompt that does not fit the context 400; a missing or
wrong API key 401; a Host name not allowed 403; a body too slow 408 or too large (over 1 MiB) 413.
Guarding (`llmcourse.serve.guard`): only loopback Host names are accepted unless `--allow-host` adds
one, an API key is checked when `--api-key` (or LLMCOURSE_API_KEY) is set, `--max-body-mb` and
`--read-timeout` bound what a client sends, `--keep-alive-timeout` how long an idle connection stays.

How it works. Validating a request and tokenizing its prompt run in a worker thread, so a huge prompt
does not stall other clients. The model runs in worker threads (`anyio.to_thread`), one token per call,
under one lock:
concurrent requests take turns token by token, each with its own KV cache and `torch.Generator`, so
each gets exactly the answer it would get alone (tested). This is the poor man's version of what vLLM
does properly: vLLM batches the waiting requests' next tokens into *one* forward pass ("continuous
batching", notebook 14) and pages the KV cache; we run them one after another.
Stop strings are found in the decoded text; text that might be the start of a stop string is held back
until we know, so streamed pieces always join to the non-streamed answer.
The request bodies, the error shape and the request -> `Job` validation are in
`llmcourse.serve.schema`; the models, the token-by-token engine and tool calls in
`llmcourse.serve.backends`; the checks before a route in `llmcourse.serve.guard`; the command line in
`llmcourse.serve.cli`; this module holds the HTTP routes and `BackgroundServer`.
References: OpenAI's API reference (the routes and their JSON), the server-sent events format (WHATWG
HTML standard), vLLM's OpenAI-compatible server (Kwon et al. 2023, PagedAttention).
A non-streamed request whose client hangs up stops at the next token, as a streamed one does.
Left out: n > 1, logprobs (false is accepted), echo/suffix, presence/frequency penalties and logit_bias
(rejected with 400), TLS and users (one shared key), the Responses and embeddings APIs.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from contextlib import aclosing
from pathlib import Path

from starlette.requests import Request  # at module level: FastAPI resolves the routes' annotations

from llmcourse.serve.backends import Backend, Engine, load_backend  # noqa: F401 (load_backend: re-exported)
from llmcourse.serve.guard import (
    DEFAULT_MAX_BODY,
    DEFAULT_READ_TIMEOUT,
    LOOPBACK_HOSTS,
    Guard,
    error_body,
    served_hosts,
    timed_protocol,
)
from llmcourse.serve.schema import (
    ERRORS,
    GENERATION,
    APIError,
    ChatRequest,
    CompletionRequest,
    Job,
    Sampling,
    chat_job,
    completion_job,
)

PAGE = Path(__file__).parent / "static" / "chat.html"


def _event(obj: dict) -> str:
    """One server-sent event carrying a JSON object."""
    return f"data: {json.dumps(obj)}\n\n"


# ---- HTTP ----
def _error(status: int, message: str, param=None, code=None, type="invalid_request_error"):
    from fastapi.responses import JSONResponse

    # every string made safe to encode: a lone surrogate in `model` once turned a 404 into a 500
    return JSONResponse(error_body(message, param=param, code=code, type=type), status)


def create_app(
    backend: Backend,
    *,
    api_key: str | None = None,
    allowed_hosts=LOOPBACK_HOSTS,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
):
    """The FastAPI application serving `backend`, behind `guard.Guard` (Host allow-list, optional API
    key, body size limit, body read timeout)."""
    import anyio
    from fastapi import Body, FastAPI
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="llmcourse OpenAI-compatible server", version="1")
    app.add_middleware(
        Guard,
        api_key=api_key,
        allowed_hosts=allowed_hosts,
        max_body_bytes=max_body_bytes,
        read_timeout=read_timeout,
    )
    engine, created, default_openapi = Engine(backend), int(time.time()), app.openapi

    def openapi() -> dict:  # validation errors are 400 here (below), so 422 is not documented
        schema = default_openapi()
        for operations in schema["paths"].values():
            for op in operations.values():
                op.get("responses", {}).pop("422", None)
        return schema

    app.openapi = openapi

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return _error(exc.status, **exc.body)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        # FastAPI says 422; OpenAI (and its clients) say 400, with the offending field as `param`
        err = (exc.errors() or [{"msg": "invalid request"}])[0]
        if err.get("type") == "json_invalid":
            return _error(
                400,
                f"the body is not valid JSON: {err.get('ctx', {}).get('error')}",
                None,
                "invalid_json",
            )
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        return _error(
            400,
            f"{'.'.join(loc) or 'body'}: {err.get('msg')}",
            loc[0] if loc else None,
            "invalid_value",
        )

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        return _error(
            exc.status_code,
            str(exc.detail),
            type="not_found_error" if exc.status_code == 404 else "invalid_request_error",
        )

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):  # a bug of ours: still JSON, never a stack trace
        return _error(500, f"internal error: {type(exc).__name__}", type="server_error")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> dict:  # running: requests generating now (0 once every client is served)
        return {"status": "ok", "running": engine.running}

    def card() -> dict:
        return {
            "id": backend.name,
            "object": "model",
            "created": created,
            "owned_by": "llmcourse",
            "max_model_len": backend.context_length,
        }

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [card()]}

    @app.get("/v1/models/{model_id}", responses={404: ERRORS[404]})
    async def model(model_id: str = PathParam(examples=[backend.name])) -> dict:
        if model_id != backend.name:
            raise APIError(
                404, f"The model `{model_id}` does not exist.", "model", code="model_not_found"
            )
        return card()

    # the examples name the served model, so /docs and the schema fuzzer get past "unknown model"
    # building a job tokenizes the prompt: in a worker thread, so a huge prompt stalls no one else
    @app.post("/v1/completions", responses=GENERATION)
    async def completions(
        request: Request,
        req: CompletionRequest = Body(
            examples=[{"model": backend.name, "prompt": "Once upon a time", "max_tokens": 16}]
        ),
    ):
        job = await anyio.to_thread.run_sync(completion_job, req, backend)
        return await respond(req, job, request, chat=False)

    @app.post("/v1/chat/completions", responses=GENERATION)
    async def chat_completions(
        request: Request,
        req: ChatRequest = Body(
            examples=[
                {
                    "model": backend.name,
                    "messages": [{"role": "user", "content": "Hello!"}],
                    "max_tokens": 16,
                }
            ]
        ),
    ):
        job = await anyio.to_thread.run_sync(chat_job, req, backend)
        return await respond(req, job, request, chat=True)

    async def respond(req: Sampling, job: Job, request: Request, chat: bool):
        kind = "chat.completion" if chat else "text_completion"
        head = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}",
            "created": int(time.time()),
            "model": backend.name,
        }

        def calls() -> list[dict]:
            return [
                {"id": f"call_{secrets.token_hex(8)}", "type": "function", "function": c}
                for c in job.tool_calls
            ]

        if not req.stream:
            pieces, reason, n = [], None, 0
            # a client that hangs up frees the model: the engine checks between tokens
            async with aclosing(engine.run(job, disconnected=request.is_disconnected)) as run:
                async for piece, reason, n in run:  # noqa: B007 (the last reason and n are the answer's)
                    pieces.append(piece)
            if not chat:
                choice = {
                    "index": 0,
                    "text": "".join(pieces),
                    "logprobs": None,
                    "finish_reason": reason,
                }
            else:
                message = {"role": "assistant", "content": "".join(pieces)}
                if job.tool_calls:
                    message.update(content=message["content"] or None, tool_calls=calls())
                    reason = "tool_calls"
                choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
            return {**head, "object": kind, "choices": [choice], "usage": job.usage(n)}

        def sse(choices: list[dict], **extra) -> str:
            return _event(
                {**head, "object": kind + (".chunk" if chat else ""), "choices": choices, **extra}
            )

        def chunk(piece: str | None, reason: str | None = None, delta: dict | None = None) -> str:
            if chat:
                return sse(
                    [
                        {
                            "index": 0,
                            "delta": {"content": piece} if delta is None else delta,
                            "logprobs": None,
                            "finish_reason": reason,
                        }
                    ]
                )
            return sse(
                [{"index": 0, "text": piece or "", "logprobs": None, "finish_reason": reason}]
            )

        async def events():
            try:
                if chat:
                    yield chunk(None, delta={"role": "assistant", "content": ""})
                async with aclosing(engine.run(job)) as run:  # closed at once on a hang-up
                    async for piece, reason, n in run:  # noqa: B007
                        if piece:
                            yield chunk(piece)
                if job.tool_calls:
                    yield chunk(
                        None,
                        delta={"tool_calls": [{"index": i, **c} for i, c in enumerate(calls())]},
                    )
                    reason = "tool_calls"
                yield chunk(None, reason, {} if chat else None)
                if (req.stream_options or {}).get("include_usage"):
                    yield sse([], usage=job.usage(n))
            except Exception as exc:
                # the 200 header is already sent: report the failure inside the stream
                yield _event(
                    {
                        "error": {
                            "message": f"internal error: {type(exc).__name__}",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return app


class BackgroundServer:
    """Serve in a thread of this process (for notebooks and tests); `url` ends without a slash.

    The keyword arguments are the CLI's flags (`guard` explains them): `api_key`, `allowed_hosts`
    (added to the loopback names), `max_body_bytes`, `read_timeout` and `keep_alive_timeout`
    (seconds an idle keep-alive connection stays open).

    >>> with BackgroundServer(load_backend("out/sft-gpt")) as srv:   # doctest: +SKIP
    ...     OpenAI(base_url=srv.url + "/v1", api_key="none")
    """

    def __init__(
        self,
        backend: Backend,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        allowed_hosts=(),
        max_body_bytes: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        keep_alive_timeout: float = 5.0,
    ):
        import uvicorn

        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on such sockets; without it, Nagle and
        # delayed ACKs added 40 ms to every response (headers and body go out as two writes)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))  # port 0: the OS picks a free one
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.sock.getsockname()[1]}"
        app = create_app(
            backend,
            api_key=api_key,
            allowed_hosts=served_hosts(host, allowed_hosts),
            max_body_bytes=max_body_bytes,
            read_timeout=read_timeout,
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            http=timed_protocol(read_timeout),
            timeout_keep_alive=keep_alive_timeout,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m llmcourse.serve ...`: the command line, in `llmcourse.serve.cli`."""
    from llmcourse.serve.cli import main as cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()
