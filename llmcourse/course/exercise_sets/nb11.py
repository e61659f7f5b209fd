"""The exercises of notebook 11 (notebooks/11_sft.ipynb).

`exercises.check("11.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import torch

from llmcourse.chat import ROLES, loss_mask
from llmcourse.course.exercises import register, torch_generator
from llmcourse.sft import sft_batch, sft_targets


# ---------------------------------------------------------------- llmcourse/chat.py
def _mask_inputs(rng) -> tuple[list[str], list[int]]:
    n = rng.randint(1, 6)
    return [rng.choice(ROLES) for _ in range(n)], [rng.randint(0, 5) for _ in range(n)]


register(
    "11.loss_mask",
    loss_mask,
    inputs=_mask_inputs,
    compare="exact",
    fixed=((["user", "assistant"], [2, 1]), (["system", "user", "assistant"], [1, 1, 0])),
    hint="per message: 0 for the header, then `length` content values and one for <|end|> (1 if the role "
    "is assistant, else 0), then 0 for the newline",
)


# ---------------------------------------------------------------- llmcourse/sft.py
def _targets_inputs(rng) -> tuple[torch.Tensor, torch.Tensor]:
    T = rng.randint(2, 12)
    g = torch_generator(rng)
    return torch.randint(0, 50, (T,), generator=g), torch.randint(0, 2, (T,), generator=g)


register(
    "11.sft_targets",
    sft_targets,
    inputs=_targets_inputs,
    compare="exact",
    fixed=(
        (torch.tensor([3, 4]), torch.tensor([0, 1])),
        (torch.tensor([3, 4, 5]), torch.tensor([1, 0, 0])),
    ),
    hint="targets[t] is ids[t + 1], kept only where mask[t + 1] == 1; everything else is -100",
)


def _batch_inputs(rng) -> tuple[list[tuple[list[int], list[int]]], int]:
    rows = []
    for _ in range(rng.randint(1, 4)):
        n = rng.randint(2, 10)
        rows.append(([rng.randint(5, 49) for _ in range(n)], [rng.randint(0, 1) for _ in range(n)]))
    return rows, rng.randint(0, 4)


def sft_batch_exercise(
    rows: list[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """sft_batch(rows, pad_id) -> (idx (B, L-1), targets (B, L-1)) int64 for (ids, mask) rows, L the longest
    row's length: right-pad every row with pad_id to L, then targets[b, t] = ids[b, t+1], or -100 where that
    token is masked or padding."""
    return sft_batch(rows, pad_id, block_size=max(len(ids) for ids, _ in rows))


register(
    "11.sft_batch",
    sft_batch_exercise,
    inputs=_batch_inputs,
    compare="exact",
    fixed=(
        ([([7, 8, 9], [0, 1, 1]), ([5, 6], [0, 1])], 0),
        ([([5, 6], [1, 1]), ([7, 8, 9, 10], [0, 0, 1, 1])], 3),
    ),
    hint="pad ids AND mask on the right to the longest row L (mask 0 on padding); idx = ids[:, :-1], "
    "targets = ids[:, 1:] with -100 wherever mask[:, 1:] == 0",
)
