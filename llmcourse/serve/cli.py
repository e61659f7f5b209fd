"""The command line of the OpenAI-compatible server: `python -m llmcourse.serve --model DIR [...]`.

`--help` lists the flags; `llmcourse.serve` describes the server and `llmcourse.serve.guard` the
checks that `--api-key`, `--allow-host`, `--max-body-mb`, `--read-timeout` and
`--keep-alive-timeout` configure.
"""

from __future__ import annotations

import argparse
import os

from llmcourse.serve import create_app
from llmcourse.serve.backends import ENGINES, load_backend
from llmcourse.serve.guard import (
    API_KEY_ENV,
    DEFAULT_MAX_BODY,
    DEFAULT_READ_TIMEOUT,
    served_hosts,
    timed_protocol,
)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m llmcourse.serve",
        description="An OpenAI-compatible HTTP server for a course model, plus a chat page at /.",
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
    p.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"clients must send it as a Bearer token (default: ${API_KEY_ENV}, which `ps` "
        "does not show; unset: no check)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name clients may use besides localhost, 127.0.0.1 and [::1] (repeatable; "
        '".example.org" takes its subdomains, "*" any name); needed with --host 0.0.0.0',
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULT_MAX_BODY / 2**20,
        help="largest request body in MiB; larger ones get 413 (default: %(default)g)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT,
        help="seconds a client may take to send a request; slower ones get 408 (default: %(default)g)",
    )
    p.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=5.0,
        help="seconds an idle keep-alive connection stays open (default: %(default)g)",
    )
    args = p.parse_args(argv)
    import uvicorn

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # serving reads local files only
    backend = load_backend(args.model, args.name, args.device, engine=args.engine)
    hosts = served_hosts(args.host, args.allow_host)
    print(
        f"serving {backend.name!r} (context {backend.context_length} tokens) at "
        f"http://{args.host}:{args.port}/v1 ; chat page at http://{args.host}:{args.port}/\n"
        f"Host names accepted: {', '.join(hosts)}; API key: {'required' if args.api_key else 'none'}",
        flush=True,
    )
    if args.host in ("0.0.0.0", "::") and not args.allow_host:
        print(
            "note: other machines reach this server by a name or address of yours: pass it with "
            "--allow-host NAME (and set an API key with LLMCOURSE_API_KEY on a shared network)",
            flush=True,
        )
    app = create_app(
        backend,
        api_key=args.api_key,
        allowed_hosts=hosts,
        max_body_bytes=int(args.max_body_mb * 2**20),
        read_timeout=args.read_timeout,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        http=timed_protocol(args.read_timeout),
        timeout_keep_alive=args.keep_alive_timeout,
    )
