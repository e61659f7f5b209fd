"""Supervised fine-tuning and preference data for the course models (GPT, Llama): batches, answers, accuracy.

`llmcourse.chat` turns one conversation into token ids and a 0/1 loss mask; this module turns many
of them into the padded batches the one training loop (`llmcourse.train.fit`) eats, and measures
what SFT and DPO change:

* `chat_tokenizer(text, vocab_size)`: a `RegexBPE` trained on `text`, with the chat roles
  registered as special tokens (`chat.SPECIAL_TOKENS`), so "<|assistant|>" is one id.
* `sft_batch` / `sft_sampler`: right-padded `(idx, targets)` with -100 wherever the target is not
  an assistant token or is padding. `mix` replaces that share of every batch's rows by plain
  pretraining windows (targets everywhere): the simplest remedy for catastrophic forgetting
  ("replay", as in Ouyang et al. 2022's PPO-ptx, which mixes pretraining gradients into RLHF).
* `answer` / `accuracy`: greedy decoding (`llmcourse.generate.generate`) until "<|end|>", then exact
  match against the task's answer (`llmcourse.tasks.instructions.is_correct`).
* `dpo_batch` / `dpo_sampler` / `preference_accuracy`: the chosen and rejected conversations of
  `instructions.make_preferences` as the dict `llmcourse.dpo.DPOModel` takes; `self_rejected_pairs`
  builds on-policy pairs whose rejected answer is the model's own wrong greedy answer.
* `hf_batch` / `hf_answers`: the same for a Hugging Face chat model (labels unshifted, its own template).

Padding goes on the right: the GPT has learned absolute positions, so a prompt must start at
position 0. Padded positions get target -100 (and mask 0), and since attention is causal, real
tokens never see the padding after them. Left out: packing several conversations into one row,
and padding-aware batched generation (`accuracy` batches prompts of equal length only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llmcourse.bpe_regex import RegexBPE
from llmcourse.chat import (
    END,
    IGNORE,
    SPECIAL_TOKENS,
    hf_template_ids,
    encode_chat,
    to_training_example,
)
from llmcourse.config import cap_steps
from llmcourse.dpo import sequence_logprobs
from llmcourse.generate import context_size, generate
from llmcourse.tasks.instructions import Example, is_correct, to_conversation


def chat_tokenizer(text: str, vocab_size: int = 512) -> RegexBPE:
    """A byte-level BPE with `vocab_size` ids in all: 256 bytes, merges learned from `text`, and the
    five chat special tokens last. `vocab_size = 256 + 5` gives a pure byte (character) tokenizer.

    >>> tok = chat_tokenizer("", 256 + 5)
    >>> tok.encode("<|user|>hi")
    [257, 104, 105]
    """
    tok = RegexBPE(special_tokens=SPECIAL_TOKENS)
    tok.train(text, vocab_size)
    return tok


def encode_example(
    ex: Example, tokenizer, system: str | None = None
) -> tuple[list[int], list[int]]:
    """One instruction example as a conversation: (ids, loss mask), only the answer trained."""
    return encode_chat(to_conversation(ex, system), tokenizer)


def pad_rows(
    rows: Sequence[tuple[list[int], list[int]]], pad_id: int, length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) pairs -> right-padded (idx, mask) tensors, both (B, length).

    `length` defaults to the longest row; longer rows are cut. Padding has id `pad_id`, mask 0.
    >>> idx, mask = pad_rows([([5, 6, 7], [0, 1, 1]), ([8], [1])], pad_id=0)
    >>> idx.tolist(), mask.tolist()
    ([[5, 6, 7], [8, 0, 0]], [[0, 1, 1], [1, 0, 0]])
    """
    if not rows:
        raise ValueError("no rows to pad")
    T = length or max(len(ids) for ids, _ in rows)
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (ids, m) in enumerate(rows):
        if len(ids) != len(m):
            raise ValueError(f"row {i}: {len(ids)} ids but {len(m)} mask values")
        n = min(len(ids), T)
        idx[i, :n] = torch.tensor(ids[:n])
        mask[i, :n] = torch.tensor(m[:n])
    return idx, mask


