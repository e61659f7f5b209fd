"""What the server checks before a request reaches a route: the Host header, an optional API key, the
body's size and how long the client takes to send it. `llmcourse.serve.create_app` installs `Guard`;
`timed_protocol` closes connections whose request headers never finish.

* Host allow-list (against DNS rebinding: a web page on evil.example whose name is made to resolve to
  127.0.0.1 could otherwise call the server from your browser). By default only the loopback names
  are accepted: localhost, 127.0.0.1 and [::1], with any port. `--allow-host NAME` adds a name (a
  leading dot, ".example.org", accepts its subdomains; "*" turns the check off). A request without
  a Host header (HTTP/1.0) passes: browsers always send one. A refused request gets a 403 that names
  the flag to use.
* API key (`--api-key`, or the environment variable LLMCOURSE_API_KEY): requests to the API must carry
  `Authorization: Bearer KEY` (what the `openai` client sends as `api_key`), else 401 with a
  `WWW-Authenticate: Bearer` header. The chat page (`/`), `/health` and the API's documentation
  (`/docs`, `/openapi.json`) stay open; the page asks for the key. No key (the default, with the loopback binding) means no check.
* Body size: a body larger than `max_body_bytes` gets a 413 (the body is read and dropped, so the
  client sees the answer instead of a reset connection); nothing larger is ever held in memory.
* Read timeouts: a body that takes longer than `read_timeout` seconds to arrive gets a 408 and the
  connection is closed; `timed_protocol` does the same for a connection whose request line and
  headers take longer (or that sends nothing). uvicorn itself only closes idle keep-alive
  connections (`timeout_keep_alive`) and has no timeout for a request being read.

References: OWASP on DNS rebinding and Host-header validation; RFC 9110 (statuses 401, 403, 408, 413
and `WWW-Authenticate`); RFC 6750 (Bearer tokens); uvicorn's settings (`timeout_keep_alive`).
"""

from __future__ import annotations

import json
import secrets

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
API_KEY_ENV = "LLMCOURSE_API_KEY"
DEFAULT_MAX_BODY = 1024 * 1024  # 1 MiB: a whole context of SmolLM2 (8192 tokens) is ~40 KB of text
DEFAULT_READ_TIMEOUT = 30.0  # seconds to send one request (headers and body)
OPEN_PATHS = ("/", "/health", "/docs", "/openapi.json")  # served without the API key


def safe_text(text: str) -> str:
    """`text` with lone surrogates (JSON's "\\ud800") written as escapes, so it encodes as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(message: str, *, param=None, code=None, type="invalid_request_error") -> dict:
    """OpenAI's error shape, every string safe to encode."""
    clean = [safe_text(v) if isinstance(v, str) else v for v in (message, param, code, type)]
    return {"error": dict(zip(("message", "param", "code", "type"), clean, strict=True))}


