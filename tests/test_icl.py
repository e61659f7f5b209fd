"""Few-shot prompts, demonstration sampling, label scoring, and the Hugging Face adapter."""

import random

import pytest
import torch
import torch.nn as nn

from llmcourse import icl
from llmcourse.icl import Labeled, PromptFormat

POOL = [Labeled(f"good {i}", "pos") for i in range(6)] + [
    Labeled(f"bad {i}", "neg") for i in range(4)
]


def encode(text: str) -> list[int]:
    return [ord(c) % 128 for c in text]


class FavoursChar(nn.Module):
    """A 'model' whose next-token distribution always puts most mass on one character, whatever the input."""

    def __init__(self, char: str):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(128))
        with torch.no_grad():
            self.bias[ord(char)] = 5.0

    def forward(self, idx, targets=None):
        return self.bias.expand(idx.shape[0], idx.shape[1], 128), None


def test_prompt_layout_golden():
    fmt = PromptFormat("Classify.", "Q: {text}\nA:", "\n\n")
    prompt = icl.few_shot_prompt(
        [Labeled("x", "pos"), Labeled("y", "neg")], "z", fmt, verbalizer={"pos": "yes", "neg": "no"}
    )
    assert prompt == "Classify.\n\nQ: x\nA: yes\n\nQ: y\nA: no\n\nQ: z\nA:"
    assert (
        icl.few_shot_prompt([], "z", PromptFormat("", "Q: {text}\nA:")) == "Q: z\nA:"
    )  # zero-shot, no instruction


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 8])
def test_balanced_demos(k):
    demos = icl.sample_demos(POOL, k, random.Random(1))
    assert len(demos) == k and len(set(demos)) == k
    n_pos = sum(d.label == "pos" for d in demos)
    assert abs(n_pos - (k - n_pos)) <= 1  # as balanced as k allows
    assert demos == icl.sample_demos(POOL, k, random.Random(1))  # deterministic given the RNG


def test_demo_errors():
    with pytest.raises(ValueError, match="pool of 10"):
        icl.sample_demos(POOL, 11, random.Random(0))
    with pytest.raises(ValueError, match="only 4 examples of 'neg'"):
        icl.sample_demos(POOL, 10, random.Random(0))


def test_classify_picks_the_likelier_label():
    """The model puts most mass on 'p' at every position; ' pos' starts with ' ' (same for both labels) then
    'p' vs 'n', so ' pos' must win, and its score equals log p(' ') + log p('p') + log p('o') + log p('s')."""
    model = FavoursChar("p")
    choice, scores = icl.classify(model, encode, "Review: fine\nSentiment:", labels=["neg", "pos"])
    assert choice == 1 and scores[1] > scores[0]
    logp = torch.log_softmax(model.bias.detach(), -1)
    assert scores[1] == pytest.approx(float(sum(logp[ord(c)] for c in " pos")), abs=1e-5)


def test_constant_model_accuracy_is_the_label_share():
    """A model that always answers 'pos' scores the share of positives, for every k and draw (spread 0)."""
    test = [Labeled("a", "pos"), Labeled("b", "pos"), Labeled("c", "neg"), Labeled("d", "pos")]
    curve = icl.accuracy_vs_k(
        FavoursChar("p"),
        encode,
        pool=POOL,
        test=test,
        labels=["neg", "pos"],
        ks=(0, 2, 4),
        n_draws=2,
    )
    assert curve.ks == [0, 2, 4] and curve.mean == [0.75] * 3 and curve.std == [0.0] * 3
    assert [len(d) for d in curve.draws] == [1, 2, 2]  # k = 0 has a single prompt


