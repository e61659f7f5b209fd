"""Group Relative Policy Optimization (GRPO; Shao et al. 2024, "DeepSeekMath"), from the formula.

Reinforcement learning with a verifiable reward: no reward model, no value network, just a checker.
For every prompt x the current policy samples a *group* of G answers y_1..y_G; a program scores
each (reward 1 if `instructions.is_correct`, else 0); and each answer's advantage is its reward
relative to its own group:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)

The group mean replaces PPO's learned value baseline. A group whose answers all score the same
(all right or all wrong) has A = 0 everywhere: it teaches nothing, so a skill the policy never
samples correctly cannot be learned this way. Every token of answer i then gets the clipped
PPO surrogate with a KL penalty towards a frozen reference model (paper, eq. 3):

    ratio_t = pi(y_t | x, y_<t) / pi_old(y_t | x, y_<t)
    surrogate_t = min(ratio_t * A_i, clip(ratio_t, 1 - clip_eps, 1 + clip_eps) * A_i)
    kl_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1          (the k3 estimator, >= 0, eq. 4)
    loss = - mean over answers of [ mean over the answer's tokens of (surrogate_t - beta * kl_t) ]

pi_old is the policy that sampled the answers. With one update per batch of samples (the paper's
setting, `updates_per_batch=1`) ratio = 1 in value and the clip never acts; with more updates on
the same samples it stops a token's probability from moving more than clip_eps per batch.

Normalisation. `normalise="sequence"` (default) is the paper's: average over each answer's tokens,
then over answers, so every answer weighs the same whatever its length. `normalise="token"`
averages over all answer tokens of the batch at once (DAPO, Yu et al. 2025, and TRL's "dapo"/"bnpo"
losses): long answers weigh more, and a long wrong answer is no longer penalised less per token.
We keep the paper's because our answers are a few tokens long, so the two barely differ; the test
checks both against the formula (and against TRL's implementation where it is installed).

`GRPOModel` wraps policy + reference so that GRPO trains through the course's one loop: the
sampler `grpo_sampler` generates the groups with the *current* policy each time `fit` asks for a
batch, which is the only thing RL adds to the loop. Left out: a format reward (the reward is
exact match only), reward models, Dr. GRPO's unscaled advantages, multi-GPU rollout engines.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.chat import END, encode_chat
from llmcourse.generate import context_size, generate
from llmcourse.sft import pad_rows
from llmcourse.tasks.instructions import Example, is_correct, to_conversation


def correctness_reward(ex: Example, answer: str) -> float:
    """The verifiable reward: 1.0 when the answer passes the task's checker, else 0.0.

    >>> correctness_reward(Example("count", "How many words are in: a b?", "2"), " 2 ")
    1.0
    """
    return float(is_correct(ex, answer))


def group_advantages(rewards: torch.Tensor, group_size: int, *, eps: float = 1e-4) -> torch.Tensor:
    """(N * G,) rewards, each group of G consecutive -> (N * G,) advantages (r - mean) / (std + eps).

    std is the sample standard deviation (Bessel's n - 1, as torch.std and TRL compute it).
    >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, eps=0.0)  # mean 0.25, std 0.5
    tensor([ 1.5000, -0.5000, -0.5000, -0.5000])
    """
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(
            f"{rewards.numel()} rewards do not split into groups of {group_size}: "
            "pass G >= 2 answers per prompt, the G answers of a prompt next to each other"
        )
    grouped = rewards.float().view(-1, group_size)  # (N, G)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    return ((grouped - mean) / (std + eps)).view(-1)


def token_logprobs(
    model: nn.Module, idx: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """(B, T) ids -> (B, T-1): log p(idx[:, t+1] | idx[:, :t+1]) under `model` (column t scores token t+1).

    `temperature` divides the logits first: the probabilities of the distribution the answers were
    sampled from, which is the policy being optimised (TRL does the same)."""
    logits, _ = model(idx[:, :-1])  # (B, T-1, V)
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, idx[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    beta: float = 0.04,
    normalise: str = "sequence",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss from per-token log-probabilities, each (B, T), advantages (B,), mask (B, T) of 0/1.

    Returns (loss, metrics): the KL to the reference and the share of clipped tokens.
    >>> z = torch.zeros(1, 2)   # policy = old = reference: ratio 1, KL 0, loss = -A
    >>> grpo_loss(z, z, z, torch.tensor([0.5]), torch.ones(1, 2))[0]
    tensor(-0.5000)
    """
    if normalise not in ("sequence", "token"):
        raise ValueError(
            f"normalise must be 'sequence' (the paper) or 'token' (DAPO), got {normalise!r}"
        )
    mask = mask.to(logp.dtype)
    A = advantages.to(logp.dtype)[:, None]  # (B, 1): one advantage for all tokens of an answer
    # 1. the probability ratio to the policy that sampled the answers (1 at the first update)
    ratio = torch.exp(logp - old_logp.detach())
    # 2. PPO's pessimistic surrogate: the smaller of the plain and the clipped objective, so moving
    #    a token's probability beyond 1 +- clip_eps (in the advantage's direction) earns nothing more
    surrogate = torch.minimum(ratio * A, ratio.clamp(1 - clip_eps, 1 + clip_eps) * A)
    # 3. the k3 estimate of KL(pi || ref) per token: exp(d) - d - 1 with d = ref - logp; it is >= 0,
    #    0 exactly where pi = ref, and unbiased for samples drawn from pi (Schulman 2020, paper eq. 4)
    d = ref_logp.detach() - logp
    kl = torch.exp(d) - d - 1
    # 4. maximise surrogate - beta * KL: minimise its negative, averaged over the answer tokens
    per_token = -(surrogate - beta * kl) * mask  # (B, T), 0 off the answers
    if normalise == "sequence":
        loss = (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    else:
        loss = per_token.sum() / mask.sum().clamp(min=1)
    clipped = ((ratio - 1).abs() > clip_eps).to(logp.dtype) * mask
    metrics = {
        "kl": ((kl * mask).sum() / mask.sum().clamp(min=1)).detach(),
        "clip_fraction": (clipped.sum() / mask.sum().clamp(min=1)).detach(),
    }
    return loss, metrics


class GRPOModel(nn.Module):
    """Policy + frozen reference, callable by `llmcourse.train.fit` with the batches of `grpo_sampler`.

    A batch: idx (B, T) prompt + sampled answer, right-padded; mask (B, T), 1 on the answer tokens;
    old_logp (B, T-1) under the sampling policy; advantages (B,); rewards (B,) (for the metrics).
    """

    def __init__(
        self,
        policy: nn.Module,
        reference: nn.Module | None = None,
        *,
        beta: float = 0.04,
        clip_eps: float = 0.2,
        normalise: str = "sequence",
        temperature: float = 1.0,
    ):
        super().__init__()
        self.policy = policy
        ref = reference if reference is not None else copy.deepcopy(policy)
        for p in ref.parameters():
            p.requires_grad_(False)
        self.reference = [ref.eval()]  # a list hides it from .parameters(): never trained or saved
        self.beta, self.clip_eps, self.normalise = beta, clip_eps, normalise
        # the sampling temperature: log-probabilities are taken at it, as the answers were drawn
        self.temperature = temperature

    def train(self, mode: bool = True) -> "GRPOModel":
        """`fit` calls train(); the policy still runs without dropout. With dropout, pi and pi_old
        would differ on the very same weights and the ratio would clip noise (TRL disables it too)."""
        super().train(mode)
        self.policy.eval()
        return self

    def forward(self, idx, mask, old_logp, advantages, rewards):
        ref = self.reference[0].to(idx.device)
        with torch.no_grad():
            ref_logp = token_logprobs(ref, idx, temperature=self.temperature)
        logp = token_logprobs(self.policy, idx, temperature=self.temperature)
        loss, metrics = grpo_loss(
            logp,
            old_logp,
            ref_logp,
            advantages,
            mask[:, 1:],  # column t of logp scores token t+1
            clip_eps=self.clip_eps,
            beta=self.beta,
            normalise=self.normalise,
        )
        return {**metrics, "reward": rewards.float().mean()}, loss


@torch.no_grad()
def sample_groups(
    policy: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    group_size: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    max_new_tokens: int = 16,
) -> tuple[list[list[int]], list[list[int]], list[str]]:
    """G sampled answers per example, in groups of G consecutive: (ids, mask, answer text) per answer.

    ids are prompt + answer up to and including the first "<|end|>"; mask is 1 on the answer tokens."""
    end = tokenizer.special_tokens[END]
    device = next(policy.parameters()).device
    rows, masks, texts = [], [], []
    for ex in examples:
        prompt = encode_chat(
            to_conversation(ex, with_answer=False), tokenizer, add_generation_prompt=True
        )[0]
        steps = max(1, min(max_new_tokens, context_size(policy) - len(prompt)))
        idx = torch.tensor([prompt] * group_size, device=device)  # (G, P): one prompt, G copies
        out = generate(
            policy, idx, steps, generator=generator, temperature=temperature, stop_token=end
        )
        for new in out[:, len(prompt) :].tolist():
            new = new[: new.index(end) + 1] if end in new else new  # keep the end: it is an action
            rows.append(prompt + new)
            masks.append([0] * len(prompt) + [1] * len(new))
            texts.append(tokenizer.decode([t for t in new if t != end]).strip())
    return rows, masks, texts


def grpo_sampler(
    policy: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    prompts_per_step: int,
    group_size: int,
    temperature: float = 1.0,
    max_new_tokens: int = 16,
    reward: Callable[[Example, str], float] = correctness_reward,
    updates_per_batch: int = 1,
) -> Callable[[torch.Generator], dict[str, torch.Tensor]]:
    """A sampler for `fit`: draw prompts, sample G answers each with the *current* policy, score them
    with `reward`, and return the batch `GRPOModel` takes. The same batch is returned for
    `updates_per_batch` consecutive steps (the paper's mu), with old_logp fixed at sampling time."""
    pad = tokenizer.special_tokens[END]
    state: dict = {"batch": None, "left": 0}

    def sample(generator: torch.Generator) -> dict[str, torch.Tensor]:
        if state["left"] > 0:
            state["left"] -= 1
            return state["batch"]
        # 1. the prompts of this step, drawn with the loop's generator (reproducible)
        pick = torch.randint(0, len(examples), (prompts_per_step,), generator=generator).tolist()
        exs = [examples[i] for i in pick]
        # 2. roll out: G answers per prompt from the policy as it is now (dropout off)
        was_training = policy.training
        policy.eval()
        rows, masks, texts = sample_groups(
            policy,
            tokenizer,
            exs,
            group_size=group_size,
            generator=generator,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
        )
        # 3. the checker scores every answer; advantages are relative to the answer's own group
        rewards = torch.tensor([reward(exs[i // group_size], t) for i, t in enumerate(texts)])
        idx, mask = pad_rows(list(zip(rows, masks)), pad)
        device = next(policy.parameters()).device
        # 4. log-probabilities of the sampled tokens under the sampling policy: pi_old of the ratio
        with torch.no_grad():
            old_logp = token_logprobs(policy, idx.to(device), temperature=temperature).cpu()
        policy.train(was_training)
        batch = {
            "idx": idx,
            "mask": mask,
            "old_logp": old_logp,
            "advantages": group_advantages(rewards, group_size),
            "rewards": rewards,
        }
        state["batch"], state["left"] = batch, updates_per_batch - 1
        return batch

    return sample


def sampled_reward(
    policy: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    samples: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    max_new_tokens: int = 16,
    reward: Callable[[Example, str], float] = correctness_reward,
) -> float:
    """Mean reward of `samples` sampled answers per example: the expected reward GRPO maximises."""
    was_training = policy.training
    policy.eval()
    _, _, texts = sample_groups(
        policy,
        tokenizer,
        examples,
        group_size=samples,
        generator=generator,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
    )
    policy.train(was_training)
    scores = [
        reward(ex, texts[i * samples + j]) for i, ex in enumerate(examples) for j in range(samples)
    ]
    return sum(scores) / len(scores)
