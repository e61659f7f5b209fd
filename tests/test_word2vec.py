"""Tests for llmcourse.word2vec and llmcourse.tasks.embeddings_eval.

Hand-derived objective and evaluation cases, statistical tests of the data pipeline (subsampling,
dynamic window, noise distribution) with stated tolerances, gensim as the reference for the
subsampling formula and the evaluation protocol, and learning on a corpus with planted topics.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from llmcourse.tasks.embeddings_eval import (
    WORD_GROUPS,
    KeyedVectors,
    evaluate_analogies,
    evaluate_groups,
    evaluate_similarity,
    rankdata,
    spearman,
)
from llmcourse.word2vec import (
    Trainer,
    Word2VecConfig,
    build_vocab,
    chunk_items,
    encode,
    context_windows,
    keep_probabilities,
    load_corpus,
    negative_sampling_loss,
    noise_distribution,
    sgns_gradients,
    skipgram_pairs,
    subsample,
    train_word2vec,
)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# ----------------------------------------------------------------------------- the objective


def test_negative_sampling_loss_equals_formula_on_hand_made_vectors():
    """v = (1, 0), u_pos = (2, 0): u_pos·v = 2. Negatives (0, 1) and (-1, 0): scores 0 and -1.
    L = -log σ(2) - log σ(-0) - log σ(1) = -log σ(2) + log 2 - log σ(1)."""
    v = torch.tensor([[1.0, 0.0]])
    u_pos = torch.tensor([[2.0, 0.0]])
    u_neg = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    expected = -log_sigmoid(2.0) + math.log(2.0) - log_sigmoid(1.0)
    got = negative_sampling_loss(v, u_pos, u_neg)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    loss, _, _ = sgns_gradients(v, torch.cat([u_pos[:, None], u_neg], 1))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hand_gradients_equal_autograd():
    g = torch.Generator().manual_seed(0)
    B, K, D = 7, 4, 6
    v = torch.randn(B, D, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(B, 1 + K, D, generator=g, dtype=torch.float64, requires_grad=True)
    negative_sampling_loss(v, u[:, 0], u[:, 1:]).sum().backward()
    loss, gv, gu = sgns_gradients(v.detach(), u.detach())
    torch.testing.assert_close(gv, v.grad)
    torch.testing.assert_close(gu, u.grad)
    torch.testing.assert_close(loss, negative_sampling_loss(v, u[:, 0], u[:, 1:]).detach())


def test_weight_zero_removes_a_term():
    g = torch.Generator().manual_seed(1)
    v, u = torch.randn(3, 5, generator=g), torch.randn(3, 3, 5, generator=g)
    w = torch.ones(3, 3)
    w[:, 2] = 0.0
    loss_w, gv_w, gu_w = sgns_gradients(v, u, w)
    loss, gv, _ = sgns_gradients(v, u[:, :2])
    torch.testing.assert_close(loss_w, loss)
    torch.testing.assert_close(gv_w, gv)
    assert torch.all(gu_w[:, 2] == 0)


# ----------------------------------------------------------------------------- the pipeline


def test_every_pair_is_within_the_window_and_the_sentence():
    rng = np.random.default_rng(0)
    n, W = 3000, 4
    ids = rng.integers(0, 50, size=n)
    sent = np.sort(rng.integers(0, 60, size=n))  # sentences of random lengths
    ctx, valid = context_windows(ids, sent, W, rng=rng, pad=-1)
    offsets = [d for d in range(-W, W + 1) if d != 0]
    for k, d in enumerate(offsets):
        i = np.flatnonzero(valid[:, k])
        assert np.all((i + d >= 0) & (i + d < n))
        assert np.all(sent[i + d] == sent[i])
        assert np.all(ctx[i, k] == ids[i + d])
        assert np.all(ctx[~valid[:, k], k] == -1)
    # a centre's context is symmetric: b_i cuts both sides alike (away from sentence ends)
    inner = (sent == np.roll(sent, W)) & (sent == np.roll(sent, -W))
    inner[:W] = inner[-W:] = False
    left, right = valid[inner, :W].sum(1), valid[inner, W:].sum(1)
    assert np.array_equal(left, right)
    centres, contexts = skipgram_pairs(ctx, valid, ids)
    assert len(centres) == len(contexts) == valid.sum()


def test_dynamic_window_is_uniform():
    """In one long sentence an inner centre with reduced window b has 2b context words, so b is
    read off each row; P(b) = 1/W each. With N = 60000 the standard error of a share is
    sqrt(0.2*0.8/60000) = 0.0016; we allow 0.01 (6 sigma). Offset d is then used with
    probability (W - |d| + 1)/W."""
    W, n = 5, 60_000
    rng = np.random.default_rng(1)
    ids = np.zeros(n, dtype=np.int64)
    _, valid = context_windows(ids, np.zeros(n, dtype=np.int64), W, rng=rng, pad=-1)
    b = valid[W:-W].sum(1) // 2
    shares = np.bincount(b, minlength=W + 1)[1:] / len(b)
    np.testing.assert_allclose(shares, 1 / W, atol=0.01)
    use = valid[W:-W].mean(0)  # columns d = -W..-1, 1..W
    expected = [(W - abs(d) + 1) / W for d in range(-W, W + 1) if d != 0]
    np.testing.assert_allclose(use, expected, atol=0.01)


def test_subsampling_formula_and_rate():
    """With t = 1e-3: a word of frequency f = 0.5 is kept with sqrt(0.002) + 0.002 = 0.04672;
    a word with f <= t is always kept (sqrt(t/f) + t/f >= 2). Empirical rate over 200000 draws
    has standard error 0.00047; tolerance 0.003."""
    counts = np.array([500_000, 300_000, 199_000, 1000])  # f = 0.5, 0.3, 0.199, 0.001
    p = keep_probabilities(counts, 1e-3)
    assert p[0] == pytest.approx(math.sqrt(0.002) + 0.002)
    assert p[3] == 1.0
    assert np.all(np.diff(p) > 0)  # the more frequent, the more dropped
    rng = np.random.default_rng(2)
    ids = np.repeat(np.arange(4), 200_000)
    kept = subsample(ids, p, rng)
    rates = np.array([kept[ids == w].mean() for w in range(4)])
    np.testing.assert_allclose(rates, p, atol=0.003)
    assert rates[3] == 1.0
    assert np.all(keep_probabilities(counts, 0.0) == 1.0)


def test_subsampling_matches_gensim():
    gensim = pytest.importorskip("gensim")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    weights = [1.0 / (i + 1) ** 1.2 for i in range(40)]
    sentences = [rng.choices(words, weights, k=20) for _ in range(400)]
    model = gensim.models.Word2Vec(vector_size=4, min_count=3, sample=1e-2, workers=1)
    model.build_vocab(sentences)
    vocab = build_vocab(sentences, 3)
    ours = keep_probabilities(vocab.counts, 1e-2)
    theirs = [model.wv.get_vecattr(w, "sample_int") / (2**32 - 1) for w in vocab.itos]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert ours.min() < 0.5  # the test exercises the formula, not only the clip at 1


def test_build_vocab_is_the_course_vocab_without_specials():
    """One Vocab (`llmcourse.data.vocab`): words by count, ties alphabetical, counts aligned with the ids,
    no <unk> (a word below min_count, or never seen, is dropped from the stream, not mapped)."""
    from llmcourse.data.vocab import Vocab

    sentences = [["b", "a", "b"], ["c", "a", "d", "<unk>"], ["zz"], ["zz"]]
    vocab = build_vocab(sentences, 1)
    assert isinstance(vocab, Vocab) and vocab.specials == [] and vocab.unk_id is None
    assert vocab.itos == ["a", "b", "zz", "<unk>", "c", "d"] and vocab.counts == [2, 2, 2, 1, 1, 1]
    ids, sent = encode([["a", "q", "zz"]], build_vocab(sentences, 2))
    assert ids.tolist() == [0, 2] and sent.tolist() == [0, 0]


def test_negatives_follow_unigram_to_the_three_quarters():
    """8 words with counts 1..8^2: P(w) ∝ count^0.75. 200000 draws: tolerance 0.004 per share."""
    counts = np.arange(1, 9) ** 2
    vocab = build_vocab([[f"w{i}"] * int(c) for i, c in enumerate(counts)], 1)
    tr = Trainer(vocab, Word2VecConfig(dim=2, negative=5), torch.Generator().manual_seed(0))
    draws = tr.negatives(40_000, torch.Generator().manual_seed(1)).flatten().numpy()
    shares = np.bincount(draws, minlength=len(counts)) / len(draws)
    np.testing.assert_allclose(shares, noise_distribution(vocab.counts), atol=0.004)


# ----------------------------------------------------------------------------- learning


def two_topic_corpus(seed: int, n_sent: int = 600) -> list[list[str]]:
    rng = random.Random(seed)
    topics = [[f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]]
    return [rng.choices(topics[rng.random() < 0.5], k=8) for _ in range(n_sent)]


@pytest.mark.parametrize("sg", [True, False])
def test_learning_recovers_planted_topics(sg: bool):
    """Sentences use words of one topic only. After training, each word's 5 nearest neighbours
    should come from its own topic (chance would be 7/15 ≈ 0.47), and the loss should fall."""
    sentences = two_topic_corpus(0)
    cfg = Word2VecConfig(
        dim=16,
        window=3,
        negative=5,
        min_count=1,
        sample=0.0,
        epochs=6,
        lr=0.025,
        batch_size=256,
        sg=sg,
        seed=0,
        workers=1,
        chunk_tokens=1200,
    )
    kv = train_word2vec(sentences, cfg)
    same = [n[0] == w[0] for w in kv.words for n, _ in kv.most_similar(w, 5)]
    assert np.mean(same) >= 0.95
    losses = [loss for _, loss in kv.history]
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:2])
    assert kv.vectors.shape == (16, 16)


def test_cbow_items_keep_text_order_like_gensim():
    """gensim trains CBOW centre by centre in text order; shuffling a chunk's CBOW items instead cost
    about half of gensim's WordSim-353 score on lee+shakespeare (0.03 vs 0.07), so by default CBOW
    keeps text order and skip-gram (which matched gensim shuffled) keeps shuffling. Without
    subsampling every centre with a context is a target, in order; centres alone in their sentence
    (the 1-word sentence here) have no context and are dropped."""
    ids = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 2], dtype=np.int64)
    sent = np.array([0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2], dtype=np.int64)
    keep = np.ones(10)
    cbow = Word2VecConfig(window=2, sg=False)
    targets, inputs = chunk_items(ids, sent, keep, cfg=cbow, rng=np.random.default_rng(0), pad=10)
    assert targets.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 3, 2]
    assert inputs.shape == (11, 4)
    for t, row in zip(targets.tolist(), inputs.tolist()):  # contexts are the centre's neighbours
        pos = [i for i in range(len(ids)) if ids[i] == t and sent[i] != 1]
        assert any({c for c in row if c != 10} <= set(ids[max(p - 2, 0) : p + 3]) for p in pos)
    shuffled, _ = chunk_items(
        ids,
        sent,
        keep,
        cfg=Word2VecConfig(window=2, sg=False, shuffle=True),
        rng=np.random.default_rng(0),
        pad=10,
    )
    assert (
        sorted(shuffled.tolist()) == sorted(targets.tolist())
        and shuffled.tolist() != targets.tolist()
    )
    sg_targets, _ = chunk_items(
        ids, sent, keep, cfg=Word2VecConfig(window=2, sg=True), rng=np.random.default_rng(0), pad=10
    )
    sg_ordered, _ = chunk_items(
        ids,
        sent,
        keep,
        cfg=Word2VecConfig(window=2, sg=True, shuffle=False),
        rng=np.random.default_rng(0),
        pad=10,
    )
    assert (
        sorted(sg_targets.tolist()) == sorted(sg_ordered.tolist())
        and sg_targets.tolist() != sg_ordered.tolist()
    )


def test_training_is_deterministic_with_one_worker():
    sentences = two_topic_corpus(1, n_sent=100)
    cfg = Word2VecConfig(dim=8, min_count=1, epochs=1, workers=1, seed=3)
    a, b = train_word2vec(sentences, cfg), train_word2vec(sentences, cfg)
    np.testing.assert_array_equal(a.vectors, b.vectors)


# ----------------------------------------------------------------------------- evaluation


def toy_vectors() -> KeyedVectors:
    """man = e1, woman = e2, king = (e1 + e3)/√2, queen = (e2 + e3)/√2, apple = e4."""
    r = 1 / math.sqrt(2)
    vecs = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [r, 0, r, 0], [0, r, r, 0], [0, 0, 0, 1]])
    return KeyedVectors(
        ["man", "woman", "king", "queen", "apple"], vecs * 3.0
    )  # scale is irrelevant


def test_similarity_and_analogy_on_hand_made_vectors():
    """query = king - man + woman = (r-1, 1, r, 0) with r = 1/√2; cos(query, queen) =
    (r + r*r) / |query| with |query|² = (r-1)² + 1 + r²; apple is orthogonal, inputs excluded."""
    kv = toy_vectors()
    r = 1 / math.sqrt(2)
    assert kv.similarity("man", "king") == pytest.approx(r)
    assert kv.similarity("man", "apple") == pytest.approx(0.0)
    assert kv.most_similar("man", 1)[0] == ("king", pytest.approx(r))
    ((word, score),) = kv.analogy("man", "king", "woman")
    assert word == "queen"
    assert score == pytest.approx((r + r * r) / math.sqrt((r - 1) ** 2 + 1 + r * r), rel=1e-6)
    top = kv.analogy("man", "king", "woman", topn=2)
    assert [w for w, _ in top] == ["queen", "apple"]  # man, king, woman are never answers


def test_evaluate_analogies_counts_and_coverage():
    kv = toy_vectors()
    sections = {
        "royal": [("man", "king", "woman", "queen"), ("Man", "WOMAN", "king", "queen")],
        "fruit": [("man", "king", "woman", "apple"), ("man", "king", "zebra", "queen")],
    }
    res = evaluate_analogies(kv, sections)
    assert (res.correct, res.evaluated, res.n_total) == (2, 3, 4)
    assert res.accuracy == pytest.approx(2 / 3) and res.coverage == pytest.approx(3 / 4)
    assert res.sections == {"royal": (2, 2), "fruit": (0, 1)}
    assert evaluate_analogies(kv, sections, restrict_vocab=3).evaluated == 0  # queen is 4th
    assert evaluate_analogies(kv, sections, case_insensitive=False).evaluated == 2


def test_evaluate_similarity_by_hand():
    """Cosines: (man, king) = r, (woman, queen) = r, (man, woman) = 0, (king, queen) = 1/2.
    Human scores 9, 8, 1, 5 rank the pairs 4, 3, 1, 2; the cosines rank them 3.5, 3.5, 1, 2.
    Centred ranks (1, 1, -1.5, -.5) and (1.5, .5, -1.5, -.5): cov 4.5, sums of squares 4.5 and 5,
    so rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9). The pair with "zebra" is out of vocabulary."""
    kv = toy_vectors()
    pairs = [
        ("man", "king", 9.0),
        ("woman", "queen", 8.0),
        ("man", "woman", 1.0),
        ("king", "queen", 5.0),
        ("man", "zebra", 3.0),
    ]
    res = evaluate_similarity(kv, pairs)
    assert res.spearman == pytest.approx(math.sqrt(0.9))
    assert (res.n_used, res.n_total, res.coverage) == (4, 5, pytest.approx(0.8))


def test_evaluate_groups_by_hand():
    """Groups {man, woman} and {king, queen, apple}, toy vectors (cosines: man-woman 0, man-king r,
    man-queen 0, man-apple 0, woman-queen r, king-queen 1/2, apple orthogonal to all).
    man: mate woman (0) vs king (r), queen (0), apple (0): 0 wins, 2 ties -> 1/3.
    woman: mate man (0) vs king (0), queen (r), apple (0): 2 ties -> 1/3.
    king: mates queen (1/2), apple (0) vs man (r), woman (0): (0 + 1 + 0 + 0.5) / 4 = 3/8.
    queen: mates king (1/2), apple (0) vs man (0), woman (r): (1 + 0 + 0.5 + 0) / 4 = 3/8.
    apple: mates king, queen (0, 0) vs man, woman (0, 0): all ties -> 1/2.
    Mean over the five words: (1/3 + 1/3 + 3/8 + 3/8 + 1/2) / 5 = 23/60. "zebra" is missing."""
    kv = toy_vectors()
    groups = {"people": ["man", "woman"], "other": ["king", "queen", "apple", "zebra"]}
    res = evaluate_groups(kv, groups, min_words=2)
    assert res.accuracy == pytest.approx(23 / 60)
    assert (res.n_words, res.coverage) == (5, pytest.approx(5 / 6))
    other = (3 / 8 + 3 / 8 + 1 / 2) / 3
    assert res.per_group == {"people": pytest.approx(1 / 3), "other": pytest.approx(other)}
    assert math.isnan(
        evaluate_groups(kv, groups, min_words=3).accuracy
    )  # one group left: no contrast


def test_evaluate_groups_is_one_half_for_random_vectors_and_one_for_planted_groups():
    """Random vectors: chance, 0.5 (up to sampling noise). Vectors = group direction + small noise: 1.0."""
    words = [w for g in WORD_GROUPS.values() for w in g]
    rng = np.random.default_rng(0)
    scores = [
        evaluate_groups(
            KeyedVectors(words, rng.standard_normal((len(words), 50))), WORD_GROUPS
        ).accuracy
        for _ in range(20)
    ]
    assert abs(np.mean(scores) - 0.5) < 0.02
    centres = {g: rng.standard_normal(50) for g in WORD_GROUPS}
    planted = np.stack(
        [centres[g] + 0.1 * rng.standard_normal(50) for g, ws in WORD_GROUPS.items() for _ in ws]
    )
    assert evaluate_groups(KeyedVectors(words, planted), WORD_GROUPS).accuracy == 1.0


def test_load_corpus_caps_each_part():
    """Each part stops after the sentence that reaches max_words; 0 keeps everything."""
    lee = load_corpus("lee")
    capped = load_corpus("lee", max_words=1000)
    n = 0
    for k, s in enumerate(lee):
        n += len(s)
        if n >= 1000:
            break
    assert capped == lee[: k + 1]
    both = load_corpus("lee+lee", max_words=1000)
    assert both == capped + capped


def test_spearman_with_ties_by_hand():
    """x = (1, 2, 2, 3) ranks (1, 2.5, 2.5, 4); y = (1, 3, 2, 4) ranks (1, 3, 2, 4). Centred:
    (-1.5, 0, 0, 1.5) and (-1.5, .5, -.5, 1.5): cov 4.5, sums of squares 4.5 and 5, rho = sqrt(0.9)."""
    np.testing.assert_array_equal(rankdata([1, 2, 2, 3]), [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(rankdata([5, 5, 5]), [2, 2, 2])
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 50), rng.integers(0, 5, 50)  # many ties
    try:
        from scipy.stats import spearmanr
    except ImportError:  # scipy is optional; the hand cases above still ran
        spearmanr = None
    if spearmanr is not None:
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_evaluation_matches_gensim(tmp_path):
    """Same random vectors in gensim's KeyedVectors: evaluate_word_pairs (Spearman, OOV ratio) and
    evaluate_word_analogies (3CosAdd with restrict_vocab) must agree with ours."""
    gensim = pytest.importorskip("gensim")
    from llmcourse import data

    pairs = data.load_word_similarity("wordsim353")
    sections = {k: v[:60] for k, v in data.load_analogies().items()}
    words = sorted(
        {w.lower() for p in pairs for w in p[:2]}
        | {w.lower() for qs in sections.values() for q in qs for w in q}
    )
    rng = np.random.default_rng(0)
    random.Random(0).shuffle(words)
    words = words[: int(len(words) * 0.8)]  # some words missing, so coverage < 1
    vecs = rng.standard_normal((len(words), 12)).astype(np.float32)
    ours = KeyedVectors(words, vecs)
    theirs = gensim.models.KeyedVectors(12)
    theirs.add_vectors(words, vecs)

    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs))
    _, (rho, _), oov_percent = theirs.evaluate_word_pairs(str(tsv))
    res = evaluate_similarity(ours, pairs)
    assert res.spearman == pytest.approx(rho, abs=1e-6)
    assert 100 * (1 - res.coverage) == pytest.approx(oov_percent)

    qfile = tmp_path / "questions.txt"
    qfile.write_text(
        "".join(f": {k}\n" + "".join(" ".join(q) + "\n" for q in v) for k, v in sections.items())
    )
    for restrict in (len(words), 300):
        acc, secs = theirs.evaluate_word_analogies(str(qfile), restrict_vocab=restrict)
        mine = evaluate_analogies(ours, sections, restrict_vocab=restrict)
        total = secs[-1]
        assert mine.correct == len(total["correct"])
        assert mine.evaluated == len(total["correct"]) + len(total["incorrect"])
        assert mine.accuracy == pytest.approx(acc)
