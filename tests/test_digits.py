"""tasks.digits: the offline 8x8 digits, their held-out split and their generated captions; and
tasks.mnist: the full-size 28x28 digits, downloaded from the stand-in hub and checked."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llmcourse.data.fetch import ChecksumError
from llmcourse.tasks import digits, mnist

sys.path.insert(0, str(Path(__file__).resolve().parent))


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


# ------------------------------------------------------------------ MNIST, from the stand-in hub
ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ("LLMCOURSE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture(scope="module")
def mnist_repos(tmp_path_factory):
    """tests/standin_repos.py's ylecun/mnist (300 + 100 rows in the hub's parquet layout), built in a
    child process: building imports `datasets`, which this process must not import."""
    root = tmp_path_factory.mktemp("hub")
    code = (
        "import standin_repos, pathlib; "
        f"standin_repos._mnist(pathlib.Path({str(root)!r}) / 'datasets/ylecun/mnist')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return root


@pytest.fixture
def online(monkeypatch):
    for var in OFFLINE:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LLMCOURSE_HUB", "huggingface")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mnist_downloads_checks_and_caches(mnist_repos, online, monkeypatch, tmp_path):
    from sklearn.datasets import load_digits

    from standin_hub import StandinHub

    files = {s: mnist_repos / "datasets" / mnist.REPO / f for s, f in mnist.FILES.items()}
    monkeypatch.setattr(mnist, "SHA256", {s: _sha(p) for s, p in files.items()})
    with StandinHub(mnist_repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        train, test = mnist.load_mnist_split(cache=tmp_path)
        fetched = [p for method, p, status in hub.requests if method == "GET" and status == 200]
    assert fetched == [f"/datasets/{mnist.REPO}/resolve/main/{f}" for f in mnist.FILES.values()]
    assert (len(train), len(test)) == (300, 100)
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.float32
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    # the stand-in is scikit-learn's digits scaled up: its labels, in order, and its pixels
    target = torch.from_numpy(load_digits().target)
    assert torch.equal(train.labels, target[:300]) and torch.equal(test.labels, target[300:400])
    up = torch.from_numpy(load_digits().images[300]).float() / 16
    big = up.repeat_interleave(3, 0).repeat_interleave(3, 1)
    torch.testing.assert_close(test.images[0, 0, 2:26, 2:26], big, atol=1 / 255, rtol=0)
    assert float(test.images[0, 0, :2].abs().sum()) == 0.0  # the margin is blank
    # thickness: ink over the class median of the *training* images, for both splits
    ink = train.images.flatten(1).sum(1)
    medians = torch.tensor([float(np.median(ink[train.labels == k].numpy())) for k in range(10)])
    for data in (train, test):
        ratio = data.images.flatten(1).sum(1) / medians[data.labels]
        want = ["thin" if r < 0.9 else "thick" if r > 1.1 else "" for r in ratio.tolist()]
        assert data.thickness == want
    assert {"thin", "thick", ""} <= set(train.thickness)
    # cached: offline now, the same data without the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again, _ = mnist.load_mnist_split(cache=tmp_path)
    assert torch.equal(again.images, train.images)


def test_a_corrupted_mnist_download_is_refused(mnist_repos, online, monkeypatch, tmp_path):
    import shutil

    from standin_hub import StandinHub

    bad = tmp_path / "hub"
    shutil.copytree(mnist_repos, bad)
    path = bad / "datasets" / mnist.REPO / mnist.FILES["train"]
    recorded = _sha(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the file
    path.write_bytes(bytes(data))
    monkeypatch.setattr(mnist, "SHA256", {"train": recorded, "test": None})
    with StandinHub(bad) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(ChecksumError, match="checksum mismatch.*nothing was cached"):
            mnist.load_mnist_split(cache=tmp_path / "cache")
    assert not mnist.cached_file("train", tmp_path / "cache").exists()


def test_mnist_offline_or_unreachable_says_what_to_do(online, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(mnist.MnistUnavailable, match="offline mode is on.*LLMCOURSE_SIZE=smoke"):
        mnist.load_mnist_split(cache=tmp_path, fallback=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    with pytest.raises(mnist.MnistUnavailable, match="could not be downloaded.*connect"):
        mnist.load_mnist_split(cache=tmp_path, fallback=False)
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    with pytest.raises(LookupError, match="no ModelScope copy"):
        mnist.load_mnist_split(cache=tmp_path)
    with pytest.raises(ValueError, match="split"):
        mnist.cached_file("validation")


def test_mnist_files_of_another_layout_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"img": [b"x"], "label": [3]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="not an MNIST file"):
        mnist.read_parquet(tmp_path / "a.parquet")


def test_mnist_offline_falls_back_to_upscaled_digits_after_one_line(monkeypatch, tmp_path):
    """Like every full-size loader: offline with nothing cached, ONE OfflineFallbackWarning naming
    what is used instead and how to get MNIST, then 28x28 images the full-size models accept."""
    from llmcourse.data.resolve import OfflineFallbackWarning

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.warns(OfflineFallbackWarning) as caught:
        train, test = mnist.load_mnist_split(cache=tmp_path)
    assert len(caught) == 1
    line = str(caught[0].message)
    assert "MNIST" in line and "28x28" in line and "To get it" in line and "\n" not in line
    assert train.images.shape[1:] == (1, 28, 28) and test.images.shape[1:] == (1, 28, 28)
    assert len(train) + len(test) == 1797 and 0.0 <= float(train.images.min())
    assert float(train.images.max()) <= 1.0
    assert set(train.labels.tolist()) == set(range(10))
    assert not mnist.cached_file("train", tmp_path).exists()  # nothing pretends to be MNIST
