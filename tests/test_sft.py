"""SFT and DPO batches: loss masks, right padding, greedy answers, exact-match accuracy, exercises."""

import pytest
import torch
from torch import nn

from llmcourse import sft
from llmcourse.course import exercises
from llmcourse.chat import END, SPECIAL_TOKENS, encode_chat, to_training_example
from llmcourse.dpo import sequence_logprobs
from llmcourse.course.exercises import ExerciseError
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.ptuning import PromptTuned
from llmcourse.tasks.instructions import (
    Example,
    make_instructions,
    make_preferences,
    to_conversation,
)


@pytest.fixture(scope="module")
def tok():
    text = "\n".join(f"{e.prompt} {e.answer}" for e in make_instructions(200, "train"))
    return sft.chat_tokenizer(text, 256 + 5 + 60)


def test_chat_tokenizer_has_single_id_specials_and_round_trips(tok):
    assert tok.vocab_size == 256 + 5 + 60
    for s in SPECIAL_TOKENS:
        assert tok.encode(s) == [tok.special_tokens[s]]
    text = "<|user|>Reverse the words: red fox<|end|>\n<|assistant|>fox red<|end|>"
    assert tok.decode(tok.encode(text)) == text
    with pytest.raises(ValueError):
        sft.chat_tokenizer("abc", 256)  # no room for the five special tokens


def test_pad_rows_golden_and_errors():
    idx, mask = sft.pad_rows([([5, 6, 7], [0, 1, 1]), ([8], [1])], pad_id=0)
    assert idx.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[0, 1, 1], [1, 0, 0]]
    idx, mask = sft.pad_rows([([5, 6, 7], [0, 1, 1])], pad_id=9, length=2)  # cut
    assert idx.tolist() == [[5, 6]] and mask.tolist() == [[0, 1]]
    with pytest.raises(ValueError):
        sft.pad_rows([([1, 2], [1])], pad_id=0)
    with pytest.raises(ValueError):
        sft.pad_rows([], pad_id=0)


def test_sft_batch_rows_equal_unpadded_examples_and_padding_is_ignored(tok):
    exs = make_instructions(6, "train")
    rows = [sft.encode_example(e, tok) for e in exs]
    idx, targets = sft.sft_batch(rows, tok.special_tokens[END], block_size=200)
    assert idx.shape == targets.shape == (6, max(len(r[0]) for r in rows) - 1)
    for b, (ids, mask) in enumerate(rows):
        x, y = to_training_example(ids, mask)
        n = len(ids) - 1
        assert torch.equal(idx[b, :n], x) and torch.equal(targets[b, :n], y)
        assert (targets[b, n:] == -100).all()  # padding never trained
        # exactly the answer tokens and its <|end|> are targets
        answer = tok.encode(exs[b].answer) + [tok.special_tokens[END]]
        assert targets[b][targets[b] != -100].tolist() == answer


def test_masked_and_padded_positions_do_not_change_the_loss(tok):
    """A model's loss on the padded batch equals the token-weighted loss of the rows one by one."""
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, dropout=0.0
        )
    )
    rows = [sft.encode_example(e, tok) for e in make_instructions(4, "train")]
    idx, targets = sft.sft_batch(rows, tok.special_tokens[END], 63)
    _, loss = model(idx, targets)
    total, count = 0.0, 0
    for ids, mask in rows:
        x, y = to_training_example(ids, mask)
        _, l1 = model(x[None], y[None])
        n = int((y != -100).sum())
        total, count = total + l1.item() * n, count + n
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_sampler_mixes_pretraining_rows(tok):
    rows = [sft.encode_example(e, tok) for e in make_instructions(20, "train")]
    pre = torch.arange(1000) % 200
    sample = sft.sft_sampler(
        rows, tok.special_tokens[END], 63, batch_size=8, pretrain_ids=pre, mix=0.25
    )
    x, y = sample(torch.Generator().manual_seed(0))
    assert x.shape == y.shape and x.size(0) == 8
    assert ((y[:6] == -100).float().mean(1) > 0.3).all()  # SFT rows: mostly masked
    assert (y[6:] != -100).all() and torch.equal(
        y[6:, :-1], x[6:, 1:]
    )  # replay rows: plain next-token
    with pytest.raises(ValueError):
        sft.sft_sampler(rows, 0, 63, batch_size=8, mix=0.5)  # no pretraining ids
    with pytest.raises(ValueError):
        sft.sft_sampler(rows, 0, 63, batch_size=8, pretrain_ids=pre, mix=1.0)


