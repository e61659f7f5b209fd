"""Plots: each function returns an Axes holding the expected artists (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from llmcourse.cost import memory  # noqa: E402
from llmcourse.course import plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class FakeHistory:
    steps = [0, 1, 2, 3]
    train_loss = [4.0, 3.0, 2.5, 2.2]
    val_steps = [1, 3]
    val_loss = [3.2, 2.6]


def test_plot_history_object_and_dict():
    ax = plots.plot_history(FakeHistory())
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1, 3])
    d = {k: getattr(FakeHistory, k) for k in ("steps", "train_loss", "val_steps", "val_loss")}
    ax = plots.plot_history(d, baselines={"uniform": 4.17, "bigram": 2.5}, log_y=True)
    assert len(ax.lines) == 4 and ax.get_yscale() == "log"
    assert any("uniform" in t.get_text() for t in ax.get_legend().get_texts())


def test_plot_history_smoothing_and_missing_validation():
    ax = plots.plot_history({"steps": [0, 1, 2], "train_loss": [3.0, 1.0, 2.0]}, smooth=0.5)
    assert len(ax.lines) == 2  # faint raw curve + smoothed curve, no validation
    # Bias-corrected EMA, weight 0.5: a1 = 1.5 -> 1.5/0.5 = 3; a2 = 0.75 + 0.5 = 1.25 -> 1.25/0.75 = 5/3;
    # a3 = 0.625 + 1 = 1.625 -> 1.625/0.875 = 1.857142857
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [3.0, 5 / 3, 1.857142857], rtol=1e-6)


def test_heatmap_labels_and_annotations():
    m = torch.softmax(torch.randn(3, 4), dim=-1)
    ax = plots.heatmap(
        m, xlabels=list("abcd"), ylabels=["x", "y", "z"], annotate=True, title="attn"
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcd")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    assert len(ax.texts) == 12 and ax.get_title() == "attn"
    with pytest.raises(ValueError):
        plots.heatmap(np.zeros(3))


def test_pca_of_points_on_a_line_is_collinear():
    """Points on a line in 10-D: all variance is in the first component, the second is ~0,
    and distances along the line are preserved exactly (PCA is a rotation of the centred data)."""
    rng = np.random.default_rng(0)
    t = rng.normal(size=20)
    direction = rng.normal(size=10)
    x = 3.0 + t[:, None] * direction[None, :]
    xy = plots.pca_2d(x)
    np.testing.assert_allclose(xy[:, 1], 0, atol=1e-9)
    np.testing.assert_allclose(
        np.abs(xy[:, 0] - xy[0, 0]), np.abs(t - t[0]) * np.linalg.norm(direction)
    )


def test_pca_matches_covariance_eigenvectors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 5)) * np.array([5, 3, 1, 0.5, 0.1])
    xy = plots.pca_2d(x)
    evals = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    np.testing.assert_allclose(xy.var(axis=0, ddof=1), evals[:2], rtol=1e-9)


def test_plot_embeddings_2d():
    vecs = np.random.default_rng(2).normal(size=(6, 8))
    labels = ["king", "queen", "man", "woman", "cat", "dog"]
    ax = plots.plot_embeddings_2d(vecs, labels, highlight=["cat"])
    assert sorted(t.get_text() for t in ax.texts) == sorted(labels)
    assert ax.texts[0].get_text() == "cat"  # highlighted labels are placed first
    assert len(ax.collections) == 1
    with pytest.raises(ValueError):
        plots.plot_embeddings_2d(vecs, labels, method="umap")


def test_tsne_without_sklearn_says_use_pca():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pca"):
            plots.plot_embeddings_2d(np.eye(5), method="tsne")
    else:
        ax = plots.plot_embeddings_2d(np.random.default_rng(0).normal(size=(8, 4)), method="tsne")
        assert len(ax.collections) == 1


def test_plot_memory_vs_size():
    sizes = [1e8, 1e9, 1e10]
    ax = plots.plot_memory_vs_size(sizes)
    # 4 curves + 3 GPU lines (15, 40, 80 GB; the A100-80GB and H100 share one)
    assert len(ax.lines) == 7
    assert any("H100" in t.get_text() and "A100-80GB" in t.get_text() for t in ax.texts)
    expected = memory.inference_memory(1e9).total / memory.GB
    np.testing.assert_allclose(ax.lines[0].get_ydata()[1], expected)
    assert ax.get_xscale() == "log"


def test_bar_line_and_save(tmp_path):
    ax = plots.bar({"full": 16.0, "LoRA": 2.1, "QLoRA": 0.6}, title="bytes")
    assert len(ax.patches) == 3
    ax = plots.line([1, 2, 3], {"a": [1, 2, 3], "b": torch.tensor([3.0, 2.0, 1.0])}, log_x=True)
    assert len(ax.lines) == 2 and ax.get_legend() is not None
    path = plots.save(ax, tmp_path / "sub" / "fig.png")
    assert path.exists() and path.stat().st_size > 0


def test_attention_masks_figure_has_three_labelled_panels():
    fig = plots.attention_masks_figure(T=6, prefix=2)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        # the drawn image is the mask: 6 x 6 cells
        assert ax.images[0].get_array().shape == (6, 6)
    # panel 3 is the prefix LM: full 2 x 2 block, causal below it
    img = np.asarray(fig.axes[2].images[0].get_array())
    assert img[:2, :2].all() and not img[:2, 2:].any() and img[5].all()
    plt.close(fig)


def _ticks_are_whole(ax, axis="x"):
    ax.figure.canvas.draw()
    lo, hi = sorted(getattr(ax, f"get_{axis}lim")())  # an image's y axis runs downwards
    ticks = [t for t in getattr(ax, f"get_{axis}ticks")() if lo <= t <= hi]
    return len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_a_big_heatmap_is_capped_and_labelled():
    """Notebook 05's 64 x 100 sinusoidal table once made a 47 x 30 inch figure (4191 x 2970 px)."""
    ax = plots.heatmap(np.random.default_rng(0).normal(size=(64, 100)), xlabel="position")
    w, h = ax.figure.get_size_inches()
    assert w <= plots.MAX_FIGSIZE[0] and h <= plots.MAX_FIGSIZE[1]
    assert w / h == pytest.approx((0.45 * 100 + 2) / (0.45 * 64 + 1))  # same shape, smaller
    assert ax.get_xlabel() == "position" and ax.get_ylabel() == "row"
    assert _ticks_are_whole(ax, "x") and _ticks_are_whole(ax, "y")
    # 100 labels: only every third is written, at its own column
    ax = plots.heatmap(np.zeros((2, 100)), xlabels=[f"t{i}" for i in range(100)], max_ticks=40)
    texts = [t.get_text() for t in ax.get_xticklabels()]
    assert texts[:2] == ["t0", "t3"] and len(texts) == 34
    assert plots.capped((20.0, 7.0)) == (10.0, 3.5) and plots.capped((3.0, 2.0)) == (3.0, 2.0)


