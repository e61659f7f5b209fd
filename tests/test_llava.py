"""llmcourse.llava: the ViT -> GPT bridge runs the GPT unchanged and beats any text-only captioner."""

from __future__ import annotations

import pytest
import torch

from llmcourse import llava, vit
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.tasks import digits
from llmcourse.train import TrainConfig, fit


def _gpt(vocab_size: int) -> GPT:
    cfg = GPTConfig(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0)
    return GPT(cfg)


def test_without_an_image_the_bridge_is_the_plain_gpt_and_image_tokens_come_first():
    torch.manual_seed(0)
    vocab = digits.caption_vocab()
    model = llava.VisionLanguageModel(vit.ViT(vit.ViTConfig.for_size("smoke")), _gpt(30)).eval()
    idx = digits.encode_captions(["a thin seven", "a two"], vocab, bos=True)
    with torch.no_grad():
        torch.testing.assert_close(model(None, idx)[0], model.gpt(idx)[0])
        logits, _ = model(torch.rand(2, 1, 8, 8), idx)
    assert logits.shape == (2, idx.size(1), 30) and model.n_image_tokens == 16
    # the image changes the text's logits (the words attend to the image tokens)
    assert not torch.allclose(logits, model.gpt(idx)[0])
    # the vision encoder is frozen (LLaVA's default); the projector and the GPT train
    assert not any(p.requires_grad for p in model.vision.parameters())
    assert all(p.requires_grad for p in model.projector.parameters())
    with pytest.raises(ValueError, match="block_size"):
        model(torch.rand(1, 1, 8, 8), torch.zeros(1, 20, dtype=torch.long))


def test_captioner_beats_the_text_only_ceiling_on_held_out_digits():
    train, test = digits.load_digits_split(seed=0)
    vocab = digits.caption_vocab()
    cfg = TrainConfig.for_size("smoke", max_steps=150, lr=5e-3, warmup_steps=20, eval_every=0)
    # 1. the vision encoder: a ViT pretrained as a digit classifier, then frozen
    torch.manual_seed(0)
    vision = vit.ViT(vit.ViTConfig.for_size("smoke"))
    fit(vision, digits.image_batches(train), cfg, progress=False)
    # 2. the projector and a fresh GPT learn to caption ("a thin seven") from the image tokens
    model = llava.VisionLanguageModel(vision, _gpt(len(vocab.itos)))
    cfg = TrainConfig.for_size("smoke", max_steps=250, lr=3e-3, warmup_steps=20, eval_every=0)
    fit(model, llava.caption_batches(train, vocab), cfg, progress=False)
    score = llava.exact_match(model, test, vocab)
    ceiling = llava.text_only_ceiling(test)
    # measured: 0.52 exact match at these steps; no model without the image can pass 0.078
    assert ceiling < 0.1 and score > ceiling + 0.2, (score, ceiling)
