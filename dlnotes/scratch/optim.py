"""Optimizers: plain gradient descent and momentum, stepping a layer's parameters in place.

Follows Grus, *Data Science from Scratch* 2e, ch. 19 ("Loss and Optimization"), but
with the interface and update rule of ``torch.optim.SGD``: the optimizer is built on
a model, ``zero_grad()`` clears its gradients and ``step()`` updates its parameters.

`Momentum` is torch's SGD with momentum mu and dampening d: the buffer starts as
the first gradient, then v <- mu v + (1 - d) g, and p <- p - lr v. The book's
version keeps a moving average u <- mu u + (1 - mu) g started from zero and steps
p <- p - lr u; unrolled, u = (1 - mu) v, so the book's ``(lr, mu)`` takes exactly
the steps of ``Momentum(lr * (1 - mu), mu)`` here (e.g. its 0.1 and 0.9 are our 0.01).

Leaves out weight decay, Nesterov momentum, parameter groups and schedules.

Reference code: https://github.com/joelgrus/data-science-from-scratch/blob/master/scratch/deep_learning.py
"""

from __future__ import annotations

from dlnotes.errors import InputError
from dlnotes.scratch.layers import Layer
from dlnotes.scratch.tensor import Tensor, is_1d


def _rows(param: Tensor, grad: Tensor) -> list[tuple[list[float], list[float]]]:
    """Pair up the innermost rows of a parameter and its gradient (the lists we update)."""
    if is_1d(param):
        return [(param, grad)]
    return [pair for p, g in zip(param, grad, strict=True) for pair in _rows(p, g)]


class Optimizer:
    """Updates ``model.params()`` from ``model.grads()``; subclasses define `step`."""

    def __init__(self, model: Layer, lr: float) -> None:
        if not lr > 0:
            raise InputError(f"the learning rate must be positive, got lr={lr}")
        self.model, self.lr = model, lr
        # Layers update parameters and gradients in place, so these rows stay valid; a
        # gradient row has its parameter row's length by construction, so the hot loops
        # below zip without strict=True (which costs a quarter of their time).
        self.rows = [
            pair for p, g in zip(model.params(), model.grads(), strict=True) for pair in _rows(p, g)
        ]

    def zero_grad(self) -> None:
        for _, g in self.rows:
            g[:] = [0.0] * len(g)

    def step(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"


class GradientDescent(Optimizer):
    """p <- p - lr g, = ``torch.optim.SGD(params, lr)``."""

    def step(self) -> None:
        lr = self.lr
        for p, g in self.rows:
            p[:] = [w - lr * d for w, d in zip(p, g, strict=False)]


class Momentum(Optimizer):
    """SGD with momentum, = ``torch.optim.SGD(params, lr, momentum, dampening=dampening)``."""

    def __init__(
        self, model: Layer, lr: float, momentum: float = 0.9, dampening: float = 0.0
    ) -> None:
        super().__init__(model, lr)
        if not 0.0 <= momentum < 1.0 or not 0.0 <= dampening <= 1.0:
            raise InputError(
                f"need 0 <= momentum < 1 and 0 <= dampening <= 1, "
                f"got momentum={momentum}, dampening={dampening}"
            )
        self.momentum, self.dampening = momentum, dampening
        self.velocity: list[list[float]] | None = None  # one buffer per row, made on step 1

    def step(self) -> None:
        lr, mu, keep = self.lr, self.momentum, 1.0 - self.dampening
        if self.velocity is None:
            self.velocity = [list(g) for _, g in self.rows]  # torch starts from g, undamped
        else:
            for v, (_, g) in zip(self.velocity, self.rows, strict=True):
                v[:] = [mu * a + keep * d for a, d in zip(v, g, strict=False)]
        for v, (p, _) in zip(self.velocity, self.rows, strict=True):
            p[:] = [w - lr * a for w, a in zip(p, v, strict=False)]

    def __repr__(self) -> str:
        return f"Momentum(lr={self.lr}, momentum={self.momentum}, dampening={self.dampening})"
