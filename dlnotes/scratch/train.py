"""Training and evaluation loops for the pure-Python layers.

The loop of Grus, *Data Science from Scratch* 2e, ch. 19 (predict, add up the loss,
backpropagate its gradient, step), written once here so the notes, tests and
benchmark share it, with the order of a PyTorch loop: ``zero_grad``, forward,
backward, ``step``. Samples go one at a time through the network; with
``batch_size > 1`` the gradients of a batch are added up before one step.

Leaves out shuffling (pass the data in the order you want), early stopping and logging.

Reference code: https://github.com/joelgrus/data-science-from-scratch/blob/master/scratch/deep_learning.py
"""

from __future__ import annotations

from collections.abc import Sequence

from dlnotes.errors import InputError
from dlnotes.scratch.layers import Layer
from dlnotes.scratch.losses import Loss
from dlnotes.scratch.optim import Optimizer
from dlnotes.scratch.tensor import Tensor, argmax


def _checked(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> None:
    if len(xs) != len(ys):
        raise InputError(f"{len(xs)} inputs but {len(ys)} targets; they must pair up")


def train_epoch(
    model: Layer,
    loss_fn: Loss,
    optimizer: Optimizer,
    xs: Sequence[Tensor],
    ys: Sequence[Tensor],
    batch_size: int = 1,
    desc: str | None = None,
) -> float:
    """One pass over the data in order, stepping after every `batch_size` samples.

    Returns the summed loss (measured before each sample's update). With `desc`, a
    tqdm progress bar of that name counts the steps.
    """
    _checked(xs, ys)
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    starts = range(0, len(xs), batch_size)
    if desc is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, leave=False, unit="step")
    model.train()
    total = 0.0
    for start in starts:
        optimizer.zero_grad()
        batch = slice(start, start + batch_size)
        for x, y in zip(xs[batch], ys[batch], strict=True):
            predicted = model(x)
            total += loss_fn.loss(predicted, y)
            model.backward(loss_fn.gradient(predicted, y))
        optimizer.step()
    return total


def evaluate(
    model: Layer, loss_fn: Loss, xs: Sequence[Tensor], ys: Sequence[Tensor]
) -> tuple[float, float]:
    """(summed loss, accuracy) in evaluation mode; a prediction is right when its argmax
    is the target's (for one-hot targets).
    """
    _checked(xs, ys)
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for x, y in zip(xs, ys, strict=True):
        predicted = model(x)
        total += loss_fn.loss(predicted, y)
        correct += argmax(predicted) == argmax(y)
    model.train(was_training)
    return total, correct / max(len(xs), 1)