def test_every_helper_labels_its_axes():
    hist = plots.plot_history(FakeHistory())
    heat = plots.heatmap(np.eye(3), list("abc"), list("abc"), xlabel="key", ylabel="query")
    emb = plots.plot_embeddings_2d(np.random.default_rng(3).normal(size=(5, 4)), list("abcde"))
    mem = plots.plot_memory_vs_size([1e8, 1e9])
    bars = plots.bar({"a": 1.0, "b": 2.0}, ylabel="accuracy", xlabel="method")
    hbars = plots.bar({"a": 1.0}, ylabel="accuracy", xlabel="method", horizontal=True)
    lines = plots.line([1, 2], {"a": [1, 2]}, xlabel="rank", ylabel="loss")
    for ax in (hist, heat, emb, mem, bars, lines):
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    assert (bars.get_xlabel(), bars.get_ylabel()) == ("method", "accuracy")
    assert (hbars.get_xlabel(), hbars.get_ylabel()) == ("accuracy", "method")


def test_steps_and_counts_get_whole_number_ticks():
    ax = plots.plot_history({"steps": [1, 2, 3], "train_loss": [3.0, 2.0, 1.0]})
    assert _ticks_are_whole(ax)
    assert _ticks_are_whole(plots.line([1, 2, 3], {"a": [1.0, 2.0, 4.0]}))
    # real-valued x keeps matplotlib's ticks (0.25 steps here)
    assert not _ticks_are_whole(plots.line([0.0, 0.5, 1.0], {"a": [1.0, 2.0, 4.0]}))


def test_a_zero_bar_still_shows_its_value():
    ax = plots.bar({"full": 0.8, "prompt": 0.0})
    assert [t.get_text() for t in ax.texts] == ["0.8", "0"]


def test_pca_map_names_its_variance_and_keeps_labels_apart():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 6)) * np.array([4, 2, 1, 1, 1, 1])
    _, ratio = plots.pca_2d_with_variance(x)
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    np.testing.assert_allclose(ratio, s[:2] ** 2 / (s**2).sum())
    ax = plots.plot_embeddings_2d(x, [f"word{i}" for i in range(30)])
    assert ax.get_xlabel() == f"PC1 ({ratio[0]:.0%} of variance)"
    assert ax.get_ylabel() == f"PC2 ({ratio[1]:.0%} of variance)"
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    # 40 labels on almost the same spot: most cannot be written, and the title says how many
    crowd = plots.plot_embeddings_2d(
        np.vstack([np.eye(2) * 5, rng.normal(size=(38, 2)) * 1e-3]), [f"w{i}" for i in range(40)]
    )
    left_out = 40 - len(crowd.texts)
    assert left_out > 20 and f"({left_out} labels left out" in crowd.get_title()
