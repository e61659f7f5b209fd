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


def test_the_smoke_size_is_the_offline_8x8_digits_unchanged():
    cfg = mm.MultimodalConfig.for_size("smoke")
    assert (cfg.dataset, cfg.image_size, cfg.patch_size) == ("digits", 8, 2)
    # the models the smoke run builds are the ones it built before image_size was configurable
    assert mm._vit_config(cfg) == vit.ViTConfig.for_size()
    train, test = mm.load_images(cfg)
    want, _ = digits.load_digits_split(test_fraction=cfg.test_fraction, seed=cfg.seed)
    assert torch.equal(train.images, want.images) and train.thickness == want.thickness
    with pytest.raises(ValueError, match="image_size=8"):
        mm.load_images(dataclasses.replace(cfg, image_size=28))
    with pytest.raises(ValueError, match="'digits'"):
        mm.load_images(dataclasses.replace(cfg, dataset="cifar"))


def test_every_stage_handles_the_full_size_28x28_images():
    """The full size trains on MNIST: every model takes 28x28 images (ViT positions for 49 patches,
    the SmallCNN's head, the denoiser's 784 inputs). Random images stand in for MNIST here; the
    loader is tested in tests/test_digits.py against the stand-in hub."""
    cfg = mm.MultimodalConfig.for_size("full")
    assert (cfg.dataset, cfg.image_size, cfg.patch_size) == ("mnist", 28, 4)
    cfg = dataclasses.replace(
        cfg, vit_steps=2, clip_steps=2, diffusion_steps=2, captioner_steps=2, batch_size=8
    )
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 10
    data = digits.Digits(torch.rand(40, 1, 28, 28, generator=g), labels, ["", "thin"] * 20)
    classifier, _ = mm.train_classifier(cfg, data, kind="vit", progress=False)
    assert classifier.cfg.n_patches == 49
    cnn, _ = mm.train_classifier(cfg, data, kind="cnn", progress=False)
    assert cnn(data.images[:3])[0].shape == (3, 10)
    mm.train_clip(cfg, data, progress=False)
    denoiser, schedule, _ = mm.train_denoiser(
        cfg, data, cond=diffusion.label_cond(labels), progress=False
    )
    assert denoiser.inp.in_features == 28 * 28
    rate, images = mm.prompted_accuracy(denoiser, schedule, cnn, labels=labels[:2], n_steps=3)
    assert images.shape == (2, 1, 28, 28) and rate in (0.0, 0.5, 1.0)
    captioner, _ = mm.train_captioner(cfg, data, vision=classifier, progress=False)
    assert 0.0 <= llava.exact_match(captioner, data, digits.caption_vocab()) <= 1.0


def test_stable_diffusion_says_why_it_cannot_run_on_a_cpu(capsys):
    """The notebook's optional real text-to-image cell: on a CPU, one line and no download."""
    from llmcourse.runtime import Runtime

    cpu = Runtime(
        device=torch.device("cpu"), dtype=torch.float32, platform="local", device_name="CPU"
    )
    assert mm.stable_diffusion("a seven", cpu) is None
    out = capsys.readouterr().out
    assert out.startswith("skipped:") and "no CUDA GPU" in out and out.count("\n") == 1


def test_stable_diffusion_names_the_offline_switch_on_a_gpu(capsys, monkeypatch):
    """With a (pretended) GPU but an offline switch on, the line names the switch; nothing loads."""
    from llmcourse.runtime import Runtime

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    gpu = Runtime(
        device=torch.device("cuda"), dtype=torch.float16, platform="colab", device_name="T4"
    )
    assert mm.stable_diffusion("a seven", gpu) is None
    assert "offline: " in capsys.readouterr().out
