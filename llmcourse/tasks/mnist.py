"""The full-size image set of the multimodal lesson: MNIST, 70,000 handwritten digits of 28x28 pixels.

MNIST (LeCun, Bottou, Bengio & Haffner 1998; LeCun & Cortes) has 60,000 training and 10,000 test
digits, grey values 0..255. The course downloads the Hugging Face copy `ylecun/mnist`: one parquet
file per split (`FILES`), each row an `image` (a PNG file's bytes) and a `label` (0..9).

* `load_mnist_split()` -> (train, test) `digits.Digits`, the structure of the 8x8 set: images
  (N, 1, 28, 28) scaled to [0, 1], labels, and the thickness words, measured against the training
  split's class medians exactly as `digits.make_splits` does for the 8x8 digits. The split is
  MNIST's own (60,000 / 10,000); there is no `test_fraction`.
* `parquet_path(split)` is the download, done the course's way (`llmcourse.data.fetch`): from the
  hub `LLMCOURSE_HUB` picks at `HF_ENDPOINT` (a mirror works), at revision `REVISION`, written
  atomically into the llmcourse cache (`$LLMCOURSE_CACHE`), and checked against `SHA256[split]`
  when one is recorded (a mismatch raises `ChecksumError`, nothing is cached). The values are
  recorded at the first real download (`sha256sum` of the cached files); until then the check is
  the decoding below. A cached file is used without the network.
* Offline with nothing cached, or when the hub cannot be reached, `parquet_path` raises
  `MnistUnavailable` (a FileNotFoundError) that says how to get the files. `load_mnist_split` then
  falls back, like every full-size loader of the course, after ONE `OfflineFallbackWarning` line:
  scikit-learn's 8x8 digits scaled up to 28x28 (`upscaled_digits`), so a GPU with no network still
  runs the full-size models, on other data (`fallback=False` raises instead).
* Decoding checks what it reads: every image a 28x28 grey PNG, every label in 0..9, the
  `image` and `label` columns present; anything else is a ValueError naming the file.

The registry (`llmcourse.data.registry`) lists it as "mnist" (kind "image"). ModelScope has no copy
that the course knows of: with `LLMCOURSE_HUB=modelscope` the error says to use the mirror.
Left out: the original IDX files, the other MNIST-like sets (Fashion-MNIST, EMNIST), augmentation.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from llmcourse.data.fetch import fetch_url, hub_source, is_offline, probe_host
from llmcourse.data.registry import cache_dir
from llmcourse.tasks.digits import Digits, make_splits

REPO = "ylecun/mnist"
# the revision the files are downloaded at; "main" until a commit hash is recorded with SHA256
REVISION = "main"
FILES = {"train": "mnist/train-00000-of-00001.parquet", "test": "mnist/test-00000-of-00001.parquet"}
# sha256 of each downloaded file: None = not recorded yet (recorded at the first real download)
SHA256: dict[str, str | None] = {"train": None, "test": None}
SIZE = 28  # pixels per side


class MnistUnavailable(FileNotFoundError):
    """MNIST is not cached and cannot be downloaded now (offline, or the hub is out of reach)."""


def cached_file(split: str, cache: str | os.PathLike | None = None) -> Path:
    """Where the split's parquet file is cached: <cache>/corpora/mnist.parquet (the registry's
    name, the training split) and mnist-test.parquet."""
    if split not in FILES:
        raise ValueError(f"split={split!r}: use one of {sorted(FILES)}")
    return cache_dir(cache) / ("mnist.parquet" if split == "train" else f"mnist-{split}.parquet")


def parquet_path(
    split: str,
    *,
    cache: str | os.PathLike | None = None,
    revision: str = REVISION,
    sha256: str | None = None,
) -> Path:
    """The split's parquet file, downloaded into the cache when it is not there (see above).

    `sha256` (default: `SHA256[split]`) is checked on a download and on a cached file; a cached
    file that does not match is downloaded again."""
    dest = cached_file(split, cache)
    sha256 = SHA256[split] if sha256 is None else sha256
    if dest.is_file() and (sha256 is None or _sha256(dest) == sha256):
        return dest  # cached (and verified when a checksum is recorded): no network, any hub
    # on LLMCOURSE_HUB=modelscope: NoModelScopeCopy, whose message says what to do instead
    url = hub_source(REPO, "dataset").url(FILES[split], revision)
    fix = (
        f"To get it: connect and run again once (the file is then cached at {dest}), or download "
        f"{url} where there is a network and copy it there"
    )
    offline = is_offline()
    if offline:
        raise MnistUnavailable(
            f"MNIST ({REPO}, {split}) is not cached and offline mode is on ({offline}=1). {fix}; "
            "or use the offline size: LLMCOURSE_SIZE=smoke (scikit-learn's 8x8 digits)."
        )
    try:
        probe_host(url)
        return fetch_url(url, dest, sha256)
    except OSError as e:  # refused, unreachable, HTTP errors (urllib's are OSErrors)
        raise MnistUnavailable(
            f"MNIST ({REPO}, {split}) could not be downloaded from {url} ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:160]}). {fix}."
        ) from None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_parquet(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of one MNIST parquet file, checked."""
    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(path)
    missing = {"image", "label"} - set(table.column_names)
    if missing:
        raise ValueError(
            f"{path} has columns {table.column_names}, not {sorted(missing)}: not an MNIST file "
            "of the expected layout; delete it and download again"
        )
    rows = table.select(["image", "label"]).to_pydict()
    images = []
    for i, cell in enumerate(rows["image"]):
        raw = cell["bytes"] if isinstance(cell, dict) else cell
        img = np.asarray(Image.open(io.BytesIO(raw)).convert("L"))
        if img.shape != (SIZE, SIZE):
            raise ValueError(f"{path}: image {i} is {img.shape}, not ({SIZE}, {SIZE})")
        images.append(img)
    labels = np.asarray(rows["label"], dtype=np.int64)
    if len(labels) == 0 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: labels must be digits 0..9 (found {sorted(set(labels))[:12]})")
    return np.stack(images), labels


