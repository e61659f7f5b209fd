"""In-context learning: few-shot prompts, and accuracy as a function of the number of examples.

GPT-3 (Brown et al. 2020) showed that a language model can pick up a task from a handful of
solved examples placed in the prompt, with no gradient step: zero-shot (instruction only),
one-shot, few-shot. We measure it the way benchmark harnesses do: the model *scores* each label as
a continuation of the prompt (`llmcourse.evaluate.multiple_choice`), and the highest-scoring label
is its answer, so no free-text parsing is involved.

Two facts worth seeing in the numbers:
  * which examples you pick, and their order, move accuracy a lot (Zhao et al. 2021, "Calibrate
    Before Use"; Lu et al. 2022): `accuracy_vs_k` averages over several random draws and reports
    the spread;
  * the label words carry much of the effect (Min et al. 2022): the model is told *which* answers
    exist, and their prior.

`HFCausalLM` wraps a Hugging Face causal LM in the course calling convention
`logits, loss = model(idx)`, so the evaluation helpers score SmolLM2 and our GPT alike.
`digit_prompts` / `train_digit_icl` give a task family (first, second, max, min of two digits)
on which a 2-layer GPT trained in seconds shows in-context task recognition, with the best fixed
task and the ideal (Bayes) reader to compare against.
Left out: calibration, chain-of-thought, retrieval of similar demonstrations (kNN prompting).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmcourse.config import cap_steps
from llmcourse.evaluate import multiple_choice


@dataclass(frozen=True)
class Labeled:
    text: str  # the input (a review, a question)
    label: str  # its answer, one of the task's label words


@dataclass(frozen=True)
class PromptFormat:
    instruction: str = (
        "Classify the sentiment of each review as positive or negative."  # "" for none
    )
    template: str = (
        "Review: {text}\nSentiment:"  # one example's input; the label follows after a space
    )
    separator: str = "\n\n"  # between examples


def few_shot_prompt(
    demos: Sequence[Labeled],
    query: str,
    fmt: PromptFormat = PromptFormat(),
    *,
    verbalizer: dict[str, str] | None = None,
) -> str:
    """Instruction, `k = len(demos)` solved examples, then the query waiting for its label.

    `verbalizer` maps a label to the word the model sees ({"pos": "positive"}); default: the label.

    >>> few_shot_prompt([Labeled("great", "positive")], "awful", PromptFormat("", "Review: {text}\\nSentiment:", "\\n"))
    'Review: great\\nSentiment: positive\\nReview: awful\\nSentiment:'
    """
    word = (lambda lab: verbalizer[lab]) if verbalizer else (lambda lab: lab)
    parts = [fmt.instruction] if fmt.instruction else []
    parts += [fmt.template.format(text=d.text) + " " + word(d.label) for d in demos]
    parts.append(fmt.template.format(text=query))
    return fmt.separator.join(parts)


def sample_demos(
    pool: Sequence[Labeled], k: int, rng: random.Random, *, balanced: bool = True
) -> list[Labeled]:
    """k demonstrations from `pool`: as equal a share per label as k allows (then shuffled), or uniform."""
    if k > len(pool):
        raise ValueError(f"asked for {k} demonstrations from a pool of {len(pool)}")
    if not balanced or k == 0:
        return rng.sample(list(pool), k)
    labels = sorted({d.label for d in pool})
    first = rng.sample(
        labels, len(labels)
    )  # which labels get the extra example when k is not divisible
    counts = {lab: k // len(labels) + (i < k % len(labels)) for i, lab in enumerate(first)}
    out = []
    for lab in labels:
        items = [d for d in pool if d.label == lab]
        if counts[lab] > len(items):
            raise ValueError(
                f"only {len(items)} examples of {lab!r} for {counts[lab]} demonstrations"
            )
        out += rng.sample(items, counts[lab])
    rng.shuffle(out)
    return out


@torch.no_grad()
def classify(
    model, encode: Callable[[str], list[int]], prompt: str, *, labels: Sequence[str]
) -> tuple[int, list[float]]:
    """(index of the most likely label, each label's log-probability) — labels scored after a space.

    When every label is a single token (" positive" is one token for most BPE vocabularies), one
    forward pass of the prompt scores them all; otherwise `multiple_choice` runs one pass per label.
    Both give the same numbers (tested).
    """
    label_ids = [encode(" " + lab) for lab in labels]
    if not all(len(ids) == 1 for ids in label_ids):
        out = multiple_choice(model, encode, prompt, options=[" " + lab for lab in labels])
        return out["choice"], out["scores"]
    model.eval()
    device = next(model.parameters()).device
    logits, _ = model(torch.tensor([encode(prompt)], device=device))
    logp = F.log_softmax(logits[0, -1].float(), dim=-1)  # next-token distribution after the prompt
    scores = [float(logp[ids[0]]) for ids in label_ids]
    return max(range(len(labels)), key=scores.__getitem__), scores


def accuracy(
    model,
    encode: Callable[[str], list[int]],
    *,
    demos: Sequence[Labeled],
    test: Sequence[Labeled],
    labels: Sequence[str],
    fmt: PromptFormat = PromptFormat(),
    verbalizer: dict[str, str] | None = None,
) -> float:
    """Share of `test` items whose label wins, with the same demonstrations for every item."""
    words = [verbalizer[lab] if verbalizer else lab for lab in labels]
    test = test[: cap_steps(len(test))]  # fewer in a rehearsal (LLMCOURSE_REHEARSAL)
    hits = 0
    for ex in test:
        choice, _ = classify(
            model, encode, few_shot_prompt(demos, ex.text, fmt, verbalizer=verbalizer), labels=words
        )
        hits += labels[choice] == ex.label
    return hits / len(test)


@dataclass
class ShotCurve:
    ks: list[int]  # numbers of demonstrations
    mean: list[float]  # mean accuracy over draws, per k
    std: list[float]  # spread over draws (0 for k = 0, which has one prompt)
    draws: list[list[float]]  # every draw's accuracy, per k


def accuracy_vs_k(
    model,
    encode: Callable[[str], list[int]],
    *,
    pool: Sequence[Labeled],
    test: Sequence[Labeled],
    labels: Sequence[str],
    ks: Sequence[int] = (0, 1, 2, 4, 8),
    n_draws: int = 3,
    seed: int = 0,
    fmt: PromptFormat = PromptFormat(),
    verbalizer: dict[str, str] | None = None,
) -> ShotCurve:
    """Accuracy on `test` for each k, averaged over `n_draws` random demonstration sets from `pool`."""
    rng = random.Random(seed)
    curve = ShotCurve([], [], [], [])
    for k in ks:
        accs = [
            accuracy(
                model,
                encode,
                demos=sample_demos(pool, k, rng),
                test=test,
                labels=labels,
                fmt=fmt,
                verbalizer=verbalizer,
            )
            for _ in range(1 if k == 0 else cap_steps(n_draws))
        ]
        curve.ks.append(k)
        curve.draws.append(accs)
        curve.mean.append(statistics.fmean(accs))
        curve.std.append(statistics.pstdev(accs))
    return curve


class HFCausalLM(nn.Module):
    """A Hugging Face causal LM behind the course convention: `logits, loss = model(idx, targets)`."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.hf(
            input_ids=idx.to(self.hf.device)
        ).logits  # (B, T, vocab), on the model's device
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                targets.reshape(-1).to(logits.device),
                ignore_index=-100,
            )
        return logits, loss


