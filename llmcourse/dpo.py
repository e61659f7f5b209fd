"""Direct Preference Optimization (Rafailov et al. 2023), from the formula.

Given a prompt x with a preferred answer y_w and a rejected one y_l, DPO trains the policy pi directly,
with no reward model and no RL loop, by

    loss = -log sigmoid( beta * [ (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)) ] )

where `ref` is a frozen copy of the starting (SFT) model. The bracket is the difference of two
*implicit rewards* r = beta * (log pi - log ref); `preference accuracy` is how often r_w > r_l and the
`reward margin` is r_w - r_l. beta sets how far the policy may drift from the reference.

`DPOModel` wraps policy + reference so that DPO trains through the course's one loop:
`model(**batch) -> (metrics, loss)`. Left out: IPO/KTO variants, label smoothing (cDPO).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


def sequence_logprobs(model: nn.Module, idx: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Sum of log p(token_t | tokens_<t) over the positions where loss_mask is 1.

    idx: (B, T) token ids; loss_mask: (B, T), 1 on answer tokens (position t scores idx[:, t]).
    Returns (B,) summed log-probabilities of the answers.
    """
    logits, _ = model(idx[:, :-1])  # (B, T-1, V): position t predicts token t+1
    return answer_logprobs(logits, idx, loss_mask)


def answer_logprobs(
    logits: torch.Tensor, idx: torch.Tensor, loss_mask: torch.Tensor
) -> torch.Tensor:
    """`sequence_logprobs` from the model's logits on idx, (B, T, V) or (B, T-1, V) (the last is unused)."""
    T = idx.size(1)
    logp = F.log_softmax(
        logits[:, : T - 1].float(), dim=-1
    )  # (B, T-1, V): row t scores idx[:, t+1]
    tok_logp = logp.gather(-1, idx[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (tok_logp * loss_mask[:, 1:].to(tok_logp.dtype)).sum(dim=-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean DPO loss over the batch, and metrics (accuracy, margin, chosen/rejected rewards).

    >>> loss, m = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    >>> round(loss.item(), 4), m["accuracy"].item(), m["margin"].item()   # -log sigmoid(0.5 * 2)
    (0.3133, 1.0, 1.0)
    """
    # 1. the implicit reward of an answer: how much more likely the policy makes it than the frozen
    #    reference does, in log-probability, times beta (Rafailov et al. 2023, eq. 5)
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    # 2. Bradley-Terry: the probability that "chosen beats rejected" is sigmoid(reward difference)
    margin = chosen_reward - rejected_reward
    # 3. maximise that probability: minimise -log sigmoid(margin); logsigmoid is stable for any margin
    loss = -F.logsigmoid(margin).mean()
    metrics = {
        "accuracy": (margin > 0).float().mean(),
        "margin": margin.mean().detach(),
        "chosen_reward": chosen_reward.mean().detach(),
        "rejected_reward": rejected_reward.mean().detach(),
    }
    return loss, metrics


class DPOModel(nn.Module):
    """Policy + frozen reference, callable by `llmcourse.train.fit` with DPO batches.

    A batch is a dict with chosen_idx, chosen_mask, rejected_idx, rejected_mask (each (B, T)).
    """

    def __init__(self, policy: nn.Module, reference: nn.Module | None = None, beta: float = 0.1):
        super().__init__()
        self.policy = policy
        ref = reference if reference is not None else copy.deepcopy(policy)
        for p in ref.parameters():
            p.requires_grad_(False)
        self.reference = [
            ref.eval()
        ]  # a list hides it from .parameters()/.state_dict(): never trained or saved
        self.beta = beta

    def forward(self, chosen_idx, chosen_mask, rejected_idx, rejected_mask):
        ref = self.reference[0].to(chosen_idx.device)
        with torch.no_grad():
            ref_c = sequence_logprobs(ref, chosen_idx, chosen_mask)
            ref_r = sequence_logprobs(ref, rejected_idx, rejected_mask)
        pol_c = sequence_logprobs(self.policy, chosen_idx, chosen_mask)
        pol_r = sequence_logprobs(self.policy, rejected_idx, rejected_mask)
        loss, metrics = dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=self.beta)
        return metrics, loss


# ------------------------------------------------------------------------- checked by notebook 13's exercises
def reward_metrics(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float,
) -> tuple[float, float]:
    """reward_metrics(policy_chosen (B,), policy_rejected (B,), ref_chosen (B,), ref_rejected (B,), beta)
    -> (accuracy, margin) floats: the share of pairs whose implicit reward beta * (log pi - log ref) is
    higher for the chosen answer, and the mean of (chosen reward - rejected reward)."""
    _, m = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta)
    return m["accuracy"].item(), m["margin"].item()


def sequence_logprob(logits: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sequence_logprob(logits (B, T, V), idx (B, T), mask (B, T)) -> (B,): the sum of log p(idx[:, t] |
    idx[:, :t]) over the positions with mask[:, t] = 1, where logits[:, t] is the model's prediction of the
    token after idx[:, t]."""
    return answer_logprobs(logits, idx, mask)
