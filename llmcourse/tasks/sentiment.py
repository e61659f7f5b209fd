"""A generated sentiment world for BERT at smoke size: unlabelled reviews and labelled sentences.

Notebook 07 pretrains a small masked LM on CPU in a minute, then fine-tunes it to label sentiment.
Real review corpora are too large and too irregular for that budget, so this module generates a
tiny world whose text a small model can learn:

* `generated_corpus(n_docs, seed)`: unlabelled documents, half of them reviews in which the
  sentiment adjectives (`POSITIVE`, `NEGATIVE`) sit beside polar cues such as "loved" / "hated"
  (`CUES`), a quarter about animals (each with its own sound and food, `ANIMALS`) and a quarter
  about travel (each city with its country, `CITIES`);
* `sentiment_sentences(n, seen, seed)`: labelled sentences with NO cue word, so the adjective
  alone carries the label. The adjectives are split: the labelled training set uses only the
  first `SEEN_WORDS` of each polarity, the held-out set only the rest.

The point of the split: a model can label held-out sentences only if pretraining taught it that
"superb" behaves like "good", i.e. if the masked LM learned word meaning from the cues. This is a
miniature of the pretrain-then-fine-tune argument of Devlin et al. 2019 (BERT), whose GLUE task
SST-2 (Socher et al. 2013) the full size of notebook 07 uses instead: `load_sst2()`, which offline
falls back to the 200 labelled movie-review sentences (`movie_review_split()`) after one line.
Left out: negation ("not good"), mixed reviews, and anything a bag of words cannot solve.
`world("zh")` returns the same world in Chinese, one character per word (`sentiment_zh`).
"""

from __future__ import annotations

import importlib
import random
import sys
from types import ModuleType

# sentiment adjectives: the first SEEN_WORDS of each polarity are labelled, the rest held out
POSITIVE = (
    "good",
    "great",
    "excellent",
    "wonderful",
    "superb",
    "delightful",
    "brilliant",
    "lovely",
)
NEGATIVE = ("bad", "awful", "terrible", "horrible", "dreadful", "boring", "dull", "nasty")
SEEN_WORDS = 4  # adjectives of each polarity that the labelled training set may use
THINGS = ("soup", "pizza", "cake", "coffee", "film", "movie", "book", "concert", "hotel", "show")
# per polarity (0 = positive, 1 = negative): sentence frames that say it without the adjective
CUES = (
    (
        "I loved the {t}, it was {a}.",
        "I enjoyed the {t}, so {a}.",
        "We will come back, the {t} was {a}.",
        "I recommend the {t}, it is {a}.",
    ),
    (
        "I hated the {t}, it was {a}.",
        "I disliked the {t}, so {a}.",
        "We will never come back, the {t} was {a}.",
        "Avoid the {t}, it is {a}.",
    ),
)
ANIMALS = {
    "dog": ("barked", "bone"),
    "cat": ("meowed", "fish"),
    "cow": ("mooed", "grass"),
    "lion": ("roared", "meat"),
    "duck": ("quacked", "bread"),
    "bird": ("sang", "seeds"),
}
CITIES = {
    "Paris": "France",
    "Rome": "Italy",
    "Tokyo": "Japan",
    "Berlin": "Germany",
    "Madrid": "Spain",
    "Cairo": "Egypt",
}


def _review(rng, polarity: int) -> list[str]:
    """Sentences of one review: every adjective and cue has the review's polarity (0 = +, 1 = -)."""
    adj = lambda: rng.choice(POSITIVE if polarity == 0 else NEGATIVE)  # noqa: E731
    thing = rng.choice(THINGS)
    out = []
    for _ in range(rng.randint(2, 4)):
        frame = rng.choice(CUES[polarity] + ("The {t} was {a} and {b}.", "What a {a} {t}!"))
        out.append(frame.format(t=thing, a=adj(), b=adj()))
    return out


def _animals(rng) -> list[str]:
    out = []
    for _ in range(rng.randint(2, 4)):
        a, b = rng.sample(sorted(ANIMALS), 2)
        out.append(
            rng.choice(
                [
                    f"The {a} {ANIMALS[a][0]} at the {b}.",
                    f"The {a} ate the {ANIMALS[a][1]}.",
                    f"The {a} {ANIMALS[a][0]} loudly.",
                ]
            )
        )
    return out


