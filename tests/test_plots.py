"""Loss and learning-rate plots draw exactly the recorded numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from dlnotes.plots import plot_losses, plot_lr  # noqa: E402
from dlnotes.train import History  # noqa: E402


def test_plot_losses_draws_both_curves_against_tokens_seen():
    hist = History(eval_steps=[1, 6], tokens_seen=[512, 3072], train_loss=[9.8, 8.1],
                   val_loss=[9.9, 8.3])  # fmt: skip
    ax = plot_losses(hist, tokens_per_epoch=4608)
    train, val = ax.get_lines()
    assert list(train.get_xdata()) == [512, 3072] and list(train.get_ydata()) == [9.8, 8.1]
    assert list(val.get_ydata()) == [9.9, 8.3]
    assert ax.get_xlabel() == "tokens seen" and len(ax.child_axes) == 1  # the epochs axis
    plt.close(ax.figure)


def test_plot_lr_draws_one_point_per_step():
    ax = plot_lr([1e-4, 5e-4, 1e-3], label="warmup")
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1, 2] and list(line.get_ydata()) == [1e-4, 5e-4, 1e-3]
    plt.close(ax.figure)
