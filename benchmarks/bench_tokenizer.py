"""Encoding speed of the course's Python BPE against Hugging Face `tokenizers` (Rust), as notebook
06 section 6 compares them, timed interleaved and summarised by medians.

    OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/bench_tokenizer.py [--size smoke|full]
        [--corpus lee] [--chars 100000] [--vocab-size 1024] [--speed-chars 20000] [--rounds 15]

A `RegexBPE` is trained on the first 90% of the text (notebook 06's split) and `to_hf_tokenizer`
loads its merges into `tokenizers`; both encode the first `--speed-chars` characters of the
held-out 10% and must give identical ids. Three encoders: ours with a cold chunk cache (a fresh
copy, as on text never seen: every distinct chunk replays its merges in Python), ours with a warm
cache (the same text again: a regex split and dictionary look-ups), and `tokenizers` `encode`. Every
round times all three once, in turn, so a noisy neighbour on a shared CPU slows all of them alike;
the table gives each one's median MB/s over the rounds (wall clock, as the notebook times it), and
the median over rounds of the per-round ratio to Rust, in wall time and in CPU time. --size picks
notebook 06's smoke or full settings; the other options override them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one thread for tokenizers, like ours

from llmcourse import tokenstats
from llmcourse.bpe_regex import RegexBPE, to_hf_tokenizer
from llmcourse.config import current_size
from llmcourse.data import load_text

# notebook 06's TokConfig: (corpus, characters, vocabulary size, characters encoded)
SIZES = {"smoke": ("lee", 100_000, 1024, 20_000), "full": ("wikitext-2", 2_000_000, 4096, 200_000)}


def seconds(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared CPU the second leaves out the time
    spent waiting for a core."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=tuple(SIZES), default=current_size())
    ap.add_argument("--corpus")
    ap.add_argument("--chars", type=int)
    ap.add_argument("--vocab-size", type=int)
    ap.add_argument("--speed-chars", type=int)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    corpus, chars, vocab_size, speed_chars = SIZES[args.size]
    corpus = args.corpus or corpus
    chars = args.chars or chars
    vocab_size = args.vocab_size or vocab_size
    speed_chars = args.speed_chars or speed_chars

    text = load_text(corpus, max_chars=chars)
    cut = int(len(text) * 0.9)
    t0 = time.perf_counter()
    tok = RegexBPE()
    tok.train(text[:cut], vocab_size=vocab_size)
    train_s = time.perf_counter() - t0
    hf = to_hf_tokenizer(tok)
    speed_text = text[cut:][:speed_chars]
    ids = tok.encode(speed_text)
    if ids != hf.encode(speed_text, add_special_tokens=False).ids:
        raise AssertionError("same vocabulary and merges must give the same ids")
    mb = len(speed_text.encode()) / 1e6
    fresh = tokenstats.truncated(tok, tok.vocab_size)
    fresh.encode(speed_text)
    distinct = len(fresh._cache)  # the chunks a cold encode merges in Python, once each

    runs: dict[str, list[tuple[float, float]]] = {"ours, cold cache": [], "ours, warm cache": []}
    runs["tokenizers (Rust)"] = []
    for _ in range(args.rounds):  # interleaved: each round times every encoder once
        cold = tokenstats.truncated(tok, tok.vocab_size)  # a copy with an empty chunk cache
        runs["ours, cold cache"].append(seconds(lambda: cold.encode(speed_text)))
        runs["ours, warm cache"].append(seconds(lambda: tok.encode(speed_text)))
        runs["tokenizers (Rust)"].append(
            seconds(lambda: hf.encode(speed_text, add_special_tokens=False))
        )

    print(
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} usable CPUs (shared), load average "
        f"{os.getloadavg()[0]:.2f}, python {platform.python_version()}, "
        f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}"
    )
    print(
        f"{corpus!r}: trained {len(tok.merges)} merges on {cut:,} characters in {train_s:.1f} s; "
        f"encoding {mb:.3f} MB ({len(ids):,} tokens, identical ids, {distinct:,} distinct chunks: "
        f"one per {len(speed_text) / distinct:.0f} characters); {args.rounds} rounds"
    )
    rust = runs["tokenizers (Rust)"]
    print(
        f"{'encoder':20} {'median MB/s':>12} {'min-max MB/s':>14} {'time / Rust':>12} "
        f"{'CPU time / Rust':>16}"
    )
    for name, pairs in runs.items():
        wall = [w for w, _ in pairs]
        ratio = statistics.median(w / r for (w, _), (r, _) in zip(pairs, rust))
        cpu_ratio = statistics.median(c / max(r, 1e-9) for (_, c), (_, r) in zip(pairs, rust))
        spread = f"{mb / max(wall):.2f}-{mb / min(wall):.2f}"
        print(
            f"{name:20} {mb / statistics.median(wall):>12.2f} {spread:>14} {ratio:>11.2f}x "
            f"{cpu_ratio:>15.2f}x"
        )


if __name__ == "__main__":
    main()
