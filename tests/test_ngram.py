"""Tests for llmcourse.ngram and llmcourse.smoothing: nltk.lm reference, properties, hand-derived KN."""

from __future__ import annotations

import math
import random
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcourse.ngram import BOS, EOS, UNK, AddK, Laplace, NGramLM, NGramConfig, NGramVocab
from llmcourse.smoothing import Interpolated, KneserNey, estimate_discounts

nltk_lm = pytest.importorskip("nltk.lm")


def zipf_corpus(seed: int, n_sent: int, alphabet: int = 12) -> list[list[str]]:
    """Random sentences over a small Zipf-distributed alphabet (so some n-grams repeat a lot)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(alphabet)]
    p = 1.0 / np.arange(1, alphabet + 1)
    p /= p.sum()
    return [list(rng.choice(words, size=rng.integers(0, 8), p=p)) for _ in range(n_sent)]


def padded_everygrams(sent: list[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of every order 1..n ending at each token our model predicts (words and `</s>`)."""
    padded = [BOS] * (n - 1) + sent + [EOS]
    return [
        tuple(padded[i - m + 1 : i + 1]) for i in range(n - 1, len(padded)) for m in range(1, n + 1)
    ]


def make_nltk(cls, model: NGramLM, train: list[list[str]], **kw):
    """nltk.lm fitted on exactly the n-grams our model counts.

    How the set-up matches ours:
    * nltk's `padded_everygram_pipeline` pads with n-1 `</s>` on the right and also counts `<s>`
      as a unigram; we pass nltk our n-grams instead (n-1 `<s>` left, one `</s>`, only n-grams that
      end at a predicted token), so every count c(h, w) and c(h) agrees.
    * nltk's `len(vocab)` (the V of Lidstone) is its known words plus its unk label. We give it our
      outcomes minus `<unk>` and `unk_label="<unk>"`, so both V's are the same number.
    * `<s>` is therefore unknown to nltk and its lookup turns it into `<unk>`, in the counts and in
      every query context alike. That is harmless here because the training data has no OOV word
      (min_count=1), so `<unk>` never occurs in a real context: the renaming is one-to-one.
    """
    words = [w for w in model.vocab.itos if w != UNK]
    vocab = nltk_lm.Vocabulary(words, unk_cutoff=1, unk_label=UNK)
    lm = cls(order=model.n, vocabulary=vocab, **kw)
    lm.fit([padded_everygrams(s, model.n) for s in train])
    assert len(lm.vocab) == model.V
    return lm


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("kind", ["mle", "lidstone", "laplace"])
def test_matches_nltk(n, kind):
    train, test = zipf_corpus(0, 60), zipf_corpus(1, 20, alphabet=14)  # w12, w13 are OOV
    if kind == "mle":
        ours = NGramLM(n).fit(train)
        ref = make_nltk(nltk_lm.MLE, ours, train)
    elif kind == "lidstone":
        ours = AddK(n, k=0.37).fit(train)
        ref = make_nltk(nltk_lm.Lidstone, ours, train, gamma=0.37)
    else:
        ours = Laplace(n).fit(train)
        ref = make_nltk(nltk_lm.Laplace, ours, train)
    seen_ctx = {g[:-1] for s in train for g in padded_everygrams(s, n) if len(g) == n}
    test_ctx = {g[:-1] for s in test for g in padded_everygrams(s, n) if len(g) == n}
    queries = sorted(ours.vocab.itos) + ["w12", "zzz"]
    checked = 0
    for ctx in sorted(seen_ctx | test_ctx):
        has_oov = any(t not in ours.vocab.stoi for t in ctx)
        if has_oov or (kind == "mle" and ctx not in seen_ctx):
            continue  # nltk's MLE gives 0 for every word after an unseen context; ours uniform
        for w in queries:
            a, b = ours.prob(w, ctx), ref.score(w, ctx)
            assert a == pytest.approx(b, rel=1e-9, abs=0), (ctx, w)
            checked += 1
    assert checked > (10 if n == 1 else 100)
    if kind != "mle":  # held-out perplexity, identical up to float rounding (nltk uses 2**entropy)
        test_ngrams = [g for s in test for g in padded_everygrams(s, n) if len(g) == n]
        test_no_oov = [s for s in test if all(t in ours.vocab.stoi for t in s)]
        ngrams_no_oov = [g for s in test_no_oov for g in padded_everygrams(s, n) if len(g) == n]
        assert ours.perplexity(test_no_oov) == pytest.approx(
            ref.perplexity(ngrams_no_oov), rel=1e-9
        )
        assert len(test_ngrams) > len(ngrams_no_oov) > 0


