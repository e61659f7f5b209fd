"""Byte-level byte-pair encoding (BPE), part 1: the `Tokenizer` base and `ByteBPE`.

BPE (Gage 1994, brought to NLP by Sennrich et al. 2016, made byte-level by GPT-2, Radford et al.
2019) starts from the 256 possible bytes and repeatedly fuses the most frequent adjacent pair of
tokens into a new token. Training records the fusions ("merges") in order; encoding replays them.
Because the base alphabet is bytes, any Unicode string can be encoded: there is no unknown token.

The ladder, one idea per rung (the last rung lives in `llmcourse.bpe_regex`):

    Tokenizer   vocabulary id -> bytes, merges, special tokens; encode/decode; save/load
    ByteBPE     + training on the raw UTF-8 bytes of the text (no pre-split)
    RegexBPE    + GPT-2/GPT-4-style regex pre-split and special tokens such as "<|endoftext|>"

Two training algorithms produce the *same* merges:

    naive_train   recount every pair in the whole corpus after each merge (the teaching version)
    train_merges  keep the pair counts and update them only in the chunks that contain the merged pair

Both see the corpus as distinct chunks with their counts ({b" the": 812, ...}) and break ties the
same deterministic way: the pair with the highest count wins, then the smallest pair of ids
(so (97, 98) beats (256, 97)). A new token gets id 256 + (number of earlier merges).

References: Gage, "A New Algorithm for Data Compression" (1994); Sennrich, Haddow & Birch, "Neural
Machine Translation of Rare Words with Subword Units" (2016); Radford et al., "Language Models are
Unsupervised Multitask Learners" (GPT-2, 2019); minbpe (Karpathy) for the class-ladder idea.
Left out: normalisation (NFC/NFKC), dropout BPE, byte fallback inside a character vocabulary
(SentencePiece), and a min-frequency threshold: training goes on while any pair occurs at all.
"""

from __future__ import annotations

import heapq
import json
import os
from itertools import pairwise
from pathlib import Path

FORMAT_NAME = "llmcourse-bpe"
FORMAT_VERSION = 1
Pair = tuple[int, int]


def get_stats(
    ids: list[int], counts: dict[Pair, int] | None = None, weight: int = 1
) -> dict[Pair, int]:
    """Count adjacent pairs (overlapping) in `ids`, adding `weight` per occurrence into `counts`.

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([7, 7, 7], (7, 7), 9)   # non-overlapping: the leftmost occurrence wins
    [9, 7]
    """
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def naive_train(chunk_counts: dict[bytes, int], num_merges: int) -> dict[Pair, int]:
    """Learn up to `num_merges` merges by recounting all pairs after every merge.

    `chunk_counts` maps each distinct chunk of the corpus to how often it occurs. Cost per merge:
    one pass over every chunk, whether or not it contains the pair. Returns {pair: new_id} in
    merge order (a dict keeps insertion order).
    """
    # every distinct chunk starts as its list of byte values (0..255); its count is its weight
    chunks = [list(c) for c in chunk_counts]
    weights = list(chunk_counts.values())
    merges: dict[Pair, int] = {}
    for new_id in range(256, 256 + num_merges):
        # 1. count every adjacent pair in the whole corpus, from scratch: a chunk that occurs
        #    w times contributes w per occurrence of the pair inside it
        counts: dict[Pair, int] = {}
        for ids, w in zip(chunks, weights):
            get_stats(ids, counts, w)
        # 2. every chunk is a single token: nothing is left to merge, stop early
        if not counts:
            break
        # 3. the winner: the highest count, ties to the smallest pair (deterministic, as in
        #    train_merges); `min` over (-count, pair) does both at once
        pair = min(counts, key=lambda p: (-counts[p], p))
        # 4. record the merge (a dict keeps insertion order: that order is the encoding order)
        merges[pair] = new_id
        # 5. rewrite every chunk, even those without the pair: the cost train_merges avoids
        chunks = [merge(ids, pair, new_id) for ids in chunks]
    return merges


