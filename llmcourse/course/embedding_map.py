"""2-D maps of vectors: PCA (with the share of variance each axis keeps) or t-SNE, labels that do
not overlap. Word vectors (notebook 02) and sentence vectors are drawn with `plot_embeddings_2d`.

    ax = plot_embeddings_2d(vectors, words, highlight=["king", "queen"])

PCA is done with NumPy's SVD (no scikit-learn needed); t-SNE (van der Maaten & Hinton 2008) is used
from scikit-learn only if it is installed. Labels are placed greedily: each goes to the first of
sixteen spots around its point that overlaps no label already written, else it is left out (and the
title says how many). Left out: force-directed label layout (as in adjustText), UMAP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmcourse.course.plots import _new_axes, _to_numpy


def pca_2d(vectors: Any) -> np.ndarray:
    """Project rows onto their top two principal directions: centre, SVD, keep 2 components.

    X - mean = U S V^T; the coordinates are U[:, :2] * S[:2] (= (X - mean) @ V[:2].T).
    Signs are fixed so the largest-magnitude entry of each direction is positive (SVD signs are arbitrary).
    """
    return pca_2d_with_variance(vectors)[0]


def pca_2d_with_variance(vectors: Any) -> tuple[np.ndarray, np.ndarray]:
    """`pca_2d`'s coordinates, and the fraction of the total variance each of the two keeps:
    S[:2]**2 / sum(S**2). Points on a line give fractions (1, 0)."""
    x = _to_numpy(vectors)
    x = x - x.mean(axis=0, keepdims=True)  # (n, d)
    u, s, vt = np.linalg.svd(x, full_matrices=False)  # u (n, k), s (k,), vt (k, d)
    k = min(2, len(s))
    signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    signs[signs == 0] = 1
    out = np.zeros((x.shape[0], 2))
    out[:, :k] = u[:, :k] * s[:k] * signs  # (n, 2)
    ratio = np.zeros(2)
    total = float((s**2).sum())
    if total > 0:
        ratio[:k] = s[:k] ** 2 / total
    return out, ratio


def place_labels(
    ax: Any, xy: np.ndarray, labels: Sequence[str], *, first: Sequence[str] = ()
) -> int:
    """Write each label next to its point where it overlaps no label already written: try eight
    spots around the point, at two distances, and leave the label out when all are taken. Labels in
    `first` go first (they are never left out unless they collide with each other). Returns how
    many labels were left out."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    ax.autoscale_view()
    spots = [
        (dx * r, dy * r, ha, va)
        for r in (1, 2.5)
        for dx, dy, ha, va in [
            (4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
            (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"),
            (6, 0, "left", "center"), (-6, 0, "right", "center"),
        ]
    ]  # fmt: skip
    first = set(first)
    order = sorted(range(len(labels)), key=lambda i: labels[i] not in first)  # `first` ones first
    placed, left_out = [], 0  # the window boxes (pixels) of the labels written so far
    for i in order:
        bold = labels[i] in first
        for dx, dy, ha, va in spots:
            text = ax.annotate(
                str(labels[i]), xy[i], xytext=(dx, dy), textcoords="offset points", fontsize=9,
                ha=ha, va=va, fontweight="bold" if bold else "normal",
            )  # fmt: skip
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            text.remove()
        else:
            left_out += 1
    return left_out


def plot_embeddings_2d(
    vectors: Any,
    labels: Sequence[str] | None = None,
    *,
    method: str = "pca",
    ax: Any = None,
    highlight: Sequence[str] | None = None,
    seed: int = 0,
    title: str | None = None,
) -> Any:
    """Scatter word (or sentence) vectors in 2-D with their labels, placed so none overlap
    (`place_labels`); `highlight` labels drawn in red and bold. PCA axes say the share of the
    variance they keep."""
    ratio = None
    if method == "pca":
        xy, ratio = pca_2d_with_variance(vectors)
    elif method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise ImportError(
                "method='tsne' needs scikit-learn (pip install scikit-learn); "
                "or use method='pca', which needs only NumPy"
            ) from None
        x = _to_numpy(vectors)
        xy = TSNE(
            n_components=2, random_state=seed, perplexity=min(30.0, max(2.0, (len(x) - 1) / 3))
        ).fit_transform(x)
    else:
        raise ValueError(f"method={method!r}: use 'pca' or 'tsne'")
    ax = _new_axes(ax, figsize=(6.4, 6.0))
    hl = set(highlight or ())
    colors = [
        "C3" if labels is not None and lab in hl else "C0" for lab in (labels or [None] * len(xy))
    ]
    ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=18)
    note = ""
    if labels is not None:
        left_out = place_labels(ax, xy, [str(lab) for lab in labels], first=[str(h) for h in hl])
        note = f" ({left_out} labels left out: no free space)" if left_out else ""
    ax.set_title((title or f"{method.upper()} of {len(xy)} vectors") + note)
    if ratio is not None:  # PCA: how much of the spread each axis shows
        ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({ratio[1]:.0%} of variance)")
    else:  # t-SNE keeps neighbourhoods, not distances: its axes have no unit
        ax.set_xlabel("t-SNE dimension 1 (no unit)")
        ax.set_ylabel("t-SNE dimension 2 (no unit)")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
