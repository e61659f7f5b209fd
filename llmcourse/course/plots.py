"""The course's figures: loss curves, heatmaps, 2-D embedding maps, the GPU-memory chart, small helpers.

Every function draws on `ax` (or on a new figure when `ax` is None) and returns the Axes, so a
notebook can combine figures with `fig, axes = plt.subplots(1, 2)` and add to them afterwards.
`attention_masks_figure`, three panels, returns its Figure. Nothing here calls `plt.show()`:
Jupyter shows the figure at the end of the cell.
matplotlib is imported on first use, so `import llmcourse.course.plots` is free.

The 2-D maps of vectors (`pca_2d`, `plot_embeddings_2d`) live in `llmcourse.course.embedding_map`
and are imported here too. Left out: interactive plots and styling themes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_FIGSIZE = (6.4, 4.0)
# no figure grows past this, whatever the data (a 64 x 100 heatmap once rendered at 4191 x 2970 px,
# its text unreadable): 10 x 7 inches is 1000 x 700 px at Jupyter's 100 dpi
MAX_FIGSIZE = (10.0, 7.0)


def capped(figsize: tuple[float, float], cap: tuple[float, float] = MAX_FIGSIZE) -> tuple:
    """`figsize` shrunk, keeping its aspect ratio, until it fits `cap`.

    >>> capped((20.0, 7.0))
    (10.0, 3.5)
    """
    scale = min(1.0, cap[0] / figsize[0], cap[1] / figsize[1])
    return (figsize[0] * scale, figsize[1] * scale)


def _new_axes(ax: Any = None, figsize: tuple[float, float] = DEFAULT_FIGSIZE) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=capped(figsize))
    return ax


def integer_ticks(ax: Any, axis: str = "x") -> Any:
    """Ticks only at whole numbers on `axis` ("x", "y" or "both"): steps, layers, ranks, counts."""
    from matplotlib.ticker import MaxNLocator

    for name in ("x", "y") if axis == "both" else (axis,):
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(integer=True))
    return ax


def _to_numpy(x: Any) -> np.ndarray:
    """Arrays, lists and torch tensors (on any device, with or without grad) to a NumPy array."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def _get(history: Any, key: str) -> list:
    if isinstance(history, Mapping):
        return list(history.get(key, []) or [])
    return list(getattr(history, key, []) or [])


def ema(values: Sequence[float], smooth: float) -> np.ndarray:
    """Exponential moving average with weight `smooth` on the past (0 = no smoothing), bias-corrected."""
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth={smooth}: use 0 <= smooth < 1")
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = smooth * avg + (1 - smooth) * v
        out.append(avg / (1 - smooth ** (i + 1)))
    return np.array(out)


def plot_history(
    history: Any,
    *,
    ax: Any = None,
    log_y: bool = False,
    smooth: float = 0.0,
    baselines: dict[str, float] | None = None,
    title: str | None = None,
) -> Any:
    """Train and validation loss against step.

    `history` is the training loop's History or a dict with keys steps, train_loss, val_steps,
    val_loss. With `smooth` > 0 the raw training loss is drawn faintly and its moving average on top.
    `baselines` draws labelled horizontal lines, e.g. {"uniform guess ln V": 4.17}.
    """
    ax = _new_axes(ax)
    steps, train = _get(history, "steps"), _get(history, "train_loss")
    if steps and train:
        if smooth > 0:
            ax.plot(steps, train, color="C0", alpha=0.25, linewidth=1)
            ax.plot(steps, ema(train, smooth), color="C0", label=f"train (EMA {smooth:g})")
        else:
            ax.plot(steps, train, color="C0", label="train")
    val_steps, val = _get(history, "val_steps"), _get(history, "val_loss")
    if val_steps and val:
        ax.plot(val_steps, val, color="C1", marker="o", markersize=3, label="validation")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(
            value, color=f"C{i + 2}", linestyle="--", linewidth=1, label=f"{name} ({value:.3g})"
        )
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    integer_ticks(ax)  # a step is a whole number: no tick at step 2.5
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # an empty history draws nothing to label
        ax.legend()
    return ax