def test_hf_adapter_matches_the_course_gpt(tiny_gpt_model):
    """Our GPT converted to GPT2LMHeadModel and wrapped by HFCausalLM gives the same logits and loss."""
    from llmcourse.convert import gpt_to_hf

    gpt = tiny_gpt_model
    wrapped = icl.HFCausalLM(gpt_to_hf(gpt).eval())
    idx = torch.randint(0, gpt.cfg.vocab_size, (2, 10))
    ref_logits, ref_loss = gpt(idx, idx)
    logits, loss = wrapped(idx, idx)
    assert torch.allclose(logits, ref_logits, atol=1e-5) and torch.allclose(
        loss, ref_loss, atol=1e-5
    )
    assert wrapped(idx)[1] is None


def test_single_token_labels_take_one_pass_and_agree_with_multiple_choice():
    """With a word-level encode each label is one token: the one-pass shortcut must give exactly the
    scores of `multiple_choice`, which runs prompt + label through the model once per label."""
    from llmcourse.evaluate import multiple_choice

    words = {
        w: i for i, w in enumerate("review good bad film sentiment : positive negative".split())
    }

    def word_encode(text):
        return [words[w] for w in text.replace(":", " :").split()]

    torch.manual_seed(0)
    from llmcourse.gpt import GPT, GPTConfig

    model = GPT(
        GPTConfig(vocab_size=len(words), block_size=32, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    )
    prompt = "review good film sentiment:"
    choice, scores = icl.classify(model, word_encode, prompt, labels=["negative", "positive"])
    ref = multiple_choice(model, word_encode, prompt, options=[" negative", " positive"])
    assert scores == pytest.approx(ref["scores"], abs=1e-5) and choice == ref["choice"]


def _hand_prompts():
    """Two prompts with one example each: "3 7>3; 5 5>5" (first) and "2 8>8; 6 1>6" (max)."""
    x = torch.tensor([[[3, 7], [5, 5]], [[2, 8], [6, 1]]])
    answers = torch.tensor([[3, 5], [8, 6]])
    return icl.DigitPrompts(
        idx=torch.zeros(2, 8, dtype=torch.long),
        targets=torch.zeros(2, 8, dtype=torch.long),
        task=torch.tensor([0, 2]),
        x=x,
        answers=answers,
    )


def test_fixed_task_baseline_by_hand():
    """Of the 4 answers 3, 5, 8, 6: first gets 3, 5, 6; second 5, 8; max 5, 8, 6; min 3, 5.
    first and max tie at 3/4; the first in DIGIT_TASKS order is reported."""
    assert icl.fixed_task_baseline(_hand_prompts()) == ("first", 0.75)


def test_ideal_reader_by_hand():
    """k = 0: (3, 7) and (2, 8) each split the four tasks 2-2, so 1/2. k = 1: "3 7>3" leaves first and
    min, both say 5 for (5, 5): right; "2 8>8" leaves second and max, 1 vs 6 for (6, 1): a tie, 1/2."""
    assert icl.ideal_reader_accuracy(_hand_prompts()) == pytest.approx([0.5, 0.75])


def test_digit_prompts_layout():
    p = icl.digit_prompts(torch.Generator().manual_seed(0), 8, max_k=3)
    assert p.idx.shape == p.targets.shape == (8, 4 * 5 - 2)
    answers = icl.digit_task_answers(p.x).gather(-1, p.task[:, None, None].expand(8, 4, 1))[..., 0]
    assert torch.equal(answers, p.answers) and torch.equal(
        p.targets[p.targets != -100].view(8, 4), p.answers
    )
    for k in range(4):  # the text of a k-shot prompt encodes to the first tokens of the sequence
        ids = icl.encode_digits(p.text(3, k))
        assert p.idx[3, : len(ids)].tolist() == ids and ids[-1] == 10  # ends at ">"


def test_tiny_gpt_learns_in_context():
    """A short run: with 6 examples the model beats both its zero-shot accuracy and the best fixed task."""
    model = icl.train_digit_icl(steps=250, seed=0)
    prompts = icl.digit_prompts(torch.Generator().manual_seed(1), 500)
    acc = icl.digit_accuracy_by_k(model, prompts)
    _, baseline = icl.fixed_task_baseline(prompts)
    assert acc[-1] > acc[0] + 0.1 and acc[-1] > baseline + 0.1
