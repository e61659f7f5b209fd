"""llmcourse.clip: the symmetric InfoNCE loss on a hand-derived case, and zero-shot digits."""

from __future__ import annotations

import math

import pytest
import torch

from llmcourse import clip, vit
from llmcourse.tasks import digits
from llmcourse.train import TrainConfig, fit


def test_info_nce_on_a_hand_derived_2x2_case():
    # logits = [[ln 3, ln 3],
    #           [0,    0   ]]
    # rows (image -> caption), the right answer on the diagonal:
    #   row 0: softmax(ln 3, ln 3)[0] = 3 / (3 + 3) = 1/2  -> -ln(1/2) = ln 2
    #   row 1: softmax(0, 0)[1]       = 1 / 2              -> ln 2
    #   image loss = ln 2
    # columns (caption -> image):
    #   col 0: softmax(ln 3, 0)[0] = 3 / 4 -> ln(4/3)
    #   col 1: softmax(ln 3, 0)[1] = 1 / 4 -> ln 4
    #   text loss = (ln(4/3) + ln 4) / 2 = ln(16/3) / 2
    # InfoNCE = (ln 2 + ln(16/3) / 2) / 2 = (ln 4 + ln(16/3)) / 4 = ln(64/3) / 4 ~= 0.7651
    ln3 = math.log(3.0)
    logits = torch.tensor([[ln3, ln3], [0.0, 0.0]])
    expected = math.log(64.0 / 3.0) / 4.0
    assert clip.info_nce(logits).item() == pytest.approx(expected, rel=1e-6)
    # swapping images and captions transposes the matrix and leaves the symmetric loss unchanged
    assert clip.info_nce(logits.t()).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="square"):
        clip.info_nce(torch.zeros(2, 3))


def test_perfectly_separated_pairs_drive_the_loss_to_zero():
    # orthonormal pairs at scale s: every row and column is softmax(s, 0, 0) at the diagonal
    s = 50.0
    logits = s * torch.eye(3)
    expected = math.log(1 + 2 * math.exp(-s))
    assert clip.info_nce(logits).item() == pytest.approx(expected, abs=1e-12)


def test_forward_is_scaled_cosine_similarity_and_the_temperature_learns():
    torch.manual_seed(0)
    vocab = digits.caption_vocab()
    model = clip.CLIP(clip.CLIPConfig.for_size("smoke"), vit.ViT(vit.ViTConfig.for_size("smoke")))
    images = torch.rand(4, 1, 8, 8)
    tokens = digits.encode_captions(["a two", "the digit 3", "a thin five", "seven"], vocab)
    logits, loss = model(images, tokens)
    u, v = model.encode_image(images), model.encode_text(tokens)
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(logits, model.scale() * u @ v.t())
    torch.testing.assert_close(loss, clip.info_nce(logits))
    assert model.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)  # CLIP's initial temperature
    loss.backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad != 0
    # padding changes nothing: the text encoder masks it out of attention and pooling
    padded = torch.cat([tokens, torch.zeros(4, 2, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model.encode_text(padded), v, rtol=1e-5, atol=1e-6)


def test_zero_shot_classification_beats_chance_on_held_out_digits():
    train, test = digits.load_digits_split(seed=0)
    vocab = digits.caption_vocab()
    torch.manual_seed(0)
    model = clip.CLIP(clip.CLIPConfig.for_size("smoke"), vit.ViT(vit.ViTConfig.for_size("smoke")))
    before = clip.zero_shot_accuracy(model, test, vocab)
    cfg = TrainConfig.for_size("smoke", max_steps=200, lr=5e-3, warmup_steps=20, eval_every=0)
    fit(model, clip.caption_batches(train, vocab, batch_size=64), cfg, progress=False)
    after = clip.zero_shot_accuracy(model, test, vocab)
    # measured: 0.60 after 200 steps (~5 s at 1 thread); chance is 0.10. The model never saw a
    # label, only captions, several phrasings of which mention the digit
    assert after > 0.3, (before, after)
