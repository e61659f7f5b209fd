"""BERT's batch builders: masked-LM corruption (15% chosen, 80/10/10, specials and padding never
chosen) as properties, sentence pairs for NSP, padding, and the unigram baseline by hand."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcourse.mlm import (
    IGNORE,
    SpecialTokens,
    corrupt,
    mask_tokens,
    pack_pair,
    pad_batch,
    pretraining_batches,
    sentence_pair,
    unigram_baseline,
)
from llmcourse.runtime import make_generator
from llmcourse.data.vocab import WordVocab

# ids 0..4 are special (pad, unk, cls, sep, mask), 5.. are ordinary tokens
SP = SpecialTokens(pad=0, cls=2, sep=3, mask=4, vocab_size=50, ids=(0, 1, 2, 3, 4))


@st.composite
def batches(draw):
    """A (B, T) batch of ordinary tokens with random specials and trailing padding per row."""
    B, T = draw(st.integers(1, 6)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, SP.vocab_size, (B, T), generator=g)
    ids[torch.rand(B, T, generator=g) < draw(st.floats(0, 0.5))] = 1  # some [UNK]s
    ids[:, 0] = SP.cls
    for b in range(B):
        n_pad = int(torch.randint(0, T, (1,), generator=g))
        if n_pad:
            ids[b, T - n_pad :] = SP.pad
    return ids


@settings(max_examples=60, deadline=None)
@given(ids=batches(), seed=st.integers(0, 2**31 - 1))
def test_masking_invariants(ids, seed):
    x, y = mask_tokens(ids, SP, make_generator(seed))
    special = torch.isin(ids, torch.tensor(SP.ids))
    chosen = y != IGNORE
    assert x.shape == y.shape == ids.shape and x.dtype == torch.long
    assert not (chosen & special).any(), "a special token or padding was chosen"
    assert torch.equal(y[chosen], ids[chosen]), "targets must hold the original tokens"
    assert torch.equal(x[~chosen], ids[~chosen]), "only chosen positions may change"
    changed = chosen & (x != ids)
    assert ((x[changed] == SP.mask) | ~torch.isin(x[changed], torch.tensor(SP.ids))).all(), (
        "a chosen token becomes [MASK] or an ordinary token, never another special"
    )
    n = (~special).sum(dim=1)
    expected = torch.where(n > 0, torch.clamp(torch.round(n * 0.15), min=1), 0)
    assert torch.equal(chosen.sum(dim=1), expected)  # exactly round(15%) per row, at least 1


@settings(max_examples=20, deadline=None)
@given(ids=batches(), seed=st.integers(0, 2**31 - 1))
def test_masking_is_deterministic_given_the_generator(ids, seed):
    a = mask_tokens(ids, SP, make_generator(seed))
    b = mask_tokens(ids, SP, make_generator(seed))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_masking_rates_80_10_10():
    """256 x 512 ordinary tokens: 15% of 131,072 = 19,661 chosen (exact by construction). Each
    chosen token is [MASK] w.p. 0.8, random w.p. 0.1 (which equals the original w.p. 1/Vn), kept
    w.p. 0.1: we allow 5 binomial standard deviations (sd of a 0.8 rate over 19,661 draws: 0.003)."""
    V = 1005  # 1000 ordinary tokens: a random replacement hits the original 0.1% of the time
    sp = SpecialTokens(pad=0, cls=2, sep=3, mask=4, vocab_size=V, ids=(0, 1, 2, 3, 4))
    ids = torch.randint(5, V, (256, 512), generator=make_generator(1))
    x, y = mask_tokens(ids, sp, make_generator(2))
    chosen = y != IGNORE
    N = int(chosen.sum())
    assert N == 256 * round(512 * 0.15)
    xs, orig = x[chosen], ids[chosen]
    p_mask, p_same = 0.8, 0.1 + 0.1 / (V - 5)
    for rate, p in [
        ((xs == sp.mask).float().mean(), p_mask),
        ((xs == orig).float().mean(), p_same),
        (((xs != sp.mask) & (xs != orig)).float().mean(), 1 - p_mask - p_same),
    ]:
        assert abs(float(rate) - p) < 5 * math.sqrt(p * (1 - p) / N), (float(rate), p)


def test_selection_rate_with_bernoulli_like_bounds():
    """Across rows of varying candidate counts the chosen fraction stays within rounding of 15%."""
    ids = torch.randint(5, 50, (400, 37), generator=make_generator(3))
    ids[:, 30:] = SP.pad  # 30 candidates per row -> round(4.5) = 4 (banker's rounding) per row
    _, y = mask_tokens(ids, SP, make_generator(4))
    frac = float((y != IGNORE).sum()) / (400 * 30)
    assert abs(frac - 0.15) <= 0.5 / 30


def test_every_candidate_is_equally_likely_to_be_chosen():
    """Position choice is uniform: over 4000 rows of 20 candidates, each column is chosen
    round(3.0) = 3 / 20 = 15% of the time, within 5 sd (sd = sqrt(.15 * .85 / 4000) = 0.0056)."""
    ids = torch.randint(5, 50, (4000, 20), generator=make_generator(5))
    _, y = mask_tokens(ids, SP, make_generator(6))
    per_column = (y != IGNORE).float().mean(dim=0)
    assert ((per_column - 0.15).abs() < 5 * math.sqrt(0.15 * 0.85 / 4000)).all(), per_column


def test_pack_pair_truncates_the_longer_segment_first():
    ids, types = pack_pair([5, 6, 7, 8, 9, 10], [11, 12, 13], 8, special=SP)
    # room = 8 - 3 = 5: cut A from 6 to 3 (now 3 vs 3), then ... 3 + 3 = 6 > 5: cut A again (A >= B)
    assert ids == [2, 5, 6, 3, 11, 12, 13, 3]
    assert types == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pack_pair([5, 6], None, 10, special=SP) == ([2, 5, 6, 3], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="no room"):
        pack_pair([5], [6], 4, special=SP)


def _docs():
    """Documents whose sentences encode (document, sentence) so a pair can be checked: the token
    of sentence s of document d is 5 + 10 d + s, repeated 3 times."""
    return [[[5 + 10 * d + s] * 3 for s in range(4)] for d in range(4)]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), max_len=st.integers(7, 30))
def test_sentence_pairs_are_what_their_label_says(seed, max_len):
    ids, types, label = sentence_pair(_docs(), max_len, SP, generator=make_generator(seed))
    assert len(ids) == len(types) <= max_len and ids[0] == SP.cls and ids[-1] == SP.sep
    first_b = types.index(1)
    a, b = ids[1 : first_b - 1], ids[first_b:-1]
    assert ids[first_b - 1] == SP.sep and all(t == 1 for t in types[first_b:])
    da, sa = divmod(a[-1] - 5, 10)
    db, sb = divmod(b[0] - 5, 10)
    if label == 0:  # B continues A's document after A (truncation only ever cuts a segment's end)
        assert db == da and sb > sa
        if (
            len(a) % 3 == 0 and len(a) + len(b) < max_len - 3
        ):  # nothing was cut: B starts right after A
            assert sb == sa + 1
    else:
        assert db != da


def test_nsp_labels_are_balanced_and_batches_are_well_formed():
    sample = pretraining_batches(_docs(), batch_size=400, max_len=16, special=SP)
    batch = sample(make_generator(0))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "targets", "nsp_targets"}
    assert all(v.shape == (400, 16) for k, v in batch.items() if k != "nsp_targets")
    assert (
        abs(batch["nsp_targets"].float().mean().item() - 0.5) < 5 * 0.025
    )  # sd of a coin over 400
    pad = batch["attention_mask"] == 0
    assert (batch["targets"][pad] == IGNORE).all() and (batch["input_ids"][pad] == SP.pad).all()
    again = sample(make_generator(0))
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_mlm_only_batches_and_a_word_vocab():
    vocab = WordVocab.from_text(
        "the cat sat on the mat . the dog sat too .",
        specials=("[PAD]", "<unk>", "[CLS]", "[SEP]", "[MASK]"),
    )
    sp = SpecialTokens.from_vocab(vocab)
    assert (sp.pad, sp.cls, sp.sep, sp.mask, sp.ids) == (0, 2, 3, 4, (0, 1, 2, 3, 4))
    docs = [[vocab.encode("the cat sat on the mat .")], [vocab.encode("the dog sat too .")]]
    batch = pretraining_batches(docs, batch_size=8, max_len=12, special=sp, nsp=False)(
        make_generator(1)
    )
    assert "nsp_targets" not in batch and (batch["input_ids"][:, 0] == sp.cls).all()
    assert (batch["token_type_ids"] == 0).all() and (batch["targets"] != IGNORE).sum(
        dim=1
    ).min() >= 1


def test_pad_batch():
    out = pad_batch([[2, 7, 3], [2, 3]], [[0, 0, 0], [0, 1]], SP)
    assert out["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 0], [0, 1, 0]]


def test_unigram_baseline_by_hand():
    """train ids 5,5,5,6 (+1 smoothing over the 45 ordinary ids 5..49): p(5) = 4/49, p(6) = 2/49.
    Targets 5 and 6: loss = -(ln 4/49 + ln 2/49)/2, accuracy (always guess 5) = 1/2."""
    batch = {"targets": torch.tensor([[IGNORE, 5, 6, IGNORE]])}
    out = unigram_baseline([5, 5, 5, 6], [batch], vocab_size=SP.vocab_size, special=SP)
    assert out["mlm_accuracy"] == 0.5
    assert math.isclose(out["mlm_loss"], -(math.log(4 / 49) + math.log(2 / 49)) / 2, rel_tol=1e-9)


def test_pack_pair_exercise():
    from llmcourse.course import exercises

    def mine(a, b, max_len):
        a, b = list(a), list(b)
        while len(a) + len(b) > max_len - 3:
            (a if len(a) >= len(b) else b).pop()
        return [2] + a + [3] + b + [3], [0] * (len(a) + 2) + [1] * (len(b) + 1)

    exercises.check("07.pack_pair", mine, seed=0)

    def from_the_front(a, b, max_len):  # a typical slip: truncating the start of a segment
        a, b = list(a), list(b)
        while len(a) + len(b) > max_len - 3:
            (a if len(a) >= len(b) else b).pop(0)
        return [2] + a + [3] + b + [3], [0] * (len(a) + 2) + [1] * (len(b) + 1)

    with pytest.raises(exercises.ExerciseError, match="wrong"):
        exercises.check("07.pack_pair", from_the_front, seed=0)


def test_special_tokens_from_a_bpe_tokenizer():
    """Byte-level BPE registers its specials after the merges: they are the last ids."""
    from llmcourse.bpe_regex import RegexBPE

    tok = RegexBPE(special_tokens=["[PAD]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train("the cat sat on the mat. " * 20, vocab_size=256 + 8 + 4)
    sp = SpecialTokens.from_vocab(tok)
    assert sp.ids == (264, 265, 266, 267) and (sp.pad, sp.mask, sp.vocab_size) == (264, 267, 268)
    ids = torch.tensor([[sp.cls] + tok.encode("the cat sat") + [sp.sep]])
    _, y = mask_tokens(ids, sp, make_generator(0))
    assert (y[0, [0, -1]] == IGNORE).all() and int((y != IGNORE).sum()) >= 1


def test_masked_accuracy_exercise():
    from llmcourse.course import exercises

    def mine(logits, targets):
        sel = targets != -100
        return (logits.argmax(-1)[sel] == targets[sel]).float().mean().item()

    exercises.check("07.masked_accuracy", mine, trials=20)

    def over_all_positions(
        logits, targets
    ):  # the classic slip: -100 positions count as wrong answers
        return (logits.argmax(-1) == targets).float().mean().item()

    with pytest.raises(exercises.ExerciseError, match="wrong value"):
        exercises.check("07.masked_accuracy", over_all_positions)


def _mask_row_solution(ids, scores, u, random_ids, skip_specials=True):
    candidate = ids >= 5 if skip_specials else torch.ones_like(ids, dtype=torch.bool)
    n = int(candidate.sum())
    k = max(1, round(0.15 * n)) if n else 0
    order = scores.masked_fill(~candidate, 2.0).argsort()
    chosen = torch.zeros_like(candidate)
    chosen[order[:k]] = True
    out = torch.where(
        chosen & (u < 0.8), 4, torch.where(chosen & (u >= 0.8) & (u < 0.9), random_ids, ids)
    )
    return out, torch.where(chosen, ids, -100)


def test_mask_row_exercise_accepts_a_solution_and_rejects_masking_specials():
    from llmcourse.course import exercises

    exercises.check("07.mask_row", _mask_row_solution, trials=20)
    with pytest.raises(
        exercises.ExerciseError, match="case 1 of"
    ):  # the first fixed row chooses [CLS]
        exercises.check("07.mask_row", lambda *a: _mask_row_solution(*a, skip_specials=False))


def test_corrupt_with_given_draws_is_what_mask_tokens_does():
    """mask_tokens draws scores, u and random ids in that order and hands them to `corrupt`."""
    ids = torch.randint(0, SP.vocab_size, (3, 20), generator=make_generator(0))
    g = make_generator(1)
    scores, u = torch.rand(3, 20, generator=g), torch.rand(3, 20, generator=g)
    normal = torch.tensor([i for i in range(SP.vocab_size) if i not in SP.ids])
    random_ids = normal[torch.randint(len(normal), (3, 20), generator=g)]
    expected = corrupt(ids, SP, scores=scores, u=u, random_ids=random_ids)
    got = mask_tokens(ids, SP, make_generator(1))
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


# ---------------------------------------------------------------- the generated corpus of notebook 07
from llmcourse.tasks.sentiment import (  # noqa: E402
    CUES,
    NEGATIVE,
    POSITIVE,
    SEEN_WORDS,
    generated_corpus,
    sentiment_sentences,
)


def _words(text: str) -> set[str]:
    return set(text.replace(".", " ").replace(",", " ").replace("!", " ").split())


def test_generated_corpus_is_seeded_and_reviews_keep_one_polarity():
    docs = generated_corpus(300, seed=5)
    assert docs == generated_corpus(300, seed=5) and docs != generated_corpus(300, seed=6)
    reviews = 0
    for doc in docs:
        words = _words(doc)
        pos, neg = words & set(POSITIVE), words & set(NEGATIVE)
        assert not (pos and neg), f"a review mixes polarities: {doc}"
        reviews += bool(pos or neg)
    assert 100 < reviews < 200  # about half of the documents are reviews
    # every sentiment word, seen or held out, occurs in the unlabelled text
    assert set(POSITIVE) | set(NEGATIVE) <= set().union(*map(_words, docs))


@pytest.mark.parametrize("seen", [True, False])
def test_sentiment_sentences_split_the_adjectives(seen):
    rows = sentiment_sentences(200, seen=seen, seed=1)
    assert [y for _, y in rows] == [i % 2 for i in range(200)]  # balanced, 1 = positive
    cue_words = set().union(*(_words(f.format(t="", a="")) for frames in CUES for f in frames))
    allowed = {
        1: set(POSITIVE[:SEEN_WORDS] if seen else POSITIVE[SEEN_WORDS:]),
        0: set(NEGATIVE[:SEEN_WORDS] if seen else NEGATIVE[SEEN_WORDS:]),
    }
    for text, label in rows:
        words = _words(text)
        adjectives = words & (set(POSITIVE) | set(NEGATIVE))
        assert len(adjectives) == 1 and adjectives <= allowed[label], (text, label)
        assert not words & (cue_words - {"The", "the", "it", "is", "was", "so", "I"}), (
            "a polar cue leaked"
        )