def _travel(rng) -> list[str]:
    out = []
    for _ in range(rng.randint(2, 4)):
        city = rng.choice(sorted(CITIES))
        out.append(
            rng.choice(
                [
                    f"We flew to {city} in {CITIES[city]}.",
                    f"{city} is the capital of {CITIES[city]}.",
                    f"They visited {city} last year.",
                ]
            )
        )
    return out


def generated_corpus(n_docs: int, seed: int = 0) -> list[str]:
    """Unlabelled documents (one paragraph each) of a small generated world: half are reviews
    (sentiment adjectives beside polar cues such as "loved"/"hated"), a quarter about animals
    (each with its own sound and food), a quarter about travel (each city with its country).

    >>> docs = generated_corpus(4, seed=0)
    >>> len(docs), all(d.endswith((".", "!")) for d in docs)
    (4, True)
    """
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        kind = rng.random()
        sents = (
            _review(rng, rng.randint(0, 1))
            if kind < 0.5
            else _animals(rng)
            if kind < 0.75
            else _travel(rng)
        )
        docs.append(" ".join(sents))
    return docs


def sentiment_sentences(n: int, seen: bool, seed: int = 0) -> list[tuple[str, int]]:
    """n labelled sentences (text, label: 1 = positive, 0 = negative) with NO polar cue word: the
    adjective alone carries the label. `seen=True` draws adjectives from the first SEEN_WORDS of
    each polarity (the labelled training set), `seen=False` from the others (the held-out set),
    so a model can only label held-out sentences if it knows words it was never given labels for.
    Balanced: labels alternate."""
    rng = random.Random(seed)
    words = [w[:SEEN_WORDS] if seen else w[SEEN_WORDS:] for w in (NEGATIVE, POSITIVE)]
    rows = []
    for i in range(n):
        label, thing = i % 2, rng.choice(THINGS)
        adj = rng.choice(words[label])
        rows.append(
            (
                rng.choice(
                    [f"The {thing} was {adj}.", f"What a {adj} {thing}!", f"This {thing} is {adj}."]
                ),
                label,
            )
        )
    return rows


def world(language: str = "en") -> ModuleType:
    """The generated world in `language`: this module ("en") or `llmcourse.tasks.sentiment_zh`
    ("zh"), which have the same names (POSITIVE, NEGATIVE, SEEN_WORDS, ANIMALS, CITIES,
    generated_corpus, sentiment_sentences).

    >>> world("zh").POSITIVE[0], world("en").POSITIVE[0]
    ('好', 'good')
    """
    if language == "en":
        return sys.modules[__name__]
    if language == "zh":
        return importlib.import_module("llmcourse.tasks.sentiment_zh")
    raise ValueError(f"language={language!r}: the sentiment world exists in 'en' and 'zh'")


# ------------------------------------------------------------------------ labelled real sentences
def movie_review_split() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, test) of the 200 offline movie-review sentences (`data.load_movie_reviews`), label 1 =
    positive: every 4th sentence is a test one (the file lists negatives first, so 50 balanced)."""
    from llmcourse import data

    rows = [(s, int(label == "pos")) for s, label in data.load_movie_reviews()]
    return [r for i, r in enumerate(rows) if i % 4], rows[::4]


def load_sst2() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, test) sentences of GLUE's SST-2 (Socher et al. 2013; Hugging Face `stanfordnlp/sst2`),
    label 1 = positive: its 67k training sentences and, as the test, its 872 validation ones (the
    test split's labels are hidden). Cached by `data.hub_table` after the first online run; offline,
    `movie_review_split()` after one fallback line."""
    from llmcourse import data

    instead = "the 200 offline movie-review sentences"
    train = data.hub_table("stanfordnlp/sst2", None, "train", instead=instead)
    test = (
        None
        if train is None
        else data.hub_table("stanfordnlp/sst2", None, "validation", instead=instead)
    )
    if train is None or test is None:
        return movie_review_split()
    return [(r["sentence"], r["label"]) for r in train], [(r["sentence"], r["label"]) for r in test]
