"""Static word vectors and how they are judged: neighbours, analogies, similarity benchmarks.

`KeyedVectors` is a small stand-in for gensim's class of the same name: a (V, D) matrix, the words
(most frequent first), cosine `similarity`, `most_similar`, and `analogy` by 3CosAdd,

    argmax_x  cos(x, b) - cos(x, a) + cos(x, c)     over x not in {a, b, c}

("a is to b as c is to ?", Mikolov et al. 2013). The evaluations follow gensim's
`evaluate_word_pairs` / `evaluate_word_analogies` so that numbers are comparable: words are matched
case-insensitively, only the `restrict_vocab` most frequent words take part (an analogy whose four
words are not all among them is skipped and counts against coverage), and similarity is scored
by Spearman's rank correlation with the human judgements. Spearman is computed here with numpy
(ranks with ties averaged, then Pearson on the ranks) so that scipy is not needed.

`evaluate_groups` is a small-corpus check of our own: do words of the same hand-made group (numbers,
family, body parts) lie closer together than words of different groups?

Left out: 3CosMul (Levy & Goldberg 2014), and the "dummy4unknown" option (OOV counted as wrong).
References: Finkelstein et al. 2002 (WordSim-353); Hill et al. 2015 (SimLex-999).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


class KeyedVectors:
    """Word vectors with lookup; `words` should be sorted by decreasing frequency."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray, counts: np.ndarray | None = None):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(words) != len(vectors):
            raise ValueError(f"{len(words)} words but vectors of shape {vectors.shape}")
        self.words = list(words)
        self.vectors = vectors  # (V, D)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.counts = None if counts is None else np.asarray(counts)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit = vectors / np.maximum(norms, 1e-12)  # (V, D) rows of length 1
        # filled in by training: (words processed, mean loss per pair) per chunk, and the speed
        self.history: list[tuple[int, float]] = []
        self.train_seconds: float | None = None
        self.words_per_second: float | None = None

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.index[word]]

    def similarity(self, w1: str, w2: str) -> float:
        return float(self.unit[self.index[w1]] @ self.unit[self.index[w2]])

    def _top(self, query: np.ndarray, exclude: Iterable[int], topn: int, restrict: int | None):
        unit = self.unit if restrict is None else self.unit[:restrict]
        scores = unit @ (query / max(float(np.linalg.norm(query)), 1e-12))  # (V,)
        for i in exclude:
            if i < len(scores):
                scores[i] = -np.inf
        top = np.argsort(-scores, kind="stable")[:topn]
        return [(self.words[i], float(scores[i])) for i in top]

    def most_similar(
        self, word: str, topn: int = 10, restrict_vocab: int | None = None
    ) -> list[tuple[str, float]]:
        """The `topn` nearest words by cosine, the word itself excluded."""
        i = self.index[word]
        return self._top(self.unit[i], [i], topn, restrict_vocab)

    def analogy(
        self, a: str, b: str, c: str, *, topn: int = 1, restrict_vocab: int | None = None
    ) -> list[tuple[str, float]]:
        """a : b :: c : ?  by 3CosAdd, excluding a, b, c. Scores are cosines with the unit-normed b - a + c."""
        ia, ib, ic = self.index[a], self.index[b], self.index[c]
        query = self.unit[ib] - self.unit[ia] + self.unit[ic]
        return self._top(query, [ia, ib, ic], topn, restrict_vocab)


