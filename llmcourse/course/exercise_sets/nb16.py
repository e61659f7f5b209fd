"""The exercises of notebook 16 (notebooks/16_evaluation.ipynb).

`exercises.check("16.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

import torch

from llmcourse.course.exercises import register, torch_generator
from llmcourse.evaluate import continuation_logprob_from_logits, masked_perplexity
from llmcourse.tasks.benchmarks import choose_normalised


# ---------------------------------------------------------------- llmcourse/evaluate.py
def _nll_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch_generator(rng)
    b, t = rng.randint(1, 4), rng.randint(1, 10)
    nll = torch.rand(b, t, generator=g) * 6  # per-token losses, ln(vocab) ~ 6 at most here
    lengths = torch.randint(
        1, t + 1, (b, 1), generator=g
    )  # real tokens per row; the rest is padding
    return nll, torch.arange(t) < lengths


register(
    "16.masked_perplexity",
    masked_perplexity,
    inputs=_nll_inputs,
    rtol=1e-5,
    atol=1e-6,
    fixed=(
        (
            torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 9.0, 9.0, 9.0]]),
            torch.tensor([[True, True, True, True], [True, False, False, False]]),
        ),
    ),
    hint="average over the real tokens of the whole batch: sum(nll * mask) / mask.sum(), "
    "not a mean over all positions, nor a mean of per-row means",
)


def _lp_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, int]:
    g = torch_generator(rng)
    t, v = rng.randint(2, 12), rng.randint(3, 20)
    logits = torch.randn(t, v, generator=g) * rng.choice([1.0, 5.0, 20.0])
    return logits, torch.randint(0, v, (t,), generator=g), rng.randint(1, t - 1)


register(
    "16.continuation_logprob",
    continuation_logprob_from_logits,
    inputs=_lp_inputs,
    rtol=1e-5,
    atol=1e-4,
    fixed=(
        (
            torch.tensor([[0.0, 8.0, 0.0], [8.0, 0.0, 0.0], [0.0, 0.0, 8.0]]),
            torch.tensor([0, 1, 0]),
            1,
        ),
        (torch.tensor([[100.0, -100.0], [0.0, 0.0]]), torch.tensor([0, 1]), 1),
    ),
    hint="the logits at position t predict token t + 1, so token t is scored by log_softmax(logits[t - 1]); "
    "use log_softmax (not log of softmax) so huge logits stay finite",
)


# ---------------------------------------------------------------- llmcourse/tasks/benchmarks.py
def _norm_inputs(rng: random.Random) -> tuple[list[float], list[int]]:
    n = rng.randint(2, 5)
    return [round(-rng.uniform(0.5, 30.0), 3) for _ in range(n)], [
        rng.randint(1, 12) for _ in range(n)
    ]


register(
    "16.choose_normalised",
    choose_normalised,
    inputs=_norm_inputs,
    compare="exact",
    fixed=(([-2.0, -3.0], [1, 3]), ([-4.0, -4.0], [2, 2])),
)
