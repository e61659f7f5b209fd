"""A `fit` callback that redraws the loss curves live in a notebook.

    history = fit(model, train_data, cfg, val_data=val, callbacks=[LiveLossPlot(every=100)])

`llmcourse.train.fit` calls `on_step(step, history)` after every optimizer step and
`on_eval(step, history)` after every validation estimate (fastai's callback idea, reduced to two
methods). `LiveLossPlot` answers both by redrawing `course.plots.plot_history(history)` into one
display slot that it updates in place (IPython's `display(..., display_id=True)`), rather than
calling `clear_output`, which would also erase the progress bar printed in the same cell.
Outside a notebook (plain Python, a test, a script) it draws nothing and costs nothing.

References: Howard & Gugger 2020 (fastai's callbacks); IPython's display-update API.
Left out: logging to files or dashboards (TensorBoard, wandb), and plotting anything but losses.
"""

from __future__ import annotations

from typing import Any

from llmcourse.train import History


def _plot_minimal(history: History, ax: Any) -> None:
    """Fallback when llmcourse.course.plots is unavailable: the two loss curves, nothing more."""
    ax.plot(history.steps, history.train_loss, label="train")
    if history.val_steps:
        ax.plot(history.val_steps, history.val_loss, "o-", label="val")
    ax.set(xlabel="step", ylabel="loss")
    ax.legend()


class LiveLossPlot:
    """A callback that redraws the loss curves in a notebook every `every` steps and after every
    validation estimate (a no-op outside a notebook)."""

    def __init__(self, every: int = 50):
        self.every = every
        self._handle = None

    def on_step(self, step: int, history: History) -> None:
        if step % self.every == 0:
            self._draw(history)

    def on_eval(self, step: int, history: History) -> None:
        self._draw(history)

    def _draw(self, history: History) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None or not history.steps:  # plain Python or a test: nothing to show
            return
        import matplotlib.pyplot as plt

        try:
            from llmcourse.course.plots import plot_history
        except ImportError:
            plot_history = _plot_minimal
        fig, ax = plt.subplots(figsize=(6, 3.5))
        plot_history(history, ax=ax)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)  # or the notebook shows it a second time at the end of the cell
