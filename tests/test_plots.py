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
    assert [t.get_text() for t in ax.texts] == labels
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