def load_mnist_split(
    *, cache: str | os.PathLike | None = None, revision: str = REVISION, fallback: bool = True
) -> tuple[Digits, Digits]:
    """MNIST's (train, test) splits as `Digits`: images (N, 1, 28, 28) in [0, 1], labels, thickness
    (the training split's class medians). Downloads the two files once (`parquet_path`); when they
    cannot be had, warns in one line and returns `upscaled_digits()` (unless `fallback=False`)."""
    try:
        paths = [parquet_path(s, cache=cache, revision=revision) for s in FILES]
    except MnistUnavailable as e:
        if not fallback:
            raise
        from llmcourse.data.resolve import warn_fallback

        why = "is not cached and cannot be downloaded now"
        fix = str(e).split(". ", 1)[-1]  # the message's "To get it: ..." part
        warn_fallback(f"MNIST ({REPO})", "the 8x8 digits scaled up to 28x28", why=why, fix=fix)
        return upscaled_digits()
    parts = [read_parquet(path) for path in paths]
    (train_x, train_y), (test_x, test_y) = parts
    images = np.concatenate([train_x, test_x]).astype(np.float32) / 255.0
    labels = np.concatenate([train_y, test_y])
    n = len(train_y)
    return make_splits(images, labels, train_idx=np.arange(n), test_idx=np.arange(n, len(labels)))


def upscaled_digits(*, test_fraction: float = 0.2, seed: int = 0) -> tuple[Digits, Digits]:
    """The offline stand-in: scikit-learn's 8x8 digits, bilinearly scaled up to 28x28, so models
    built for MNIST's shape still run (on 1,797 images instead of 70,000)."""
    import torch
    import torch.nn.functional as F

    from llmcourse.tasks.digits import load_digits_split

    small = load_digits_split(test_fraction=test_fraction, seed=seed)
    images = torch.cat([small[0].images, small[1].images])  # (N, 1, 8, 8)
    labels = torch.cat([small[0].labels, small[1].labels]).numpy()
    big = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    big = big.clamp(0, 1)[:, 0].numpy().astype(np.float32)  # (N, 28, 28)
    n_train = len(small[0].labels)
    return make_splits(
        big, labels, train_idx=np.arange(n_train), test_idx=np.arange(n_train, len(labels))
    )
