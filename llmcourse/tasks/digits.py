"""The offline image set of the multimodal lesson: scikit-learn's 8x8 handwritten digits, with captions.

scikit-learn ships 1,797 grey-scale digits of 8x8 pixels (values 0..16), the test half of the UCI
"Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak 1998). They need no download,
so every image model of the course (`llmcourse.vit`, `clip`, `diffusion`, `llava`) trains on them
in seconds on a CPU.

* `load_digits_split(test_fraction, seed)` -> (train, test) `Digits`: images (N, 1, 8, 8) scaled
  to [0, 1], labels, and one *thickness* word per image.
* Thickness is measured, not invented: the ink of an image (the sum of its pixels) divided by the
  median ink of its class **in the training split**. Below `THIN` (0.9) the digit is "thin", above
  `THICK` (1.1) "thick", otherwise it gets no adjective. The test split uses the training medians,
  so no held-out number leaks into the captions.
* Captions are generated from the label and the thickness: `caption(label, thickness)` is the one
  deterministic caption ("a thin seven", "a three"); `caption_variants` lists every phrasing
  ("the digit 7", "a handwritten seven", ...) that contrastive training draws from at random.
* `caption_vocab()` is the word vocabulary of every caption that can be generated, with <pad>,
  <bos> and <eos>; `encode_captions` pads a list of captions to one (B, T) tensor.

The full size trains on MNIST's 28x28 digits instead, downloaded once by `llmcourse.tasks.mnist`
into the same `Digits` structure (`make_splits`); this module stays offline.
Left out: data augmentation, colour images, real captions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llmcourse.data.vocab import WordVocab

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
THIN, THICK = 0.9, 1.1  # ink relative to the class median (training split) below/above which
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"  # the caption specials, ids 0, 1, 2
# every phrasing contrastive training may use; {n} = numeral, {w} = word, {a} = adjective + space
TEMPLATES = ("the digit {n}", "a {a}{w}", "a {n}", "a {a}digit {n}", "a handwritten {a}{w}", "{w}")


@dataclass
class Digits:
    """One split: images (N, 1, S, S) float in [0, 1] (S = 8 here, 28 for MNIST), labels (N,)
    int64, thickness (N words)."""

    images: torch.Tensor
    labels: torch.Tensor
    thickness: list[str]  # "thin", "thick" or "" (neither)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def captions(self) -> list[str]:
        """The deterministic caption of every image, e.g. "a thin seven" (`caption`)."""
        return [caption(int(y), a) for y, a in zip(self.labels, self.thickness)]


def caption(label: int, thickness: str = "") -> str:
    """The one caption of a digit: "a {thickness} {word}", the adjective only when there is one.

    >>> caption(7, "thin"), caption(3)
    ('a thin seven', 'a three')
    """
    if not 0 <= label <= 9:
        raise ValueError(f"label={label}: digits are 0..9")
    return f"a {thickness + ' ' if thickness else ''}{WORDS[label]}"


def caption_variants(label: int, thickness: str = "") -> list[str]:
    """Every phrasing of one digit (`TEMPLATES`), the numeral and the word both used.

    >>> caption_variants(3, "thick")[:3]
    ['the digit 3', 'a thick three', 'a 3']
    """
    a = thickness + " " if thickness else ""
    return [t.format(n=label, w=WORDS[label], a=a) for t in TEMPLATES]


def class_prompts(template: str = "the digit {n}") -> list[str]:
    """One prompt per class for zero-shot classification, `template` with {n} and/or {w}.

    >>> class_prompts()[:2], class_prompts("a {w}")[9]
    (['the digit 0', 'the digit 1'], 'a nine')
    """
    return [template.format(n=k, w=WORDS[k]) for k in range(10)]


def thickness_words(ink: np.ndarray, labels: np.ndarray, medians: np.ndarray) -> list[str]:
    """ "thin" / "thick" / "" for each image, from its ink over its class's median ink."""
    ratio = ink / medians[labels]
    return ["thin" if r < THIN else "thick" if r > THICK else "" for r in ratio]


