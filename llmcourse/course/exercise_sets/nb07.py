"""The exercises of notebook 07 (notebooks/07_bert.ipynb).

`exercises.check("07.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import torch

from llmcourse.bert import bert_encoder_params
from llmcourse.course.exercises import register, torch_generator
from llmcourse.mlm import IGNORE, _EX_SPECIAL, mask_row, masked_accuracy, pack_pair


# ---------------------------------------------------------------- llmcourse/bert.py
def _size_inputs(rng) -> tuple[int, int, int, int, int]:
    n_embd = 64 * rng.randint(1, 24)
    return (
        rng.randint(1000, 60000),
        rng.choice([128, 512, 1024]),
        rng.randint(1, 48),
        n_embd,
        4 * n_embd,
    )


register(
    "07.bert_encoder_params",
    bert_encoder_params,
    inputs=_size_inputs,
    compare="exact",
    fixed=((30522, 512, 12, 768, 3072), (30522, 512, 24, 1024, 4096)),
    hint="count per block: q, k, v and the output projection (C x C + C each), the FFN "
    "(C x I + I and I x C + C), and two LayerNorms (2C each); add embeddings and the pooler",
)


# ---------------------------------------------------------------- llmcourse/mlm.py
def _pair_inputs(rng) -> tuple[list[int], list[int], int]:
    a = [rng.randint(5, 99) for _ in range(rng.randint(1, 12))]
    b = [rng.randint(5, 99) for _ in range(rng.randint(1, 12))]
    return a, b, rng.randint(5, 30)


def pack_pair_exercise(a: list[int], b: list[int], max_len: int) -> tuple[list[int], list[int]]:
    """pack_pair(a, b, max_len) -> (ids, token_type_ids): "[CLS] a [SEP] b [SEP]" with [CLS] = 2 and
    [SEP] = 3, types 0 up to the first [SEP] and 1 after it, cut to max_len tokens by repeatedly
    dropping the last token of the longer segment (A on a tie)."""
    return pack_pair(a, b, max_len, special=_EX_SPECIAL)


register(
    "07.pack_pair",
    pack_pair_exercise,
    inputs=_pair_inputs,
    compare="exact",
    fixed=(([5, 6, 7], [8, 9], 8), ([5, 6, 7, 8, 9, 10], [11], 6), ([5], [6, 7, 8, 9], 5)),
    hint="while the two segments hold more than max_len - 3 tokens, drop the last token of the "
    "longer one (of A when they are equally long)",
)


def _accuracy_inputs(rng) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch_generator(rng)
    B, T, V = rng.randint(1, 4), rng.randint(1, 10), rng.randint(2, 12)
    logits = torch.randn(B, T, V, generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    # about half the positions are not targets; the first one always is, so the share is defined
    keep = torch.rand(B, T, generator=g) < 0.5
    keep.view(-1)[0] = True
    return logits, targets.masked_fill(~keep, IGNORE)


register(
    "07.masked_accuracy",
    masked_accuracy,
    inputs=_accuracy_inputs,
    compare="allclose",
    fixed=(
        (
            torch.tensor([[[3.0, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]]]),
            torch.tensor([[-100, 1, -100, 2]]),
        ),
    ),
    hint="count only the positions where targets != -100, in the numerator and the denominator",
)


def _row_inputs(rng) -> tuple[torch.Tensor, ...]:
    g = torch_generator(rng)
    T = rng.randint(1, 40)
    special = torch.rand(T, generator=g) < rng.choice(
        [0.0, 0.2, 0.5]
    )  # where the row has special ids
    ids = torch.where(
        special, torch.randint(0, 5, (T,), generator=g), torch.randint(5, 100, (T,), generator=g)
    )
    if int((ids >= 5).sum()) % 20 == 10:  # 0.15 n would end in .5: keep rounding unambiguous
        ids[0] = 2  # one ordinary token fewer
    return (
        ids,
        torch.rand(T, generator=g),
        torch.rand(T, generator=g),
        torch.randint(5, 100, (T,), generator=g),
    )


def _row(ids: list[int], scores: list[float], u: list[float]) -> tuple[torch.Tensor, ...]:
    return torch.tensor(ids), torch.tensor(scores), torch.tensor(u), torch.full((len(ids),), 42)


register(
    "07.mask_row",
    mask_row,
    inputs=_row_inputs,
    compare="exact",
    fixed=(
        _row(
            [2, 5, 6, 3, 0, 0], [0.0, 0.5, 0.4, 0.1, 0.2, 0.3], [0.5] * 6
        ),  # specials score lowest
        _row([2, 3, 0], [0.3, 0.2, 0.1], [0.1] * 3),  # nothing to choose
        _row(
            [2] + list(range(5, 25)) + [3],
            [0.9] + [i / 100 for i in range(20)] + [0.0],  # k = 3
            [0.0, 0.79, 0.8, 0.95] + [0.0] * 18,
        ),
    ),  # [MASK], random, kept
    hint="ids 0-4 are special: rank only the other n tokens by score and take the k = max(1, round(0.15 n)) "
    "smallest; then u < 0.8 -> 4 ([MASK]), 0.8 <= u < 0.9 -> random_ids[t], else keep the token",
)
