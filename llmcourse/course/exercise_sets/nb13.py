"""The exercises of notebook 13 (notebooks/13_dpo.ipynb).

`exercises.check("13.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import torch

from llmcourse.course.exercises import register, torch_generator
from llmcourse.dpo import dpo_loss, reward_metrics, sequence_logprob
from llmcourse.grpo import group_advantages


# ---------------------------------------------------------------- llmcourse/dpo.py
def _metric_inputs(rng) -> tuple:
    g = torch_generator(rng)
    B = rng.randint(1, 6)
    return (*(torch.randn(B, generator=g) * 5 - 10 for _ in range(4)), rng.choice([0.1, 0.5, 1.0]))


register(
    "13.reward_metrics",
    reward_metrics,
    inputs=_metric_inputs,
    compare="allclose",
    rtol=1e-5,
    atol=1e-5,
    fixed=(
        (
            torch.tensor([-4.0, -6.0]),
            torch.tensor([-6.0, -5.0]),
            torch.tensor([-3.0, -6.0]),
            torch.tensor([-6.0, -6.0]),
            0.5,
        ),  # pair 1: the policy prefers chosen, its reward does not
        (
            torch.tensor([-2.0, -3.0]),
            torch.tensor([-4.0, -1.0]),
            torch.tensor([-2.0, -3.0]),
            torch.tensor([-4.0, -1.0]),
            0.1,
        ),
    ),  # policy = reference: every margin is 0
    hint="implicit reward r = beta * (log pi - log ref) for each answer; accuracy = share of r_chosen > "
    "r_rejected (strictly), margin = mean of r_chosen - r_rejected",
)


def _logprob_inputs(rng) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch_generator(rng)
    B, T, V = rng.randint(1, 4), rng.randint(2, 10), rng.randint(2, 12)
    logits = torch.randn(B, T, V, generator=g) * rng.choice([1.0, 10.0])
    mask = torch.randint(0, 2, (B, T), generator=g)
    mask[:, 0] = 0  # the first token has no prediction
    return logits, torch.randint(0, V, (B, T), generator=g), mask


register(
    "13.sequence_logprob",
    sequence_logprob,
    inputs=_logprob_inputs,
    compare="allclose",
    rtol=1e-4,
    atol=1e-4,
    fixed=(
        (
            torch.tensor([[[1000.0, 0.0], [0.0, 1000.0], [5.0, 5.0], [0.0, 1000.0], [0.0, 0.0]]]),
            torch.tensor([[0, 0, 1, 0, 0]]),
            torch.tensor([[0, 1, 1, 1, 1]]),
        ),
    ),  # 0 + 0 - log 2 - 1000
    hint="logits[:, t] predict idx[:, t+1]: gather log_softmax(logits[:, :-1]) at idx[:, 1:], multiply by "
    "mask[:, 1:], sum over t",
)


# ---------------------------------------------------------------- llmcourse/sft.py
def _dpo_inputs(rng) -> tuple:
    g = torch_generator(rng)
    B = rng.randint(1, 6)
    return (*(torch.randn(B, generator=g) * 5 - 10 for _ in range(4)), rng.choice([0.1, 0.5, 1.0]))


def dpo_loss_exercise(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float,
) -> torch.Tensor:
    """dpo_loss(policy_chosen (B,), policy_rejected (B,), ref_chosen (B,), ref_rejected (B,), beta) -> scalar mean DPO loss."""
    return dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta)[0]


register(
    "13.dpo_loss",
    dpo_loss_exercise,
    inputs=_dpo_inputs,
    compare="allclose",
    rtol=1e-5,
    atol=1e-6,
    fixed=(
        (
            torch.tensor([-1.0]),
            torch.tensor([-3.0]),
            torch.tensor([-2.0]),
            torch.tensor([-2.0]),
            0.5,
        ),
    ),
    hint="loss = mean of -log sigmoid(beta * ((pc - rc) - (pr - rr))); use F.logsigmoid for stability",
)


# ---------------------------------------------------------------- llmcourse/grpo.py
def _reward_inputs(rng) -> tuple[torch.Tensor, int]:
    g = torch_generator(rng)
    G = rng.randint(2, 6)
    rewards = torch.randint(0, 2, (rng.randint(1, 4) * G,), generator=g).float()
    return rewards, G


register(
    "13.group_advantages",
    group_advantages,
    inputs=_reward_inputs,
    compare="allclose",
    rtol=1e-5,
    atol=1e-5,
    fixed=(
        (torch.tensor([1.0, 0.0, 0.0, 0.0]), 4),  # mean 1/4, std 1/2: (1.5, -0.5, -0.5, -0.5)
        (torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]), 3),  # all right, all wrong: zeros
        (torch.tensor([0.2, 0.8]), 2),  # rewards need not be 0/1
    ),
    hint="view the rewards as (N, G); subtract each row's mean, divide by its std (torch.std, n - 1) "
    "+ 1e-4; flatten back",
)
