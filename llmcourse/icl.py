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

from llmcourse.evaluate import multiple_choice
from llmcourse.exercises import exercise


@dataclass(frozen=True)
class Labeled:
    text: str  # the input (a review, a question)
    label: str  # its answer, one of the task's label words


@dataclass(frozen=True)
class PromptFormat:
    instruction: str = "Classify the sentiment of each review as positive or negative."  # "" for none
    template: str = "Review: {text}\nSentiment:"  # one example's input; the label follows after a space
    separator: str = "\n\n"  # between examples


def few_shot_prompt(demos: Sequence[Labeled], query: str, fmt: PromptFormat = PromptFormat(),
                    verbalizer: dict[str, str] | None = None) -> str:
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


def sample_demos(pool: Sequence[Labeled], k: int, rng: random.Random, balanced: bool = True) -> list[Labeled]:
    """k demonstrations from `pool`: as equal a share per label as k allows (then shuffled), or uniform."""
    if k > len(pool):
        raise ValueError(f"asked for {k} demonstrations from a pool of {len(pool)}")
    if not balanced or k == 0:
        return rng.sample(list(pool), k)
    labels = sorted({d.label for d in pool})
    first = rng.sample(labels, len(labels))  # which labels get the extra example when k is not divisible
    counts = {lab: k // len(labels) + (i < k % len(labels)) for i, lab in enumerate(first)}
    out = []
    for lab in labels:
        items = [d for d in pool if d.label == lab]
        if counts[lab] > len(items):
            raise ValueError(f"only {len(items)} examples of {lab!r} for {counts[lab]} demonstrations")
        out += rng.sample(items, counts[lab])
    rng.shuffle(out)
    return out


@torch.no_grad()
def classify(model, encode: Callable[[str], list[int]], prompt: str, labels: Sequence[str]) -> tuple[int, list[float]]:
    """(index of the most likely label, each label's log-probability) — labels scored after a space.

    When every label is a single token (" positive" is one token for most BPE vocabularies), one
    forward pass of the prompt scores them all; otherwise `multiple_choice` runs one pass per label.
    Both give the same numbers (tested).
    """
    label_ids = [encode(" " + lab) for lab in labels]
    if not all(len(ids) == 1 for ids in label_ids):
        out = multiple_choice(model, encode, prompt, [" " + lab for lab in labels])
        return out["choice"], out["scores"]
    model.eval()
    device = next(model.parameters()).device
    logits, _ = model(torch.tensor([encode(prompt)], device=device))
    logp = F.log_softmax(logits[0, -1].float(), dim=-1)  # next-token distribution after the prompt
    scores = [float(logp[ids[0]]) for ids in label_ids]
    return max(range(len(labels)), key=scores.__getitem__), scores


def accuracy(model, encode: Callable[[str], list[int]], demos: Sequence[Labeled], test: Sequence[Labeled],
             labels: Sequence[str], fmt: PromptFormat = PromptFormat(),
             verbalizer: dict[str, str] | None = None) -> float:
    """Share of `test` items whose label wins, with the same demonstrations for every item."""
    words = [verbalizer[lab] if verbalizer else lab for lab in labels]
    hits = 0
    for ex in test:
        choice, _ = classify(model, encode, few_shot_prompt(demos, ex.text, fmt, verbalizer), words)
        hits += labels[choice] == ex.label
    return hits / len(test)


@dataclass
class ShotCurve:
    ks: list[int]  # numbers of demonstrations
    mean: list[float]  # mean accuracy over draws, per k
    std: list[float]  # spread over draws (0 for k = 0, which has one prompt)
    draws: list[list[float]]  # every draw's accuracy, per k


def accuracy_vs_k(model, encode: Callable[[str], list[int]], pool: Sequence[Labeled], test: Sequence[Labeled],
                  labels: Sequence[str], ks: Sequence[int] = (0, 1, 2, 4, 8), n_draws: int = 3, seed: int = 0,
                  fmt: PromptFormat = PromptFormat(), verbalizer: dict[str, str] | None = None) -> ShotCurve:
    """Accuracy on `test` for each k, averaged over `n_draws` random demonstration sets from `pool`."""
    rng = random.Random(seed)
    curve = ShotCurve([], [], [], [])
    for k in ks:
        accs = [accuracy(model, encode, sample_demos(pool, k, rng), test, labels, fmt, verbalizer)
                for _ in range(1 if k == 0 else n_draws)]
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

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.hf(input_ids=idx.to(self.hf.device)).logits  # (B, T, vocab), on the model's device
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1).to(logits.device),
                                   ignore_index=-100)
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
def greedy_reply(model: HFCausalLM, tokenizer, prompt: str, max_new_tokens: int = 80) -> str:
    """Continue an already rendered prompt greedily; the new text, cut at the end-of-turn token."""
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)], device=next(model.parameters()).device)
    out = model.hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def _fs_inputs(rng: random.Random) -> tuple[list[tuple[str, str]], str]:
    words = "fine dull great awful slow moving sharp flat".split()
    text = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))  # noqa: E731
    return [(text(), rng.choice(["positive", "negative"])) for _ in range(rng.randint(0, 4))], text()


@exercise("14.few_shot_prompt", inputs=_fs_inputs, compare="exact", fixed=(([], "ok"), ([("a", "positive")], "b")))
def few_shot_exercise(demos: list[tuple[str, str]], query: str) -> str:
    """few_shot_prompt(demos [(text, label)], query) -> str: each demo as "Review: {text}\\nSentiment: {label}",
    then "Review: {query}\\nSentiment:", joined by blank lines, no instruction."""
    fmt = PromptFormat(instruction="")
    return few_shot_prompt([Labeled(t, lab) for t, lab in demos], query, fmt)
