"""The capstone's stages: batches, copies, evaluation, export, for the course GPT and a Hugging Face model."""

import math

import pytest
import torch

from llmcourse import lora
from llmcourse.recipes import adapt
from llmcourse.course import exercises
from llmcourse.chat import IGNORE, SPECIAL_TOKENS
from llmcourse.course.exercises import ExerciseError
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.tasks.instructions import Example
from llmcourse.runtime import detect
from llmcourse.sft import chat_tokenizer

QA = [
    Example("t", "Dravilex: what does it treat?", "Dravilex treats ember cough."),
    Example("t", "Ombrisol: what is its dose?", "A dose of Ombrisol is one spoon."),
    Example("t", "Brastik: when is it taken?", "Brastik is taken before bed."),
]
TEXT = " ".join(e.prompt + " " + e.answer for e in QA) * 3


@pytest.fixture(scope="module")
def course():
    tok = chat_tokenizer(TEXT, 256 + 60 + len(SPECIAL_TOKENS))
    lm = adapt.CourseChat(tok, block_size=40)
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=tok.vocab_size, block_size=40, n_layer=1, n_head=2, n_embd=32, dropout=0.0
        )
    )
    return lm, model


def test_sampler_mixes_chat_rows_and_replay_windows(course):
    lm, _ = course
    replay = adapt.encode_docs(lm, [TEXT])
    x, y = adapt.sampler(lm, 8, rows=lm.chat_rows(QA), replay_ids=replay, mix=0.25)(
        torch.Generator().manual_seed(0)
    )
    assert x.shape == y.shape and x.shape[0] == 8 and x.shape[1] <= lm.block_size
    masked = (y == IGNORE).sum(1)
    assert (masked[:6] > 0).all() and (
        (y[:6] != IGNORE).sum(1) > 0
    ).all()  # chat rows: only the answer trained
    assert (masked[6:] == 0).all()  # 2 replay windows: every position trained
    assert torch.equal(x[6:, 1:], y[6:, :-1])  # next-token targets


def test_sampler_for_continued_pretraining_is_next_token_windows(course):
    lm, _ = course
    ids = adapt.encode_docs(lm, [TEXT, TEXT[::-1]])
    assert (
        ids[-1].item() == lm.end_id and (ids == lm.end_id).sum() == 2
    )  # documents end with the end id
    x, y = adapt.sampler(lm, 4, text_ids=ids)(torch.Generator().manual_seed(1))
    assert (
        x.shape == (4, lm.block_size)
        and not (y == IGNORE).any()
        and torch.equal(x[:, 1:], y[:, :-1])
    )
    with pytest.raises(ValueError, match="either"):
        adapt.sampler(lm, 4, rows=lm.chat_rows(QA), text_ids=ids)


