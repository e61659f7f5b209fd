"""The exercises of notebook 18 (notebooks/18_capstone.ipynb).

`exercises.check("18.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

from llmcourse.course.exercises import register
from llmcourse.recipes.adapt import exact_match, pooled_perplexity
from llmcourse.tasks.domain import contaminated


# ---------------------------------------------------------------- llmcourse/recipes/adapt.py
def _em_inputs(rng: random.Random) -> tuple[list[str], list[str]]:
    words = ["yes", "no", "maybe", "Dravilex treats ember cough", "two drops"]
    answers = [rng.choice(words) for _ in range(rng.randint(1, 6))]
    noisy = [
        rng.choice([a, a.upper(), f"  {a}. ", a.replace(" ", "  "), rng.choice(words)])
        for a in answers
    ]
    return noisy, answers


register(
    "18.exact_match",
    exact_match,
    inputs=_em_inputs,
    compare="allclose",
    fixed=((["Yes.", " no", "It is maybe"], ["yes", "no", "maybe"]),),
    hint="compare after normalising: strip spaces and a final '.', collapse inner spaces, lower-case",
)


def _ppl_inputs(rng: random.Random) -> tuple[list[float], list[int]]:
    counts = [rng.randint(1, 64) for _ in range(rng.randint(1, 5))]
    return [c * rng.uniform(0.5, 4.0) for c in counts], counts


register(
    "18.pooled_perplexity",
    pooled_perplexity,
    inputs=_ppl_inputs,
    compare="allclose",
    rtol=1e-9,
    atol=0.0,
    fixed=(([2.0, 30.0], [1, 10]),),
    hint="exp(total nats / total tokens): pool first, exponentiate once; do not average per-window perplexities",
)


# ---------------------------------------------------------------- llmcourse/tasks/domain.py
def _overlap_inputs(rng: random.Random) -> tuple[list[str], str, int]:
    vocab = (
        "the dose of dravilex is two drops ember cough treats at noon one spoon river clay".split()
    )
    train = " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 40)))
    tests = [
        " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))
        for _ in range(rng.randint(1, 5))
    ]
    tests += (
        [" ".join(train.split()[2:9]).upper() + "?"] if rng.random() < 0.5 else []
    )  # a copied span
    return tests, train, rng.randint(2, 5)


register(
    "18.contaminated",
    contaminated,
    inputs=_overlap_inputs,
    compare="exact",
    fixed=(
        (["What does Dravilex treat?", "For EMBER cough, now."], "Dravilex treats ember cough.", 2),
        (["a b"], "a b", 3),
    ),
    hint="lower-case, split into words (letters and digits), and compare sets of n consecutive words",
)
