"""BPE training and encoding speed, side by side: ours (incremental), ours (naive recount) and
Hugging Face `tokenizers` (Rust), on about 1 MB of offline text.

    OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 python benchmarks/bench_bpe.py [--corpus shakespeare]
        [--mb 1.0] [--vocab-size 1280] [--naive-merges 200]

All three train a GPT-4-pattern `RegexBPE` on the same text. The naive version recounts every pair
after every merge, so it is timed on the *same* text with fewer merges (`--naive-merges`) and
compared like for like with ours on those merges; its time for the full vocabulary is extrapolated
linearly (each naive merge costs about one pass over the distinct chunks, and that pass shrinks
only slowly as chunks merge, so linear is a fair estimate, slightly pessimistic).
Target (issue 5): ours >= 10x faster than naive. Encoding: ours (Python, chunk cache cleared first)
vs `tokenizers` loaded with exactly our merges (`to_hf_tokenizer`), on the training text.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

os.environ.setdefault(
    "RAYON_NUM_THREADS", "1"
)  # one thread for tokenizers too, unless told otherwise

from llmcourse.bpe import ByteBPE, naive_train, train_merges
from llmcourse.bpe_regex import RegexBPE, bytes_to_unicode, to_hf_tokenizer
from llmcourse.data import load_text


def timed(fn):
    """(CPU seconds of this process, all threads; wall seconds; result). The CPUs are shared with
    other people's jobs, so CPU time is the steadier number; both are printed."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - t0, out


def hf_train(text: str, pattern: str, vocab_size: int):
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    hf.train_from_iterator([text], trainer=trainer)
    return hf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="shakespeare")
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--vocab-size", type=int, default=1280)
    ap.add_argument("--naive-merges", type=int, default=200)
    ap.add_argument(
        "--byte-kb", type=int, default=50, help="text size for the ByteBPE (no pre-split) row"
    )
    args = ap.parse_args()

    text = load_text(args.corpus, max_chars=int(args.mb * 1_000_000))
    nbytes = len(text.encode("utf-8"))
    n_merges = args.vocab_size - 256
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
        f"{len(os.sched_getaffinity(0))} usable, load average {os.getloadavg()[0]:.2f} "
        f"(other processes share these CPUs: timings are noisy)"
    )
    print(
        f"threads: python 1, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS')} (tokenizers)"
    )
    print(
        f"python {platform.python_version()}; text: {args.corpus!r}, {nbytes / 1e6:.2f} MB, "
        f"vocab {args.vocab_size} = 256 bytes + {n_merges} merges\n"
    )

    tok = RegexBPE()
    c_split, _, counts = timed(lambda: tok.chunk_counts(text))
    print(
        f"pre-split: {sum(counts.values()):,} chunks, {len(counts):,} distinct ({c_split:.2f} s CPU; included "
        f"in the RegexBPE.train row; the train_merges/naive_train rows start from these counts)"
    )

    print(
        "\n== training (CPU s = this process, all threads; wall s includes waiting for shared CPUs) =="
    )
    k = min(args.naive_merges, n_merges)
    c_fast, w_fast, fast_k = timed(lambda: train_merges(counts, k))
    c_naive, w_naive, naive_k = timed(lambda: naive_train(counts, k))
    assert fast_k == naive_k, "incremental and naive training must learn identical merges"
    c_ours, w_ours, _ = timed(lambda: tok.train(text, args.vocab_size))
    c_hf, w_hf, hf = timed(lambda: hf_train(text, tok.pattern, args.vocab_size))
    naive_full = c_naive * n_merges / k
    rows = [
        ("ours, incremental (train_merges)", k, c_fast, w_fast, ""),
        (
            "ours, naive recount (naive_train)",
            k,
            c_naive,
            w_naive,
            f"{c_naive / c_fast:.1f}x ours (same merges)",
        ),
        ("ours, RegexBPE.train (incremental)", len(tok.merges), c_ours, w_ours, "incl. pre-split"),
        (
            "ours, naive, extrapolated",
            n_merges,
            naive_full,
            float("nan"),
            f"{naive_full / c_ours:.1f}x ours ({c_naive:.1f} s x {n_merges}/{k}, linear)",
        ),
        (
            "tokenizers BpeTrainer (Rust)",
            hf.get_vocab_size() - 256,
            c_hf,
            w_hf,
            f"ours takes {c_ours / c_hf:.1f}x its CPU time",
        ),
    ]
    print(f"{'':36s}{'merges':>7s}{'CPU s':>8s}{'wall s':>8s}")
    for name, m, c, w, note in rows:
        wall = "-" if math.isnan(w) else f"{w:.2f}"  # NaN: no wall time for an estimate
        print(f"{name:36s}{m:7d}{c:8.2f}{wall:>8s}  {note}")
    table = bytes_to_unicode()
    ours_tokens = {"".join(table[b] for b in tok.vocab[i]) for i in tok.merges.values()}
    same = len(ours_tokens & set(hf.get_vocab()))
    print(
        f"learned tokens in common with tokenizers: {same} of {n_merges} "
        f"(tie-breaking differs: ours = highest count, then smallest pair of ids)"
    )

    print("\n== encoding the training text with the same merges (one string, one thread) ==")
    tok._cache = {}  # cold cache: the first encode pays for every distinct chunk
    c_enc, w_enc, ids = timed(lambda: tok.encode(text))
    c_warm, w_warm, _ = timed(lambda: tok.encode(text))
    ref = to_hf_tokenizer(tok)
    c_hf_enc, w_hf_enc, hf_ids = timed(lambda: ref.encode(text, add_special_tokens=False).ids)
    assert ids == hf_ids, "same merges must give the same ids"
    paragraphs = text.split("\n\n")
    c_hf_b, w_hf_b, _ = timed(lambda: ref.encode_batch(paragraphs, add_special_tokens=False))
    print(f"{'':36s}{'MB/s':>7s}{'k tok/s':>9s}{'CPU s':>8s}{'wall s':>8s}   (rates from CPU time)")
    for name, c, w in [
        ("ours (cold chunk cache)", c_enc, w_enc),
        ("ours (warm chunk cache)", c_warm, w_warm),
        ("tokenizers encode(text)", c_hf_enc, w_hf_enc),
        (f"tokenizers encode_batch({len(paragraphs)} paras)", c_hf_b, w_hf_b),
    ]:
        print(f"{name:36s}{nbytes / 1e6 / c:7.2f}{len(ids) / c / 1e3:9.0f}{c:8.2f}{w:8.2f}")
    print(
        f"identical ids from ours and tokenizers: {len(ids):,} tokens, {nbytes / len(ids):.2f} bytes/token"
    )

    kb = args.byte_kb
    print(f"\n== ByteBPE (no pre-split): {kb} KB as one chunk, 100 merges ==")
    single = ByteBPE().chunk_counts(text[: kb * 1000])
    c_b_fast, _, m1 = timed(lambda: train_merges(single, 100))
    c_b_naive, _, m2 = timed(lambda: naive_train(single, 100))
    assert m1 == m2
    print(
        f"incremental {c_b_fast:.2f} s CPU, naive {c_b_naive:.2f} s CPU ({c_b_naive / c_b_fast:.1f}x): "
        f"every merge still rewrites the one long chunk, only the recount is saved"
    )


if __name__ == "__main__":
    main()
