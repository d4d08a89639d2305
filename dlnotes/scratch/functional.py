"""Scalar and vector functions of the networks, written not to overflow.

The pure-Python counterpart of ``torch.nn.functional`` for Grus, *Data Science from
Scratch* 2e, ch. 18-19. ``math.exp`` raises `OverflowError` above about 709, so:

* `sigmoid` only ever exponentiates a non-positive number;
* `tanh` is ``math.tanh`` (exact, and ±1.0 for large inputs; the book cuts off at ±100);
* `softmax` and `logsumexp` subtract the largest entry first.

Leaves out everything a multilayer perceptron does not need.

Reference code: https://github.com/joelgrus/data-science-from-scratch/blob/master/scratch/deep_learning.py
"""

from __future__ import annotations

import math

from dlnotes.scratch.tensor import Tensor, is_1d

tanh = math.tanh


def sigmoid(t: float) -> float:
    """The logistic function 1 / (1 + e^-t), stable for any float.

    >>> sigmoid(0.0), sigmoid(-1000.0), sigmoid(1000.0)
    (0.5, 0.0, 1.0)
    """
    if t >= 0:
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)  # t < 0, so e is in (0, 1): no overflow
    return e / (1.0 + e)


def relu(x: float) -> float:
    """max(x, 0)."""
    return x if x > 0 else 0.0


def logsumexp(xs: list[float]) -> float:
    """log(sum(exp(x))) of a vector, computed without overflow.

    >>> round(logsumexp([1000.0, 1000.0]) - 1000.0, 6)
    0.693147
    """
    top = max(xs)
    return top + math.log(sum(math.exp(x - top) for x in xs))


def softmax(t: Tensor) -> Tensor:
    """Softmax along the last dimension.

    >>> [round(p, 4) for p in softmax([1000.0, 0.0, -1000.0])]
    [1.0, 0.0, 0.0]
    """
    if not is_1d(t):
        return [softmax(row) for row in t]
    top = max(t)  # exp(x - top) <= 1
    exps = [math.exp(x - top) for x in t]
    total = sum(exps)
    return [e / total for e in exps]
