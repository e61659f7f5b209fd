"""The exercises of notebook 06 (notebooks/06_tokenization.ipynb).

`exercises.check("06.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

from llmcourse import bpe
from llmcourse.course.exercises import register
from llmcourse.tokenstats import bpe_encode, utf8_lengths


# ---------------------------------------------------------------- llmcourse/tokenstats.py
def _ids_inputs(rng: random.Random) -> list[int]:
    alphabet = rng.sample(range(300), rng.randint(1, 4))  # few symbols, so pairs repeat
    return [rng.choice(alphabet) for _ in range(rng.randint(0, 16))]


def _merge_inputs(rng: random.Random) -> tuple[list[int], tuple[int, int], int]:
    ids = _ids_inputs(rng)
    if len(ids) >= 2 and rng.random() < 0.8:  # usually a pair that occurs
        i = rng.randrange(len(ids) - 1)
        pair = (ids[i], ids[i + 1])
    else:
        pair = (rng.randrange(300), rng.randrange(300))
    return ids, pair, 300 + rng.randrange(100)


register(
    "06.get_stats",
    bpe.get_stats,
    inputs=lambda rng: (_ids_inputs(rng),),
    compare="exact",
    fixed=(([],), ([5],), ([7, 7, 7],), ([1, 2, 3, 1, 2],)),
    hint="count every adjacent (overlapping) pair: zip(ids, ids[1:]); [7, 7, 7] has (7, 7) twice",
)

register(
    "06.merge",
    bpe.merge,
    inputs=_merge_inputs,
    compare="exact",
    fixed=(([7, 7, 7], (7, 7), 9), ([1, 2, 3, 1, 2], (1, 2), 4), ([], (1, 2), 3), ([1], (1, 2), 3)),
    hint="scan left to right; after replacing a pair skip both its ids, so [7, 7, 7] with (7, 7) "
    "becomes [9, 7]",
)


_SCRIPTS = (
    "abc xyz",
    "naïve café",
    "Привет мир",
    "你好，世界。",
    "🙂🚀👍🏽",
    "ab 你 é 🙂",
)  # 1-4 bytes/char


def _text_inputs(rng: random.Random) -> tuple[str]:
    alphabet = rng.choice(_SCRIPTS)
    return ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),)


def _encode_inputs(rng: random.Random) -> tuple[str, dict[tuple[int, int], int]]:
    alphabet = rng.choice(("ab", "abc ", "aé", "你好", "你好 ab"))
    sample = "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 40)))
    merges = bpe.train_merges({sample.encode("utf-8"): 1}, rng.randint(1, 8))  # {pair: new id}
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16))), merges


register(
    "06.utf8_lengths",
    utf8_lengths,
    inputs=_text_inputs,
    compare="exact",
    fixed=(("",), ("aï你🙂",)),
    hint="encode each character on its own: len(ch.encode('utf-8')); 'aï你🙂' gives [1, 2, 3, 4]",
)

register(
    "06.bpe_encode",
    bpe_encode,
    inputs=_encode_inputs,
    compare="exact",
    fixed=(
        ("aaa", {(97, 97): 256}),
        ("aaaa", {(97, 97): 256, (256, 256): 257}),
        ("", {(97, 97): 256}),
        ("abab", {(98, 97): 256, (97, 98): 257}),
    ),
    hint="repeat: among the adjacent pairs present, take the one with the SMALLEST merge id "
    "(learned first) and fuse it everywhere; stop when no pair is a learned merge",
)
