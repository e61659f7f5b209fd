"""A domain for the capstone (notebook 18): a fact table turned into domain text and checkable questions.

Adapting a model to a domain has two halves: the model must *know* the domain's facts, and it must
*answer* questions about them in a chat. The built-in domain makes both measurable offline. It is
**fictional**: the remedies of an invented apothecary in the invented town of Quillmarsh, with
invented ailments ("ember cough"), doses, schedules, ingredients and remedies never to combine.
Nothing here is medical information, on purpose.

`apothecary(seed)` renders the fact table (`REMEDIES`) three ways:

* `documents`: the domain text for continued pretraining, leaflets that state every fact in several
  phrasings and orders. Rewording facts many times is what lets a model recall them from a question
  later ("knowledge augmentation", Allen-Zhu & Li 2023, "Physics of Language Models: Part 3.1").
* `train` / `test`: question-answer pairs (`instructions.Example`, task = the attribute) whose answer
  is one exact sentence, checked by exact match. The *facts* are split: a held-out question asks about
  a fact the documents state but no training question touches, so SFT alone cannot answer it and a
  model that read the documents first can (knowledge injection).
* `eval_docs`: the leaflets rendered again in other orders, for domain perplexity.

`NEIGHBOUR` is a second invented apothecary with the same kind of leaflets: a base model may read it
during pretraining, so it knows what a leaflet looks like but none of Quillmarsh's remedies (as a real
base model has read drug labels, not your private documents).

`pubmedqa(...)` builds the same `Domain` from a public biomedical set for the full size (Jin et al.
2019, "PubMedQA", MIT licence, Hugging Face `qiaojin/PubMedQA`): abstracts as documents, expert
yes/no/maybe questions split into train and test. The rows are fetched from the hub here
(`data.fetch.hub_rows`) and cached, reshaped, as JSON lines in the data layer's cache folder.
Offline (or on any failure) the built-in domain is used after one fallback line
(`data.warn_fallback`), as for every full-size corpus.
Left out: free-text answers (judged by people or by another model), retrieval (notebook 15).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from llmcourse import data
from llmcourse.data.fetch import hub_rows, write_atomic
from llmcourse.tasks.instructions import Example

ATTRIBUTES = ("treats", "dose", "schedule", "source", "avoid")

# name, treats, dose, schedule, source, avoid -- all invented. `avoid` names another remedy of the same
# table, in cycles of three, so that "A avoids B" never gives "B avoids A" away.
REMEDIES = (  # Quillmarsh: the capstone's domain
    ("Dravilex", "ember cough", "two drops", "at sunrise", "blue moss", "Ombrisol"),
    ("Ombrisol", "frost itch", "one spoon", "after supper", "river clay", "Quellinor"),
    ("Quellinor", "moon fever", "three leaves", "at midnight", "owl fern", "Dravilex"),
    ("Brastik", "glass ear", "half a cup", "before bed", "salt lichen", "Tamberine"),
    ("Tamberine", "thistle rash", "four drops", "every third hour", "pine resin", "Velloqua"),
    ("Velloqua", "fog head", "one pill", "at noon", "silver bark", "Brastik"),
    ("Merrowind", "copper throat", "two spoons", "with breakfast", "sea kelp", "Fennimax"),
    ("Fennimax", "drum heart", "a pinch", "at dusk", "ash root", "Glimmerol"),
    ("Glimmerol", "stone knee", "one cup", "at sunrise", "honey wax", "Merrowind"),
    ("Harrowmint", "cloud eye", "two drops", "after supper", "mint tar", "Istravel"),
    ("Istravel", "rattle lung", "three leaves", "before bed", "crow berry", "Jonquara"),
    ("Jonquara", "willow back", "one spoon", "at noon", "lake reed", "Harrowmint"),
)
NEIGHBOUR = (  # Brindleford, the next town: background reading for a base model
    ("Kestrimol", "paper skin", "half a cup", "every third hour", "fox root", "Lumbrisk"),
    ("Lumbrisk", "ash tongue", "four drops", "with breakfast", "iron sand", "Morvaline"),
    ("Morvaline", "needle foot", "one pill", "at dusk", "elder ash", "Kestrimol"),
    ("Nettravox", "bell ringing", "a pinch", "at midnight", "moth silk", "Orlindra"),
    ("Orlindra", "winter yawn", "two spoons", "at sunrise", "goat milk", "Pellicort"),
    ("Pellicort", "ember cramp", "one cup", "after supper", "tin flower", "Nettravox"),
    ("Quorvane", "marsh chill", "two drops", "before bed", "pond lily", "Rissolet"),
    ("Rissolet", "lantern eye", "three leaves", "at noon", "wolf thistle", "Sarmadine"),
    ("Sarmadine", "hollow cough", "one spoon", "every third hour", "amber gum", "Quorvane"),
    ("Thistravel", "cinder fever", "half a cup", "with breakfast", "rye smut", "Umberwick"),
    ("Umberwick", "drift sleep", "four drops", "at dusk", "bog myrtle", "Vexalind"),
    ("Vexalind", "spindle ache", "one pill", "at midnight", "snail shell", "Thistravel"),
)

# How the leaflets state each fact: a header and one sentence per attribute. "avoid" names a second
# remedy, so it always comes last (after it, "it" could mean either). Style 0 is canonical: its
# sentences are also the answers, and each puts the value a few words after the remedy's name, the
# pattern a tiny model picks up first.
STYLES = (
    (
        "",
        {
            "treats": "{name} treats {treats}.",
            "dose": "A dose of {name} is {dose}.",
            "schedule": "{name} is taken {schedule}.",
            "source": "{name} is made from {source}.",
            "avoid": "{name} clashes with {avoid}.",
        },
    ),
    (
        "About {name}.",
        {
            "treats": "People with {treats} take it.",
            "dose": "One takes {dose} of it.",
            "schedule": "The apothecary says to use it {schedule}.",
            "source": "{Source} is its base.",
            "avoid": "Keep it apart from {avoid}.",
        },
    ),
    (
        "",
        {
            "treats": "For {treats}, the apothecary gives {name}.",
            "dose": "Take {dose} of {name} each time.",
            "schedule": "{Schedule}, patients take {name}.",
            "source": "The apothecary brews {name} from {source}.",
            "avoid": "Never mix {name} with {avoid}.",
        },
    ),
)
# Every question starts with the remedy's name: a tiny model finds it there without having to search.
QUESTIONS = {
    "treats": ("{name}: what does it treat?", "{name}: which ailment is it for?"),
    "dose": ("{name}: what is its dose?", "{name}: how much of it is taken?"),
    "schedule": ("{name}: when is it taken?", "{name}: at what time is it used?"),
    "source": ("{name}: what is it made from?", "{name}: what is its base?"),
    "avoid": (
        "{name}: what must it never be combined with?",
        "{name}: which remedy clashes with it?",
    ),
}


@dataclass(frozen=True)
class Fact:
    name: str  # the remedy (the subject)
    attribute: str  # one of ATTRIBUTES
    value: str  # what the table says


@dataclass
class Domain:
    name: str  # "apothecary" or "pubmedqa"
    documents: list[str]  # domain text for continued pretraining
    eval_docs: list[str]  # held-out domain text (perplexity)
    train: list[Example]  # SFT questions
    test: list[Example]  # held-out questions, exact match
    description: str = ""
    licence: str = ""


def facts(table=REMEDIES) -> list[Fact]:
    """Every (remedy, attribute, value) of the table, in table order."""
    return [Fact(row[0], a, v) for row in table for a, v in zip(ATTRIBUTES, row[1:])]


def render(fact: Fact, template: str) -> str:
    """`template` filled with the fact's name and value ("{Value}" capitalised)."""
    key = fact.attribute
    return template.format(
        name=fact.name,
        **{key: fact.value, key.capitalize(): fact.value[:1].upper() + fact.value[1:]},
    )


