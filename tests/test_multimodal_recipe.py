"""recipes.multimodal: every stage runs end to end on the digits (a few steps each), and the
judge of prompted samples is a plain share of agreements."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from llmcourse import clip, diffusion, llava, vit
from llmcourse.recipes import multimodal as mm
from llmcourse.tasks import digits


def test_every_stage_runs_and_returns_its_history():
    cfg = mm.MultimodalConfig.for_size("smoke")
    assert cfg.vit_steps < mm.MultimodalConfig.for_size("full").vit_steps
    cfg = dataclasses.replace(
        cfg, vit_steps=3, clip_steps=3, diffusion_steps=3, captioner_steps=3, batch_size=8
    )
    train, test = digits.load_digits_split(seed=0)
    classifier, history = mm.train_classifier(cfg, train, kind="vit", progress=False)
    assert isinstance(classifier, vit.ViT) and history.steps[-1] == 3
    model, _ = mm.train_clip(cfg, train, progress=False)
    vocab = digits.caption_vocab()
    # a caption as a condition vector: CLIP's unit-length text embedding
    cond = clip.embed_captions(model, train.captions, vocab)
    assert cond.shape == (len(train), model.cfg.proj_dim)
    torch.testing.assert_close(cond.norm(dim=-1), torch.ones(len(train)))
    denoiser, schedule, _ = mm.train_denoiser(cfg, train, cond=cond, progress=False)
    assert denoiser.cfg.cond_dim == model.cfg.proj_dim
    labels = torch.tensor([1, 7])
    rate, images = mm.prompted_accuracy(
        denoiser,
        schedule,
        classifier,
        labels=labels,
        cond=clip.embed_captions(model, ["a 1", "a 7"], vocab),
        guidance=3.0,
        n_steps=5,
    )
    assert images.shape == (2, 1, 8, 8) and rate in (0.0, 0.5, 1.0)
    captioner, _ = mm.train_captioner(cfg, train, vision=classifier, progress=False)
    assert isinstance(captioner, llava.VisionLanguageModel)
    assert 0.0 <= llava.exact_match(captioner, test, vocab) <= 1.0
    with pytest.raises(ValueError, match="rows"):
        mm.train_denoiser(cfg, train, cond=diffusion.label_cond(test.labels))
    with pytest.raises(ValueError, match="kind"):
        mm.train_classifier(cfg, train, kind="mlp")
