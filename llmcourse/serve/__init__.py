"""An OpenAI-compatible HTTP server for the models the course trains, plus a chat page at `/`.

    python -m llmcourse.serve --model out/sft-gpt [--host 127.0.0.1] [--port 8000] [--name NAME]

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
`<tool_call>{...}</tool_call>` in its answer comes back as OpenAI `tool_calls`.
Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}} with a 4xx status: unknown
model 404; bad field values, malformed JSON, a prompt that does not fit the context 400.

How it works. The model runs in worker threads (`anyio.to_thread`), one token per call, under one lock:
concurrent requests take turns token by token, each with its own KV cache and `torch.Generator`, so
each gets exactly the answer it would get alone (tested). This is the poor man's version of what vLLM
does properly: vLLM batches the waiting requests' next tokens into *one* forward pass ("continuous
batching", notebook 14) and pages the KV cache; we run them one after another.
Stop strings are found in the decoded text; text that might be the start of a stop string is held back
until we know, so streamed pieces always join to the non-streamed answer.
The request bodies, the error shape and the request -> `Job` validation are in
`llmcourse.serve.schema`; the models, the token-by-token engine and tool calls in
`llmcourse.serve.backends`; this module holds the HTTP routes, `BackgroundServer` and the CLI.
References: OpenAI's API reference (the routes and their JSON), the server-sent events format (WHATWG
HTML standard), vLLM's OpenAI-compatible server (Kwon et al. 2023, PagedAttention).
Left out: n > 1, logprobs, echo/suffix, presence/frequency penalties and logit_bias (rejected with 400),
authentication (we bind to loopback), the Responses and embeddings APIs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from llmcourse.serve.backends import ENGINES, Backend, Engine, load_backend
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

    return JSONResponse(
        {"error": {"message": message, "type": type, "param": param, "code": code}}, status
    )


def create_app(backend: Backend):
    """The FastAPI application serving `backend`."""
    from fastapi import Body, FastAPI
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="llmcourse OpenAI-compatible server", version="1")
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
    async def health() -> dict:
        return {"status": "ok"}

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
    @app.post("/v1/completions", responses=GENERATION)
    async def completions(
        req: CompletionRequest = Body(
            examples=[{"model": backend.name, "prompt": "Once upon a time", "max_tokens": 16}]
        ),
    ):
        return await respond(req, completion_job(req, backend), chat=False)

    @app.post("/v1/chat/completions", responses=GENERATION)
    async def chat_completions(
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
        return await respond(req, chat_job(req, backend), chat=True)

    async def respond(req: Sampling, job: Job, chat: bool):
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
            async for piece, reason, n in engine.run(job):  # noqa: B007 (the last reason and n are the answer's)
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
                async for piece, reason, n in engine.run(job):  # noqa: B007
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

    >>> with BackgroundServer(load_backend("out/sft-gpt")) as srv:   # doctest: +SKIP
    ...     OpenAI(base_url=srv.url + "/v1", api_key="none")
    """

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))  # port 0: the OS picks a free one
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(backend), log_level="warning", lifespan="off")
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
    p = argparse.ArgumentParser(
        prog="python -m llmcourse.serve", description=__doc__.split("\n")[0]
    )
    p.add_argument("--model", required=True, help="Hugging Face-format model directory (local)")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 exposes it to your network"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--name", default=None, help="model id clients must send (default: the directory name)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument(
        "--engine",
        default="course",
        choices=ENGINES,
        help="course: our GPT / Llama (model_type gpt2 or llama); transformers: any causal LM",
    )
    args = p.parse_args(argv)
    import uvicorn

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # serving reads local files only
    backend = load_backend(args.model, args.name, args.device, engine=args.engine)
    print(
        f"serving {backend.name!r} (context {backend.context_length} tokens) at "
        f"http://{args.host}:{args.port}/v1 ; chat page at http://{args.host}:{args.port}/",
        flush=True,
    )
    uvicorn.run(create_app(backend), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
