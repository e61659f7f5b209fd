"""Retrieval: chunking invariants, BM25 against a hand computation, dense retrieval with MiniLM."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcourse.course import exercises
from llmcourse.rag import (
    BM25,
    Chunk,
    EmbeddingRetriever,
    build_prompt,
    chunk_text,
    hit_rate,
    minilm_embedder,
    random_hit_rate,
)


@settings(max_examples=50, deadline=None)
@given(n_words=st.integers(0, 300), max_words=st.integers(2, 50), data=st.data())
def test_chunks_cover_the_text_in_order(n_words, max_words, data):
    overlap = data.draw(st.integers(0, max_words - 1))
    words = [f"w{i}" for i in range(n_words)]
    chunks = chunk_text(" ".join(words), max_words=max_words, overlap=overlap)
    assert all(len(c.text.split()) <= max_words for c in chunks)
    seen = []
    for c in chunks:  # rebuild the text by dropping each chunk's overlap with the previous one
        ws = c.text.split()
        seen += ws if not seen else ws[overlap:]
    assert seen == words


def test_bm25_matches_a_hand_computation():
    """Docs: d0 = "cat sat", d1 = "cat cat dog", d2 = "dog". Query "cat". N = 3, df(cat) = 2.
    idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln(1.6). avg length = 2; k1 = 1.5, b = 0.75.
    d0: tf 1, len 2 -> norm = 1.5 * (0.25 + 0.75 * 1) = 1.5  -> idf * 1 * 2.5 / 2.5 = ln 1.6
    d1: tf 2, len 3 -> norm = 1.5 * (0.25 + 1.125) = 2.0625 -> idf * 2 * 2.5 / 4.0625
    d2: no "cat" -> 0."""
    bm = BM25([Chunk("d0", 0, "cat sat"), Chunk("d1", 0, "cat cat dog"), Chunk("d2", 0, "dog")])
    idf = math.log(1.6)
    np.testing.assert_allclose(bm.scores("cat"), [idf, idf * 5 / 4.0625, 0.0], rtol=1e-12)
    assert [c.doc_id for c, _ in bm.search("cat", 2)] == ["d1", "d0"]
    assert bm.scores("unicorn").sum() == 0


def test_embedding_retriever_with_a_toy_embedder():
    vocab = ["sun", "rain", "code"]

    def embed(texts):
        return np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float)

    chunks = [
        Chunk("weather", 0, "rain rain sun"),
        Chunk("software", 0, "code code"),
        Chunk("sky", 0, "sun"),
    ]
    r = EmbeddingRetriever(chunks, embed)
    assert r.search("code", 1)[0][0].doc_id == "software"
    assert r.search("sun", 1)[0][0].doc_id == "sky"
    assert hit_rate(
        r, [("code", "software"), ("rain", "weather"), ("sun", "software")], k=1
    ) == pytest.approx(2 / 3)
    # several gold files: a chunk of any of them is a hit, and one id equals a one-element tuple
    assert hit_rate(r, [("sun", ("software", "sky")), ("code", ("software",))], k=1) == 1.0
    assert hit_rate(r, [("sun", ("software", "weather"))], k=1) == 0.0
    with pytest.raises(ValueError, match="at least one gold"):
        hit_rate(r, [("sun", ())], k=1)


def test_minilm_ranks_paraphrases_above_unrelated_text():
    embed = minilm_embedder()
    chunks = [
        Chunk("cats", 0, "Cats are small furry pets that purr."),
        Chunk("gpu", 0, "A graphics card accelerates matrix multiplication."),
        Chunk("bread", 0, "Knead the dough and bake it in a hot oven."),
    ]
    r = EmbeddingRetriever(chunks, embed)
    assert r.matrix.shape == (3, 384)
    assert r.search("Which hardware speeds up neural network training?", 1)[0][0].doc_id == "gpu"
    assert r.search("How do I make a loaf?", 1)[0][0].doc_id == "bread"


def test_prompt_numbers_and_cites_passages():
    prompt = build_prompt(
        "Why?", [(Chunk("a.md", 0, "Because."), 1.0), (Chunk("b.md", 3, "Also."), 0.5)]
    )
    assert (
        "[1] (a.md) Because." in prompt
        and "[2] (b.md) Also." in prompt
        and prompt.endswith("Answer:")
    )


def test_bad_chunk_arguments():
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("a b", max_words=3, overlap=3)


def test_chunk_words_exercise_rejects_a_trailing_window_inside_the_previous_one():
    def correct(text, max_words, overlap):
        words, out, start = text.split(), [], 0
        while start < len(words):
            out.append(" ".join(words[start : start + max_words]))
            if start + max_words >= len(words):
                break
            start += max_words - overlap
        return out

    def every_step(
        text, max_words, overlap
    ):  # the classic slip: "a b c d e", 3, 1 -> [..., "c d e", "e"]
        words = text.split()
        return [
            " ".join(words[i : i + max_words]) for i in range(0, len(words), max_words - overlap)
        ]

    exercises.check("15.chunk_words", correct, trials=20)
    with pytest.raises(exercises.ExerciseError, match="expected 2 items, got 3"):
        exercises.check("15.chunk_words", every_step, seed=0)


def test_top_k_cosine_exercise_rejects_the_raw_dot_product():
    def correct(query, docs, k):
        sims = docs @ query / (docs.norm(dim=1) * query.norm())
        return sims.argsort(descending=True)[:k]

    exercises.check("15.top_k_cosine", correct, trials=20)
    with pytest.raises(
        exercises.ExerciseError, match="wrong values"
    ):  # long vectors win without normalising
        exercises.check("15.top_k_cosine", lambda q, d, k: torch.topk(d @ q, k).indices, seed=0)
    with pytest.raises(exercises.ExerciseError, match="wrong values"):  # worst first
        exercises.check(
            "15.top_k_cosine", lambda q, d, k: correct(q, d, d.shape[0]).flip(0)[:k], seed=0
        )


def test_random_hit_rate_matches_a_simulation():
    """The closed form agrees with drawing k random chunks many times (and is the floor BM25 beats)."""
    import random

    chunks = [
        Chunk(d, i, "") for d, n in [("a", 5), ("b", 1), ("c", 3), ("d", 11)] for i in range(n)
    ]
    questions = [("q1", "a"), ("q2", "b"), ("q3", "c"), ("q4", ("b", "c"))]  # q4: two gold files
    rng = random.Random(0)
    trials = 20_000
    sim = sum(
        any(c.doc_id in ({gold} if isinstance(gold, str) else gold) for c in rng.sample(chunks, 3))
        for _ in range(trials)
        for _, gold in questions
    )
    assert random_hit_rate(chunks, questions, k=3) == pytest.approx(
        sim / (trials * len(questions)), abs=0.01
    )
    assert random_hit_rate(chunks, questions, k=len(chunks)) == 1.0
