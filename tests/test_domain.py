"""The capstone's domain: a fact table rendered into documents and checkable, leak-free questions."""

import json
import warnings

import pytest

from llmcourse import data
from llmcourse.tasks import domain
from llmcourse.course import exercises
from llmcourse.course.exercises import ExerciseError
from llmcourse.tasks.instructions import is_correct


def _fact_key(ex):
    """(remedy, attribute) that a question asks about: questions start with "Name:"."""
    return ex.prompt.split(":", 1)[0], ex.task


def test_deterministic_given_the_seed():
    a, b, c = domain.apothecary(0), domain.apothecary(0), domain.apothecary(1)
    assert (a.documents, a.eval_docs, a.train, a.test) == (
        b.documents,
        b.eval_docs,
        b.train,
        b.test,
    )
    assert {_fact_key(e) for e in a.test} != {
        _fact_key(e) for e in c.test
    }  # the seed moves the split
    assert a.documents != c.documents


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_facts_are_in_the_documents_but_never_asked_in_training(seed):
    d = domain.apothecary(seed)
    corpus = "\n".join(d.documents)
    assert all(
        ex.answer in corpus for ex in d.test
    )  # the documents state every held-out fact verbatim
    assert not {_fact_key(e) for e in d.test} & {_fact_key(e) for e in d.train}
    assert not {e.answer for e in d.test} & {e.answer for e in d.train}
    assert not {e.prompt for e in d.test} & {e.prompt for e in d.train}
    # 60 facts, a quarter held out (3 of 12 remedies per attribute), each asked both ways
    assert len(d.test) == 2 * 15 and len(d.train) == 2 * 45
    assert {e.task for e in d.test} == set(domain.ATTRIBUTES)


def test_every_fact_is_stated_in_every_style():
    """Style 0 and 2 sentences name the remedy; style 1 says "it" inside a leaflet headed "About <name>."."""
    d = domain.apothecary(0)
    for fact in domain.facts():
        for header, templates in domain.STYLES:
            sentence = domain.render(fact, templates[fact.attribute])
            holders = [doc for doc in d.documents if sentence in doc]
            if header:
                holders = [doc for doc in holders if doc.startswith(header.format(name=fact.name))]
            assert holders, (fact, sentence)


def test_answers_are_checkable_by_exact_match():
    facts = domain.facts()
    answers = [domain.answer(f) for f in facts]
    assert len(set(answers)) == len(facts)  # one answer sentence per fact
    d = domain.apothecary(0)
    for ex in d.test:
        assert is_correct(ex, ex.answer) and is_correct(
            ex, "  " + ex.answer.upper().rstrip(".") + " "
        )
        name = _fact_key(ex)[0]
        other = next(f for f in facts if f.attribute == ex.task and f.name == name)
        wrong = next(f for f in facts if f.attribute == ex.task and f.value != other.value)
        assert not is_correct(ex, ex.answer.replace(other.value, wrong.value))


def test_the_neighbour_town_shares_no_remedy():
    names = {r[0] for r in domain.REMEDIES}
    neighbours = {r[0] for r in domain.NEIGHBOUR}
    assert not names & neighbours
    background = "\n".join(domain.background(0))
    assert not any(n in background for n in names)
    assert not any(n in "\n".join(domain.apothecary(0).documents) for n in neighbours)


@pytest.mark.parametrize("table", [domain.REMEDIES, domain.NEIGHBOUR])
def test_avoid_never_gives_its_reverse_away(table):
    """A avoids B, B avoids C, C avoids A: knowing a training fact never reveals a held-out one."""
    avoid = {r[0]: r[5] for r in table}
    assert all(avoid[b] != a for a, b in avoid.items()) and set(avoid.values()) == set(avoid)


def test_pubmedqa_offline_falls_back_with_one_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = domain.load_domain("pubmedqa")
    fallbacks = [w for w in caught if issubclass(w.category, data.OfflineFallbackWarning)]
    assert (
        d.name == "apothecary" and len(fallbacks) == 1 and "apothecary" in str(fallbacks[0].message)
    )


def test_pubmedqa_from_the_cache(monkeypatch, tmp_path):
    """Cached rows (what a first online run writes) are read offline and split into a Domain."""
    monkeypatch.setenv("LLMCOURSE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    labelled = [
        {"question": f"q{i}?", "abstract": f"abstract {i}", "answer": ["yes", "no", "maybe"][i % 3]}
        for i in range(10)
    ]
    extra = [{"question": f"u{i}?", "abstract": f"unlabelled {i}", "answer": ""} for i in range(6)]
    folder = data.cache_dir()
    folder.mkdir(parents=True)
    (folder / "pubmedqa-pqa_labeled-all.jsonl").write_text("\n".join(map(json.dumps, labelled)))
    (folder / "pubmedqa-pqa_unlabeled-6.jsonl").write_text("\n".join(map(json.dumps, extra)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: the cache is enough
        d = domain.pubmedqa(n_test=3, n_extra_docs=4, n_eval_docs=2, seed=0)
    assert d.name == "pubmedqa" and len(d.test) == 3 and len(d.train) == 7
    assert {e.prompt for e in d.test}.isdisjoint(e.prompt for e in d.train)
    assert d.documents == [r["abstract"] for r in labelled] + [
        "unlabelled 0",
        "unlabelled 1",
        "unlabelled 2",
        "unlabelled 3",
    ]
    assert d.eval_docs == ["unlabelled 4", "unlabelled 5"]
    assert all(e.answer in ("yes", "no", "maybe") for e in d.test + d.train)


def test_unknown_domain():
    with pytest.raises(ValueError, match="apothecary"):
        domain.load_domain("cooking")


# ----------------------------------------------------------------------------------------- exercise
def test_contamination_golden_case():
    """Bigrams of "Dravilex treats ember cough": (dravilex treats) (treats ember) (ember cough).
    "For EMBER cough, now." contains (ember cough) after lower-casing and dropping punctuation;
    "What does Dravilex treat?" has (dravilex treat), not (dravilex treats)."""
    tests = ["What does Dravilex treat?", "For EMBER cough, now."]
    assert domain.contaminated(tests, "Dravilex treats ember cough.", 2) == [1]
    assert domain.contaminated(tests, "Dravilex treats ember cough.", 3) == []


def _ngram_solution(tests, train_text, n):
    import re

    def grams(text):
        w = re.findall(r"[a-z0-9]+", text.lower())
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    seen = grams(train_text)
    return [i for i, t in enumerate(tests) if grams(t) & seen]


def test_contamination_exercise_accepts_a_correct_solution():
    exercises.check("18.contaminated", _ngram_solution, trials=20)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda tests, train, n: [
            i for i, t in enumerate(tests) if t.lower() in train.lower()
        ],  # whole-text substring
        lambda tests, train, n: _ngram_solution(
            [t.lower() for t in tests], train, n + 1
        ),  # off by one in n
        lambda tests, train, n: [
            i for i, t in enumerate(tests) if set(t.split()) & set(train.split())
        ],  # any shared word
    ],
)
def test_contamination_exercise_rejects_typical_mistakes(wrong):
    with pytest.raises(ExerciseError):
        exercises.check("18.contaminated", wrong, trials=20, seed=1)
