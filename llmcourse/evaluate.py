"""Evaluation: perplexity, exact match, and multiple-choice scoring by log-likelihood.

* Perplexity = exp(mean negative log-likelihood per token) over a held-out token stream, evaluated in
  non-overlapping windows of the model's context (a slightly pessimistic but simple estimate; a
  sliding window with stride gives lower numbers).
* Exact match generates an answer greedily and compares it after light normalisation.
* Multiple choice asks which of several continuations the model finds most likely — what benchmark
  harnesses (e.g. EleutherAI's lm-evaluation-harness) do for MMLU/HellaSwag-style tasks. We report the
  raw sum of log-probabilities (acc), the sum per character (the harness's acc_norm) and per token
  (acc_per_token), because the raw sum favours short options.
`compare_models` runs a set of tasks over several models and returns one table (list of dicts).
Left out: sampling-based metrics (pass@k), LLM-as-a-judge, calibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from llmcourse.config import cap_steps


@torch.no_grad()
def perplexity(model, ids: torch.Tensor, block_size: int, *, batch_size: int = 8) -> float:
    """Perplexity of a 1-D token stream, scored in consecutive windows of `block_size + 1` tokens."""
    model.eval()
    device = next(model.parameters()).device
    n = (ids.numel() - 1) // block_size
    if n == 0:
        raise ValueError(f"need more than {block_size} tokens to score, got {ids.numel()}")
    n = min(n, cap_steps(-(-n // batch_size)) * batch_size)  # fewer batches in a rehearsal
    windows = ids[: n * block_size + 1]
    total_nll, total_tokens = 0.0, 0
    for start in range(0, n, batch_size):
        rows = range(start, min(start + batch_size, n))
        x = torch.stack([windows[r * block_size : (r + 1) * block_size] for r in rows]).to(device)
        y = torch.stack([windows[r * block_size + 1 : (r + 1) * block_size + 1] for r in rows]).to(
            device
        )
        logits, _ = model(x)
        total_nll += F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum"
        ).item()
        total_tokens += y.numel()
    return math.exp(total_nll / total_tokens)


@torch.no_grad()
def continuation_logprob(model, context: list[int], continuation: list[int]) -> float:
    """log p(continuation | context) under the model, summed over the continuation's tokens."""
    if not continuation:
        raise ValueError("continuation must have at least one token")
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor([context + continuation], device=device)
    logits, _ = model(ids[:, :-1])
    logp = F.log_softmax(logits.float(), dim=-1)[0]  # (T-1, V)
    positions = range(len(context) - 1, len(context) + len(continuation) - 1)
    return float(sum(logp[p, ids[0, p + 1]] for p in positions))


def multiple_choice(
    model,
    encode: Callable[[str], list[int]],
    question: str,
    *,
    options: Sequence[str],
    prefix: str = "",
) -> dict:
    """Score each option as a continuation of `question` (after `prefix`, e.g. " ").

    The question is cropped from the left so that question + option fits the model's
    `cfg.block_size` (when it has one). Returns the summed log-probs ("scores"), the options' token
    counts ("lengths") and character counts without the prefix ("chars"), and the index each rule
    picks: "choice" (the raw sum: acc), "choice_norm" (per character: lm-evaluation-harness's
    acc_norm) and "choice_per_token" (per token: acc_per_token). Both divisions undo the raw sum's
    preference for short options; `llmcourse.tasks.benchmarks` explains the three names.
    """
    limit = getattr(getattr(model, "cfg", None), "block_size", None)
    ctx = encode(question)
    scores, lengths = [], []
    for opt in options:
        toks = encode(prefix + opt)
        # keep the question's last tokens: question + option must fit the window (+1: the last
        # option token is only a target)
        keep = ctx if limit is None else ctx[max(0, len(ctx) - (limit + 1 - len(toks))) :]
        scores.append(continuation_logprob(model, keep, toks))
        lengths.append(len(toks))
    chars = [len(opt) for opt in options]

    def best(values: list[float]) -> int:
        return max(range(len(values)), key=values.__getitem__)

    return {
        "scores": scores,
        "lengths": lengths,
        "chars": chars,
        "choice": best(scores),
        # lm-evaluation-harness's acc_norm: log-likelihood per character of the choice
        "choice_norm": best([s / max(c, 1) for s, c in zip(scores, chars)]),
        "choice_per_token": best([s / n for s, n in zip(scores, lengths)]),
    }


def exact_match(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Share of predictions equal to their answer after normalising case, spacing and final dots."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        raise ValueError("nothing to score")

    def norm(s: str) -> str:
        return " ".join(s.strip().rstrip(".!").split()).lower()

    return sum(norm(p) == norm(a) for p, a in zip(predictions, answers)) / len(answers)


def compare_models(
    models: dict[str, object], tasks: dict[str, Callable[[object], float]]
) -> list[dict]:
    """Run every task (a function model -> score) on every model: one row per model."""
    return [
        {"model": name, **{task: fn(model) for task, fn in tasks.items()}}
        for name, model in models.items()
    ]


# ------------------------------------------------------------------------- checked by notebook 16's exercises
def masked_perplexity(nll: torch.Tensor, mask: torch.Tensor) -> float:
    """masked_perplexity(nll (B, T) float, mask (B, T) bool) -> float: exp of the mean negative
    log-likelihood over the real tokens (mask True) of the whole batch; padding does not count."""
    return math.exp(float((nll * mask).sum() / mask.sum()))


def continuation_logprob_from_logits(
    logits: torch.Tensor, ids: torch.Tensor, n_context: int
) -> float:
    """continuation_logprob(logits (T, V), ids (T,), n_context) -> float: log p(ids[n_context:] |
    ids[:n_context]), summed over the continuation's tokens; logits[t] is the prediction for ids[t + 1]."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (T, V)
    t = torch.arange(n_context, ids.numel())  # positions of the continuation's tokens
    return float(logp[t - 1, ids[t]].sum().detach())