def test_stages_return_copies_and_learn_the_answers(course):
    """SFT on three questions: exact match goes 0 -> 1 on them, the input model is left untouched, and
    the same evaluation gives 0 for the untrained model. (A learning test: the loss must fall.)"""
    lm, model = course
    cfg = adapt.CapstoneConfig.for_size(
        "smoke", sft_steps=120, sft_lr=1e-2, sft_batch_size=6, seed=0
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = adapt.encode_docs(lm, [TEXT])
    tuned, hist = adapt.finetune(
        cfg, lm, model, examples=QA, replay_ids=ids, method="full", runtime=detect("cpu")
    )
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert hist.train_loss[-1] < 0.3 * hist.train_loss[0]
    after = adapt.evaluate_stage(
        lm, tuned, domain_ids=ids, general_ids=ids, test=QA, max_new_tokens=16
    )
    start = adapt.evaluate_stage(
        lm, model, domain_ids=ids, general_ids=ids, test=QA, max_new_tokens=16
    )
    assert after["held-out EM"] == 1.0 and start["held-out EM"] == 0.0
    assert 1.0 < after["domain ppl"] < start["domain ppl"] and math.isfinite(after["general ppl"])


def test_lora_stage_trains_adapters_only_and_exports_merged(course, tmp_path):
    from llmcourse.serve.backends import CourseBackend, load_backend

    lm, model = course
    cfg = adapt.CapstoneConfig.for_size("smoke", sft_steps=3, lora_r=2)
    tuned, _ = adapt.finetune(
        cfg,
        lm,
        model,
        examples=QA,
        replay_ids=adapt.encode_docs(lm, [TEXT]),
        method="lora",
        runtime=detect("cpu"),
    )
    assert lora.lora_layers(tuned) and not lora.lora_layers(model)
    report = lora.trainable_report(tuned)
    assert 0 < report["trainable"] < 0.25 * report["total"]
    with torch.no_grad():  # make the adapters matter before comparing
        for layer in lora.lora_layers(tuned):
            layer.lora_B.normal_(0, 0.05)
    backend = load_backend(lm.export(tuned, tmp_path / "m"), device="cpu")
    assert isinstance(backend, CourseBackend)
    idx = torch.tensor([lm.chat_rows(QA[:1])[0][0]])
    with torch.no_grad():
        torch.testing.assert_close(
            backend.model(idx)[0], tuned.eval()(idx)[0], atol=1e-4, rtol=1e-4
        )


def test_config_phases():
    cfg = adapt.CapstoneConfig.for_size("smoke")
    assert cfg.base == "course-gpt" and cfg.domain == "apothecary"
    assert adapt.CapstoneConfig.for_size("full").base == "smollm2-135m-instruct"
    tc = cfg.train_config("lora")
    assert (tc.max_steps, tc.lr) == (cfg.sft_steps, cfg.lora_lr)
    with pytest.raises(ValueError, match="phase"):
        cfg.train_config("dpo")


# ------------------------------------------------------------------------- a Hugging Face chat model
@pytest.fixture(scope="module")
def tiny_hf():
    from tiny import tiny_hf_chat_tokenizer, tiny_hf_llama

    from llmcourse.icl import HFCausalLM

    hf_tok = tiny_hf_chat_tokenizer()
    model = tiny_hf_llama(hf_tok, eos_token_id=hf_tok.eos_token_id)
    return HFCausalLM(model), adapt.HFChat(hf_tok, block_size=32)


def test_hf_chat_model_goes_through_the_same_stages(tiny_hf, tmp_path):
    from llmcourse.llama import Llama
    from llmcourse.serve.backends import CourseBackend, load_backend

    model, lm = tiny_hf
    ids, mask = lm.chat_rows(QA[:1])[0]
    answer = lm.tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert (
        answer == QA[0].answer + "<eos>"
    )  # the assistant's words and its end token are trained, nothing else
    text_ids = adapt.encode_docs(lm, [TEXT])
    cfg = adapt.CapstoneConfig.for_size("smoke", cpt_steps=2, sft_steps=2, lora_r=2, block_size=32)
    cpt, _ = adapt.continued_pretraining(
        cfg, lm, model, domain_ids=text_ids, general_ids=text_ids, runtime=detect("cpu")
    )
    tuned, hist = adapt.finetune(
        cfg, lm, cpt, examples=QA, replay_ids=text_ids, method="lora", runtime=detect("cpu")
    )
    assert all(math.isfinite(x) for x in hist.train_loss)
    row = adapt.evaluate_stage(
        lm, tuned, domain_ids=text_ids, general_ids=text_ids, test=QA[:2], max_new_tokens=4
    )
    assert math.isfinite(row["domain ppl"]) and row["held-out EM"] in (0.0, 0.5, 1.0)
    assert isinstance(lm.complete(tuned, "Dravilex", 3), str)
    backend = load_backend(lm.export(tuned, tmp_path / "hf"), device="cpu")
    assert isinstance(backend, CourseBackend) and isinstance(
        backend.model, Llama
    )  # served by our own Llama
    served, _ = backend.chat_ids([{"role": "user", "content": QA[0].prompt}])
    assert ids[: len(served)] == served  # the server builds the prompt SFT trained on


# ----------------------------------------------------------------------------------------- exercises
def _em(predictions, answers):
    def norm(s):
        return " ".join(s.strip().rstrip(".!").split()).lower()

    return sum(norm(p) == norm(a) for p, a in zip(predictions, answers)) / len(answers)


@pytest.mark.parametrize(
    "name, fn",
    [
        ("18.exact_match", _em),
        ("18.pooled_perplexity", lambda nll, n: math.exp(sum(nll) / sum(n))),
    ],
)
def test_exercises_accept_correct_solutions(name, fn):
    exercises.check(name, fn, trials=20)


@pytest.mark.parametrize(
    "name, wrong",
    [
        (
            "18.exact_match",
            lambda p, a: sum(x == y for x, y in zip(p, a)) / len(a),
        ),  # no normalising
        (
            "18.exact_match",
            lambda p, a: sum(x.lower() == y.lower() for x, y in zip(p, a)) / len(a),
        ),  # case only
        (
            "18.pooled_perplexity",
            lambda nll, n: sum(math.exp(s / c) for s, c in zip(nll, n)) / len(n),
        ),  # mean of ppls
        (
            "18.pooled_perplexity",
            lambda nll, n: math.exp(sum(nll) / len(n)),
        ),  # per window, not per token
    ],
)
def test_exercises_reject_typical_mistakes(name, wrong):
    with pytest.raises(ExerciseError):
        exercises.check(name, wrong, trials=20, seed=3)


def test_general_text_keeps_a_held_out_part_when_the_corpus_is_short(monkeypatch, capsys):
    """Full size asks for 2.2M characters; the offline fallback corpus has far fewer. The split then
    keeps the same proportion, says so in one line, and never leaves the held-out text empty."""
    from dataclasses import replace

    from llmcourse import data

    text = "".join(f"line {i} of a short corpus.\n" for i in range(1000))
    monkeypatch.setattr(data, "load_text", lambda name, max_chars=None, **kw: text[:max_chars])
    cfg = replace(adapt.CapstoneConfig(), general_chars=90_000, eval_chars=10_000)
    train, held = adapt.general_text(cfg)
    assert train + held == text and len(held) == len(text) - len(text) * 9 // 10
    assert "fewer than the 100,000 asked for" in capsys.readouterr().out
    cfg = replace(cfg, general_chars=len(text) - 500, eval_chars=400)  # long enough: no line
    train, held = adapt.general_text(cfg)
    assert (len(train), len(held)) == (len(text) - 500, 400) and not capsys.readouterr().out
