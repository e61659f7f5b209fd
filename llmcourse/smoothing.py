"""Smoothing that uses the lower orders: linear interpolation and (modified) Kneser–Ney.

The top two rungs of the N-gram ladder in `llmcourse.ngram` (NGramLM -> AddK -> Interpolated ->
KneserNey). Both mix the n-gram estimate with the (n-1)-gram estimate, recursively down to a uniform
distribution over the vocabulary, so every outcome, `<unk>` included, gets some probability and
`prob_dist` sums to 1 for every context — seen, unseen, or shorter than n-1.

References: Jelinek & Mercer (1980) for interpolation; Kneser & Ney, "Improved backing-off for
M-gram language modeling" (1995); Chen & Goodman (1998), sections 2.7–2.8 and 3, for interpolated
and modified Kneser–Ney and the discount estimates; KenLM (Heafield 2011/2013) for interpolating
the unigrams with the uniform distribution and treating n-grams that start with `<s>`.
Left out: context-dependent lambdas (bucketed by count), discounts tuned on held-out data,
pruning, and back-off (non-interpolated) Kneser–Ney.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from llmcourse.ngram import NGramLM


class Interpolated(NGramLM):
    """Linear (Jelinek–Mercer) interpolation of the maximum-likelihood estimates of every order:

        P(w | h) = lambda_0 / V + sum_{m=1..n} lambda_m P_m(w | h_{m-1})

    where h_{m-1} is the last m-1 tokens of h and P_m is order m's MLE; when that context was never
    seen, P_m copies P_{m-1} (so the mixture stays a distribution and its weight is not wasted).
    Adds: the lower orders share their evidence; `fit_lambdas` tunes the weights on held-out
    sentences with EM (each weight becomes the average posterior responsibility of its component).
    Leaves out: weights that depend on the context's count, and discounting — seen n-grams keep
    their full MLE weight, which Kneser–Ney shows is too much.
    """

    def __init__(self, n: int, lambdas: Sequence[float] | None = None, *, min_count: int = 1):
        super().__init__(n, min_count)
        if lambdas is None:  # a little uniform, then more weight on higher orders
            lambdas = [0.01] + [0.99 * m / (n * (n + 1) / 2) for m in range(1, n + 1)]
        lam = np.asarray(lambdas, dtype=np.float64)
        if lam.shape != (n + 1,) or (lam < 0).any() or not np.isclose(lam.sum(), 1.0):
            raise ValueError(
                f"lambdas: n+1={n + 1} non-negative weights summing to 1 (uniform first)"
            )
        self.lambdas = lam

    def components(self, cids: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        """(T, top+1) probabilities of the uniform and each order's MLE (with the unseen-context copy)."""
        cols = [np.full(len(w), 1.0 / self.V)]
        for m in range(1, len(cids) + 1):
            cid = cids[m - 1]
            tot = np.where(cid >= 0, self.ctx_total[m - 1][np.maximum(cid, 0)], 1)
            cols.append(np.where(cid >= 0, self.count(m, cid, w) / tot, cols[-1]))
        return np.stack(cols, axis=1)

    def _probs(self, cids: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        lam = self.lambdas[: len(cids) + 1]
        return self.components(cids, w) @ (lam / lam.sum())

    def fit_lambdas(self, sentences: Iterable[Sequence[str]], iters: int = 50) -> np.ndarray:
        """EM on held-out sentences (never the training ones: there, the top order always wins)."""
        ctx, words = self.ngrams(sentences)
        comp = self.components(self.context_ids(ctx), words)  # (T, n+1)
        lam = np.full(self.n + 1, 1.0 / (self.n + 1))
        for _ in range(iters):
            resp = comp * lam  # E-step: unnormalised responsibilities, (T, n+1)
            resp /= resp.sum(axis=1, keepdims=True)
            lam = resp.mean(axis=0)  # M-step
        self.lambdas = lam
        return lam


def estimate_discounts(counts: np.ndarray, modified: bool) -> np.ndarray:
    """Chen & Goodman's discounts from count-of-counts n_c: D_c = c - (c+1) Y n_{c+1} / n_c with
    Y = n_1 / (n_1 + 2 n_2), for c = 1, 2, 3+ (modified) or D = Y for every count (plain).
    Where a count-of-count is 0 (tiny corpora) the plain Y is used; each D_c is clipped to [0, c]."""
    # count-of-counts: how many n-grams occur exactly once, twice, 3 and 4 times
    nc = np.bincount(np.minimum(counts, 5), minlength=6)[1:5].astype(np.float64)  # n1..n4
    # Y: the plain discount, a leaving-one-out estimate (Ney, Essen & Kneser 1994)
    y = nc[0] / (nc[0] + 2 * nc[1]) if nc[0] + nc[1] > 0 else 0.5
    if not modified:
        return np.full(3, y)
    # modified KN: one discount each for counts 1, 2 and 3+ (typically D1 < D2 < D3+)
    d = np.empty(3)
    for c in (1, 2, 3):
        d[c - 1] = c - (c + 1) * y * nc[c] / nc[c - 1] if nc[c - 1] > 0 else y
    return np.clip(d, 0.0, [1.0, 2.0, 3.0])


class KneserNey(NGramLM):
    """Interpolated Kneser–Ney, modified (three discounts D1, D2, D3+ per order) by default:

        P_m(w | h) = max(a(h, w) - D(a), 0) / sum_v a(h, v)  +  gamma(h) P_{m-1}(w | h'),
        gamma(h)   = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / sum_v a(h, v),      P_0 = 1 / V,

    where N_c(h.) counts the words seen exactly c times (3+: at least 3) after h, and a(h, w) is the
    raw count at the top order n but the *continuation count* N1+(. h w) — the number of different
    tokens seen before "h w" — at orders below n: a word's lower-order probability should reflect in
    how many contexts it appears ("Francisco" is frequent but only after "San"). Following KenLM,
    n-grams whose first token is `<s>` keep their raw count (nothing can precede `<s>`), and the
    unigrams are discounted too and interpolated with the uniform distribution, so `<unk>` and
    every other outcome get probability > 0. A context never seen passes P_{m-1} through.

    `discount=None, modified=True`: D1, D2, D3+ estimated per order from count-of-counts (Chen &
    Goodman); `modified=False`: one estimated D = n1 / (n1 + 2 n2) per order; `discount=0.75`: that
    fixed D everywhere (plain interpolated KN). A context shorter than n-1 is scored with the
    continuation distribution of its order.
    Adds: absolute discounting and continuation counts. Leaves out: discounts tuned on held-out
    data and more than three discount levels.
    """

    def __init__(
        self, n: int, discount: float | None = None, *, modified: bool = True, min_count: int = 1
    ):
        super().__init__(n, min_count)
        if discount is not None and not 0.0 <= discount <= 1.0:
            raise ValueError("a fixed discount must lie in [0, 1]")
        self.fixed_discount, self.modified = discount, modified

    def _after_fit(self) -> None:
        V = self.V
        bos = self.vocab.bos_id
        self.adj_counts, self.discounts, self.alpha, self.gamma = [], [], [], []
        for m in range(1, self.n + 1):
            # every distinct m-gram (h, w) as key = context id * V + w, with its raw count
            keys, raw = self.ng_keys[m - 1], self.ng_counts[m - 1]
            cid = keys // V  # (N,) id of each m-gram's context h
            # 1. the count a(h, w) that gets discounted: raw at the top order, ...
            if m == self.n:
                adj = raw
            else:
                # ... below it the continuation count N1+(. h w): drop the oldest token of every
                # distinct (m+1)-gram and count how many of them end in each m-gram
                up = self.ng_keys[m]
                suffix = self.ctx_parent[m][up // V] * V + up % V
                ukeys, cont = np.unique(suffix, return_counts=True)
                assert np.array_equal(ukeys, keys), "every m-gram has an (m+1)-gram extension"
                # an m-gram that starts with <s> has no predecessor to count: keep its raw count
                starts_bos = np.zeros(len(keys), bool)
                if m > 1:  # oldest token of the context of length m-1
                    first_tok = self.ctx_keys[m - 1] // self.n_ctx[m - 2]
                    starts_bos = first_tok[cid] == bos
                adj = np.where(starts_bos, raw, cont)
            # 2. the discounts D1, D2, D3+ of this order (from its own count-of-counts) or fixed
            if self.fixed_discount is not None:
                d = np.full(3, self.fixed_discount)
            else:
                d = estimate_discounts(adj, self.modified)
            # 3. per context h: the total sum_v a(h, v), and the mass the discounts take away,
            #    D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)
            K = self.n_ctx[m - 1]
            tot = np.bincount(cid, weights=adj, minlength=K)  # (K,)
            d_each = d[np.minimum(adj, 3) - 1]  # D(a) for every m-gram, (N,)
            removed = np.bincount(cid, weights=d_each, minlength=K)  # (K,)
            # 4. alpha: the discounted share of each seen (h, w); gamma(h): the removed mass,
            #    which is exactly the weight the lower order gets, so each row still sums to 1
            self.adj_counts.append(adj)
            self.discounts.append(d)
            self.alpha.append(np.maximum(adj - d_each, 0.0) / tot[cid])
            self.gamma.append(removed / tot)

    def _probs(self, cids: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        # the recursion bottoms out in the uniform distribution P_0 = 1/V ...
        p = np.full(len(w), 1.0 / self.V)
        # ... and climbs one order at a time, each order interpolating with the one below
        for m in range(1, len(cids) + 1):
            cid = cids[m - 1]  # id of the context of length m-1; -1 where it was never seen
            seen = cid >= 0
            # the discounted share of (h, w): 0 where that m-gram was never seen
            alpha = self._find(self.ng_keys[m - 1], self.alpha[m - 1], cid * self.V + w, seen)
            # the back-off weight gamma(h): the mass the discounts freed in context h
            gamma = self.gamma[m - 1][np.maximum(cid, 0)]
            # P_m = alpha + gamma * P_{m-1}; a context never seen passes P_{m-1} through
            p = np.where(seen, alpha + gamma * p, p)
        return p