def sft_batch(
    rows: Sequence[tuple[list[int], list[int]]], pad_id: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded conversations -> (idx, targets), each (B, T) with T <= block_size, for `model(idx, targets)`.

    targets[b, t] is the token after idx[b, t], or -100 where that token is not trained or is padding.
    """
    T = min(block_size, max(len(ids) for ids, _ in rows) - 1)
    idx, mask = pad_rows(rows, pad_id, T + 1)
    pairs = [to_training_example(i.tolist(), m.tolist()) for i, m in zip(idx, mask)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])  # (B, T) each


def sft_sampler(
    rows: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    block_size: int,
    *,
    batch_size: int,
    pretrain_ids: torch.Tensor | None = None,
    mix: float = 0.0,
) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A sampler for `fit`: each call draws `batch_size` random conversations; with `mix` > 0, that
    share of the rows (rounded, at least one) are instead random windows of `pretrain_ids`, trained on
    every position, so the model keeps practising its pretraining task while it learns to chat."""
    if not 0.0 <= mix < 1.0:
        raise ValueError(f"mix must be in [0, 1), got {mix}")
    if mix > 0 and pretrain_ids is None:
        raise ValueError("mix > 0 needs pretrain_ids to mix in")
    n_pre = max(1, round(mix * batch_size)) if mix > 0 else 0

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, len(rows), (batch_size - n_pre,), generator=generator).tolist()
        idx, targets = sft_batch([rows[i] for i in pick], pad_id, block_size)
        if n_pre:
            T = idx.size(1)
            starts = torch.randint(0, len(pretrain_ids) - T - 1, (n_pre,), generator=generator)
            windows = pretrain_ids[starts[:, None] + torch.arange(T + 1)]  # (n_pre, T + 1)
            idx = torch.cat([idx, windows[:, :-1]])
            targets = torch.cat([targets, windows[:, 1:]])
        return idx, targets

    return sample


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose target is not -100 (what the GPT's loss does)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE
    )


def _prompt_ids(ex: Example, tokenizer, system: str | None) -> list[int]:
    conversation = to_conversation(ex, system, with_answer=False)
    if hasattr(tokenizer, "apply_chat_template"):  # a Hugging Face tokenizer: its own template
        return hf_template_ids(tokenizer, conversation, add_generation_prompt=True)
    return encode_chat(conversation, tokenizer, add_generation_prompt=True)[0]


def _end_id(tokenizer) -> int:
    """The token that ends an assistant turn: our "<|end|>", or, for a Hugging Face tokenizer, the
    special token its chat template writes right after an assistant's text (SmolLM2's "<|im_end|>").
    Not simply its eos: transformers before 5.25 reports a GGUF SmolLM2 tokenizer's eos as
    "<|im_start|>", which would let every answer run on into the next turn's opener."""
    if not hasattr(tokenizer, "apply_chat_template"):
        return tokenizer.special_tokens[END]
    text = "the answer"
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": "a question"}, {"role": "assistant", "content": text}],
            tokenize=False,
        )
    except Exception:  # a template that cannot render this turn: fall back to the eos
        return tokenizer.eos_token_id
    after = rendered[rendered.rfind(text) + len(text) :]
    ids = tokenizer.encode(after, add_special_tokens=False) if after.strip() else []
    if ids and ids[0] in set(tokenizer.all_special_ids):
        return ids[0]
    return tokenizer.eos_token_id


def generate_answers(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    max_new_tokens: int = 32,
    system: str | None = None,
) -> list[str]:
    """Greedy answers, cut at the first end-of-turn token. Prompts of equal length run as one batch.

    Works for any course model (GPT, Llama, wrapped in LoRA or prompt tuning) with the course
    tokenizer and its template, or with a Hugging Face tokenizer and that tokenizer's template.
    Decoding is `generate.generate`: through the KV cache where the model's forward takes one.
    A rehearsal (`config.cap_steps`) answers only the first few examples: the list is shorter."""
    examples = examples[: cap_steps(len(examples))]
    device = next(model.parameters()).device
    end = _end_id(tokenizer)
    prompts = [_prompt_ids(ex, tokenizer, system) for ex in examples]
    out: list[str] = [""] * len(examples)
    # prompts of equal length need no padding: each length runs as one batch
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for n, members in by_len.items():
        idx = torch.tensor([prompts[i] for i in members], device=device)  # (B, n)
        # stop where the context is full, rather than slide it and lose the prompt's start
        steps = max(0, min(max_new_tokens, context_size(model) - n))
        idx = generate(model, idx, steps, temperature=0.0, stop_token=end)  # (B, n + new)
        for row, i in enumerate(members):
            new = idx[row, n:].tolist()
            out[i] = tokenizer.decode(new[: new.index(end)] if end in new else new).strip()
    return out


def answer(
    model: nn.Module,
    tokenizer,
    prompt: str,
    *,
    max_new_tokens: int = 32,
    system: str | None = None,
) -> str:
    """The model's greedy reply to one user prompt, in the chat template."""
    examples = [Example("free", prompt, "")]
    return generate_answers(
        model, tokenizer, examples, max_new_tokens=max_new_tokens, system=system
    )[0]


def accuracy(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    max_new_tokens: int = 32,
    system: str | None = None,
) -> float:
    """Share of examples answered exactly right (after `instructions.normalise`)."""
    preds = generate_answers(
        model, tokenizer, examples, max_new_tokens=max_new_tokens, system=system
    )
    return sum(is_correct(ex, p) for ex, p in zip(examples, preds)) / len(preds)