def host_name(host: str) -> str:
    """The name part of a Host header, lower case: "LocalHost:8000" -> "localhost", "[::1]:80" -> "[::1]"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") == 1 else host.rstrip(".")


def host_allowed(host: str, allowed) -> bool:
    """Whether the Host header `host` names one of `allowed` (names, ".suffix" entries, or "*")."""
    name = host_name(host)
    for entry in allowed:
        entry = entry.lower()
        if entry == "*" or name == host_name(entry):
            return True
        if entry.startswith(".") and (name.endswith(entry) or name == entry[1:]):
            return True
    return False


def served_hosts(bind: str, extra=()) -> tuple[str, ...]:
    """The Host names a server bound to `bind` accepts: the loopback names, the bound address when it
    is one address (an IP in a Host header cannot be rebound), the `extra` names, and on Colab the
    names of its port proxy (*.googleusercontent.com, which no attacker's DNS can point at us).

    >>> served_hosts("0.0.0.0", ["gpu-box.lan"])
    ('localhost', '127.0.0.1', '[::1]', 'gpu-box.lan')
    """
    import sys

    names = list(LOOPBACK_HOSTS)
    if bind not in ("0.0.0.0", "::", "", "localhost"):
        names.append(f"[{bind}]" if ":" in bind else bind)
    if "google.colab" in sys.modules:
        names.append(".googleusercontent.com")
    return tuple(dict.fromkeys([*names, *extra]))


class Guard:
    """ASGI middleware: Host allow-list, optional API key, body size limit and body read timeout."""

    def __init__(
        self,
        app,
        *,
        api_key: str | None = None,
        allowed_hosts=LOOPBACK_HOSTS,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ):
        if max_body_bytes < 1 or read_timeout <= 0:
            raise ValueError("max_body_bytes and read_timeout must be positive")
        self.app, self.api_key, self.allowed = app, api_key or None, tuple(allowed_hosts)
        self.max_body, self.read_timeout = max_body_bytes, read_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for k, v in scope.get("headers", []):
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        host = headers.get("host")
        if host is not None and not host_allowed(host, self.allowed):
            message = (
                f"Host {host_name(host)!r} is not allowed: this server accepts "
                f"{', '.join(self.allowed)}. If you reach it by that name on purpose, start it with "
                f"--allow-host {host_name(host)} (BackgroundServer(..., allowed_hosts=[...]))."
            )
            return await _answer(send, 403, message, code="host_not_allowed")
        if self.api_key and scope["path"] not in OPEN_PATHS:
            scheme, _, key = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(
                key.strip().encode(), self.api_key.encode()
            ):
                message = (
                    "Incorrect or missing API key: send the key the server was started with "
                    "(--api-key or LLMCOURSE_API_KEY) as `Authorization: Bearer KEY` "
                    "(OpenAI(api_key=KEY) does)."
                )
                return await _answer(
                    send,
                    401,
                    message,
                    code="invalid_api_key",
                    extra=[(b"www-authenticate", b'Bearer realm="llmcourse"')],
                )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            size = int(declared)
        elif (
            scope["method"] in ("GET", "HEAD")
            and not declared
            and "transfer-encoding" not in headers
        ):
            return await self.app(scope, receive, send)
        else:
            size = None
        body, disconnected = await self._read(receive)
        if body is None:  # too slow: answer, then the server closes the half-read connection
            message = (
                f"the request body did not arrive within {self.read_timeout:g} s (--read-timeout)"
            )
            return await _answer(send, 408, message, code="request_timeout", close=True)
        if disconnected:
            return None
        size = max(size or 0, body if isinstance(body, int) else len(body))
        if size > self.max_body:
            message = (
                f"the request body is {size:,} bytes; this server accepts at most "
                f"{self.max_body:,} (--max-body-mb)"
            )
            return await _answer(send, 413, message, code="request_too_large")
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive):
        """(body bytes, or its size once over the limit, or None after the timeout; disconnected)"""
        import anyio

        chunks, size = [], 0
        with anyio.move_on_after(self.read_timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return b"", True
                size += len(message.get("body", b""))
                if size <= self.max_body:  # past the limit the rest is read and dropped
                    chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return (b"".join(chunks) if size <= self.max_body else size), False
        return None, False


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # afterwards: the client's disconnect, as usual

    return replay


async def _answer(send, status: int, message: str, *, code: str, extra=(), close=False):
    data = json.dumps(error_body(message, code=code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    headers += list(extra) + ([(b"connection", b"close")] if close else [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def timed_protocol(read_timeout: float = DEFAULT_READ_TIMEOUT):
    """uvicorn's h11 protocol, plus a clock: a connection must deliver a request's line and headers
    within `read_timeout` seconds of connecting, or of the first byte of a later keep-alive request;
    otherwise it gets a 408 and is closed. Pass as `uvicorn.Config(..., http=timed_protocol(30))`."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    response = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    class TimedH11Protocol(H11Protocol):
        _clock = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._start_clock()

        def data_received(self, data):
            if self.conn.their_state is h11.IDLE:
                self._start_clock()  # the first byte of a request starts it; later bytes do not reset it
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE and self._clock is not None:
                self._clock.cancel()
                self._clock = None

        def connection_lost(self, exc):
            if self._clock is not None:
                self._clock.cancel()
            super().connection_lost(exc)

        def _start_clock(self):
            if self._clock is None:
                self._clock = self.loop.call_later(read_timeout, self._too_slow)

        def _too_slow(self):
            self._clock = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                if self.cycle is None or self.cycle.response_complete:
                    self.transport.write(response)
                self.transport.close()

    return TimedH11Protocol