# ----------------------------------------------------------------------------- rank statistics


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks (scipy's 'average' method)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # a new group starts wherever the sorted value changes
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + 1 + ends) / 2.0  # average of ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc**2).sum() * (yc**2).sum())
    return float((xc * yc).sum() / denom) if denom > 0 else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the (tie-averaged) ranks."""
    return pearson(rankdata(x), rankdata(y))


# ----------------------------------------------------------------------------- benchmarks


def _ok_vocab(kv: KeyedVectors, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
    keys = kv.words[:restrict_vocab]
    # reversed, so that of several case variants the most frequent one wins (as in gensim)
    if case_insensitive:
        return {w.upper(): kv.index[w] for w in reversed(keys)}
    return {w: kv.index[w] for w in reversed(keys)}


@dataclass
class SimilarityResult:
    spearman: float  # rank correlation between cosine and human scores, over covered pairs
    pearson: float
    coverage: float  # fraction of pairs with both words in the (restricted) vocabulary
    n_used: int
    n_total: int


def evaluate_similarity(
    kv: KeyedVectors,
    pairs: Iterable[tuple[str, str, float]],
    *,
    restrict_vocab: int = 300_000,
    case_insensitive: bool = True,
) -> SimilarityResult:
    """Correlate cosine similarity with human judgements (WordSim-353, SimLex-999, ...)."""
    ok = _ok_vocab(kv, restrict_vocab, case_insensitive)
    norm = (lambda w: w.upper()) if case_insensitive else (lambda w: w)
    human, model, n_total = [], [], 0
    for w1, w2, score in pairs:
        n_total += 1
        a, b = ok.get(norm(w1)), ok.get(norm(w2))
        if a is None or b is None:
            continue
        human.append(float(score))
        model.append(float(kv.unit[a] @ kv.unit[b]))
    if len(human) < 2:
        return SimilarityResult(
            float("nan"), float("nan"), len(human) / max(n_total, 1), len(human), n_total
        )
    return SimilarityResult(
        spearman(model, human), pearson(model, human), len(human) / n_total, len(human), n_total
    )


@dataclass
class AnalogyResult:
    accuracy: (
        float  # correct / evaluated (questions with all four words in the restricted vocabulary)
    )
    coverage: float  # evaluated / all questions
    correct: int
    evaluated: int
    n_total: int
    sections: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # name -> (correct, evaluated)


def evaluate_analogies(
    kv: KeyedVectors,
    sections: Mapping[str, Sequence[Sequence[str]]],
    *,
    restrict_vocab: int = 30_000,
    case_insensitive: bool = True,
    batch: int = 256,
) -> AnalogyResult:
    """3CosAdd accuracy on analogy questions {section: [(a, b, c, expected), ...]}, answers searched
    among the `restrict_vocab` most frequent words (gensim's default there is 300000; the original
    C tool and most papers use 30000)."""
    ok = _ok_vocab(kv, restrict_vocab, case_insensitive)
    norm = (lambda w: w.upper()) if case_insensitive else (lambda w: w)
    unit = kv.unit[: min(restrict_vocab, len(kv))]  # (R, D)
    per_section, n_total = {}, 0
    for name, questions in sections.items():
        rows = []
        for q in questions:
            n_total += 1
            idx = [ok.get(norm(w)) for w in q]
            if None not in idx:
                rows.append(idx)
        correct = 0
        q_idx = np.array(rows, dtype=np.int64).reshape(-1, 4)  # (Q, 4): a, b, c, expected
        for s in range(0, len(q_idx), batch):
            a, b, c, d = q_idx[s : s + batch].T
            scores = (unit[b] - unit[a] + unit[c]) @ unit.T  # (q, R)
            r = np.arange(len(a))
            scores[r, a] = scores[r, b] = scores[r, c] = -np.inf
            correct += int((scores.argmax(1) == d).sum())
        per_section[name] = (correct, len(q_idx))
    correct = sum(c for c, _ in per_section.values())
    evaluated = sum(n for _, n in per_section.values())
    return AnalogyResult(
        correct / max(evaluated, 1),
        evaluated / max(n_total, 1),
        correct,
        evaluated,
        n_total,
        per_section,
    )


# Groups for `evaluate_groups`, chosen from words that both the news (lee) and Shakespeare use often.
WORD_GROUPS: dict[str, list[str]] = {
    "numbers": "two three four five six seven eight ten twenty hundred thousand".split(),
    "family": "father mother son daughter brother sister wife husband uncle cousin child".split(),
    "rank": "king queen prince princess duke duchess lord lady earl emperor".split(),
    "body": "eye eyes hand hands head heart face lips tongue cheek arm".split(),
    "time": "day night morning morrow hour year week month today tonight".split(),
    "animals": "horse dog lion wolf bird fox ass snake bear".split(),
    "colours": "red white black green".split(),
}


@dataclass
class GroupResult:
    accuracy: float  # P(cos(w, same-group word) > cos(w, other-group word)); random vectors: 0.5
    coverage: float  # fraction of the groups' words found in the vocabulary
    n_words: int  # words that took part
    per_group: dict[str, float] = field(default_factory=dict)  # the accuracy of each group's words


def evaluate_groups(
    kv: KeyedVectors, groups: Mapping[str, Sequence[str]], min_words: int = 3
) -> GroupResult:
    """How well cosine similarity sorts words into hand-made groups (numbers, family, ...).

    For every word w, every other word u of its group and every word x of another group, count
    whether cos(w, u) > cos(w, x) (ties count half), averaged per w and then over all words: the
    area under the ROC curve of "same group?" scored by cosine. Random vectors score 0.5, perfect
    groups 1.0. Only groups with at least `min_words` words in the vocabulary take part. Unlike
    WordSim-353 it needs no rare words, so it still says something on a corpus of 300k words.

    >>> kv = KeyedVectors(["one", "two", "cat", "dog"], np.array([[1, 0], [1, .1], [0, 1], [.1, 1]]))
    >>> evaluate_groups(kv, {"numbers": ["one", "two"], "animals": ["cat", "dog"]}, min_words=2).accuracy
    1.0
    """
    words, labels, n_asked = [], [], 0
    for name, members in groups.items():
        n_asked += len(members)
        found = [w for w in members if w in kv]
        if len(found) >= min_words:
            words += found
            labels += [name] * len(found)
    if len(set(labels)) < 2:
        return GroupResult(float("nan"), len(words) / max(n_asked, 1), len(words))
    unit = kv.unit[[kv.index[w] for w in words]]  # (N, D)
    sims = unit @ unit.T  # (N, N) cosines
    lab = np.array(labels)
    per_word = []
    for i in range(len(words)):
        same, other = lab == lab[i], lab != lab[i]
        same[i] = False  # a word is not its own group-mate
        s, o = sims[i, same][:, None], sims[i, other][None, :]  # (n_same, 1), (1, n_other)
        per_word.append(float(((s > o) + 0.5 * (s == o)).mean()))
    per_word_arr = np.array(per_word)
    per_group = {g: float(per_word_arr[lab == g].mean()) for g in dict.fromkeys(labels)}
    return GroupResult(float(per_word_arr.mean()), len(words) / n_asked, len(words), per_group)
