"""Losses with their gradients: sum of squared errors and softmax cross-entropy.

Follows Grus, *Data Science from Scratch* 2e, ch. 19 ("Loss and Optimization",
"Softmaxes and Cross-Entropy"). Each loss is a *sum* over entries (and over the
rows of a batch), i.e. PyTorch's ``reduction="sum"``, and `gradient` is the exact
derivative of `loss`:

* `SSE`: sum (p - y)**2, gradient 2 (p - y). Chapter 18's backpropagation returns
  (p - y), the gradient of *half* the SSE, while calling it the squared error's;
  here the loss and its gradient always belong together.
* `SoftmaxCrossEntropy`: -sum y log softmax(z) for logits z and target
  probabilities y (one-hot for a class), computed as logsumexp(z) * sum(y) - y.z so
  it never overflows nor takes log(0); gradient softmax(z) * sum(y) - y.

Leaves out means (divide by the batch size yourself) and class-index targets.

Reference code: https://github.com/joelgrus/data-science-from-scratch/blob/master/scratch/deep_learning.py
"""

from __future__ import annotations

from operator import mul

from dlnotes.errors import InputError
from dlnotes.scratch.functional import logsumexp, softmax
from dlnotes.scratch.tensor import Tensor, is_1d, shape, tensor_combine, tensor_sum


class Loss:
    """``loss(predicted, target) -> float`` and its ``gradient`` with respect to `predicted`."""

    def loss(self, predicted: Tensor, target: Tensor) -> float:
        raise NotImplementedError

    def gradient(self, predicted: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, predicted: Tensor, target: Tensor) -> float:
        return self.loss(predicted, target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SSE(Loss):
    """Sum of squared errors, = ``torch.nn.MSELoss(reduction="sum")``.

    >>> SSE().loss([1.0, 2.0], [0.0, 4.0]), SSE().gradient([1.0, 2.0], [0.0, 4.0])
    (5.0, [2.0, -4.0])
    """

    def loss(self, predicted: Tensor, target: Tensor) -> float:
        return tensor_sum(tensor_combine(lambda p, y: (p - y) ** 2, predicted, target))

    def gradient(self, predicted: Tensor, target: Tensor) -> Tensor:
        return tensor_combine(lambda p, y: 2.0 * (p - y), predicted, target)


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits) against target probabilities, summed over rows.

    = ``torch.nn.CrossEntropyLoss(reduction="sum")`` with probability targets.

    >>> ce = SoftmaxCrossEntropy()
    >>> round(ce.loss([0.0, 0.0], [1.0, 0.0]), 4), ce.gradient([0.0, 0.0], [1.0, 0.0])
    (0.6931, [-0.5, 0.5])
    """

    def loss(self, predicted: Tensor, target: Tensor) -> float:
        _check(predicted, target)
        if is_1d(predicted):
            return logsumexp(predicted) * sum(target) - sum(map(mul, target, predicted))
        return sum(self.loss(z, y) for z, y in zip(predicted, target, strict=True))

    def gradient(self, predicted: Tensor, target: Tensor) -> Tensor:
        _check(predicted, target)
        if is_1d(predicted):
            mass = sum(target)  # 1 for a one-hot target: the gradient is then p - y
            return [p * mass - y for p, y in zip(softmax(predicted), target, strict=True)]
        return [self.gradient(z, y) for z, y in zip(predicted, target, strict=True)]


def _check(predicted: Tensor, target: Tensor) -> None:
    if shape(predicted) != shape(target):
        raise InputError(
            f"predictions of shape {shape(predicted)} and targets of shape {shape(target)} "
            "differ; targets are probability (one-hot) vectors like the logits"
        )
    if not predicted or (not is_1d(predicted) and not predicted[0]):
        raise InputError("softmax cross-entropy needs at least one logit per row")
