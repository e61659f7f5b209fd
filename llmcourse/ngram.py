"""N-gram language models: counting, maximum likelihood and add-k smoothing.

An N-gram model predicts a token from the n-1 tokens before it (the Markov assumption):

    P(w_1 .. w_T) = prod_t P(w_t | w_{t-n+1} .. w_{t-1})

Every sentence is padded with n-1 `<s>` on the left and one `</s>` on the right, so the first word
has a full context and the model also learns where sentences end. `<s>` is only ever a context:
the model never predicts it, so it is not one of the `len(vocab)` outcomes a distribution covers.
Words outside the vocabulary (seen fewer than `min_count` times in training) become `<unk>`.

Counting is vectorised with numpy. Contexts get dense integer ids, one order at a time: the context
of length L is "one token in front of" a context of length L-1, so its key is
`token * K[L-1] + id[L-1]` and `np.unique` turns the keys into ids. An n-gram of order m is then the
integer `context_id * V + word`; sorted unique keys with counts replace a dictionary of tuples, and
looking up a batch of n-grams is one `np.searchsorted` per order.

The class ladder (each rung documents what it adds and leaves out):
    NGramLM      counts + maximum likelihood (this module)
    AddK         add-k / Laplace / Lidstone (this module)
    Interpolated Jelinek–Mercer linear interpolation, lambdas fitted by EM (`llmcourse.smoothing`)
    KneserNey    interpolated (modified) Kneser–Ney (`llmcourse.smoothing`)

References: Jurafsky & Martin, *Speech and Language Processing* (3rd ed.), ch. 3; Chen & Goodman,
"An Empirical Study of Smoothing Techniques for Language Modeling" (1998).
Left out: Katz back-off, pruning, ARPA files, stupid back-off, class-based models, and
sentences that span more than one line of input.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from llmcourse.config import Sized
from llmcourse.data.vocab import Vocab

UNK, BOS, EOS = "<unk>", "<s>", "</s>"


@dataclass
class NGramConfig(Sized):
    """What notebook 01 fits: the corpus, the largest n, the vocabulary cut-off and smoothing knobs."""

    corpus: str = "wikitext-2"  # a name for llmcourse.data.load_text
    zh_corpus: str = "tiny-zh"  # the Chinese character-level example
    max_n: int = 5  # orders 1..max_n are compared
    max_tokens: int = 2_000_000  # cap on training tokens (0 = no cap)
    val_fraction: float = 0.1  # held-out share of sentences
    min_count: int = 2  # rarer words become <unk>
    k: float = 0.01  # add-k pseudo-count
    sample_len: int = 25  # tokens per sampled sentence
    seed: int = 0

    smoke_overrides: ClassVar[dict] = {"corpus": "lee", "max_tokens": 60_000, "max_n": 4}


class NGramVocab(Vocab):
    """The course's `llmcourse.data.vocab.Vocab` with the n-gram specials. Ids 0..len-1 are the
    outcomes (`<unk>`=0, `</s>`=1, then words by frequency, ties in order of first appearance);
    `<s>` gets the extra id `len(vocab)` (in `stoi`, not in `itos`) because it only appears inside
    contexts. Unknown tokens look up as `<unk>`."""

    def __init__(self, itos: Sequence[str], specials: Iterable[str] = (UNK, EOS)):
        super().__init__(itos, specials)
        self.stoi[BOS] = len(self.itos)

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]], min_count: int = 1) -> NGramVocab:
        """Words seen at least `min_count` times in tokenised sentences (`<s>`, `</s>`, `<unk>` in the
        text are not words)."""
        tokens = (t for s in sentences for t in s if t != BOS)
        return cls.build(tokens, min_count, specials=(UNK, EOS), ties="first_seen")

    @property
    def bos_id(self) -> int:
        return len(self.itos)


def pad_encode(
    vocab: NGramVocab, sentences: Iterable[Sequence[str]], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """All sentences as one padded id stream, and the positions of the tokens the model predicts.

    `<s> <s> the cat </s> <s> <s> ...` for n=3: the predicted positions are every non-`<s>` token.
    """
    stream: list[int] = []
    pad = [vocab.bos_id] * (n - 1)
    get, eos = vocab.stoi.get, 1
    for s in sentences:
        stream.extend(pad)
        stream.extend([get(t, 0) for t in s])
        stream.append(eos)
    ids = np.asarray(stream, dtype=np.int64)
    positions = np.flatnonzero(ids != vocab.bos_id)
    return ids, positions


class NGramLM:
    """Counting and maximum likelihood: P(w | h) = c(h, w) / c(h).

    Adds: the vocabulary, padding, vectorised counts of every order 1..n, and the scoring API shared by
    the whole ladder (`logprob`, `prob_dist`, `perplexity`, `sample`, `score_ids`).
    Leaves out: any smoothing. An n-gram never seen in training gets probability 0 (so a held-out
    perplexity is usually infinite); a context never seen gets the uniform distribution (there is no
    evidence at all — nltk's MLE returns 0 for every word there, which is not a distribution).
    """

    def __init__(self, n: int, min_count: int = 1):
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n, self.min_count = n, min_count
        self.vocab: NGramVocab | None = None

    # ----- fitting -------------------------------------------------------------------------------
    def fit(self, sentences: Sequence[Sequence[str]], vocab: NGramVocab | None = None) -> "NGramLM":
        """Count every n-gram of order 1..n in tokenised sentences (lists of strings)."""
        self.vocab = vocab or NGramVocab.from_sentences(sentences, self.min_count)
        ids, pos = pad_encode(self.vocab, sentences, self.n)
        return self.fit_ids(ids, pos)

    def fit_ids(self, ids: np.ndarray, positions: np.ndarray) -> "NGramLM":
        """Count from a padded id stream (see `pad_encode`); `positions` are the predicted tokens."""
        V = self.V
        words = ids[positions]  # (T,)
        # ctx_keys[L]: sorted unique keys of the contexts of length L; ctx_parent[L]: id of each one's
        # suffix of length L-1 (what remains after dropping the oldest token).
        self.ctx_keys, self.ctx_parent, self.n_ctx = (
            [np.zeros(1, np.int64)],
            [np.zeros(1, np.int64)],
            [1],
        )
        self.ng_keys, self.ng_counts = (
            [],
            [],
        )  # per order m (index m-1): sorted keys cid*V + w, counts
        cid = np.zeros(len(positions), np.int64)  # id of the empty context at every position
        for m in range(1, self.n + 1):
            keys, counts = np.unique(cid * V + words, return_counts=True)
            self.ng_keys.append(keys)
            self.ng_counts.append(counts)
            if m == self.n:
                break
            tok = ids[positions - m]  # the token m places back extends the context by one
            ckeys, cid_new = np.unique(tok * self.n_ctx[-1] + cid, return_inverse=True)
            parent = np.zeros(len(ckeys), np.int64)
            parent[cid_new] = cid
            self.ctx_keys.append(ckeys)
            self.ctx_parent.append(parent)
            self.n_ctx.append(len(ckeys))
            cid = cid_new.reshape(-1)
        self.ctx_total = [
            np.bincount(k // V, weights=c, minlength=K).astype(np.int64)
            for k, c, K in zip(self.ng_keys, self.ng_counts, self.n_ctx)
        ]
        self.ctx_types = [
            np.bincount(k // V, minlength=K) for k, K in zip(self.ng_keys, self.n_ctx)
        ]
        self._after_fit()
        return self

    def _after_fit(self) -> None:
        """Hook for subclasses that precompute statistics (continuation counts, discounts)."""

    @property
    def V(self) -> int:
        """Number of outcomes (the vocabulary without `<s>`)."""
        assert self.vocab is not None, "call fit() first"
        return len(self.vocab)

    def context_tokens(self, L: int) -> np.ndarray:
        """(K_L, L) token ids of every context of length L, oldest first, in context-id order."""
        if L == 0:
            return np.zeros((1, 0), np.int64)
        keys, K = self.ctx_keys[L], self.n_ctx[L - 1]
        return np.concatenate([(keys // K)[:, None], self.context_tokens(L - 1)[keys % K]], axis=1)

    def counts(self, m: int) -> Counter:
        """The order-m counts as a Counter of token tuples (for inspection; slow for big models)."""
        keys, V = self.ng_keys[m - 1], self.V
        ctx = self.context_tokens(m - 1)[keys // V]  # (N, m-1)
        names = self.vocab.itos + [BOS]
        return Counter(
            {
                tuple(names[t] for t in row) + (names[w],): int(c)
                for row, w, c in zip(ctx.tolist(), (keys % V).tolist(), self.ng_counts[m - 1])
            }
        )

    # ----- vectorised lookups --------------------------------------------------------------------
    def context_ids(self, ctx: np.ndarray) -> list[np.ndarray]:
        """(T, L) context token ids (oldest first) -> ids of their suffixes of length 0..L; -1 = unseen."""
        T, L = ctx.shape
        out = [np.zeros(T, np.int64)]
        cid = out[0]
        for j in range(1, L + 1):
            keys = self.ctx_keys[j]
            q = ctx[:, L - j] * self.n_ctx[j - 1] + cid
            i = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
            cid = np.where((cid >= 0) & (keys[i] == q), i, -1)
            out.append(cid)
        return out

    @staticmethod
    def _find(keys: np.ndarray, values: np.ndarray, q: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """values[keys == q] where found and valid, else 0 (a batched dictionary lookup)."""
        if len(keys) == 0:
            return np.zeros(len(q), values.dtype)
        i = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        return np.where(valid & (keys[i] == q), values[i], 0)

    def count(self, m: int, cid: np.ndarray, w: np.ndarray) -> np.ndarray:
        """c(h, w) for order m, given context ids (-1 = unseen context gives 0)."""
        return self._find(self.ng_keys[m - 1], self.ng_counts[m - 1], cid * self.V + w, cid >= 0)

    def _probs(self, cids: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        """P(w | h) for a batch; `cids[L]` are the context ids of length L, the top order is len(cids)."""
        m = len(cids)
        cid = cids[-1]
        seen = cid >= 0
        tot = np.where(seen, self.ctx_total[m - 1][np.maximum(cid, 0)], 0)
        c = self.count(m, cid, w)
        return np.where(seen, c / np.maximum(tot, 1), 1.0 / self.V)

    # ----- public scoring API ----------------------------------------------------------------------
    def _context_array(self, context: Sequence[str] | None) -> np.ndarray:
        context = list(context or [])[max(0, len(context or []) - (self.n - 1)) :]
        return np.asarray([[self.vocab.lookup(t) for t in context]], dtype=np.int64).reshape(1, -1)

    def score_ids(self, ctx: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Probabilities of a batch of n-grams: ctx (T, L) ids oldest first with L <= n-1, words (T,).

        A context shorter than n-1 is scored with the model of order L+1 (as nltk.lm does); to
        condition on a sentence start, put the `<s>` tokens into the context.
        """
        ctx = np.asarray(ctx, dtype=np.int64)
        if ctx.ndim != 2 or ctx.shape[1] > self.n - 1:
            raise ValueError(f"ctx must be (T, L) with L <= {self.n - 1}, got {ctx.shape}")
        return self._probs(self.context_ids(ctx), np.asarray(words, dtype=np.int64))

    def prob(self, word: str, context: Sequence[str] | None = None) -> float:
        """P(word | context); the last n-1 tokens of the context are used, OOV tokens become `<unk>`."""
        ctx = self._context_array(context)
        return float(self.score_ids(ctx, np.asarray([self.vocab.lookup(word)]))[0])

    def logprob(self, word: str, context: Sequence[str] | None = None) -> float:
        """Natural log of P(word | context); -inf where the model gives probability 0."""
        p = self.prob(word, context)
        return math.log(p) if p > 0 else -math.inf

    def prob_dist(self, context: Sequence[str] | None = None) -> np.ndarray:
        """P(. | context) as a float64 array over the `len(vocab)` outcomes (sums to 1)."""
        ctx = self._context_array(context)
        return self.score_ids(np.repeat(ctx, self.V, axis=0), np.arange(self.V))

    def ngrams(self, sentences: Iterable[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The (contexts (T, n-1), words (T,)) id arrays the model scores for `sentences`."""
        ids, pos = pad_encode(self.vocab, sentences, self.n)
        ctx = ids[pos[:, None] + np.arange(-(self.n - 1), 0)]  # (T, n-1), oldest first
        return ctx, ids[pos]

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """exp of the mean negative log-probability per predicted token (words and `</s>`)."""
        ctx, words = self.ngrams(sentences)
        with np.errstate(divide="ignore"):
            nll = -np.log(self.score_ids(ctx, words))
        return float(np.exp(nll.mean()))

    def sample(
        self,
        generator: random.Random | np.random.Generator,
        max_len: int = 30,
        context: Sequence[str] | None = None,
    ) -> list[str]:
        """Sample one sentence (without padding) token by token until `</s>` or `max_len` tokens."""
        history = [BOS] * (self.n - 1) + list(context or [])
        out: list[str] = []
        for _ in range(max_len):
            p = self.prob_dist(history[len(history) - (self.n - 1) :] if self.n > 1 else [])
            if isinstance(generator, np.random.Generator):
                i = int(generator.choice(self.V, p=p / p.sum()))
            else:
                i = generator.choices(range(self.V), weights=p.tolist(), k=1)[0]
            if i == 1:  # </s>
                break
            out.append(self.vocab.itos[i])
            history.append(out[-1])
        return out


class AddK(NGramLM):
    """Add-k (Lidstone) smoothing; k=1 is Laplace: P(w | h) = (c(h, w) + k) / (c(h) + k V).

    Adds: every n-gram gets a pseudo-count k, so nothing has probability 0 and held-out perplexity is
    finite. An unseen context gives the uniform distribution, exactly as the formula says.
    Leaves out: any use of lower orders — an unseen trigram gets the same probability whether its
    word is "the" or a typo, and with a large vocabulary k V swamps the real counts.
    """

    def __init__(self, n: int, k: float = 1.0, min_count: int = 1):
        super().__init__(n, min_count)
        if k <= 0:
            raise ValueError("k must be > 0 (k=0 is NGramLM)")
        self.k = k

    def _probs(self, cids: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        m, cid = len(cids), cids[-1]
        tot = np.where(cid >= 0, self.ctx_total[m - 1][np.maximum(cid, 0)], 0)
        return (self.count(m, cid, w) + self.k) / (tot + self.k * self.V)


def Laplace(n: int, min_count: int = 1) -> AddK:
    """Add-one smoothing (Laplace's rule of succession)."""
    return AddK(n, k=1.0, min_count=min_count)
