"""Schema fuzz of `llmcourse.serve`: schemathesis generates requests from the server's own /openapi.json
(valid ones, and invalid ones: wrong types, out-of-range numbers, missing fields, odd strings) and checks
that none gets a 5xx. The server is started here on loopback with a tiny random course GPT.

    python benchmarks/fuzz_serve.py [--max-examples 100] [--model DIR]

The OpenAPI examples name the served model, so many generated requests reach the model rather than
stopping at "unknown model". Exit status 0 means no check failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from load_serve import free_port, start_server, stop_server  # noqa: E402


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
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from llmcourse.serve.backends import tiny_random_model

            model_dir = str(tiny_random_model(Path(tmp) / "tiny", block_size=128))
        port = free_port()
        proc = start_server(model_dir, "fuzz", port, Path(tmp) / "server.log")
        try:
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
            ]
            print("$", " ".join(cmd[1:]), flush=True)
            code = subprocess.run(cmd, timeout=(args.max_time or 1200) + 120).returncode
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
