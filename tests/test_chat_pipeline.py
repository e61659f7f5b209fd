"""The base -> SFT pipeline shared by notebooks 11-13: config, data, forgetting, save/load."""

import dataclasses

import pytest
import torch

from llmcourse.recipes import chat_pipeline as cp
from llmcourse.sft import accuracy


def tiny_cfg(**changes):
    cfg = cp.ChatPipelineConfig.for_size("smoke")
    return dataclasses.replace(
        cfg,
        max_chars=20_000,
        tokenizer_chars=5_000,
        vocab_size=400,
        tasks=("count",),
        n_train=300,
        n_test=20,
        block_size=32,
        n_layer=1,
        n_head=2,
        n_embd=32,
        pretrain_steps=20,
        sft_steps=120,
        sft_lr=5e-3,
        **changes,
    )


@pytest.fixture(scope="module")
def trained():
    cfg = tiny_cfg()
    prep = cp.prepare(cfg)
    base, hist = cp.pretrain(cfg, prep)
    sft_model, sft_hist = cp.supervised_finetune(cfg, prep, base)
    return cfg, prep, base, hist, sft_model, sft_hist


def test_prepare_splits_and_end_tokens():
    cfg = tiny_cfg()
    prep = cp.prepare(cfg)
    assert {e.task for e in prep.train_examples} == {"count"}
    assert not {e.prompt for e in prep.train_examples} & {e.prompt for e in prep.test_examples}
    assert prep.tokenizer.vocab_size == 400
    assert (prep.train_ids == prep.pad_id).sum() > 0  # documents end with <|end|>
    assert prep.train_ids.max() < 400 and len(prep.val_ids) > cfg.block_size
    with pytest.raises(ValueError):
        cfg.train_config("rlhf")


@pytest.mark.slow
def test_sft_learns_and_forgets(trained):
    """Learning happens: held-out accuracy on 'count' goes from 0 to at least 60 %, while the loss on
    pretraining text rises (catastrophic forgetting) when no pretraining data is replayed."""
    cfg, prep, base, hist, sft_model, _ = trained
    assert (
        hist.val_loss[-1] < torch.log(torch.tensor(400.0)).item()
    )  # pretraining beat uniform guessing
    assert accuracy(base, prep.tokenizer, prep.test_examples) == 0.0
    assert accuracy(sft_model, prep.tokenizer, prep.test_examples) >= 0.6
    assert cp.pretrain_val_loss(cfg, sft_model, prep) > cp.pretrain_val_loss(cfg, base, prep) + 0.1


def test_save_and_load_pair_only_with_the_same_config(trained, tmp_path):
    cfg, prep, base, _, sft_model, _ = trained
    cp.save_pair(tmp_path, base, sft_model, tokenizer=prep.tokenizer, cfg=cfg)
    loaded = cp.load_pair(tmp_path, cfg)
    assert loaded is not None
    _, s2, tok2 = loaded
    idx = torch.randint(0, 400, (1, 10))
    torch.testing.assert_close(s2.eval()(idx)[0], sft_model.eval()(idx)[0])
    assert tok2.encode("How many words are in: red fox?") == prep.tokenizer.encode(
        "How many words are in: red fox?"
    )
    assert (
        cp.load_pair(tmp_path, dataclasses.replace(cfg, sft_steps=7)) is None
    )  # another config: retrain
    # notebook 13's own settings (DPO, GRPO) do not decide the models: no retraining for them
    assert cp.load_pair(tmp_path, dataclasses.replace(cfg, dpo_steps=3, grpo_steps=7)) is not None
    assert cp.load_pair(tmp_path / "nothing", cfg) is None


def test_preference_pairs_follow_the_tasks():
    cfg = dataclasses.replace(tiny_cfg(), tasks=("count", "add"), n_pref_train=30, n_pref_test=10)
    train, test = cp.preference_pairs(cfg, "train"), cp.preference_pairs(cfg, "test")
    assert len(train) == 30 and len(test) == 10
    assert {t[0].task for t in train} <= {"count", "add"}
    assert all(chosen == ex.answer and rejected != chosen for ex, chosen, rejected in train)


def test_grpo_phase_uses_the_grpo_fields():
    cfg = dataclasses.replace(tiny_cfg(), grpo_steps=12, grpo_lr=2e-4)
    tc = cfg.train_config("grpo")
    assert (tc.max_steps, tc.lr) == (12, 2e-4)
    with pytest.raises(ValueError, match="phase must be one of"):
        cfg.train_config("ppo")