class Scripted(nn.Module):
    """A fake LM: after <|assistant|> it says token `a`, after `a` it says <|end|>, else token 0."""

    def __init__(self, vocab, assistant, a, end):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.cfg = GPTConfig(vocab_size=vocab, block_size=64, n_layer=1, n_head=1, n_embd=8)
        self.table = torch.zeros(vocab, dtype=torch.long)
        self.table[assistant], self.table[a] = a, end

    def forward(self, idx, targets=None):
        nxt = self.table[idx]  # (B, T)
        return nn.functional.one_hot(nxt, self.cfg.vocab_size).float() * 10 + self.w, None


def test_generate_answers_stops_at_end_and_batches_equal_lengths(tok):
    a = tok.encode("7")[0]
    model = Scripted(
        tok.vocab_size, tok.special_tokens["<|assistant|>"], a, tok.special_tokens[END]
    )
    exs = [
        Example("count", "How many words are in: a b?", "7"),
        Example("count", "How many words are in: c d?", "7"),
        Example("count", "How many words are in: a b c?", "8"),
    ]
    assert sft.generate_answers(model, tok, exs) == ["7", "7", "7"]
    assert sft.accuracy(model, tok, exs) == pytest.approx(2 / 3)
    assert sft.answer(model, tok, "anything") == "7"


def test_generate_answers_of_a_prompt_tuned_gpt_equal_a_hand_written_greedy_loop(tok):
    """`PromptTuned` has no KV cache, so `generate` re-runs its window for every token. Its answers
    equal the plain loop `generate_answers` used to carry: batches of equal-length prompts, argmax,
    stop when every row has said <|end|> or the context (block_size less the 4 virtual tokens)
    is full. Wide random weights make the answers long and varied."""
    torch.manual_seed(0)
    base = GPT(
        GPTConfig(
            vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32, dropout=0.0
        )
    )
    with torch.no_grad():
        for p in base.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    model = PromptTuned(base, n_virtual=4, reparam_hidden=16).eval()
    examples = make_instructions(12, "test", ("count", "reverse"))
    end = tok.special_tokens[END]
    prompts = [
        encode_chat(to_conversation(e, None, with_answer=False), tok, add_generation_prompt=True)[0]
        for e in examples
    ]
    want = [""] * len(examples)
    for n in sorted({len(p) for p in prompts}):
        rows = [i for i, p in enumerate(prompts) if len(p) == n]
        idx = torch.tensor([prompts[i] for i in rows])
        done = torch.zeros(len(rows), dtype=torch.bool)
        with torch.no_grad():
            for _ in range(min(40, 64 - 4 - n)):
                nxt = model(idx)[0][:, -1].argmax(dim=-1)
                idx = torch.cat([idx, nxt[:, None]], dim=1)
                done |= nxt == end
                if done.all():
                    break
        for row, i in zip(idx[:, n:].tolist(), rows):
            want[i] = tok.decode(row[: row.index(end)] if end in row else row).strip()
    got = sft.generate_answers(model, tok, examples, max_new_tokens=40)
    assert got == want
    assert len(set(got)) > 5
    # some prompts leave room for all 40 tokens, others fill the 60 real positions first
    assert min(map(len, prompts)) + 40 <= 60 < max(map(len, prompts)) + 40


