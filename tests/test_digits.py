"""tasks.digits: the offline 8x8 digits, their held-out split and their generated captions."""

from __future__ import annotations

import pytest
import torch

from llmcourse.tasks import digits


@pytest.fixture(scope="module")
def split():
    return digits.load_digits_split(seed=0)


def test_split_is_disjoint_complete_and_scaled(split):
    train, test = split
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == torch.float32
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    # no test image appears in the training split (the raw set has no exact duplicates to hide it)
    seen = {tuple(x.flatten().tolist()) for x in train.images}
    assert not any(tuple(x.flatten().tolist()) in seen for x in test.images)
    # the seed decides the split, reproducibly
    again, _ = digits.load_digits_split(seed=0)
    other, _ = digits.load_digits_split(seed=1)
    assert torch.equal(again.labels, train.labels) and not torch.equal(other.labels, train.labels)


def test_thickness_follows_ink_relative_to_the_class_median(split):
    train, _ = split
    ink = train.images.flatten(1).sum(1)
    for k in range(10):
        cls = train.labels == k
        median = ink[cls].median()
        words = [w for w, c in zip(train.thickness, cls.tolist()) if c]
        thin = torch.tensor([w == "thin" for w in words])
        thick = torch.tensor([w == "thick" for w in words])
        # every "thin" digit has less ink than every "thick" one of its class
        assert ink[cls][thin].max() < median < ink[cls][thick].min()
    share = sum(w == "thin" for w in train.thickness) / len(train)
    assert 0.1 < share < 0.3  # thresholds 0.9 / 1.1 mark about a fifth of the digits thin


def test_captions_are_generated_from_label_and_thickness(split):
    train, _ = split
    i = train.thickness.index("thin")
    assert train.captions[i] == f"a thin {digits.WORDS[int(train.labels[i])]}"
    assert digits.caption(3) == "a three" and digits.caption(0, "thick") == "a thick zero"
    assert digits.caption_variants(7, "thin")[0] == "the digit 7"
    with pytest.raises(ValueError, match="0..9"):
        digits.caption(10)


def test_caption_vocab_covers_every_caption_and_pads():
    vocab = digits.caption_vocab()
    for k in range(10):
        for a in ("", "thin", "thick"):
            for text in digits.caption_variants(k, a):
                assert "<unk>" not in vocab.decode(vocab.encode(text))
    ids = digits.encode_captions(["a two", "the digit 2"], vocab, bos=True, eos=True)
    assert ids.shape == (2, 5) and ids[0, -1] == vocab.stoi["<pad>"]
    assert ids[0, 0] == vocab.stoi["<bos>"] and ids[0, 3] == vocab.stoi["<eos>"]


def test_baselines(split):
    base = digits.pixel_baseline(*split)
    assert base["majority"] < 0.15  # ten balanced classes
    assert base["pixels"] > 0.9  # a linear model on raw pixels is already strong on digits


def test_doctests():
    import doctest

    assert doctest.testmod(digits).failed == 0