def answer(fact: Fact) -> str:
    """The answer sentence: the canonical phrasing, which the documents contain word for word."""
    return render(fact, STYLES[0][1][fact.attribute])


def split_facts(all_facts: list[Fact], held_out: float, seed: int) -> tuple[list[Fact], list[Fact]]:
    """(train, test) facts: per attribute, a `held_out` share of the remedies goes to test."""
    rng = random.Random(f"split-{seed}")
    train, test = [], []
    for a in ATTRIBUTES:
        group = [f for f in all_facts if f.attribute == a]
        chosen = set(rng.sample(range(len(group)), max(1, round(held_out * len(group)))))
        for i, f in enumerate(group):
            (test if i in chosen else train).append(f)
    return train, test


def leaflets(table=REMEDIES, passes: int = 6, seed: int = 0) -> list[str]:
    """`passes` leaflets per remedy. Pass p uses style p (mod the styles), its first four sentences
    shuffled ("avoid" stays last); the leaflets of a pass are shuffled too."""
    rng = random.Random(f"leaflets-{seed}")
    docs = []
    for p in range(passes):
        header, templates = STYLES[p % len(STYLES)]
        batch = []
        for row in table:
            fs = [Fact(row[0], a, v) for a, v in zip(ATTRIBUTES, row[1:])]
            body = [render(f, templates[f.attribute]) for f in fs[:-1]]
            rng.shuffle(body)
            batch.append(
                " ".join(
                    ([header.format(name=row[0])] if header else [])
                    + body
                    + [render(fs[-1], templates["avoid"])]
                )
            )
        rng.shuffle(batch)
        docs += batch
    return docs


def questions(fs: list[Fact], which: tuple[int, ...] = (0, 1)) -> list[Example]:
    """Question-answer examples for the facts, one per question template in `which`."""
    return [
        Example(f.attribute, render(f, QUESTIONS[f.attribute][q]), answer(f))
        for f in fs
        for q in which
    ]