def heatmap(
    matrix: Any,
    xlabels: Sequence[str] | None = None,
    ylabels: Sequence[str] | None = None,
    *,
    ax: Any = None,
    title: str | None = None,
    xlabel: str = "column",
    ylabel: str = "row",
    cmap: str = "viridis",
    annotate: bool = False,
    colorbar: bool = True,
    fmt: str = ".2f",
    max_ticks: int = 40,
) -> Any:
    """A matrix as colours: attention weights (rows = queries, columns = keys), confusion matrices.

    The new figure grows with the matrix up to `MAX_FIGSIZE`; with more than `max_ticks` labels on
    an axis only every k-th is written. Name the axes with `xlabel` / `ylabel` (e.g. "key").
    """
    m = _to_numpy(matrix)
    if m.ndim != 2:
        raise ValueError(f"heatmap needs a 2-D matrix, got shape {m.shape}")
    ax = _new_axes(ax, figsize=(max(4.0, 0.45 * m.shape[1] + 2), max(3.5, 0.45 * m.shape[0] + 1)))
    im = ax.imshow(m, cmap=cmap, aspect="auto")
    ax.grid(False)  # a grid drawn over the cells (a style's axes.grid) would hide them
    for setter, labels, n in (
        (ax.set_xticks, xlabels, m.shape[1]),
        (ax.set_yticks, ylabels, m.shape[0]),
    ):
        if labels is None:
            continue
        every = -(-n // max_ticks)  # ceil: every k-th label, at most max_ticks of them
        kept = range(0, n, every)
        rotation = {"rotation": 90} if setter == ax.set_xticks else {}
        setter(list(kept), labels=[str(labels[i]) for i in kept], **rotation)
    if xlabels is None and ylabels is None:
        integer_ticks(ax, "both")  # plain indices: whole numbers only
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if annotate:
        mid = (np.nanmax(m) + np.nanmin(m)) / 2
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(
                    j,
                    i,
                    format(m[i, j], fmt),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if m[i, j] > mid else "white",
                )
    if colorbar:
        ax.figure.colorbar(im, ax=ax)
    if title:
        ax.set_title(title)
    return ax


def plot_memory_vs_size(
    sizes: Sequence[float] | None = None,
    curves: dict[str, Sequence[float]] | None = None,
    *,
    gpus: Sequence[str] = ("T4", "A100-40GB", "A100-80GB", "H100"),
    ax: Any = None,
    seq_len: int = 2048,
    batch: int = 1,
) -> Any:
    """GPU memory (GB) against parameter count on a log axis, with horizontal lines for GPU sizes.

    `curves` maps a label to GB per size; by default `llmcourse.cost.memory.curves(sizes)` (inference in
    fp16; full, LoRA and QLoRA fine-tuning with gradient checkpointing). GPUs of equal memory (the
    A100-80GB and the H100) share one line.
    """
    from llmcourse.cost import memory

    sizes = list(sizes) if sizes is not None else [float(x) for x in np.geomspace(1e8, 1e11, 25)]
    curves = curves if curves is not None else memory.curves(sizes, seq_len=seq_len, batch=batch)
    ax = _new_axes(ax, figsize=(7.5, 4.8))
    for label, gbs in curves.items():
        ax.plot(sizes, gbs, label=label, linewidth=2)
    by_size: dict[float, list[str]] = {}
    for g in gpus:
        by_size.setdefault(memory.GPUS[g], []).append(g)
    for gb, names in sorted(by_size.items()):
        ax.axhline(gb, color="gray", linestyle=":", linewidth=1)
        ax.text(
            sizes[0], gb * 1.05, f"{' / '.join(names)} ({gb:g} GB)", fontsize=8, color="dimgray"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("GPU memory (GB)")
    ax.set_title(f"Memory vs model size (batch {batch}, {seq_len} tokens)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    return ax


def bar(
    values: Mapping[str, float],
    *,
    ax: Any = None,
    title: str | None = None,
    ylabel: str | None = None,
    xlabel: str | None = None,
    horizontal: bool = False,
    annotate: bool = True,
    fmt: str = ".3g",
) -> Any:
    """One bar per key, labelled with its value (so a bar of height 0 still shows a "0").

    `ylabel` names the values' axis and `xlabel` the names' axis, also when `horizontal`."""
    ax = _new_axes(ax)
    names, heights = list(values), [float(v) for v in values.values()]
    bars = ax.barh(names, heights) if horizontal else ax.bar(names, heights)
    if annotate:
        ax.bar_label(bars, labels=[format(h, fmt) for h in heights], fontsize=8)
        ax.margins(**{"x" if horizontal else "y": 0.12})  # room for the labels above the bars
    value_label, name_label = (
        (ax.set_xlabel, ax.set_ylabel) if horizontal else (ax.set_ylabel, ax.set_xlabel)
    )
    if ylabel:
        value_label(ylabel)
    if xlabel:
        name_label(xlabel)
    if title:
        ax.set_title(title)
    if not horizontal and max((len(n) for n in names), default=0) > 8:
        ax.tick_params(axis="x", labelrotation=30)
    return ax


def line(
    xs: Sequence[float],
    ys_by_label: Mapping[str, Sequence[float]],
    *,
    ax: Any = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    log_x: bool = False,
    log_y: bool = False,
    marker: str | None = "o",
) -> Any:
    """Several named series over the same x values; whole-number x values (steps, layers, ranks,
    counts) get ticks at whole numbers only."""
    ax = _new_axes(ax)
    for label, ys in ys_by_label.items():
        ax.plot(xs, _to_numpy(ys), marker=marker, markersize=3, label=label)
    if log_x:
        ax.set_xscale("log")
    elif len(xs) and all(isinstance(x, (int, np.integer)) for x in xs):
        integer_ticks(ax)
    if log_y:
        ax.set_yscale("log")
    for setter, text in ((ax.set_title, title), (ax.set_xlabel, xlabel), (ax.set_ylabel, ylabel)):
        if text:
            setter(text)
    ax.grid(alpha=0.3)
    if len(ys_by_label) > 1:
        ax.legend()
    return ax


def stack_diagram(
    columns: Mapping[str, Sequence[str]],
    *,
    changed: Mapping[str, Sequence[str]] | None = None,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Architectures as columns of boxes, data flowing from the bottom box up; boxes named in
    `changed[column]` are highlighted. A diagram of a structure, e.g. a GPT-2 block next to a Llama block:

        stack_diagram({"GPT-2": ["LayerNorm", "attention"], "Llama": ["RMSNorm", "attention"]},
                      changed={"Llama": ["RMSNorm"]})
    """
    from matplotlib.patches import FancyBboxPatch

    changed = changed or {}
    height = max(len(boxes) for boxes in columns.values())
    ax = _new_axes(ax, figsize=(3.2 * len(columns), 0.62 * height + 1.2))
    for col, (name, boxes) in enumerate(columns.items()):
        for row, label in enumerate(boxes):  # row 0 at the bottom: the input
            new = label in changed.get(name, ())
            ax.add_patch(
                FancyBboxPatch(
                    (col * 3.2 + 0.2, row * 0.9),
                    2.6,
                    0.6,
                    boxstyle="round,pad=0.04",
                    facecolor="#ffd8a8" if new else "#e7f0fa",
                    edgecolor="#d9480f" if new else "#4a6fa5",
                    linewidth=1.2,
                )
            )
            ax.text(col * 3.2 + 1.5, row * 0.9 + 0.3, label, ha="center", va="center", fontsize=9)
            if row:
                ax.annotate(
                    "",
                    xy=(col * 3.2 + 1.5, row * 0.9),
                    xytext=(col * 3.2 + 1.5, row * 0.9 - 0.3),
                    arrowprops={"arrowstyle": "->", "color": "#555"},
                )
        ax.text(
            col * 3.2 + 1.5, height * 0.9 + 0.1, name, ha="center", fontsize=11, fontweight="bold"
        )
    ax.set_xlim(0, 3.2 * len(columns))
    ax.set_ylim(-0.2, height * 0.9 + 0.5)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def attention_masks_figure(T: int = 8, prefix: int = 3) -> Any:
    """One Transformer, three attention masks, three architectures (UniLM, Dong et al. 2019):
    bidirectional (encoder: BERT), causal (decoder: GPT, Llama, ChatGLM2 and later) and prefix LM
    (GLM's blank infilling, Du et al. 2022). Rows are query positions, columns the key positions
    they may attend to; a filled cell is allowed. Drawn from the package's own masks
    (`llmcourse.attention`). Unlike the other helpers it returns the Figure (three Axes).
    """
    import matplotlib.pyplot as plt
    import torch
    from matplotlib.patches import Rectangle

    from llmcourse.attention import causal_mask, prefix_lm_mask

    panels = [
        ("Bidirectional\n(encoder: BERT)", torch.ones(T, T, dtype=torch.bool)),
        ("Causal\n(decoder: GPT, Llama, ChatGLM2+)", causal_mask(T)),
        (f"Prefix LM, prefix = {prefix}\n(UniLM, GLM)", prefix_lm_mask(T, prefix)),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2), constrained_layout=True)
    for ax, (title, mask) in zip(axes, panels):
        # light cells = blocked, dark blue = may attend; a grid separates the cells
        ax.imshow(mask.int().numpy(), cmap="Blues", vmin=-0.3, vmax=1.2)
        ax.set_xticks(range(T), labels=[str(t + 1) for t in range(T)])
        ax.set_yticks(range(T), labels=[str(t + 1) for t in range(T)])
        ax.set_xticks(np.arange(T + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(T + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        ax.set(title=title, xlabel="key position (attended to)", ylabel="query position")
    if prefix:  # frame the bidirectional block of the prefix LM
        frame = Rectangle((-0.5, -0.5), prefix, prefix, fill=False, edgecolor="#d9480f", lw=3)
        axes[2].add_patch(frame)
    return fig


def save(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Save a Figure (or the Figure of an Axes) as PNG/PDF/SVG by suffix, creating folders."""
    if not hasattr(fig, "savefig"):  # an Axes: save the Figure it belongs to
        fig = fig.figure
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


_MAPS = {"pca_2d", "pca_2d_with_variance", "place_labels", "plot_embeddings_2d"}


def __getattr__(name: str) -> Any:
    """`plots.plot_embeddings_2d` and the other 2-D map helpers, from `embedding_map` on first use
    (imported lazily: embedding_map itself builds on this module)."""
    if name in _MAPS:
        from llmcourse.course import embedding_map

        return getattr(embedding_map, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