def load_smollm2(device: torch.device | str | None = None) -> tuple[HFCausalLM, object]:
    """SmolLM2-135M-Instruct from the offline GGUF file (`llmcourse.data`): (wrapped model, tokenizer).

    Dequantised to float32 and moved to `device` (a notebook passes `rt.device`; None = CPU); about
    25 s on one CPU thread, most of it converting the tokenizer. The course's scoring functions put
    their inputs on the model's device, so the same calls work on CPU and GPU.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcourse.data import data_path

    path = data_path("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    return HFCausalLM(hf.to(device or "cpu")), tok


@torch.no_grad()
def greedy_reply(model: HFCausalLM, tokenizer, prompt: str, *, max_new_tokens: int = 80) -> str:
    """Continue an already rendered prompt greedily; the new text, cut at the end-of-turn token."""
    ids = torch.tensor(
        [tokenizer.encode(prompt, add_special_tokens=False)], device=next(model.parameters()).device
    )
    out = model.hf.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.eos_token_id,
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


# ------------------------------------------------ a task family a tiny GPT learns here (smoke size)
# Task recognition (Min et al. 2022; Xie et al. 2022, "ICL as implicit Bayesian inference"): the
# examples mostly tell a model *which* task it already knows is meant. We make that visible at toy
# scale: each prompt uses one of four functions of two digits, and only its examples say which.
DIGIT_TASKS = ("first", "second", "max", "min")
_GT, _SEMI = 10, 11  # token ids of ">" and ";" (digits are their own ids)


def digit_task_answers(x: torch.Tensor) -> torch.Tensor:
    """Every task's answer: x (..., 2) digit pairs -> (..., 4), in the order of DIGIT_TASKS.

    >>> digit_task_answers(torch.tensor([3, 7])).tolist()
    [3, 7, 7, 3]
    """
    return torch.stack([x[..., 0], x[..., 1], x.max(-1).values, x.min(-1).values], -1)


def encode_digits(text: str) -> list[int]:
    """Token ids of a digit prompt; spaces are for the reader only. encode_digits("3 7>7;") == [3, 7, 10, 7, 11]."""
    table = {**{str(d): d for d in range(10)}, ">": _GT, ";": _SEMI}
    return [table[ch] for ch in text if ch != " "]


@dataclass
class DigitPrompts:
    idx: torch.Tensor  # (B, T) tokens: max_k + 1 examples "a b>c;" (the last without its ";")
    targets: torch.Tensor  # (B, T) the answer token after each ">", -100 elsewhere
    task: torch.Tensor  # (B,) index into DIGIT_TASKS
    x: torch.Tensor  # (B, max_k + 1, 2) the digit pairs
    answers: torch.Tensor  # (B, max_k + 1) the task's answer for each pair

    def text(self, b: int, k: int) -> str:
        """Prompt b cut after k examples, as text: "3 7>7;2 5>2;8 1>" (k = 2)."""
        pairs = self.x[b].tolist()
        shown = [f"{p[0]} {p[1]}>{a};" for p, a in zip(pairs[:k], self.answers[b, :k].tolist())]
        return "".join(shown) + f"{pairs[k][0]} {pairs[k][1]}>"


def digit_prompts(generator: torch.Generator, batch_size: int, max_k: int = 6) -> DigitPrompts:
    """`batch_size` prompts, each with its own task (uniform) and max_k + 1 random digit pairs.

    One sequence holds every k at once: the answer after example k's ">" is the query of a k-shot
    prompt (the model is causal, so later tokens cannot change it). Training on all answers trains
    k = 0 .. max_k together; the digits themselves are random, so they are not trained (-100).
    """
    B, n = batch_size, max_k + 1
    task = torch.randint(0, len(DIGIT_TASKS), (B,), generator=generator)
    x = torch.randint(0, 10, (B, n, 2), generator=generator)
    answers = digit_task_answers(x).gather(-1, task[:, None, None].expand(B, n, 1))[
        ..., 0
    ]  # (B, n)
    gt, semi = torch.full_like(answers, _GT), torch.full_like(answers, _SEMI)
    seq = torch.stack([x[..., 0], x[..., 1], gt, answers, semi], -1).view(B, n * 5)  # (B, n * 5)
    idx, targets = seq[:, :-2], seq[:, 1:-1].clone()  # drop the final answer and ";" from the input
    is_answer = torch.zeros_like(targets, dtype=torch.bool)
    is_answer[:, 2::5] = True  # inputs at ">" (position 2 of each example) predict an answer
    return DigitPrompts(idx, targets.masked_fill(~is_answer, -100), task, x, answers)


def train_digit_icl(
    steps: int = 400,
    *,
    seed: int = 0,
    runtime=None,
    batch_size: int = 64,
    n_embd: int = 64,
    max_k: int = 6,
) -> nn.Module:
    """A 2-layer GPT trained from scratch on `digit_prompts`; returned in eval mode.

    About 10 s on one CPU thread for 400 steps. Every task's rule must live in the weights; the
    examples only have to say which rule applies.
    """
    from llmcourse.gpt import GPT, GPTConfig
    from llmcourse.train import TrainConfig, fit

    torch.manual_seed(seed)
    model = GPT(
        GPTConfig(
            vocab_size=12,
            block_size=5 * (max_k + 1),
            n_layer=2,
            n_head=4,
            n_embd=n_embd,
            dropout=0.0,
        )
    )
    cfg = TrainConfig(
        max_steps=steps,
        lr=3e-3,
        warmup_steps=20,
        weight_decay=0.0,
        eval_every=0,
        ckpt_every=0,
        log_every=max(1, steps // 20),
        seed=seed,
    )
    sample = lambda g: (lambda p: (p.idx, p.targets))(digit_prompts(g, batch_size, max_k))  # noqa: E731
    fit(model, sample, cfg, runtime=runtime, progress=False)
    return model.eval()


def fixed_task_baseline(prompts: DigitPrompts) -> tuple[str, float]:
    """The best single task applied to every query, ignoring the examples: (its name, its accuracy).

    This is the "majority label" of this family: what a reader that never looks at the examples
    can reach at best. Accuracy is over every answer position of `prompts`.
    """
    hits = (
        (digit_task_answers(prompts.x) == prompts.answers[..., None]).float().mean((0, 1))
    )  # (4,)
    best = int(hits.argmax())
    return DIGIT_TASKS[best], float(hits[best])


def ideal_reader_accuracy(prompts: DigitPrompts) -> list[float]:
    """Accuracy per k of the Bayes-optimal reader: keep the tasks that agree with all k examples
    (all are equally likely a priori), answer what most of them say, split ties evenly."""
    cand = digit_task_answers(prompts.x)  # (B, n, 4) each task's answer for each pair
    agree = (
        cand == prompts.answers[..., None]
    ).float()  # (B, n, 4) task consistent with example i?
    alive = torch.cumprod(
        torch.cat([torch.ones_like(agree[:, :1]), agree[:, :-1]], 1), 1
    )  # (B, n, 4) before k
    votes = (F.one_hot(cand, 10).float() * alive[..., None]).sum(2)  # (B, n, 10) tasks per answer
    winners = votes == votes.max(-1, keepdim=True).values  # (B, n, 10)
    hit = winners.gather(-1, prompts.answers[..., None])[..., 0].float() / winners.sum(-1)
    return hit.mean(0).tolist()


@torch.no_grad()
def digit_accuracy_by_k(model: nn.Module, prompts: DigitPrompts) -> list[float]:
    """The model's accuracy (argmax over the ten digits) at each k = 0 .. max_k, in one forward pass."""
    model.eval()
    logits, _ = model(prompts.idx.to(next(model.parameters()).device))
    pred = logits[:, 2::5, :10].argmax(-1).cpu()  # (B, n): the prediction after each ">"
    return (pred == prompts.answers).float().mean(0).tolist()