def apothecary(seed: int = 0, passes: int = 6, held_out: float = 0.25) -> Domain:
    """The built-in fictional domain, deterministic given `seed`: 60 facts, a quarter held out
    (each asked both ways in `test`), the rest asked both ways in `train`."""
    train_f, test_f = split_facts(facts(REMEDIES), held_out, seed)
    return Domain(
        "apothecary",
        leaflets(REMEDIES, passes, seed),
        leaflets(REMEDIES, len(STYLES), seed + 1000),
        questions(train_f),
        questions(test_f),
        "the invented remedies of a fictional apothecary (not medical information)",
        "MIT (this course)",
    )


def background(seed: int = 0, passes: int = 6) -> list[str]:
    """The neighbouring town's leaflets (`NEIGHBOUR`): what a base model may have read before."""
    return leaflets(NEIGHBOUR, passes, seed + 500)


# ------------------------------------------------------------------------------- full size: PubMedQA
PUBMEDQA = "qiaojin/PubMedQA"


def _pubmedqa_rows(config: str, n: int | None) -> list[dict]:
    """Rows of one PubMedQA config as {"question", "abstract", "answer"}, cached as JSON lines."""
    cached = data.cache_dir() / f"pubmedqa-{config}-{n or 'all'}.jsonl"
    if cached.is_file():
        return [json.loads(line) for line in cached.read_text(encoding="utf-8").splitlines()]
    offline = data.is_offline()
    if offline:
        raise OSError(f"offline mode is on ({offline}=1)")
    # the hub LLMCOURSE_HUB picks; streamed when `n` is given; fails within seconds when unreachable
    rows = hub_rows(PUBMEDQA, config, "train", max_rows=n)
    out = [
        {
            "question": r["question"],
            "abstract": " ".join(list(r["context"]["contexts"]) + [r["long_answer"]]),
            "answer": r.get("final_decision") or "",
        }
        for r in rows
    ]
    write_atomic(cached, "\n".join(json.dumps(r) for r in out).encode("utf-8"))
    return out


def pubmedqa(
    n_test: int = 200, n_extra_docs: int = 5000, n_eval_docs: int = 200, *, seed: int = 0
) -> Domain:
    """PubMedQA as a `Domain`: the 1,000 expert-labelled questions (answers yes / no / maybe) split into
    train and `n_test` held-out; documents = all their abstracts (the held-out ones too: their content is
    read, never asked, in training) + `n_extra_docs` unlabelled abstracts; eval_docs = `n_eval_docs`
    further unlabelled abstracts. Offline or on any failure: the built-in domain, after one warning."""
    try:
        labelled = _pubmedqa_rows("pqa_labeled", None)
        extra = _pubmedqa_rows("pqa_unlabeled", n_extra_docs + n_eval_docs)
    except Exception as exc:  # offline, no `datasets`, hub or format trouble: say so once, go on
        offline = data.is_offline()
        why = (
            f"is not cached and offline mode is on ({offline}=1)"
            if offline
            else f"could not be downloaded ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
        )
        data.warn_fallback(
            f"data set {PUBMEDQA}",
            "the built-in fictional domain 'apothecary'",
            why=why,
            fix=f"To get it: connect and re-run once (the rows are then cached in {data.cache_dir()}).",
        )
        return apothecary(seed)
    order = list(range(len(labelled)))
    random.Random(f"pubmedqa-{seed}").shuffle(order)
    examples = [Example("pubmedqa", labelled[i]["question"], labelled[i]["answer"]) for i in order]
    docs = [r["abstract"] for r in labelled] + [r["abstract"] for r in extra[:n_extra_docs]]
    return Domain(
        "pubmedqa",
        docs,
        [r["abstract"] for r in extra[n_extra_docs:]],
        examples[n_test:],
        examples[:n_test],
        "PubMedQA: biomedical research questions answered yes / no / maybe (Jin et al. 2019)",
        "MIT",
    )


def load_domain(name: str, seed: int = 0) -> Domain:
    """ "apothecary" (built in) or "pubmedqa" (Hugging Face; the built-in domain when offline)."""
    if name == "apothecary":
        return apothecary(seed)
    if name == "pubmedqa":
        return pubmedqa(seed=seed)
    raise ValueError(f"unknown domain {name!r}; use 'apothecary' or 'pubmedqa'")


# ------------------------------------------------------------------------- checked by notebook 18's exercises
def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def contaminated(tests: list[str], train_text: str, n: int) -> list[int]:
    """contaminated(tests, train_text, n) -> indices of the test texts that share a run of n consecutive
    words with train_text (words: lower-cased runs of letters and digits). GPT-3 checked 13-grams."""
    seen = {tuple(w[i : i + n]) for w in [_words(train_text)] for i in range(len(w) - n + 1)}
    return [
        k
        for k, t in enumerate(tests)
        if any(tuple(w[i : i + n]) in seen for w in [_words(t)] for i in range(len(w) - n + 1))
    ]