METHODS = {
    "mle": lambda n, mc: NGramLM(n, min_count=mc),
    "addk": lambda n, mc: AddK(n, k=0.1, min_count=mc),
    "interp": lambda n, mc: Interpolated(n, min_count=mc),
    "kn_modified": lambda n, mc: KneserNey(n, min_count=mc),
    "kn_plain": lambda n, mc: KneserNey(n, modified=False, min_count=mc),
    "kn_fixed": lambda n, mc: KneserNey(n, discount=0.75, min_count=mc),
}

tokens = st.sampled_from(["a", "b", "c", "d", "e"])
corpora = st.lists(st.lists(tokens, min_size=0, max_size=7), min_size=1, max_size=8)
contexts = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "zz", BOS, UNK]), max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    corpus=corpora,
    n=st.integers(1, 4),
    min_count=st.integers(1, 2),
    method=st.sampled_from(sorted(METHODS)),
    ctxs=st.lists(contexts, min_size=1, max_size=4),
)
def test_distributions_sum_to_one(corpus, n, min_count, method, ctxs):
    """Every method, every context (seen, unseen, OOV, shorter than n-1): a distribution over V."""
    lm = METHODS[method](n, min_count).fit(corpus)
    for ctx in ctxs + [[BOS] * (n - 1)]:
        p = lm.prob_dist(ctx)
        assert p.shape == (len(lm.vocab),)
        assert (p >= 0).all()
        assert p.sum() == pytest.approx(1.0, abs=1e-9)
        w = random.Random(len(ctx)).randrange(len(lm.vocab))
        assert lm.prob(lm.vocab.itos[w], ctx) == pytest.approx(p[w], rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(corpus=corpora, n=st.integers(1, 4))
def test_counts_match_counter(corpus, n):
    """The vectorised counts equal a plain Counter over padded n-gram tuples, at every order."""
    lm = NGramLM(n).fit(corpus)
    for m in range(1, n + 1):
        ref = Counter(g for s in corpus for g in padded_everygrams(s, n) if len(g) == m)
        assert lm.counts(m) == ref


def test_kneser_ney_by_hand():
    """Interpolated KN, n=2, one fixed discount D = 1/2, on three sentences: "a b", "b b", "a c".

    Outcomes (V = 5): <unk>, </s>, a, b, c. Padded: <s> a b </s> | <s> b b </s> | <s> a c </s>.
    Bigram counts (top order, raw): (<s>,a)=2 (<s>,b)=1 (a,b)=1 (a,c)=1 (b,</s>)=2 (b,b)=1 (c,</s>)=1.

    Unigram continuation counts N1+(. w), the distinct left neighbours among the 7 bigram types:
        a: {<s>} = 1,  b: {a, <s>, b} = 3,  c: {a} = 1,  </s>: {b, c} = 2,  <unk>: 0;  total 7.
    Unigram level, interpolated with the uniform 1/5; backoff weight gamma() = D * 4 types / 7 = 2/7:
        P1(a) = (1 - 1/2)/7 + 2/7 * 1/5 = 9/70     P1(b) = (3 - 1/2)/7 + 2/35 = 29/70
        P1(c) = 9/70    P1(</s>) = (2 - 1/2)/7 + 2/35 = 19/70    P1(<unk>) = 2/35 = 4/70   (sum 70/70)
    Bigram level after "b": c(b .) = 3 over 2 types, gamma(b) = D * 2 / 3 = 1/3:
        P(</s>|b) = (2 - 1/2)/3 + 1/3 * 19/70 = 62/105     P(b|b) = (1 - 1/2)/3 + 1/3 * 29/70 = 32/105
        P(a|b) = P(c|b) = 1/3 * 9/70 = 3/70                P(<unk>|b) = 1/3 * 4/70 = 2/105
    After "<s>": c(<s> .) = 3 over 2 types, gamma(<s>) = 1/3: P(a|<s>) = (2 - 1/2)/3 + 1/3 * 9/70 = 19/35.
    After an unseen context ("zzz" -> <unk>, never a context): P(w|<unk>) = P1(w).
    """
    lm = KneserNey(2, discount=0.5).fit([["a", "b"], ["b", "b"], ["a", "c"]])
    F = Fraction
    expected = {
        (("b",), EOS): F(62, 105),
        (("b",), "b"): F(32, 105),
        (("b",), "a"): F(3, 70),
        (("b",), "c"): F(3, 70),
        (("b",), UNK): F(2, 105),
        ((BOS,), "a"): F(19, 35),
        (("zzz",), "b"): F(29, 70),
        (("zzz",), EOS): F(19, 70),
        ((), "a"): F(9, 70),
        ((), UNK): F(4, 70),
    }
    for (ctx, w), p in expected.items():
        assert lm.prob(w, ctx) == pytest.approx(float(p), rel=1e-12), (ctx, w)
    assert list(lm.gamma[0]) == pytest.approx([2 / 7])  # the empty context
    assert sorted(lm.adj_counts[0].tolist()) == [1, 1, 2, 3]  # continuation counts of a, c, </s>, b


def test_modified_discounts_formula():
    """Chen & Goodman: n1=4, n2=2, n3=1, n4=1 -> Y = 4/(4+4) = 1/2,
    D1 = 1 - 2*Y*2/4 = 1/2,  D2 = 2 - 3*Y*1/2 = 5/4,  D3+ = 3 - 4*Y*1/1 = 1; plain KN: D = Y = 1/2."""
    counts = np.array([1, 1, 1, 1, 2, 2, 3, 4, 7])
    assert estimate_discounts(counts, modified=True) == pytest.approx([0.5, 1.25, 1.0])
    assert estimate_discounts(counts, modified=False) == pytest.approx([0.5, 0.5, 0.5])


def test_kn_keeps_raw_counts_after_bos():
    """Lower-order n-grams starting with <s> use raw counts (nothing precedes <s>), others
    continuation counts: in "<s> <s> a x" x3, bigram (<s>, a) is counted 3 times, not once."""
    lm = KneserNey(3).fit([["a", "x"]] * 3 + [["b", "a"]])
    raw = lm.counts(2)  # built in key order, the order of adj_counts
    adj = {g: int(a) for g, a in zip(raw.keys(), lm.adj_counts[1])}
    assert adj[(BOS, "a")] == raw[(BOS, "a")] == 3
    assert adj[("a", "x")] == 1 and raw[("a", "x")] == 3  # continuation: only "<s> a x"


def test_uniform_perplexity_is_vocab_size():
    corpus = zipf_corpus(2, 30)
    lm = Interpolated(3, lambdas=[1.0, 0.0, 0.0, 0.0]).fit(corpus)
    assert lm.perplexity(zipf_corpus(3, 10)) == pytest.approx(len(lm.vocab), rel=1e-12)
    big_k = AddK(2, k=1e12).fit(corpus)  # add-k with k -> infinity tends to uniform
    assert big_k.perplexity(zipf_corpus(3, 10)) == pytest.approx(len(big_k.vocab), rel=1e-6)


def test_lambdas_em_improves_heldout():
    train, val = zipf_corpus(4, 200), zipf_corpus(5, 50)
    lm = Interpolated(3).fit(train)
    before = lm.perplexity(val)
    lam = lm.fit_lambdas(val)
    assert lam.sum() == pytest.approx(1.0) and (lam >= 0).all()
    assert lm.perplexity(val) <= before + 1e-9


@pytest.mark.parametrize("make_gen", [random.Random, np.random.default_rng])
def test_sampling_reproducible(make_gen):
    lm = KneserNey(3).fit(zipf_corpus(6, 100))
    a = [lm.sample(make_gen(7), max_len=12), lm.sample(make_gen(8), max_len=12)]
    b = [lm.sample(make_gen(7), max_len=12), lm.sample(make_gen(8), max_len=12)]
    assert a == b
    assert all(len(s) <= 12 and set(s) <= set(lm.vocab.itos) - {EOS} for s in a)
    many = [lm.sample(make_gen(s), 12) for s in range(20)]
    assert len({tuple(s) for s in many}) > 1


def test_unk_mapping():
    corpus = [["the", "cat", "sat"], ["the", "dog", "sat"], ["a", "cat", "ran"]]
    vocab = NGramVocab.from_sentences(corpus, min_count=2)
    assert set(vocab.itos) == {UNK, EOS, "the", "cat", "sat"} and vocab.lookup("dog") == 0
    lm = AddK(2, k=0.5, min_count=2).fit(corpus)
    assert lm.counts(1)[(UNK,)] == 3  # dog, a, ran
    assert lm.prob("zebra", ["the"]) == lm.prob(UNK, ["the"]) == lm.prob("dog", ["the"])
    assert (
        lm.prob("sat", ["dog"]) == lm.prob("sat", [UNK]) == pytest.approx((1 + 0.5) / (3 + 0.5 * 5))
    )


def test_mle_and_config():
    lm = NGramLM(2).fit([["a", "b"], ["a", "a"]])
    assert lm.prob("b", ["a"]) == pytest.approx(1 / 3) and lm.prob("a", [BOS]) == 1.0
    assert math.isinf(lm.perplexity([["b", "b"]]))  # (b, b) never seen: MLE gives 0
    assert lm.prob_dist(["zzz"]) == pytest.approx(np.full(4, 0.25))  # unseen context: uniform
    smoke, full = NGramConfig.for_size("smoke"), NGramConfig.for_size("full")
    assert smoke.max_tokens < full.max_tokens


def test_exercises_registered():
    from llmcourse.course import exercises
    from llmcourse.course.exercise_sets.nb01 import add_k_prob, continuation_count, perplexity_of

    for name, fn in [
        ("01.add_k_prob", add_k_prob),
        ("01.perplexity", perplexity_of),
        ("01.continuation_count", continuation_count),
    ]:
        exercises.check(name, fn, trials=3, seed=0)
    with pytest.raises(
        exercises.ExerciseError
    ):  # counting bigram tokens instead of distinct left words
        exercises.check(
            "01.continuation_count", lambda b, w: sum(x == w for _, x in b), trials=5, seed=0
        )


def test_ngram_vocab_is_the_course_vocab_with_the_old_ids():
    """One Vocab (`llmcourse.data.vocab`): the n-gram ids are those of the n-gram models' former own class,
    <unk> 0, </s> 1, words by count with ties in order of first appearance, <s> = len(vocab) as a context."""
    from llmcourse.data.vocab import Vocab

    corpus = [["b", "a", "<s>", "c"], ["a", "b", "</s>", "<unk>", "d", "c"]]
    vocab = NGramVocab.from_sentences(corpus)
    assert isinstance(vocab, Vocab) and vocab.itos == [
        UNK,
        EOS,
        "b",
        "a",
        "c",
        "d",
    ]  # most_common order
    assert vocab.counts == [0, 0, 2, 2, 2, 1] and len(vocab) == 6 and vocab.bos_id == 6
    assert [vocab.lookup(t) for t in (BOS, "zebra", "d")] == [6, 0, 5]
    assert NGramLM(2).fit(corpus).vocab.itos == vocab.itos
