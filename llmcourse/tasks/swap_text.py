"""A generated text for character models whose words repeat far back: "the cat saw the dog, so the
dog saw the cat."

Notebook 03 trains its char-LSTM on it at smoke size. On real English an LSTM needs more steps than a
2-core CPU gives it to beat a Kneser-Ney N-gram; here the last animal repeats the first about 30
characters back, beyond any N-gram's context, so what a recurrent state buys shows within seconds.
`swap_check` counts which repeats a sample gets right. Left out: any other generated language.
"""

from __future__ import annotations

import random
import re

SWAP_CORPUS = (
    "animal-swaps"  # the corpus name under which char_rnn.load_char_text generates these lines
)
ANIMALS = ("cat", "dog", "fox", "owl", "hen", "pig", "cow", "bee", "ant", "eel")
VERBS = ("saw", "met", "fed", "hit")


def swap_sentences(n_lines: int, seed: int = 0) -> str:
    """Lines "the A V the B, so the B V the A." with two different animals A, B and a verb V drawn
    at random. The last animal repeats the first, about 30 characters back: a model must *remember*
    it, and an N-gram that sees the previous n-1 <= 8 characters cannot.

    >>> swap_check(swap_sentences(5))["last animal"]
    (5, 5)
    >>> swap_check("the cat saw the dog, so the dog saw the eel.")
    {'second B': (1, 1), 'second verb': (1, 1), 'last animal': (0, 1)}
    """
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        a, b = rng.sample(ANIMALS, 2)
        v = rng.choice(VERBS)
        lines.append(f"the {a} {v} the {b}, so the {b} {v} the {a}.")
    return "\n".join(lines) + "\n"


def swap_check(text: str) -> dict[str, tuple[int, int]]:
    """For each repeated part of the swap lines in `text` ("the A V the B, so the C W the D."):
    (lines where it repeats correctly, complete lines checked). Parts: "second B" (C == B),
    "second verb" (W == V) and "last animal" (D == A). A sample's unfinished last line is skipped."""
    pattern = re.compile(r"the (\w+) (\w+) the (\w+), so the (\w+) (\w+) the (\w+)\.$")
    rows = [m.groups() for line in text.splitlines() if (m := pattern.match(line.strip()))]
    ok = {
        "second B": sum(c == b for _, _, b, c, _, _ in rows),
        "second verb": sum(w == v for _, v, _, _, w, _ in rows),
        "last animal": sum(d == a for a, _, _, _, _, d in rows),
    }
    return {part: (n, len(rows)) for part, n in ok.items()}