def load_digits_split(*, test_fraction: float = 0.2, seed: int = 0) -> tuple[Digits, Digits]:
    """(train, test) splits of scikit-learn's digits, shuffled by `seed`; the test split is held out
    from every model's training. Thickness uses the training split's class medians (see above)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}: use a fraction strictly between 0 and 1")
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    raw = load_digits()
    images = raw.images.astype(np.float32) / 16.0  # (N, 8, 8), 0..16 -> [0, 1]
    labels = raw.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    return make_splits(images, labels, train_idx=order[n_test:], test_idx=order[:n_test])


def make_splits(
    images: np.ndarray, labels: np.ndarray, *, train_idx: np.ndarray, test_idx: np.ndarray
) -> tuple[Digits, Digits]:
    """(train, test) `Digits` from images (N, S, S) float32 in [0, 1] and labels (N,) int64, with
    the thickness words measured against the training split's class medians (the MNIST loader,
    `llmcourse.tasks.mnist`, uses it too)."""
    ink = images.reshape(len(images), -1).sum(1)  # (N,) total ink of each image
    medians = np.array([np.median(ink[train_idx][labels[train_idx] == k]) for k in range(10)])

    def split(idx: np.ndarray) -> Digits:
        return Digits(
            images=torch.from_numpy(images[idx]).unsqueeze(1),  # (n, 1, S, S): one channel
            labels=torch.from_numpy(labels[idx]),
            thickness=thickness_words(ink[idx], labels[idx], medians),
        )

    return split(train_idx), split(test_idx)


def caption_vocab() -> WordVocab:
    """Words of every caption `caption_variants` can produce, after <pad>, <bos>, <eos>, <unk>."""
    texts = [v for k in range(10) for a in ("", "thin", "thick") for v in caption_variants(k, a)]
    return WordVocab.from_text("\n".join(texts), specials=(PAD, BOS, EOS, "<unk>"))


def encode_captions(
    texts: list[str], vocab: WordVocab, *, bos: bool = False, eos: bool = False
) -> torch.Tensor:
    """(B, T) int64 ids of the captions, padded with <pad> (id 0) to the longest; <bos>/<eos>
    around each when asked.

    >>> v = caption_vocab(); encode_captions(["a two", "the digit 2"], v).shape
    torch.Size([2, 3])
    """
    rows = [[vocab.stoi[BOS]] * bos + vocab.encode(t) + [vocab.stoi[EOS]] * eos for t in texts]
    T = max(len(r) for r in rows)
    pad = vocab.stoi[PAD]
    return torch.tensor([r + [pad] * (T - len(r)) for r in rows], dtype=torch.long)


def sample_captions(data: Digits, idx: torch.Tensor, generator: torch.Generator) -> list[str]:
    """One phrasing drawn at random (from `generator`) for each image idx of `data`."""
    picks = torch.randint(len(TEMPLATES), (len(idx),), generator=generator).tolist()
    return [
        caption_variants(int(data.labels[i]), data.thickness[i])[p]
        for i, p in zip(idx.tolist(), picks)
    ]


def image_batches(data: Digits, *, batch_size: int = 64):
    """A sampler for `train.fit`: sample(generator) -> (images (B, 1, S, S), labels (B,))."""

    def sample(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(data), (batch_size,), generator=generator)
        return data.images[idx], data.labels[idx]

    return sample


def pixel_baseline(train: Digits, test: Digits) -> dict[str, float]:
    """Held-out accuracy of the two baselines an image model must beat: always the most common
    training class ("majority"), and logistic regression on the raw pixels ("pixels": 64 of them
    here, 784 for MNIST), a linear model that sees every pixel but no notion of neighbourhood."""
    from sklearn.linear_model import LogisticRegression

    majority = int(torch.bincount(train.labels).argmax())
    clf = LogisticRegression(max_iter=2000)
    clf.fit(train.images.flatten(1).numpy(), train.labels.numpy())
    pixels = float(clf.score(test.images.flatten(1).numpy(), test.labels.numpy()))
    return {"majority": float((test.labels == majority).float().mean()), "pixels": pixels}
