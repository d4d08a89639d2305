"""Plots the training chapters share: losses against tokens seen, and learning rates.

Follows the book's ``plot_losses`` (Raschka, *Build a Large Language Model (From
Scratch)*, ch05, https://github.com/rasbt/LLMs-from-scratch/tree/main/ch05):
training and validation loss against tokens seen, with the epoch on a second
x-axis. The functions draw into a new or given `Axes` and return it; the caller
decides whether to show or save the figure.

Leaves out: interactive or live-updating plots, smoothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from dlnotes.train import History


def plot_losses(
    history: History, tokens_per_epoch: int | None = None, ax: Axes | None = None, label: str = ""
) -> Axes:
    """Train and validation loss against tokens seen; epochs on top if `tokens_per_epoch`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    prefix = f"{label} " if label else ""
    ax.plot(history.tokens_seen, history.train_loss, label=f"{prefix}training loss")
    ax.plot(history.tokens_seen, history.val_loss, "--", label=f"{prefix}validation loss")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right")
    if tokens_per_epoch:
        top = ax.secondary_xaxis(
            "top", functions=(lambda t: t / tokens_per_epoch, lambda e: e * tokens_per_epoch)
        )
        top.set_xlabel("epochs")
    ax.figure.tight_layout()
    return ax


def plot_lr(lrs: Sequence[float], ax: Axes | None = None, label: str | None = None) -> Axes:
    """The learning rate of each optimizer step."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(len(lrs)), lrs, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    if label:
        ax.legend()
    ax.figure.tight_layout()
    return ax