def dpo_batch(
    triples: Sequence[tuple[Example, str, str]], tokenizer, system: str | None = None
) -> dict[str, torch.Tensor]:
    """(example, chosen, rejected) triples -> the dict `DPOModel(**batch)` takes.

    chosen_idx/rejected_idx: (B, T) right-padded with "<|end|>"; *_mask: (B, T), 1 on the answer and
    its "<|end|>" (position t scores idx[:, t], as `dpo.sequence_logprobs` expects), 0 elsewhere.
    """
    pad = tokenizer.special_tokens[END]
    out = {}
    for key, k in (("chosen", 1), ("rejected", 2)):
        rows = [
            encode_example(Example(t[0].task, t[0].prompt, t[k]), tokenizer, system)
            for t in triples
        ]
        out[f"{key}_idx"], out[f"{key}_mask"] = pad_rows(rows, pad)
    return out


def self_rejected_pairs(
    model: nn.Module,
    tokenizer,
    examples: Sequence[Example],
    *,
    max_new_tokens: int = 32,
    system: str | None = None,
) -> list[tuple[Example, str, str]]:
    """(example, correct answer, the model's own wrong greedy answer) for every example it gets wrong.

    On-policy preference pairs: the rejected answer is exactly what the model would say now, so DPO
    pushes down its actual mistakes (self-play fine-tuning, Chen et al. 2024, uses the same idea).
    """
    preds = generate_answers(
        model, tokenizer, examples, max_new_tokens=max_new_tokens, system=system
    )
    return [
        (ex, ex.answer, p) for ex, p in zip(examples, preds) if not is_correct(ex, p) and p.strip()
    ]


def dpo_sampler(
    triples: Sequence[tuple[Example, str, str]],
    tokenizer,
    batch_size: int,
    *,
    system: str | None = None,
) -> Callable[[torch.Generator], dict[str, torch.Tensor]]:
    """A sampler for `fit`: `batch_size` random preference triples per call, as `dpo_batch`."""

    def sample(generator: torch.Generator) -> dict[str, torch.Tensor]:
        pick = torch.randint(0, len(triples), (batch_size,), generator=generator).tolist()
        return dpo_batch([triples[i] for i in pick], tokenizer, system)

    return sample


@torch.no_grad()
def logprob_margins(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,) log p(chosen) - log p(rejected) under `model`: > 0 where the model prefers the chosen answer."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lp = {
        k: sequence_logprobs(model, batch[f"{k}_idx"].to(device), batch[f"{k}_mask"].to(device))
        for k in ("chosen", "rejected")
    }
    model.train(was_training)
    return lp["chosen"] - lp["rejected"]


def hf_batch(
    rows: Sequence[tuple[list[int], list[int]]], pad_id: int, max_len: int | None = None
) -> dict[str, torch.Tensor]:
    """Encoded conversations (e.g. from `chat.encode_chat_hf`) -> a Hugging Face causal-LM batch.

    Hugging Face models shift the labels themselves, so labels[b, t] scores input_ids[b, t]: -100 where
    the mask is 0 or on padding. attention_mask is 1 on real tokens (padding is on the right).
    """
    idx, mask = pad_rows(rows, pad_id, max_len)
    lengths = torch.tensor([min(len(ids), idx.size(1)) for ids, _ in rows])
    attention = (torch.arange(idx.size(1))[None, :] < lengths[:, None]).long()  # (B, T)
    labels = idx.masked_fill(mask == 0, IGNORE)
    return {"input_ids": idx, "attention_mask": attention, "labels": labels}


@torch.no_grad()
def hf_answers(
    model: nn.Module, tokenizer, examples: Sequence[Example], *, max_new_tokens: int = 24
) -> list[str]:
    """Greedy answers of a Hugging Face chat model, one prompt at a time, through its own template.
    A rehearsal (`config.cap_steps`) answers only the first few: the list is shorter."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for ex in examples[: cap_steps(len(examples))]:
        ids = tokenizer.apply_chat_template(
            to_conversation(ex, with_answer=False),
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        # only the ids and mask: some tokenizers also emit token_type_ids, which Llama's generate
        # rejects (transformers 4.x)
        ids = {k: ids[k].to(device) for k in ("input_ids", "attention_mask") if k in ids}
        gen = model.generate(
            **ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
        out.append(
            tokenizer.decode(gen[0, ids["input_ids"].size(1) :], skip_special_tokens=True).strip()
        )
    model.train(was_training)
    return out


def preference_accuracy(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Share of pairs where the model gives the chosen answer a higher log-probability than the rejected one.

    (DPO's own `accuracy` metric compares *rewards*, i.e. log-ratios to the reference; this one asks the
    model alone, which is what decides what it generates.)
    """
    return (logprob_margins(model, batch) > 0).float().mean().item()


# ------------------------------------------------------------------------- checked by notebook 11's exercises
def sft_targets(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sft_targets(ids (T,), mask (T,) of 0/1) -> (T-1,) next-token targets, -100 where the target token is masked."""
    return ids[1:].masked_fill(mask[1:] == 0, IGNORE)
