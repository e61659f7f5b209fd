"""Schema fuzz of `llmcourse.serve`: schemathesis generates requests from the server's own /openapi.json
(valid ones, and invalid ones: wrong types, out-of-range numbers, missing fields, odd strings) and checks
that none gets a 5xx. The server is started here on loopback with a tiny random course GPT.

    python benchmarks/fuzz_serve.py [--max-examples 100] [--model DIR]

The OpenAPI examples name the served model, so many generated requests reach the model rather than
stopping at "unknown model". The server runs with an API key (schemathesis sends it) and 2-second
read and keep-alive timeouts (the default 1 MiB body limit). After the schema fuzz, `hostile_cases` sends what the schema cannot describe (issue 18):
lone surrogates in echoed fields, an 8 MB body, a foreign Host header, a missing or wrong key,
half-sent headers and bodies, a client that hangs up during a non-streamed answer; each must get its
expected status, and /health must answer quickly meanwhile. `--hostile-only` skips the schema fuzz.
Exit status 0 means no check failed.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load_serve import free_port, start_server, stop_server  # noqa: E402

KEY = "fuzz-key"
READ_TIMEOUT = 2.0


def _raw(port: int, data: bytes):
    """Send `data` on a fresh connection and read until the server closes it.
    Returns (the answer's bytes, seconds until the connection ended)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        start = time.perf_counter()
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out, time.perf_counter() - start


def _status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def hostile_cases(port: int, name: str) -> int:
    """The cases of issue 18, one by one; prints one line each and returns how many failed."""
    import httpx

    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {KEY}"}
    user = [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "add"}}]
    raw_model = b'{"model": "\\ud800", "prompt": "hi", "max_tokens": 2}'
    raw_choice = (
        json.dumps({"model": name, "messages": user, "tools": tools, "tool_choice": "@"})
        .encode()
        .replace(b'"@"', b'{"type": "function", "function": {"name": "\\udfff"}}')
    )
    cases = [  # (what, path, body, extra headers, expected status)
        ("surrogate in model (completions)", "/v1/completions", raw_model, {}, 404),
        (
            "surrogate in model (chat)",
            "/v1/chat/completions",
            raw_model.replace(
                b'"prompt": "hi"', b'"messages": [{"role": "user", "content": "hi"}]'
            ),
            {},
            404,
        ),
        ("surrogate in tool_choice's name", "/v1/chat/completions", raw_choice, {}, 400),
        (
            "logprobs false",
            "/v1/chat/completions",
            {"model": name, "messages": user, "max_tokens": 2, "logprobs": False},
            {},
            200,
        ),
        (
            "logprobs true",
            "/v1/chat/completions",
            {"model": name, "messages": user, "logprobs": True},
            {},
            400,
        ),
        (
            "tool_choice 'sometimes'",
            "/v1/chat/completions",
            {"model": name, "messages": user, "tools": tools, "tool_choice": "sometimes"},
            {},
            400,
        ),
        (
            "tool_choice names an unknown function",
            "/v1/chat/completions",
            {
                "model": name,
                "messages": user,
                "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "rm"}},
            },
            {},
            400,
        ),
        (
            "tool_choice 'required' without tools",
            "/v1/chat/completions",
            {"model": name, "messages": user, "tool_choice": "required"},
            {},
            400,
        ),
        (
            "tool_choice names a function offered",
            "/v1/chat/completions",
            {
                "model": name,
                "messages": user,
                "max_tokens": 2,
                "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "add"}},
            },
            {},
            200,
        ),
        (
            "8 MB prompt (limit 1 MiB)",
            "/v1/chat/completions",
            {"model": name, "messages": [{"role": "user", "content": "x" * 8_000_000}]},
            {},
            413,
        ),
        ("Host: evil.example", "/v1/models", None, {"Host": "evil.example"}, 403),
        ("no API key", "/v1/models", None, {"Authorization": ""}, 401),
        ("wrong API key", "/v1/models", None, {"Authorization": "Bearer guess"}, 401),
    ]
    failed = 0
    with httpx.Client(timeout=30) as client:
        for what, path, body, headers, want in cases:
            h = {**auth, "Content-Type": "application/json", **headers}
            h = {k: v for k, v in h.items() if v}
            start = time.perf_counter()
            if body is None:
                r = client.get(url + path, headers=h)
            else:
                r = client.post(
                    url + path,
                    headers=h,
                    content=body if isinstance(body, bytes) else json.dumps(body).encode(),
                )
            seconds = time.perf_counter() - start
            ok = r.status_code == want and (want == 200 or "error" in r.json())
            failed += not ok
            print(
                f"  {'ok  ' if ok else 'FAIL'} {what:40} {r.status_code} (want {want}) {seconds * 1000:7.1f} ms"
            )

        # timeouts: headers that never end, a body that never ends, an idle keep-alive connection
        slow = [
            ("half-sent headers", b"GET /health HTTP/1.1\r\nHost: localhost\r\n", 408),
            (
                "half-sent body",
                b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                + KEY.encode()
                + b"\r\nContent-Length: 100\r\n\r\n{",
                408,
            ),
            (
                "idle keep-alive after a request",
                b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
                200,
            ),
        ]
        for what, data, want in slow:
            answer, seconds = _raw(port, data)
            ok = _status(answer) == want and seconds < READ_TIMEOUT + 3
            failed += not ok
            print(
                f"  {'ok  ' if ok else 'FAIL'} {what:40} {_status(answer)} (want {want}), closed after {seconds:.1f} s"
            )

        # a client that hangs up on a long non-streamed answer: the server stops generating
        body = json.dumps(
            {"model": name, "prompt": "x", "max_tokens": 1000, "temperature": 1.0}
        ).encode()
        request = (
            b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        ) % (KEY.encode(), len(body), body)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            time.sleep(0.3)
            before = client.get(url + "/health").json()["running"]
        deadline, running = time.perf_counter() + 5, None
        while time.perf_counter() < deadline:
            running = client.get(url + "/health").json()["running"]
            if running == 0:
                break
            time.sleep(0.02)
        freed = time.perf_counter() - (deadline - 5)
        ok = before == 1 and running == 0
        failed += not ok
        print(
            f"  {'ok  ' if ok else 'FAIL'} {'hang-up during a non-streamed answer':40} running {before} -> {running}, {freed:.2f} s after the hang-up"
        )
    return failed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", default=None, help="model directory (default: a tiny random course GPT)"
    )
    p.add_argument(
        "--max-examples", type=int, default=100, help="test cases per operation and phase"
    )
    p.add_argument(
        "--max-time",
        type=int,
        default=None,
        help="seconds to keep fuzzing (fuzzing then repeats until the time is spent)",
    )
    p.add_argument(
        "--checks",
        default="not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance,negative_data_rejection",
    )
    p.add_argument("--hostile-only", action="store_true", help="skip the schema fuzz")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from llmcourse.serve.backends import tiny_random_model

            # 1024 positions: a long answer takes long enough to hang up in the middle of it
            model_dir = str(tiny_random_model(Path(tmp) / "tiny", block_size=1024))
        port = free_port()
        flags = ["--read-timeout", str(READ_TIMEOUT), "--keep-alive-timeout", "2"]
        proc = start_server(
            model_dir, "fuzz", port, Path(tmp) / "server.log", flags=flags, api_key=KEY
        )
        try:
            print("hostile cases (issue 18):", flush=True)
            failed = hostile_cases(port, "fuzz")
            print(f"hostile cases: {failed} failed")
            code = 1 if failed else 0
            st = Path(sys.executable).with_name("st")
            cmd = [
                str(st) if st.exists() else "st",
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                args.checks,
                "--max-examples",
                str(args.max_examples),
                *(["--max-time", str(args.max_time)] if args.max_time else []),
                "--phases",
                "examples,coverage,fuzzing",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
                "--header",
                f"Authorization: Bearer {KEY}",
            ]
            if not args.hostile_only:
                print("$", " ".join(cmd[1:]), flush=True)
                code = subprocess.run(cmd, timeout=(args.max_time or 1200) + 120).returncode or code
        finally:
            stop_server(proc)
        log = (Path(tmp) / "server.log").read_text()
        crashes = log.count("Traceback")
        print(f"server log: {crashes} tracebacks")
        if crashes:
            print(log[-3000:])
    raise SystemExit(code or (1 if crashes else 0))


if __name__ == "__main__":
    main()
