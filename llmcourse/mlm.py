"""Batches for BERT's two pretraining tasks: masked-LM corruption and next-sentence pairs.

Masked LM (Devlin et al. 2019, sec. 3.1): choose 15% of the (non-special) tokens of each input as
prediction targets; of those, replace 80% by [MASK], 10% by a random token and leave 10% unchanged.
The model must predict the original token at every chosen position, and since it cannot tell which
unchanged tokens were chosen it has to keep a good representation of *every* token, not only of
[MASK]s (which never appear at fine-tuning time). Targets are -100 (ignored by the loss) elsewhere.

    >>> special = SpecialTokens(pad=0, cls=1, sep=2, mask=3, vocab_size=10, ids=(0, 1, 2, 3, 4))
    >>> ids = torch.tensor([[1, 5, 6, 7, 8, 9, 5, 2]])
    >>> x, y = mask_tokens(ids, special, make_generator(0))
    >>> int((y != -100).sum())      # round(0.15 * 6 candidates) = 1 target in this sequence
    1

As in the original implementation (google-research/bert, create_pretraining_data.py), each
sequence gets exactly round(15% x its candidates) targets (at least 1) rather than a coin flip
per token, so no batch is ever without a target.

Next-sentence prediction (sec. 3.1, task #2): from a list of documents, each a list of sentences,
build "[CLS] A [SEP] B [SEP]" where A is a run of consecutive sentences and B either the sentences
that really follow (label 0, IsNext) or sentences of another document (label 1, NotNext), 50/50.
token_type_ids are 0 on "[CLS] A [SEP]" and 1 on "B [SEP]"; the pair is padded to a fixed length
and attention_mask marks the real tokens.

`pretraining_batches(...)` returns a sampler `sample(generator) -> dict` that `llmcourse.train.fit`
calls with its own generator: the dict has input_ids, token_type_ids, attention_mask, targets and
(with NSP) nsp_targets, the keyword arguments of `llmcourse.bert.BertForPreTraining`.

The small generated world notebook 07 pretrains and fine-tunes on at smoke size (a CPU, a minute)
is in `llmcourse.tasks.sentiment`.

Left out: whole-word masking, dynamic span masking (SpanBERT), the original's 10% of short
sequences, and RoBERTa's FULL-SENTENCES packing (the table in notebook 07 says what changed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from llmcourse.runtime import make_generator

IGNORE = -100  # the target value cross-entropy skips (PyTorch's ignore_index default)


@dataclass(frozen=True)
class SpecialTokens:
    pad: int  # fills sequences up to the batch length; attention_mask = 0 there
    cls: int  # first token; its final vector is pooled for NSP and classification
    sep: int  # ends each segment
    mask: int  # replaces 80% of the chosen tokens
    vocab_size: int  # random replacements are drawn from the non-special ids below this
    # every special id (pad, cls, sep, mask, unk, ...): never chosen as targets
    ids: tuple[int, ...]

    @classmethod
    def from_vocab(
        cls,
        vocab,
        *,
        pad: str = "[PAD]",
        cls_token: str = "[CLS]",
        sep: str = "[SEP]",
        mask: str = "[MASK]",
    ) -> SpecialTokens:
        """From a course tokenizer: a BPE one (`llmcourse.bpe_regex.RegexBPE` with those special
        tokens registered) or a vocabulary with `stoi` and `specials` (`llmcourse.data.vocab.WordVocab`)."""
        if hasattr(vocab, "special_tokens"):  # BPE: {text: id}; the ids come after the merges
            s, size = vocab.special_tokens, vocab.vocab_size
            ids = tuple(sorted(s.values()))
        else:
            s, size = vocab.stoi, len(vocab)
            ids = tuple(sorted(s[t] for t in vocab.specials))
        return cls(pad=s[pad], cls=s[cls_token], sep=s[sep], mask=s[mask], vocab_size=size, ids=ids)


def _special_mask(ids: torch.Tensor, special: SpecialTokens) -> torch.Tensor:
    return torch.isin(ids, torch.tensor(special.ids, device=ids.device))


def mask_tokens(
    input_ids: torch.Tensor,
    special: SpecialTokens,
    generator: torch.Generator,
    *,
    mask_prob: float = 0.15,
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids (B, T) -> (corrupted ids (B, T), targets (B, T)).

    In each row, k = max(1, round(mask_prob x n)) of its n non-special tokens are chosen uniformly
    (k = 0 if n = 0); each chosen token becomes [MASK] with probability mask_frac, a random
    non-special token with probability random_frac, and stays itself otherwise. targets hold the
    original id at chosen positions and -100 elsewhere. All randomness comes from `generator`
    (a CPU generator); the input is not modified.
    """
    B, T = input_ids.shape
    ids = input_ids.cpu()
    scores = torch.rand(B, T, generator=generator)  # which tokens are chosen
    u = torch.rand(B, T, generator=generator)  # what happens to a chosen token
    normal_ids = torch.tensor([i for i in range(special.vocab_size) if i not in special.ids])
    random_ids = normal_ids[torch.randint(len(normal_ids), (B, T), generator=generator)]
    corrupted, targets = corrupt(
        ids,
        special,
        scores=scores,
        u=u,
        random_ids=random_ids,
        mask_prob=mask_prob,
        mask_frac=mask_frac,
        random_frac=random_frac,
    )
    return corrupted.to(input_ids.device), targets.to(input_ids.device)