def merge_and_update(
    ids: list[int], pair: Pair, new_id: int, *, weight: int, delta: dict[Pair, int]
) -> list[int]:
    """`merge`, also adding to `delta` how the chunk's pair counts change (times `weight`).

    Only the neighbours of each occurrence change. With X the new token, L the left neighbour (as it
    is *after* earlier merges in this chunk) and R the right one: (L, a), (a, b), (b, R) go and
    (L, X), (X, R) come. Taking L after merging makes back-to-back occurrences come out right.

    >>> delta = {}; merge_and_update([7, 1, 2, 1, 2], (1, 2), 9, weight=1, delta=delta)
    [7, 9, 9]
    >>> {p: d for p, d in delta.items() if d}   # 7 1 2 1 2 -> 7 9 9
    {(1, 2): -2, (7, 1): -1, (7, 9): 1, (2, 1): -1, (9, 9): 1}
    """
    a, b = pair
    # `out` is the merged chunk so far; `i` is the first input position not yet copied into it
    out, i, n = [], 0, len(ids)
    while True:
        # 1. jump to the next `a` (list.index is a C loop, so long chunks stay fast)
        try:
            j = ids.index(a, i)
        except ValueError:
            break
        # 2. an `a` not followed by `b` is no occurrence: copy up to and including it, go on
        if j + 1 == n or ids[j + 1] != b:
            out.extend(ids[i : j + 1])
            i = j + 1
            continue
        # 3. an occurrence at j: copy what lies before it; the pair itself loses one occurrence
        out.extend(ids[i:j])
        delta[pair] = delta.get(pair, 0) - weight
        # 4. left neighbour L = out[-1], already merged: (L, a) goes, (L, X) comes
        if out:
            left = out[-1]
            delta[(left, a)] = delta.get((left, a), 0) - weight
            delta[(left, new_id)] = delta.get((left, new_id), 0) + weight
        # 5. right neighbour R, still unmerged: (b, R) goes, (X, R) comes. If R starts another
        #    occurrence, step 4 of that one undoes (X, a) and books (X, X) instead
        if j + 2 < n:
            right = ids[j + 2]
            delta[(b, right)] = delta.get((b, right), 0) - weight
            delta[(new_id, right)] = delta.get((new_id, right), 0) + weight
        # 6. emit the new token and continue after the pair
        out.append(new_id)
        i = j + 2
    # 7. the tail after the last `a` has no occurrence: copy it as it is
    out.extend(ids[i:])
    return out


def train_merges(chunk_counts: dict[bytes, int], num_merges: int) -> dict[Pair, int]:
    """Learn the same merges as `naive_train`, updating pair counts incrementally.

    Three structures are kept: `counts` (pair -> weighted count), `where` (pair -> indices of the
    chunks that contain it; a superset is fine, since merging a chunk without the pair changes
    nothing) and a heap of (-count, pair). After a merge only the chunks in `where[pair]` are
    rewritten, and only the pairs next to each occurrence change count (`merge_and_update`).
    Heap entries are never removed: an entry whose count no longer matches `counts` is stale and
    skipped when popped (every change of a count pushes a fresh entry, so the current one is there).
    """
    chunks = [list(c) for c in chunk_counts]
    weights = list(chunk_counts.values())
    # 1. count every pair once, as naive_train's first round does, and note which chunks hold it
    counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for i, (ids, w) in enumerate(zip(chunks, weights)):
        for pair in pairwise(ids):
            counts[pair] = counts.get(pair, 0) + w
            where.setdefault(pair, set()).add(i)
    # 2. a min-heap of (-count, pair): its smallest tuple is the highest count, then the
    #    smallest pair, which is exactly naive_train's tie-break
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)
    merges: dict[Pair, int] = {}
    for new_id in range(256, 256 + num_merges):
        # 3. pop until an entry matches the current count; older entries of a pair are stale
        while heap:
            neg_count, pair = heapq.heappop(heap)
            if counts.get(pair) == -neg_count:
                break
        else:
            break  # the heap ran dry: no pairs are left anywhere
        merges[pair] = new_id
        # 4. rewrite only the chunks that hold the pair, summing how every pair count changes
        total: dict[Pair, int] = {}
        for i in where.pop(pair):
            delta: dict[Pair, int] = {}
            chunks[i] = merge_and_update(chunks[i], pair, new_id, weight=weights[i], delta=delta)
            for p, d in delta.items():
                total[p] = total.get(p, 0) + d
                # a pair that gained occurrences is now in chunk i (a lost one may linger in
                # `where`: a superset is harmless)
                if d > 0:
                    where.setdefault(p, set()).add(i)
        # 5. apply the changes; a changed count gets a fresh heap entry, a count of 0 is dropped
        for p, d in total.items():
            if d == 0:
                continue
            counts[p] = counts.get(p, 0) + d
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                del counts[p]
                where.pop(p, None)
    return merges


def render_token(token: bytes) -> str:
    """A printable view of a token: UTF-8 where possible, escapes for control and partial bytes.

    >>> render_token(b"\\n hi"), render_token("é".encode()[:1])
    ('\\\\n hi', '\\\\xc3')
    """
    text = token.decode("utf-8", errors="backslashreplace")
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


