"""The course's own documents as a retrieval corpus: loading, question set integrity, reciprocal rank."""

import json
import re

import pytest

from llmcourse import rag
from llmcourse.course import docs as course_docs, exercises


def test_notebook_markdown_keeps_markdown_only(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": ["# Title\n", "text"]},
            {"cell_type": "code", "source": "print('no')"},
            {"cell_type": "markdown", "source": "more"},
        ]
    }
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    assert course_docs.notebook_markdown(path) == "# Title\ntext\n\nmore"


def test_without_a_repository_only_module_docstrings(tmp_path):
    assert course_docs.find_course_root(tmp_path) is None
    docs = course_docs.load_course_documents(root=tmp_path)  # a folder without notebooks/ or docs/
    assert docs and all(k.startswith("llmcourse/") for k in docs)
    assert "llmcourse/rag.py" in docs and "BM25" in docs["llmcourse/rag.py"]
    with_a_module = [
        q for q in course_docs.QUESTIONS if any(g.startswith("llmcourse/") for g in q.golds)
    ]
    assert course_docs.answerable(docs) == with_a_module


def test_every_question_has_its_gold_document_in_the_repository():
    root = course_docs.find_course_root(__file__)
    assert root is not None
    docs = course_docs.load_course_documents(root)
    assert len(course_docs.answerable(docs)) == len(course_docs.QUESTIONS) >= 20
    assert len({q.question for q in course_docs.QUESTIONS}) == len(course_docs.QUESTIONS)
    for q in course_docs.QUESTIONS:  # every other answering file exists too, named once
        assert len(set(q.golds)) == len(q.golds), q.question
        assert all(g in docs for g in q.also), [g for g in q.also if g not in docs]


# Answers that are a fixed phrase: every course file stating the phrase must be a gold file of the
# question, and the question's own gold file must state it. A new notebook or module that repeats
# the answer fails here until it joins the question's `also` (else retrieving it counts as a miss).
ANSWER_PHRASES = {
    "llmcourse/quantize.py": r"\|\s*/\s*254",  # the error bound max|w_row| / 254
    "llmcourse/rnn.py": r"cell.state",
    "llmcourse/bpe.py": r"256 (byte|possible)",
    "llmcourse/lora.py": r"\bB\b (at|with|to) zero|B = 0|B with zeros|B starts at zero",
    "llmcourse/train.py": r"warmup,? (then|\+) cosine",
    "llmcourse/checkpoint.py": r"renam",
    "llmcourse/tasks/instructions.py": r"split by a hash",
    "README.md": r"scripts/course\.sh.{0,300}scripts/test\.sh",  # both commands, together
}


def test_every_file_stating_a_fixed_answer_is_a_gold_file():
    docs = course_docs.load_course_documents(course_docs.find_course_root(__file__))
    by_gold = {q.gold: q for q in course_docs.QUESTIONS}
    for gold, phrase in ANSWER_PHRASES.items():
        stating = {d for d, text in docs.items() if re.search(phrase, " ".join(text.split()), re.I)}
        assert gold in stating, f"{gold} no longer states {phrase!r}: update ANSWER_PHRASES"
        extra = stating - set(by_gold[gold].golds)
        assert not extra, (
            f"{sorted(extra)} state the answer to {by_gold[gold].question!r}: add to `also`"
        )


def test_the_glossary_is_not_retrieved(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "GLOSSARY.md").write_text(
        "| attention | 注意力 | weighting what matters |"
    )
    (tmp_path / "docs" / "NOTES.md").write_text("attention weights what matters")
    docs = course_docs.load_course_documents(root=tmp_path, modules=False)
    assert list(docs) == ["docs/NOTES.md"]


def test_chunks_keep_their_document_and_bm25_finds_most_gold_files():
    """A sanity floor, not a benchmark: if gold ids were wrong (typos, renamed files) this drops to ~0."""
    docs = course_docs.load_course_documents(course_docs.find_course_root(__file__))
    chunks = course_docs.chunk_documents(docs)
    assert {c.doc_id for c in chunks} == {k for k, v in docs.items() if v.split()}
    pairs = [(q.question, q.golds) for q in course_docs.answerable(docs)]
    assert rag.hit_rate(rag.BM25(chunks), pairs, k=5) >= 0.5


@pytest.mark.parametrize(
    "ranked, gold, rr",
    [
        ([], "a", 0.0),
        (["a"], "a", 1.0),
        (["b", "a", "a"], "a", 0.5),
        (["b", "c", "d", "a"], "a", 0.25),
        (["b"], "a", 0.0),
        (["b", "c", "a"], ("a", "c"), 0.5),  # several gold files: the first of any of them
        (["b", "d"], ("a", "c"), 0.0),
    ],
)
def test_reciprocal_rank(ranked, gold, rr):
    assert course_docs.reciprocal_rank(ranked, gold) == rr


def test_reciprocal_rank_exercise_accepts_the_reference_and_rejects_the_last_match():
    exercises.check("15.reciprocal_rank", course_docs.reciprocal_rank)

    def last_match(ranked, gold):  # a typical slip: the last occurrence instead of the first
        hits = [i for i, d in enumerate(ranked, 1) if d == gold]
        return 1.0 / hits[-1] if hits else 0.0

    with pytest.raises(exercises.ExerciseError):
        exercises.check("15.reciprocal_rank", last_match, seed=0)


def test_few_shot_exercise():
    from llmcourse.course.exercise_sets import nb15

    exercises.check("15.few_shot_prompt", nb15.few_shot_exercise)
    with pytest.raises(exercises.ExerciseError):
        exercises.check(
            "15.few_shot_prompt",
            lambda demos, q: (
                "\n".join(f"Review: {t}\nSentiment: {lab}" for t, lab in demos)
                + f"\nReview: {q}\nSentiment:"
            ),
        )
