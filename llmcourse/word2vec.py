"""word2vec: skip-gram and CBOW with negative sampling, trained with batched sparse SGD in PyTorch.

The model is two embedding tables: `W_in` (the word vectors we keep) and `W_out` (the "context"
vectors). For a (centre, context) pair the skip-gram objective with negative sampling (SGNS) is

    log σ(u_o · v_c) + Σ_{k=1..K} log σ(-u_{n_k} · v_c),     n_k ~ P_noise(w) ∝ count(w)^0.75

and CBOW uses the same objective with v_c replaced by the mean of the context words' input vectors,
predicting the centre word. Following gensim (and Mikolov's C code) we also use

* frequent-word subsampling, gensim's variant of Mikolov's formula: a word of relative frequency f is
  kept with probability  min(1, sqrt(t/f) + t/f)  (t = `sample`), drawn anew each epoch;
* a dynamic window: each centre word draws its own window b uniformly from 1..window;
* plain SGD with the learning rate decaying linearly from `lr` to `min_lr` over all epochs; the
  input vectors start uniform in ±0.5/dim and the output vectors at zero.

What differs from gensim: gensim updates the vectors after every single pair (Hogwild threads over a
C loop). We build all pairs of a chunk of text with numpy array operations (no Python loop per word),
shuffle them (skip-gram; CBOW keeps gensim's text order, which scored clearly better on WordSim-353)
and apply the exact SGNS gradient to a *batch* of 1024 items at once with `scatter_add_` (rows
repeated in a batch add up). The gradient is computed by hand (three lines), which avoids
autograd's sparse-gradient bookkeeping; `negative_sampling_loss` is the autograd version it is
tested against. We kept plain SGD with gensim's linearly decaying rate: it reaches gensim's scores
(benchmarks/bench_word2vec.py) with the cheapest step, touching only the batch's rows; SparseAdam
would add two moment tables and autograd's coalescing of sparse gradients to every step, and is not
needed. `workers` threads share the tables without locks, as gensim's do.

Left out: hierarchical softmax, phrase detection, fastText sub-words. Evaluation (nearest
neighbours, analogies, similarity benchmarks) lives in `llmcourse.tasks.embeddings_eval`.

References: Mikolov et al. 2013, "Efficient Estimation of Word Representations in Vector Space" and
"Distributed Representations of Words and Phrases and their Compositionality"; Goldberg & Levy 2014,
"word2vec Explained"; Řehůřek & Sojka, gensim.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from llmcourse import data
from llmcourse.config import Sized
from llmcourse.data.vocab import Vocab
from llmcourse.tasks.embeddings_eval import KeyedVectors

MAX_SENTENCE = 10_000  # gensim splits longer sentences (text8 is one) into pieces of this length
NOISE_TABLE = 1_000_000  # minimum slots in the negative-sampling table


@dataclass
class Word2VecConfig(Sized):
    dim: int = 100  # vector size
    window: int = 5  # maximum distance between centre and context word
    negative: int = 5  # noise words per positive pair
    min_count: int = 5  # words rarer than this are dropped
    sample: float = 1e-3  # subsampling threshold t (0 switches subsampling off)
    epochs: int = 5
    lr: float = 0.025  # gensim's alpha; decays linearly to min_lr
    min_lr: float = 1e-4
    batch_size: int | None = (
        None  # per SGD step; None = 1024 pairs (skip-gram) or 128 centre words (CBOW)
    )
    sg: bool = True  # True: skip-gram, False: CBOW (mean of the context vectors)
    seed: int = 0
    workers: int = 0  # training threads (gensim's `workers`); 0 means torch.get_num_threads()
    chunk_tokens: int = (
        200_000  # tokens whose pairs are built (and, for skip-gram, shuffled) together
    )
    # Shuffle a chunk's training items? None: skip-gram pairs are shuffled, CBOW centres keep text
    # order as in gensim (shuffled CBOW lost ~half of gensim's WordSim-353 score on lee+shakespeare).
    shuffle: bool | None = None
    corpus: str = "lee+shakespeare"  # llmcourse.data names joined by "+" (see `load_corpus`)
    max_words: int = 0  # keep at most this many words of each part (0 = all)
    language: str = "en"  # "zh": `load_corpus` segments the text into words with jieba

    # smoke: the news (60k words) and the first 250k words of Shakespeare, 50-d vectors
    smoke_overrides = {"dim": 50, "min_count": 3, "max_words": 250_000}
    # LLMCOURSE_LANG=zh: Debian's fortunes-zh (sayings, classics, poems, Debian's docs), segmented
    language_overrides = {"zh": {"corpus": "fortunes-zh", "max_words": 0}}
    rehearsal_caps = ("epochs",)  # a rehearsal (config.cap_steps) trains fewer epochs


# ----------------------------------------------------------------------------- vocabulary


def build_vocab(sentences: Iterable[Sequence[str]], min_count: int) -> Vocab:
    """The course's `llmcourse.data.vocab.Vocab` of the words seen at least `min_count` times: `itos`
    by decreasing count (ties alphabetically), `stoi`, and `counts` (subsampling and negative sampling
    read them). No specials: a rarer word is dropped from the training stream, as gensim does, rather
    than mapped to <unk>."""
    return Vocab.build((w for s in sentences for w in s), min_count, specials=())


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """P(keep) per word: min(1, sqrt(t/f) + t/f) with f = count/total (gensim's formula)."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    f = counts / counts.sum()
    return np.minimum(1.0, np.sqrt(sample / f) + sample / f)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution P(w) ∝ count(w)^power."""
    p = np.asarray(counts, dtype=np.float64) ** power
    return p / p.sum()


# ----------------------------------------------------------------------------- the data pipeline


def encode(sentences: Iterable[Sequence[str]], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """All in-vocabulary tokens as one id array, plus the sentence number of each token.

    Sentences longer than MAX_SENTENCE are cut into pieces, as gensim does."""
    ids, sent = [], []
    n = 0
    for s in sentences:
        a = np.fromiter((vocab.stoi[w] for w in s if w in vocab.stoi), dtype=np.int64)
        for start in range(0, len(a), MAX_SENTENCE):
            piece = a[start : start + MAX_SENTENCE]
            ids.append(piece)
            sent.append(np.full(len(piece), n, dtype=np.int64))
            n += 1
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ids), np.concatenate(sent)


def subsample(ids: np.ndarray, keep_prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the tokens that survive subsampling this epoch."""
    return rng.random(len(ids)) < keep_prob[ids]


def context_windows(
    ids: np.ndarray, sent: np.ndarray, window: int, *, rng: np.random.Generator, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """For every token, its context ids under a dynamic window, padded to 2*window columns.

    Each centre i draws b_i uniformly from {1..window}; position i+d (d = -window..-1, 1..window)
    is context if |d| <= b_i and it lies in the same sentence. Returns (ctx, valid), both
    (N, 2*window): ctx holds `pad` where valid is False. One vectorised pass per offset d.
    """
    n = len(ids)
    b = rng.integers(1, window + 1, size=n)  # (N,) reduced window per centre
    offsets = [d for d in range(-window, window + 1) if d != 0]
    ctx = np.full((n, len(offsets)), pad, dtype=np.int64)
    valid = np.zeros((n, len(offsets)), dtype=bool)
    pos = np.arange(n)
    for k, d in enumerate(offsets):
        j = pos + d
        ok = (j >= 0) & (j < n) & (abs(d) <= b)
        jc = np.clip(j, 0, n - 1)
        ok &= sent[jc] == sent
        valid[:, k] = ok
        ctx[ok, k] = ids[jc[ok]]
    return ctx, valid


def skipgram_pairs(
    ctx: np.ndarray, valid: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) pairs from the window matrix, in text order."""
    centres = np.broadcast_to(ids[:, None], ctx.shape)[valid]  # (P,)
    return centres, ctx[valid]


# ----------------------------------------------------------------------------- the objective


def negative_sampling_loss(
    v_in: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor
) -> torch.Tensor:
    """Per-pair SGNS loss  -log σ(u_pos·v) - Σ_k log σ(-u_neg_k·v).

    v_in (B, D): centre vectors (or CBOW context means); u_pos (B, D); u_neg (B, K, D). Returns (B,).
    """
    pos = (v_in * u_pos).sum(-1)  # (B,)
    neg = torch.einsum("bkd,bd->bk", u_neg, v_in)  # (B, K)
    return -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)


def sgns_gradients(
    v_in: torch.Tensor, u_out: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hand-derived gradients of the SGNS loss, for u_out (B, 1+K, D) = [positive, negatives].

    With labels y = (1, 0, ..., 0) and s = σ(u·v): dL/dv = Σ_j (s_j - y_j) u_j and
    dL/du_j = (s_j - y_j) v. `weight` (B, 1+K) zeroes terms (e.g. a negative equal to the positive).
    Returns (loss (B,), grad_v (B, D), grad_u (B, 1+K, D)).
    """
    scores = (u_out * v_in.unsqueeze(1)).sum(-1)  # (B, 1+K); cheaper than bmm for tiny matrices
    err = torch.sigmoid(scores)
    err[:, 0] -= 1.0  # (B, 1+K) = dL/dscore = σ(score) - label
    sign = torch.ones_like(scores[:1])
    sign[:, 1:] = -1.0
    per_term = F.softplus(
        -sign * scores
    )  # -log σ(score) for the positive, -log σ(-score) for negatives
    if weight is not None:
        err = err * weight
        per_term = per_term * weight
    grad_v = (err.unsqueeze(-1) * u_out).sum(1)  # (B, D); faster than a batched matmul here
    grad_u = err.unsqueeze(-1) * v_in.unsqueeze(1)  # (B, 1+K, D)
    return per_term.sum(-1), grad_v, grad_u


class Trainer:
    """Holds the two tables and applies one batched SGD step (skip-gram or CBOW)."""

    def __init__(self, vocab: Vocab, cfg: Word2VecConfig, gen: torch.Generator):
        V, D = len(vocab), cfg.dim
        self.cfg, self.V = cfg, V
        # Row V is a zero padding row for CBOW's ragged contexts (it never receives a gradient).
        self.w_in = (torch.rand(V + 1, D, generator=gen) - 0.5) / D
        self.w_in[V] = 0.0
        self.w_out = torch.zeros(V + 1, D)
        # The noise table: word w fills a share P_noise(w) of its slots, so a uniform slot is a draw
        # from P_noise (Mikolov's C code does the same with 1e8 slots).
        p = noise_distribution(vocab.counts)
        size = max(NOISE_TABLE, 20 * V)
        ends = np.round(np.cumsum(p) * size).astype(np.int64)
        self.table = torch.from_numpy(
            np.repeat(np.arange(V, dtype=np.int32), np.diff(ends, prepend=0))
        )

    def negatives(self, n: int, gen: torch.Generator) -> torch.Tensor:
        slots = torch.randint(0, len(self.table), (n, self.cfg.negative), generator=gen)
        return self.table[slots].long()  # (n, K)

    def step(
        self, targets: torch.Tensor, inputs: torch.Tensor, lr: float, *, gen: torch.Generator
    ) -> float:
        """targets (B,) are predicted from inputs: (B,) word ids (skip-gram) or (B, C) padded ids."""
        neg = self.negatives(len(targets), gen)
        out_idx = torch.cat([targets[:, None], neg], 1)  # (B, 1+K)
        weight = torch.ones(out_idx.shape)
        weight[:, 1:] = (
            neg != targets[:, None]
        ).float()  # gensim skips a negative equal to the target
        emb = F.embedding(
            inputs, self.w_in
        )  # (B, D) or (B, C, D); F.embedding is the fastest gather
        if inputs.dim() == 1:
            v = emb
        else:
            n_ctx = (inputs != self.V).sum(1, keepdim=True).clamp_(min=1)  # (B, 1)
            v = emb.sum(1) / n_ctx  # (B, C, D) -> (B, D): mean of the context vectors
        loss, grad_v, grad_u = sgns_gradients(v, F.embedding(out_idx, self.w_out), weight)
        D = v.shape[1]
        # scatter_add_ accumulates repeated rows correctly and is faster than index_add_ on CPU
        flat = out_idx.view(-1, 1).expand(-1, D)  # (B*(1+K), D) view, no copy
        self.w_out.scatter_add_(0, flat, grad_u.view(-1, D).mul_(-lr))
        if inputs.dim() == 1:
            self.w_in.scatter_add_(0, inputs.view(-1, 1).expand(-1, D), grad_v.mul_(-lr))
        else:
            # like gensim (cbow_mean=1), every context word receives the full gradient of the mean;
            # the padding row V gets none, so it stays zero
            C = inputs.shape[1]
            rows = inputs.reshape(-1, 1).expand(-1, D)  # (B*C, D)
            real = (inputs != self.V).reshape(-1, 1).float()  # (B*C, 1)
            self.w_in.scatter_add_(0, rows, grad_v.mul_(-lr).repeat_interleave(C, 0) * real)
        return float(loss.sum())


def chunk_items(ids, sent, keep, *, cfg, rng, pad):
    """Subsample a chunk, build its windows, and return shuffled (targets, inputs) tensors."""
    kept = subsample(ids, keep, rng)
    ids, sent = ids[kept], sent[kept]
    ctx, valid = context_windows(ids, sent, cfg.window, rng=rng, pad=pad)
    shuffle = cfg.sg if cfg.shuffle is None else cfg.shuffle
    if cfg.sg:  # predict each context word from the centre word
        centres, contexts = skipgram_pairs(ctx, valid, ids)
        order = rng.permutation(len(centres)) if shuffle else slice(None)
        return torch.from_numpy(contexts[order]), torch.from_numpy(centres[order])
    has = valid.any(1)  # CBOW: predict the centre from the mean of its (non-empty) context
    # Text order by default, like gensim: on lee+shakespeare (5 epochs, 4 seeds) shuffled CBOW
    # items gave WordSim-353 0.03 against gensim's 0.07-0.08, text order 0.07 (SimLex, analogies
    # level either way). Neither batch size (16 vs 1024), threads, nor gensim's |score| >= 6 cut-off
    # made a difference; the order did: shuffling within 10k-token chunks also scored ~0.07, within
    # the whole corpus 0.035. (On lee alone shuffled and gensim were level.)
    order = rng.permutation(int(has.sum())) if shuffle else slice(None)
    return torch.from_numpy(ids[has][order]), torch.from_numpy(ctx[has][order])


def batch_size_for(cfg: Word2VecConfig) -> int:
    """CBOW gets smaller batches: each centre word updates ~2*window context vectors, so a big batch
    sums many stale updates into frequent words (measured: at 128, CBOW matches gensim's scores)."""
    if cfg.batch_size is not None:
        return cfg.batch_size
    return 1024 if cfg.sg else 128


def _run_batches(
    tr: Trainer,
    targets: torch.Tensor,
    inputs: torch.Tensor,
    worker: int,
    workers: int,
    done: int,
    n_raw: int,
    total: int,
    gen: torch.Generator,
) -> float:
    """One worker's share of a chunk: batches worker, worker + workers, ...; returns the summed loss.
    The learning rate decays linearly with the share of all raw words processed so far."""
    cfg, bs, n_items = tr.cfg, batch_size_for(tr.cfg), len(targets)
    total_loss = 0.0
    for b in range(worker * bs, n_items, workers * bs):
        progress = (done + n_raw * b / n_items) / total
        lr = max(cfg.min_lr, cfg.lr - (cfg.lr - cfg.min_lr) * progress)
        total_loss += tr.step(targets[b : b + bs], inputs[b : b + bs], lr, gen=gen)
    return total_loss


def train_word2vec(
    sentences: Sequence[Sequence[str]], cfg: Word2VecConfig, verbose: bool = False
) -> KeyedVectors:
    """Train word vectors on tokenised sentences; returns KeyedVectors with `.history` of
    (words processed, mean loss per pair), `.train_seconds` and `.words_per_second`.

    `cfg.workers` threads share the tables without locks ("Hogwild", as gensim's workers do);
    each runs single-threaded torch ops, which release the GIL. One worker is deterministic."""
    vocab = build_vocab(sentences, cfg.min_count)
    if not len(vocab):
        raise ValueError(f"no word occurs min_count={cfg.min_count} times")
    ids_all, sent_all = encode(sentences, vocab)
    keep = keep_probabilities(vocab.counts, cfg.sample)
    rng = np.random.default_rng(cfg.seed)
    workers = cfg.workers or torch.get_num_threads()
    gens = [torch.Generator().manual_seed(cfg.seed + 1000 * k) for k in range(workers + 1)]
    tr = Trainer(vocab, cfg, gens[-1])
    total = len(ids_all) * cfg.epochs  # lr decays with raw (pre-subsampling) words, as in gensim
    done, history = 0, []
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    t0 = time.perf_counter()
    try:
        for epoch in range(cfg.epochs):
            for start in range(0, len(ids_all), cfg.chunk_tokens):
                sl = slice(start, start + cfg.chunk_tokens)
                targets, inputs = chunk_items(
                    ids_all[sl], sent_all[sl], keep, cfg=cfg, rng=rng, pad=tr.V
                )
                n_raw = len(ids_all[sl])
                jobs = [
                    (tr, targets, inputs, k, workers, done, n_raw, total, gens[k])
                    for k in range(workers)
                ]
                losses = (
                    list(pool.map(_run_batches, *zip(*jobs))) if pool else [_run_batches(*jobs[0])]
                )
                done += n_raw
                history.append((done, sum(losses) / max(len(targets), 1)))
            if verbose:
                print(f"epoch {epoch + 1}/{cfg.epochs}: loss per pair {history[-1][1]:.4f}")
    finally:
        torch.set_num_threads(old_threads)
        if pool:
            pool.shutdown()
    seconds = time.perf_counter() - t0
    counts = np.asarray(vocab.counts, dtype=np.int64)
    kv = KeyedVectors(vocab.itos, tr.w_in[: tr.V].numpy().copy(), counts=counts)
    kv.history = history
    kv.train_seconds = seconds
    kv.words_per_second = total / max(seconds, 1e-9)
    return kv


def load_corpus(name: str, max_words: int = 0, *, language: str = "en") -> list[list[str]]:
    """Tokenised sentences of the `llmcourse.data` texts in `name` ("lee+shakespeare"), each part
    cut after the sentence that reaches `max_words` words (0 = all). `language="zh"` segments the
    text into words with jieba (`llmcourse.segment`), "en" splits it with `tokenize`."""
    if language not in ("en", "zh"):
        raise ValueError(f"language={language!r}: use 'en' (English words) or 'zh' (jieba)")
    if language == "zh":
        from llmcourse.segment import segment as split
    else:
        split = tokenize
    sentences = []
    for part in name.split("+"):
        n = 0
        for s in split(data.load_text(part)):
            if max_words and n >= max_words:
                break
            sentences.append(s)
            n += len(s)
    return sentences


def tokenize(text: str) -> list[list[str]]:
    """Lower-cased word tokens per line (lines are the sentences/documents), punctuation dropped."""
    pattern = re.compile(r"[a-z]+(?:'[a-z]+)?")
    return [toks for line in text.lower().splitlines() if (toks := pattern.findall(line))]


__all__ = [
    "Word2VecConfig",
    "build_vocab",
    "keep_probabilities",
    "noise_distribution",
    "encode",
    "subsample",
    "context_windows",
    "skipgram_pairs",
    "negative_sampling_loss",
    "sgns_gradients",
    "Trainer",
    "chunk_items",
    "train_word2vec",
    "load_corpus",
    "tokenize",
]