class Tokenizer:
    """The base: a vocabulary (id -> bytes) built from ordered merges, special tokens, encode/decode
    and a versioned JSON save/load.

    Encoding applies the learned merges to the UTF-8 bytes of the whole text, lowest merge id first
    (the order they were learned), exactly as training would have fused them.
    Leaves out: training (`ByteBPE`), pre-splitting and recognising special tokens in text
    (`RegexBPE`). Special tokens are stored, saved and decoded here so that every rung shares them.
    """

    pattern: str = ""  # the pre-split regex; empty = the text is one chunk

    def __init__(self) -> None:
        self.merges: dict[Pair, int] = {}  # (left id, right id) -> new id, in merge order
        self.special_tokens: dict[str, int] = {}  # "<|endoftext|>" -> id, ids after the merges
        self.vocab: dict[int, bytes] = self._build_vocab()

    def _build_vocab(self) -> dict[int, bytes]:
        vocab = {i: bytes([i]) for i in range(256)}
        for (left, right), new_id in self.merges.items():  # merges are in order: parts come first
            vocab[new_id] = vocab[left] + vocab[right]
        for text, i in self.special_tokens.items():
            vocab[i] = text.encode("utf-8")
        return vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _encode_chunk(self, data: bytes) -> list[int]:
        """Apply the merges to one chunk: repeatedly fuse the pair that was learned earliest.

        >>> tok = Tokenizer(); tok.merges = {(97, 97): 256}; tok._encode_chunk(b"aaa")
        [256, 97]
        """
        ids = list(data)
        while len(ids) >= 2:
            pair = min(pairwise(ids), key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break  # no learned pair is left in the chunk
            ids = merge(ids, pair, self.merges[pair])
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (the text is one chunk here; subclasses pre-split it)."""
        return self._encode_chunk(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`. Ids that end mid-character decode to U+FFFD instead of raising."""
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    def _set(self, merges: dict[Pair, int], special_tokens: dict[str, int]) -> None:
        self.merges, self.special_tokens = dict(merges), dict(special_tokens)
        self.vocab = self._build_vocab()

    # --- save / load: JSON, one merge per line with a readable view of the new token ---
    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as versioned JSON, one merge per line: [left id, right id, "text"],
        where "text" shows the new token for people (escaped where it is not printable UTF-8) and
        is ignored by `load`. The new token's id is 256 + the line's position in the list."""
        head = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "class": type(self).__name__,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
        }
        fields = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in head.items()]
        merges = ",\n".join(
            f"  [{a}, {b}, {json.dumps(render_token(self.vocab[i]), ensure_ascii=False)}]"
            for (a, b), i in self.merges.items()
        )
        fields.append(f' "merges": [\n{merges}\n ]')
        Path(path).write_text("{\n" + ",\n".join(fields) + "\n}\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a file written by `save`; returns an instance of the class that saved it."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"{path}: not an {FORMAT_NAME} file (format={data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: {FORMAT_NAME} version {data.get('version')!r} is not supported; "
                f"this llmcourse reads version {FORMAT_VERSION}"
            )
        from llmcourse import bpe_regex  # noqa: F401  (registers RegexBPE as a subclass)

        classes = {k.__name__: k for k in _all_subclasses(Tokenizer) | {Tokenizer}}
        if data["class"] not in classes:
            raise ValueError(f"{path}: unknown tokenizer class {data['class']!r}")
        tok = classes[data["class"]]()
        if data["pattern"] != tok.pattern:
            tok.pattern = data["pattern"]  # a custom pre-split regex (only RegexBPE uses one)
        merges = {}
        for i, (a, b, *_) in enumerate(data["merges"]):
            if not (0 <= a < 256 + i and 0 <= b < 256 + i):
                raise ValueError(
                    f"{path}: merge {i} ({a}, {b}) uses a token that does not exist yet"
                )
            merges[(a, b)] = 256 + i
        tok._set(merges, data["special_tokens"])
        return tok


def _all_subclasses(cls: type) -> set[type]:
    subs = set(cls.__subclasses__())
    return subs.union(*(_all_subclasses(s) for s in subs)) if subs else subs


class ByteBPE(Tokenizer):
    """+ training on the raw UTF-8 bytes of the text, the whole text as one chunk.

    Unlike `Tokenizer`: learns its merges with `train`. Leaves out: pre-splitting, so merges may
    cross word, number and punctuation boundaries ("e t" in "the tree" can become one token), and
    the corpus is one long chunk, so every merge still rewrites all of it (incremental training
    only saves the recount) and encoding replays the merges over the whole text. Both problems go
    away with `RegexBPE`'s pre-split.
    """

    def chunk_counts(self, text: str) -> dict[bytes, int]:
        """The corpus as distinct chunks and their counts: here a single chunk."""
        return {text.encode("utf-8"): 1} if text else {}

    def train(
        self, text: str, vocab_size: int, *, naive: bool = False, verbose: bool = False
    ) -> None:
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text` (fewer if the text
        runs out of pairs). `naive=True` uses the recount-everything teaching version."""
        num_merges = vocab_size - 256 - len(self.special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} must be at least 256 + {len(self.special_tokens)} specials"
            )
        learn = naive_train if naive else train_merges
        merges = learn(self.chunk_counts(text), num_merges)
        # special tokens keep their order and move to the ids just after the merges
        specials = {s: 256 + len(merges) + i for i, s in enumerate(self.special_tokens)}
        self._set(merges, specials)
        if verbose:
            for (a, b), i in merges.items():
                print(
                    f"merge {i - 255}/{len(merges)}: ({a}, {b}) -> {i} {render_token(self.vocab[i])!r}"
                )
