"""Load test for `llmcourse.serve`: N concurrent clients x M requests each, against a server this script
starts itself on loopback (a subprocess, so clients and server do not share a Python interpreter).

    python benchmarks/load_serve.py                       # a tiny random GPT, 8 clients x 8 requests
    python benchmarks/load_serve.py --model out/sft-gpt --clients 16 --requests 4 --max-tokens 64

Requests mix chat and completion, streamed and not, each with its own seed. Reports failures (target 0),
latency percentiles (whole request; first token for streams), throughput, and a cross-talk check: a
sample of requests is sent again one at a time and must return exactly the same text as under load.

The server runs with an API key, which every client sends. Unless `--no-hostile`, hostile clients join
the load (issue 18): one uploads 8 MB prompts (each must get 413, the default limit being 1 MiB), one
sends 0.9 MB prompts (allowed, tokenized off the event loop, then refused for the context: 400), one
starts long non-streamed answers and hangs up after 0.2 s; meanwhile /health is pinged every 50 ms.
Reported: /health latency before and during the load, the hostile requests' statuses, and whether any
generation was still running after the load (target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model_dir: str,
    name: str,
    port: int,
    log_path: Path,
    *,
    flags: list[str] = (),
    api_key: str | None = None,
) -> subprocess.Popen:
    """Start `python -m llmcourse.serve` (with extra `flags`; `api_key` goes through the environment,
    as LLMCOURSE_API_KEY) and wait until /health answers (or raise)."""
    import httpx

    env = dict(
        os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), HF_HUB_OFFLINE="1"
    )
    env.pop("LLMCOURSE_API_KEY", None)
    if api_key:
        env["LLMCOURSE_API_KEY"] = api_key
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmcourse.serve",
            "--model",
            model_dir,
            "--name",
            name,
            "--port",
            str(port),
            "--device",
            "cpu",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("server did not come up within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def percentiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    qs = (
        statistics.quantiles(values, n=100, method="inclusive")
        if len(values) > 1
        else [values[0]] * 99
    )
    return (
        f"p50 {qs[49] * 1000:7.1f} ms   p90 {qs[89] * 1000:7.1f} ms   p99 {qs[98] * 1000:7.1f} ms"
    )


async def one_request(client, name: str, k: int, max_tokens: int) -> dict:
    """Request number k: kind and streaming chosen by k, seed k. Returns text and timings."""
    chat, stream = k % 2 == 0, k % 4 in (1, 2)
    kw = dict(model=name, max_tokens=max_tokens, temperature=1.0, seed=k)
    start = time.perf_counter()
    first = None
    if chat:
        messages = [{"role": "user", "content": f"Request {k}: tell me something."}]
        if stream:
            pieces = []
            async for c in await client.chat.completions.create(
                messages=messages, stream=True, **kw
            ):
                if c.choices and c.choices[0].delta.content:
                    first = first or time.perf_counter()
                    pieces.append(c.choices[0].delta.content)
            text = "".join(pieces)
        else:
            text = (
                (await client.chat.completions.create(messages=messages, **kw))
                .choices[0]
                .message.content
            )
    else:
        prompt = f"Request {k}: once upon a time"
        if stream:
            pieces = []
            async for c in await client.completions.create(prompt=prompt, stream=True, **kw):
                first = first or time.perf_counter()
                pieces.append(c.choices[0].text)
            text = "".join(pieces)
        else:
            text = (await client.completions.create(prompt=prompt, **kw)).choices[0].text
    end = time.perf_counter()
    return {
        "k": k,
        "text": text,
        "latency": end - start,
        "ttft": (first - start) if first else None,
    }


KEY = "load-key"


async def hostile_clients(base_url: str, name: str, done: asyncio.Event) -> dict:
    """Run the hostile clients and the /health pinger until `done`; return what they saw."""
    import httpx

    root, auth = base_url.removesuffix("/v1"), {"Authorization": f"Bearer {KEY}"}
    seen = {"pings": [], "8 MB": [], "0.9 MB": [], "hung up": 0}

    def pinger():  # a thread of its own, so that this process's event loop does not delay it
        with httpx.Client(timeout=60) as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get(root + "/health")
                seen["pings"].append(time.perf_counter() - t)
                time.sleep(0.05)

    async def prompts(c, label: str, size: int):
        body = json.dumps({"model": name, "messages": [{"role": "user", "content": "x" * size}]})
        headers = {**auth, "Content-Type": "application/json"}
        while not done.is_set():
            r = await c.post(base_url + "/chat/completions", content=body.encode(), headers=headers)
            seen[label].append(r.status_code)

    async def hang_ups(c):
        body = {"model": name, "prompt": "y", "max_tokens": 200}
        while not done.is_set():
            try:
                await c.post(base_url + "/completions", json=body, headers=auth, timeout=0.2)
            except httpx.TimeoutException:
                seen["hung up"] += 1

    async with httpx.AsyncClient(timeout=60) as c:
        await asyncio.gather(
            asyncio.to_thread(pinger),
            prompts(c, "8 MB", 8_000_000),
            prompts(c, "0.9 MB", 900_000),
            hang_ups(c),
        )
        await asyncio.sleep(0.5)  # the last hang-up is seen at the next token
        seen["running after"] = (await c.get(root + "/health")).json()["running"]
    return seen


async def health_latency(base_url: str, n: int = 20) -> list[float]:
    import httpx

    out = []
    async with httpx.AsyncClient(timeout=10) as c:
        for _ in range(n):
            t = time.perf_counter()
            await c.get(base_url.removesuffix("/v1") + "/health")
            out.append(time.perf_counter() - t)
    return out


async def run_load(
    base_url: str,
    name: str,
    clients: int,
    requests: int,
    max_tokens: int,
    limit_s: float,
    *,
    hostile: bool = True,
) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=limit_s)
    results, failures = [], []
    idle, done = await health_latency(base_url), asyncio.Event()
    attack = asyncio.create_task(hostile_clients(base_url, name, done)) if hostile else None

    async def worker(c: int):
        for m in range(requests):
            k = c * requests + m
            try:
                results.append(await one_request(client, name, k, max_tokens))
            except Exception as exc:  # a failure is what we count, whatever it is
                failures.append((k, f"{type(exc).__name__}: {exc}"))

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(c) for c in range(clients))), timeout=limit_s)
    wall = time.perf_counter() - t0
    done.set()
    seen = await attack if attack else None
    total = clients * requests
    print(f"requests: {total} ({clients} concurrent clients x {requests}), max_tokens={max_tokens}")
    print(f"failures: {len(failures)}")
    for k, msg in failures[:5]:
        print(f"  request {k}: {msg[:200]}")
    print(f"wall time: {wall:.2f} s   throughput: {len(results) / wall:.2f} req/s")
    print(f"latency (whole request):   {percentiles([r['latency'] for r in results])}")
    print(
        f"time to first text (streams): {percentiles([r['ttft'] for r in results if r['ttft'] is not None])}"
    )

    print(f"/health before the load:   {percentiles(idle)}")
    bad = 0
    if seen:
        print(
            f"/health during the load:   {percentiles(seen['pings'])}  ({len(seen['pings'])} pings)"
        )
        for label, want in (("8 MB", 413), ("0.9 MB", 400)):
            statuses = seen[label]
            bad += sum(s != want for s in statuses)
            print(
                f"{label} prompts: {len(statuses)} sent, statuses {sorted(set(statuses))} (want {want})"
            )
        bad += seen["running after"] != 0
        print(
            f"hung-up non-streamed requests: {seen['hung up']}; generations still running "
            f"after the load: {seen['running after']} (target 0)"
        )

    # cross-talk check: the same requests one at a time must give the same answers
    sample = sorted(results, key=lambda r: r["k"])[:: max(1, len(results) // 8)]
    alone = [await one_request(client, name, r["k"], max_tokens) for r in sample]
    mismatches = sum(a["text"] != r["text"] for a, r in zip(alone, sample))
    print(
        f"answers under load vs alone: {len(sample) - mismatches}/{len(sample)} identical (target all)"
    )
    await client.close()
    if failures or mismatches or bad:
        raise SystemExit(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", default=None, help="model directory (default: a tiny random course GPT)"
    )
    p.add_argument("--clients", type=int, default=8)
    p.add_argument(
        "--requests", type=int, default=8, help="requests per client, sent one after another"
    )
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--limit-s", type=float, default=300.0, help="give up after this many seconds")
    p.add_argument("--no-hostile", action="store_true", help="only the well-behaved clients")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from llmcourse.serve.backends import tiny_random_model

            model_dir = str(tiny_random_model(Path(tmp) / "tiny", block_size=256))
        port, name = free_port(), "load-test"
        proc = start_server(model_dir, name, port, Path(tmp) / "server.log", api_key=KEY)
        try:
            asyncio.run(
                run_load(
                    f"http://127.0.0.1:{port}/v1",
                    name,
                    args.clients,
                    args.requests,
                    args.max_tokens,
                    args.limit_s,
                    hostile=not args.no_hostile,
                )
            )
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
