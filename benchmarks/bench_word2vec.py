"""Benchmark: llmcourse's word2vec against gensim's Word2Vec on the same corpus and hyper-parameters.

    python benchmarks/bench_word2vec.py [--corpus lee+shakespeare] [--epochs 5] [--workers 2] [--sg 1]

Corpus (offline, real text): the Lee news corpus (gensim's test data, ~60k words) followed by
Shakespeare's plays and poems (the `shakespeare` package, ~0.9M words), both via `llmcourse.data`,
one sentence per line, lower-cased words (`llmcourse.word2vec.tokenize`). `--corpus lee` or
`--corpus text8` (when cached) choose others. This is small for word2vec: similarity scores are low
and noisy for both libraries and many analogy questions are out of vocabulary (the coverage is
printed); the "family" section (king/queen, he/she, ...) is the part of the analogy set this corpus
can answer, so its accuracy is printed too. `--repeats N` averages over N seeds.

Both libraries get the same sentences and dim, window, negative, sample, min_count, epochs, learning
rate schedule and number of threads (`workers`). Both sets of vectors are scored by
`llmcourse.tasks.embeddings_eval` (its protocol is tested against gensim's own evaluate_word_pairs and
evaluate_word_analogies): Spearman's rho on WordSim-353 and SimLex-999 and 3CosAdd analogy
accuracy over the 30000 most frequent words.

Timings are end to end (vocabulary + training) and wall-clock on a SHARED machine: other people's
jobs use the same CPU cores, so the load average is printed; read the ratios, not the third digit.
CPU seconds (this process, all threads) are printed too: they are less disturbed by other jobs.
words/s = corpus words x epochs / wall seconds, the same definition for both.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from llmcourse import data  # noqa: E402
from llmcourse.tasks.embeddings_eval import (  # noqa: E402
    KeyedVectors,
    evaluate_analogies,
    evaluate_similarity,
)
from llmcourse.word2vec import Word2VecConfig, tokenize, train_word2vec  # noqa: E402


def load_corpus(name: str) -> list[list[str]]:
    sentences: list[list[str]] = []
    for part in name.split("+"):
        sentences += tokenize(data.load_text(part))
    return sentences


def score(kv: KeyedVectors, ws, sl, an) -> dict[str, float]:
    a, b, c = evaluate_similarity(kv, ws), evaluate_similarity(kv, sl), evaluate_analogies(kv, an)
    fam_correct, fam_n = c.sections.get("family", (0, 0))
    return {
        "wordsim353": a.spearman,
        "ws_cov": a.coverage,
        "simlex999": b.spearman,
        "sl_cov": b.coverage,
        "analogy": c.accuracy,
        "an_cov": c.coverage,
        "an_n": c.evaluated,
        "family": fam_correct / max(fam_n, 1),
        "family_n": fam_n,
    }


def run_gensim(sentences, cfg: Word2VecConfig) -> tuple[KeyedVectors, float, float]:
    from gensim.models import Word2Vec

    t0, c0 = time.perf_counter(), time.process_time()
    m = Word2Vec(
        sentences,
        vector_size=cfg.dim,
        window=cfg.window,
        negative=cfg.negative,
        hs=0,
        min_count=cfg.min_count,
        sample=cfg.sample,
        epochs=cfg.epochs,
        alpha=cfg.lr,
        min_alpha=cfg.min_lr,
        sg=int(cfg.sg),
        cbow_mean=1,
        workers=cfg.workers,
        seed=cfg.seed,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return KeyedVectors(m.wv.index_to_key, m.wv.vectors), wall, cpu


def run_ours(sentences, cfg: Word2VecConfig) -> tuple[KeyedVectors, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    kv = train_word2vec(sentences, cfg)
    return kv, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="lee+shakespeare")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--negative", type=int, default=5)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--sample", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sg", type=int, default=1)
    ap.add_argument(
        "--batch-size", type=int, default=None, help="default: 1024 (skip-gram), 128 (CBOW)"
    )
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)

    sentences = load_corpus(args.corpus)
    n_words = sum(map(len, sentences))
    ws, sl = data.load_word_similarity("wordsim353"), data.load_word_similarity("simlex999")
    an = data.load_analogies()
    import gensim
    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} (SHARED: other jobs run on these cores)"
    )
    print(f"torch {torch.__version__}, gensim {gensim.__version__}")
    print(f"corpus: {args.corpus}: {len(sentences)} sentences, {n_words:,} words")
    print(
        f"settings: {'skip-gram' if args.sg else 'CBOW'}, dim {args.dim}, window {args.window}, "
        f"negative {args.negative}, min_count {args.min_count}, sample {args.sample}, epochs {args.epochs}, "
        f"workers {args.workers}, repeats {args.repeats}, our batch {args.batch_size or ('1024' if args.sg else '128')}\n"
    )

    rows: dict[str, list[dict]] = {"gensim": [], "ours": []}
    for rep in range(args.repeats):
        cfg = Word2VecConfig(
            dim=args.dim,
            window=args.window,
            negative=args.negative,
            min_count=args.min_count,
            sample=args.sample,
            epochs=args.epochs,
            sg=bool(args.sg),
            seed=rep + 1,
            workers=args.workers,
            batch_size=args.batch_size,
        )
        for name, fn in (("gensim", run_gensim), ("ours", run_ours)):
            kv, wall, cpu = fn(sentences, cfg)
            r = score(kv, ws, sl, an)
            r.update(wall=wall, cpu=cpu, wps=n_words * args.epochs / wall, vocab=len(kv))
            rows[name].append(r)
            print(
                f"  run {rep + 1} {name:6s}: {wall:6.1f} s wall, {cpu:6.1f} s cpu, ws {r['wordsim353']:.3f}, "
                f"sl {r['simlex999']:.3f}, analogy {r['analogy']:.3f}, family {r['family']:.3f}  "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )

    mean = {k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in rows.items()}
    g, o = mean["gensim"], mean["ours"]
    print(f"\n{'(mean over runs)':26s}{'gensim':>11s}{'ours':>11s}{'ours/gensim':>13s}")
    lines = [
        ("WordSim-353 Spearman", "wordsim353"),
        ("SimLex-999 Spearman", "simlex999"),
        ("analogy accuracy (all)", "analogy"),
        ("analogy accuracy (family)", "family"),
        ("train time, wall s", "wall"),
        ("train time, cpu s", "cpu"),
        ("words/s (wall)", "wps"),
    ]
    for label, key in lines:
        ratio = o[key] / g[key] if g[key] else float("nan")
        fmt = ".0f" if key == "wps" else ".3f"
        print(f"{label:26s}{g[key]:11{fmt}}{o[key]:11{fmt}}{ratio:13.2f}")
    if args.repeats > 1:
        sd = {
            k: {m: float(np.std([r[m] for r in v])) for m in ("wordsim353", "simlex999", "analogy")}
            for k, v in rows.items()
        }
        print(
            "run-to-run std: "
            + "; ".join(
                f"{k}: ws {d['wordsim353']:.3f}, sl {d['simlex999']:.3f}, "
                f"analogy {d['analogy']:.3f}"
                for k, d in sd.items()
            )
        )
    print(
        f"\ncoverage: WordSim {g['ws_cov']:.0%} of pairs, SimLex {g['sl_cov']:.0%}, analogies "
        f"{g['an_cov']:.1%} ({int(g['an_n'])} questions, family {int(g['family_n'])}); vocab {int(g['vocab'])} words"
    )
    print(
        f"targets: scores >= 0.90 x gensim's; throughput >= 0.10 x gensim's. "
        f"throughput ratio (wall) {o['wps'] / g['wps']:.2f}, cpu-time ratio gensim/ours {g['cpu'] / o['cpu']:.2f}"
    )


if __name__ == "__main__":
    main()