@pytest.mark.slow
def test_accuracy_rises_when_a_tiny_gpt_learns_the_count_task(tok):
    """Learning happens: a 1-layer GPT trained on 'count' beats its 0 % start (chance among 2..5 is 25 %)."""
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=tok.vocab_size, block_size=48, n_layer=1, n_head=2, n_embd=32, dropout=0.0
        )
    )
    train, test = (
        make_instructions(400, "train", ("count",)),
        make_instructions(20, "test", ("count",)),
    )
    assert sft.accuracy(model, tok, test, max_new_tokens=4) == 0.0
    sample = sft.sft_sampler(
        [sft.encode_example(e, tok) for e in train], tok.special_tokens[END], 47, batch_size=32
    )
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        _, loss = model(*sample(g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sft.accuracy(model, tok, test, max_new_tokens=4) >= 0.6


def test_hf_batch_labels_are_masked_ids():
    batch = sft.hf_batch([([5, 6, 7], [0, 1, 1]), ([8, 9], [0, 1])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, 9, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_dpo_batch_masks_only_answers_and_padding_does_not_change_logprobs(tok):
    triples = [t for t in make_preferences(10, "train")][:4]
    batch = sft.dpo_batch(triples, tok)
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, dropout=0.0
        )
    ).eval()
    padded = sequence_logprobs(model, batch["chosen_idx"], batch["chosen_mask"])
    for b, (ex, chosen, _) in enumerate(triples):
        ids, mask = encode_chat(
            [{"role": "user", "content": ex.prompt}, {"role": "assistant", "content": chosen}], tok
        )
        assert batch["chosen_mask"][b].sum() == len(tok.encode(chosen)) + 1  # answer + <|end|>
        alone = sequence_logprobs(model, torch.tensor([ids]), torch.tensor([mask]))
        assert padded[b].item() == pytest.approx(alone.item(), abs=1e-5)
    margins = sft.logprob_margins(model, batch)
    assert margins.shape == (4,)
    assert sft.preference_accuracy(model, batch) == pytest.approx(
        (margins > 0).float().mean().item()
    )


def test_exercises_accept_the_solution_and_reject_a_classic_bug():
    exercises.check("11.sft_targets", lambda ids, mask: ids[1:].masked_fill(mask[1:] == 0, -100))
    with pytest.raises(ExerciseError):  # masking by the *input* position instead of the target's
        exercises.check(
            "11.sft_targets", lambda ids, mask: ids[1:].masked_fill(mask[:-1] == 0, -100)
        )
    exercises.check(
        "13.dpo_loss",
        lambda pc, pr, rc, rr, b: (
            -torch.nn.functional.logsigmoid(b * ((pc - rc) - (pr - rr))).mean()
        ),
    )
    with pytest.raises(ExerciseError):  # forgot the reference model
        exercises.check(
            "13.dpo_loss",
            lambda pc, pr, rc, rr, b: -torch.nn.functional.logsigmoid(b * (pc - pr)).mean(),
        )


def _pad_and_shift(rows, pad_id, pad_targets_with=-100):
    L = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([list(i) + [pad_id] * (L - len(i)) for i, _ in rows])
    mask = torch.tensor([list(m) + [0] * (L - len(m)) for _, m in rows])
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    if (
        pad_targets_with != -100
    ):  # the classic slip: padding positions keep the pad id as their target
        real = torch.tensor([[t + 1 < len(i) for t in range(L - 1)] for i, _ in rows])
        targets = torch.where(real, targets, pad_targets_with)
    return ids[:, :-1], targets


def test_sft_batch_exercise_accepts_a_solution_and_rejects_padding_targets():
    exercises.check("11.sft_batch", _pad_and_shift, trials=20)
    with pytest.raises(ExerciseError, match="wrong values"):
        exercises.check(
            "11.sft_batch", lambda rows, pad: _pad_and_shift(rows, pad, pad_targets_with=pad)
        )