def corrupt(
    ids: torch.Tensor,
    special: SpecialTokens,
    *,
    scores: torch.Tensor,
    u: torch.Tensor,
    random_ids: torch.Tensor,
    mask_prob: float = 0.15,
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`mask_tokens` with its random draws given, all (B, T): `scores` choose the k non-special tokens
    of each row with the smallest score, `u` decides [MASK] (u < mask_frac), random (`random_ids`,
    up to mask_frac + random_frac) or kept. Deterministic, so it can be compared exactly."""
    candidate = ~_special_mask(ids, special)  # (B, T)
    n = candidate.sum(dim=1)  # (B,)
    k = torch.where(n > 0, torch.clamp(torch.round(n * mask_prob), min=1), torch.zeros_like(n))
    # choose k of the n candidates per row: non-candidates get score 2 (always last), keep the k smallest
    # rank[b, t]: the place of token t in row b's order
    rank = scores.masked_fill(~candidate, 2.0).argsort(dim=1).argsort(dim=1)
    chosen = rank < k[:, None]  # (B, T)
    to_mask = chosen & (u < mask_frac)
    to_random = chosen & (u >= mask_frac) & (u < mask_frac + random_frac)
    corrupted = torch.where(to_mask, special.mask, torch.where(to_random, random_ids, ids))
    return corrupted, torch.where(chosen, ids, IGNORE)


def pack_pair(
    a: Sequence[int], b: Sequence[int] | None, max_len: int, *, special: SpecialTokens
) -> tuple[list[int], list[int]]:
    """ "[CLS] a [SEP] b [SEP]" (or "[CLS] a [SEP]" without b) -> (ids, token types), cut to max_len
    by dropping tokens from the end of the longer segment first (as the original does).

    >>> sp = SpecialTokens(pad=0, cls=1, sep=2, mask=3, vocab_size=10, ids=(0, 1, 2, 3))
    >>> pack_pair([5, 6, 7], [8, 9], 8, special=sp)
    ([1, 5, 6, 7, 2, 8, 9, 2], [0, 0, 0, 0, 0, 1, 1, 1])
    >>> pack_pair([5, 6, 7, 5, 6], [8, 9], 7, special=sp)[0]   # room for 4 tokens: A is cut to 2
    [1, 5, 6, 2, 8, 9, 2]
    """
    a, b = list(a), list(b) if b is not None else None
    room = max_len - (3 if b is not None else 2)
    if room < (2 if b is not None else 1):
        raise ValueError(f"max_len={max_len} leaves no room for the text")
    while len(a) + (len(b) if b is not None else 0) > room:
        longer = a if b is None or len(a) >= len(b) else b
        longer.pop()
    ids = [special.cls] + a + [special.sep]
    types = [0] * len(ids)
    if b is not None:
        ids += b + [special.sep]
        types += [1] * (len(b) + 1)
    return ids, types


def _randint(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator))


def sentence_pair(
    documents: Sequence[Sequence[Sequence[int]]],
    max_len: int,
    special: SpecialTokens,
    *,
    generator: torch.Generator,
) -> tuple[list[int], list[int], int]:
    """One NSP example: (ids, token types, label), label 0 = B follows A, 1 = B is random.

    `documents` is a list of documents, each a list of sentences (lists of token ids); documents
    need >= 2 sentences to give an IsNext pair. A is 1+ consecutive sentences filling about half
    the room; B is what follows (IsNext) or a run of sentences from another document (NotNext).
    """
    usable = [d for d in documents if len(d) >= 2]
    if not usable or len(documents) < 2:
        raise ValueError("NSP needs at least two documents, one of them with two or more sentences")
    doc = usable[_randint(len(usable), generator)]
    half = (max_len - 3) // 2
    start = _randint(len(doc) - 1, generator)
    end = (
        start + 1
    )  # A = doc[start:end], grown while it fits in half the room (one sentence at least)
    while end < len(doc) - 1 and sum(map(len, doc[start : end + 1])) <= half:
        end += 1
    a = [t for s in doc[start:end] for t in s]
    label = _randint(2, generator)
    if label == 0:
        source, first = doc, end
    else:
        others = [d for d in documents if d is not doc and len(d) > 0]
        source = others[_randint(len(others), generator)]
        first = _randint(len(source), generator)
    b: list[int] = []
    for sentence in source[first:]:  # B: whole sentences while they fit (one at least)
        if b and len(a) + len(b) + len(sentence) > max_len - 3:
            break
        b += sentence
    ids, types = pack_pair(a, b, max_len, special=special)
    return ids, types, label


def pad_batch(
    rows: Sequence[Sequence[int]],
    types: Sequence[Sequence[int]] | None,
    special: SpecialTokens,
    *,
    length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Pad rows of ids (and token types) to `length` (default: the longest) ->
    {"input_ids", "token_type_ids", "attention_mask"}, each (B, length) int64."""
    length = length or max(map(len, rows))
    ids = torch.full((len(rows), length), special.pad, dtype=torch.long)
    tt = torch.zeros((len(rows), length), dtype=torch.long)
    am = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        am[i, : len(row)] = 1
        if types is not None:
            tt[i, : len(row)] = torch.tensor(types[i], dtype=torch.long)
    return {"input_ids": ids, "token_type_ids": tt, "attention_mask": am}


def pretraining_batches(
    documents: Sequence[Sequence[Sequence[int]]],
    batch_size: int,
    max_len: int,
    *,
    special: SpecialTokens,
    nsp: bool = True,
    mask_prob: float = 0.15,
    only_targets: bool = False,
) -> Callable[[torch.Generator], dict]:
    """A sampler of BERT pretraining batches for `fit`: `sample(generator) -> dict`.

    With `nsp`, every row is a `sentence_pair` and the dict has `nsp_targets` (B,); without it,
    every row is "[CLS] window [SEP]" for a random window of max_len - 2 tokens of a random
    document (MLM only, as RoBERTa). Rows are padded to max_len, then masked by `mask_tokens`.
    `only_targets=True` adds that key to the dict, so the model scores the masked positions only
    (see `BertForMaskedLM.forward`): a faster training step with the same loss.
    """
    docs = [d for d in documents if sum(map(len, d)) > 0]
    flat = [[t for s in d for t in s] for d in docs]

    def sample(generator: torch.Generator) -> dict[str, torch.Tensor]:
        rows, types, labels = [], [], []
        for _ in range(batch_size):
            if nsp:
                ids, tt, label = sentence_pair(docs, max_len, special, generator=generator)
                labels.append(label)
            else:
                tokens = flat[_randint(len(flat), generator)]
                start = _randint(max(1, len(tokens) - (max_len - 2) + 1), generator)
                ids, tt = pack_pair(
                    tokens[start : start + max_len - 2], None, max_len, special=special
                )
            rows.append(ids)
            types.append(tt)
        batch = pad_batch(rows, types, special, length=max_len)
        batch["input_ids"], batch["targets"] = mask_tokens(
            batch["input_ids"], special, generator, mask_prob=mask_prob
        )
        if nsp:
            batch["nsp_targets"] = torch.tensor(labels, dtype=torch.long)
        if only_targets:
            batch["only_targets"] = True
        return batch

    return sample


def fixed_batches(
    sampler: Callable[[torch.Generator], dict[str, torch.Tensor]], n_batches: int, seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Draw `n_batches` from a sampler once, so every evaluation sees the same masked inputs."""
    generator = make_generator(seed)
    return [sampler(generator) for _ in range(n_batches)]


@torch.no_grad()
def mlm_accuracy(
    model: torch.nn.Module,
    batches: Sequence[dict[str, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Masked-LM loss (nats) and top-1 accuracy over all target positions of `batches`, and NSP
    accuracy when the batches have nsp_targets. The model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    loss_sum, correct, count, nsp_correct, nsp_count = 0.0, 0, 0, 0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
        inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
        logits, _ = model(**inputs)
        mlm = logits[0] if isinstance(logits, tuple) else logits  # PreTrainingLogits or a tensor
        sel = batch["targets"] != IGNORE
        picked, gold = mlm[sel].float(), batch["targets"][sel]  # (N, V), (N,)
        loss_sum += torch.nn.functional.cross_entropy(picked, gold, reduction="sum").item()
        correct += int((picked.argmax(-1) == gold).sum())
        count += int(sel.sum())
        if "nsp_targets" in batch and isinstance(logits, tuple):
            nsp_correct += int((logits[1].argmax(-1) == batch["nsp_targets"]).sum())
            nsp_count += len(batch["nsp_targets"])
    model.train(was_training)
    out = {"mlm_loss": loss_sum / max(count, 1), "mlm_accuracy": correct / max(count, 1)}
    if nsp_count:
        out["nsp_accuracy"] = nsp_correct / nsp_count
    return out


def unigram_baseline(
    train_ids: Sequence[int] | torch.Tensor,
    batches: Sequence[dict[str, torch.Tensor]],
    *,
    vocab_size: int,
    special: SpecialTokens,
) -> dict[str, float]:
    """The score of a model that ignores the context: predict every blank from token frequencies
    alone (counted on `train_ids`, add-one smoothed, specials excluded). Its accuracy is always
    guessing the most frequent token; its loss is the cross-entropy of the unigram distribution
    on the same targets `mlm_accuracy` scores."""
    counts = (
        torch.bincount(torch.as_tensor(train_ids).long().flatten(), minlength=vocab_size).double()
        + 1
    )
    counts[list(special.ids)] = 0
    log_p = (counts / counts.sum()).log()
    gold = torch.cat([b["targets"][b["targets"] != IGNORE] for b in batches]).cpu()
    return {
        "mlm_loss": float(-log_p[gold].mean()),
        "mlm_accuracy": float((gold == counts.argmax()).double().mean()),
    }


# ------------------------------------------------------------------------- checked by notebook 07's exercises
_EX_SPECIAL = SpecialTokens(pad=0, cls=2, sep=3, mask=4, vocab_size=100, ids=(0, 1, 2, 3, 4))


def masked_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """masked_accuracy(logits (B, T, V), targets (B, T)) -> float: the share of positions with a target
    (targets != -100) where the arg-max of the logits is the target."""
    sel = targets != IGNORE
    return (logits.argmax(dim=-1)[sel] == targets[sel]).double().mean().item()


def mask_row(
    ids: torch.Tensor, scores: torch.Tensor, u: torch.Tensor, random_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """mask_row(ids (T,), scores (T,), u (T,), random_ids (T,)) -> (corrupted (T,), targets (T,)):
    BERT's masked-LM corruption of one row with its random draws given. Ids 0-4 are special and never
    chosen; of the n other tokens the k = max(1, round(0.15 * n)) with the smallest scores are chosen
    (none if n = 0); a chosen token becomes [MASK] = 4 if u[t] < 0.8, random_ids[t] if u[t] < 0.9, and
    stays itself otherwise; targets are the original ids at chosen positions and -100 elsewhere."""
    corrupted, targets = corrupt(
        ids[None], _EX_SPECIAL, scores=scores[None], u=u[None], random_ids=random_ids[None]
    )
    return corrupted[0], targets[0]
