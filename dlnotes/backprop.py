"""Backpropagation for a fully connected network, written exactly as in the math notes.

Follows ``math_notes/mn02-backpropagation.py`` ("Mathematics for Deep Learning", part 2).
Notation, used unchanged in the notes and here:

* layers ``l = 1 .. L``; ``n[l]`` units in layer ``l``; ``a[0] = x`` is the input;
* ``W[l]`` has shape ``(n[l], n[l-1])`` (like ``torch.nn.Linear.weight``), ``b[l]`` has
  shape ``(n[l], 1)``;
* ``z[l] = W[l] @ a[l-1] + b[l]`` (pre-activation), ``a[l] = act[l](z[l])``;
* a mini-batch of ``m`` examples is stored **as columns**: ``x`` has shape ``(n[0], m)``;
* the loss ``L`` is the mean over the batch; ``delta[l] = dL/dz[l]`` (same shape as ``z[l]``);
* ``delta[L] = dL/da[L] * act'(z[L])`` and ``delta[l] = (W[l+1].T @ delta[l+1]) * act'(z[l])``;
* ``dL/dW[l] = delta[l] @ a[l-1].T`` (a sum of outer products), ``dL/db[l] = delta[l].sum(1)``.

Dicts keyed by the layer number make ``W[l]`` read as $W^{(l)}$. NumPy float64 keeps
it a direct transcription of the maths. Left out: anything beyond dense layers,
elementwise activations and the two losses (MSE, softmax cross-entropy on logits);
no optimiser (a gradient step is one line in the notes).
"""

# ruff: noqa: E741 (the layer index is called l, as in the maths)
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dlnotes.errors import InputError

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    """An elementwise function `f` and its derivative `df`, both taking ``z``."""

    name: str
    f: Callable[[Array], Array]
    df: Callable[[Array], Array]


def _sigmoid(z: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # equals 1/(1+e^-z) and never overflows


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("sigmoid", _sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
        Activation("tanh", np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),
        # ReLU has no derivative at 0; like PyTorch we use 0 there.
        Activation("relu", lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),
        Activation("identity", lambda z: z, np.ones_like),
    ]
}


def activation(name: str) -> Activation:
    """Look up an activation by name.

    >>> activation("tanh").df(np.array([0.0]))
    array([1.])
    """
    if name not in ACTIVATIONS:
        raise InputError(f"unknown activation {name!r}: use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def softmax(z: Array) -> Array:
    """Softmax of each column (subtracting the column max first avoids overflow).

    >>> softmax(np.array([[0.0], [np.log(3.0)]])).round(2)
    array([[0.25],
           [0.75]])
    """
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def one_hot(labels: Array, n_classes: int) -> Array:
    """Class indices of shape ``(m,)`` as columns of the identity: shape ``(n_classes, m)``."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"class labels must be a 1-D integer array, got shape {labels.shape} "
            f"and dtype {labels.dtype}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise InputError(
            f"class labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}"
        )
    return np.eye(n_classes)[:, labels]


@dataclass(frozen=True)
class Loss:
    """A loss on the network output ``a[L]`` (shape ``(n[L], m)``) and its gradient."""

    name: str
    value: Callable[[Array, Array], float]
    grad: Callable[[Array, Array], Array]  # dL/da[L], same shape as a[L]


def _mse_value(out: Array, y: Array) -> float:
    return float(np.mean((out - y) ** 2))


def _ce_value(logits: Array, labels: Array) -> float:
    shifted = logits - logits.max(axis=0, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))
    return float(-np.mean(np.sum(one_hot(labels, logits.shape[0]) * log_p, axis=0)))


LOSSES: dict[str, Loss] = {
    # Mean over all m * n[L] entries, like torch.nn.functional.mse_loss.
    "mse": Loss("mse", _mse_value, lambda out, y: 2.0 * (out - y) / out.size),
    # Softmax cross-entropy on logits with integer labels, like F.cross_entropy;
    # softmax and log cancel to the famous p - y.
    "cross_entropy": Loss(
        "cross_entropy",
        _ce_value,
        lambda z, labels: (softmax(z) - one_hot(labels, z.shape[0])) / z.shape[1],
    ),
}


def loss_fn(name: str) -> Loss:
    """Look up a loss by name (``"mse"`` or ``"cross_entropy"``)."""
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")
    return LOSSES[name]


@dataclass
class Network:
    """Weights ``W[l]``, biases ``b[l]`` and activations ``act[l]`` for ``l = 1 .. L``.

    Weights and biases may be given as nested lists, activations by name; they are
    stored as float64 arrays and `Activation`s.
    """

    W: dict[int, Array]
    b: dict[int, Array]
    act: dict[int, Activation | str]

    def __post_init__(self) -> None:
        if not self.W or sorted(self.W) != list(range(1, len(self.W) + 1)):
            raise InputError(f"layers must be numbered 1..L, got {sorted(self.W)}")
        if sorted(self.b) != sorted(self.W) or sorted(self.act) != sorted(self.W):
            raise InputError(
                f"W, b and act need the same layers: {sorted(self.W)}, "
                f"{sorted(self.b)}, {sorted(self.act)}"
            )
        # Accept nested lists and activation names too, as a reader may type them.
        try:
            self.W = {l: np.asarray(W, dtype=np.float64) for l, W in self.W.items()}
            self.b = {l: np.asarray(b, dtype=np.float64) for l, b in self.b.items()}
        except (TypeError, ValueError) as exc:
            raise InputError(f"weights and biases must be arrays of numbers: {exc}") from None
        self.act = {
            l: a if isinstance(a, Activation) else activation(a) for l, a in self.act.items()
        }
        for l in self.W:
            W, b = self.W[l], self.b[l]
            if W.ndim != 2 or b.shape != (W.shape[0], 1):
                raise InputError(
                    f"layer {l}: W{l} must be 2-D and b{l} of shape (n_{l}, 1), "
                    f"got W{l} {W.shape} and b{l} {b.shape}"
                )
            if l > 1 and W.shape[1] != self.W[l - 1].shape[0]:
                raise InputError(
                    f"layer {l}: W{l} has {W.shape[1]} columns but layer {l - 1} "
                    f"has {self.W[l - 1].shape[0]} units"
                )

    @property
    def L(self) -> int:
        """The depth: the number of layers with weights."""
        return len(self.W)

    @property
    def sizes(self) -> list[int]:
        """``[n[0], n[1], ..., n[L]]``."""
        return [self.W[1].shape[1], *(self.W[l].shape[0] for l in range(1, self.L + 1))]

    @classmethod
    def init(
        cls, sizes: Sequence[int], activations: Sequence[str], rng: np.random.Generator
    ) -> Network:
        """Random weights ~ N(0, 1/n[l-1]) and small random biases.

        >>> Network.init([2, 3, 1], ["sigmoid", "identity"], np.random.default_rng(0)).sizes
        [2, 3, 1]
        """
        if len(sizes) < 2 or len(activations) != len(sizes) - 1 or min(sizes) < 1:
            raise InputError(
                f"need sizes [n0, ..., nL] (all >= 1) and L activations, got sizes "
                f"{list(sizes)} and {len(activations)} activation(s)"
            )
        L = len(sizes) - 1
        return cls(
            W={
                l: rng.normal(0, sizes[l - 1] ** -0.5, (sizes[l], sizes[l - 1]))
                for l in range(1, L + 1)
            },
            b={l: rng.normal(0, 0.1, (sizes[l], 1)) for l in range(1, L + 1)},
            act={l: activation(activations[l - 1]) for l in range(1, L + 1)},
        )


@dataclass
class Trace:
    """What the forward pass keeps for the backward pass: ``z[1..L]`` and ``a[0..L]``."""

    z: dict[int, Array]
    a: dict[int, Array]


@dataclass
class Gradients:
    """``delta[l]``, ``dW[l] = dL/dW[l]`` and ``db[l] = dL/db[l]`` for ``l = 1 .. L``."""

    delta: dict[int, Array]
    dW: dict[int, Array]
    db: dict[int, Array]


def forward(net: Network, x: Array) -> Trace:
    """Run the network on the columns of `x` (shape ``(n[0], m)``), keeping every z and a."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != net.sizes[0]:
        raise InputError(
            f"input must have shape (n0, m) = ({net.sizes[0]}, m) with examples as "
            f"columns, got {x.shape}"
        )
    z: dict[int, Array] = {}
    a: dict[int, Array] = {0: x}
    for l in range(1, net.L + 1):
        z[l] = net.W[l] @ a[l - 1] + net.b[l]  # b broadcasts over the m columns
        a[l] = net.act[l].f(z[l])
    return Trace(z, a)


def backward(net: Network, trace: Trace, dL_daL: Array) -> Gradients:
    """The delta recursion, from ``dL/da[L]`` down to layer 1, and every weight gradient."""
    L = net.L
    if dL_daL.shape != trace.a[L].shape:
        raise InputError(f"dL/da[L] must have shape {trace.a[L].shape}, got {dL_daL.shape}")
    delta = {L: dL_daL * net.act[L].df(trace.z[L])}
    for l in range(L - 1, 0, -1):
        delta[l] = (net.W[l + 1].T @ delta[l + 1]) * net.act[l].df(trace.z[l])
    dW = {l: delta[l] @ trace.a[l - 1].T for l in delta}
    db = {l: delta[l].sum(axis=1, keepdims=True) for l in delta}
    return Gradients(delta, dW, db)


def loss_and_gradients(
    net: Network, x: Array, y: Array, loss: str = "mse"
) -> tuple[float, Gradients, Trace]:
    """Forward pass, loss value, backward pass: everything one gradient step needs.

    `y` has the output's shape ``(n[L], m)`` for ``"mse"``; for ``"cross_entropy"`` it
    holds ``m`` integer class labels and ``a[L]`` is read as logits.

    >>> net = Network({1: np.array([[2.0]])}, {1: np.array([[0.0]])}, {1: activation("identity")})
    >>> value, grads, _ = loss_and_gradients(net, np.array([[1.0]]), np.array([[3.0]]))
    >>> value, grads.dW[1]
    (1.0, array([[-2.]]))
    """
    spec = loss_fn(loss)
    trace = forward(net, x)
    out = trace.a[net.L]
    y = np.asarray(y)
    if loss == "mse" and y.shape != out.shape:
        raise InputError(f"targets must have the output's shape {out.shape}, got {y.shape}")
    if loss == "cross_entropy" and y.shape != (out.shape[1],):
        raise InputError(f"need {out.shape[1]} class labels (one per column), got shape {y.shape}")
    return spec.value(out, y), backward(net, trace, spec.grad(out, y)), trace


def numerical_gradient(f: Callable[[Array], float], x: Array, eps: float = 1e-6) -> Array:
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / 2 eps`` for every entry of `x`.

    `x` is perturbed in place and restored, so `f` may read it through a closure.

    >>> numerical_gradient(lambda v: float(v[0] ** 2 + 3 * v[1]), np.array([2.0, 5.0])).round(6)
    array([4., 3.])
    """
    grad = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f(x)
        x[i] = old - eps
        down = f(x)
        x[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def numerical_jacobian(f: Callable[[Array], Array], x: Array, eps: float = 1e-6) -> Array:
    """The Jacobian ``J[i, j] = d f_i / d x_j`` of a vector function by central differences.

    >>> numerical_jacobian(lambda v: np.array([v[0] * v[1], v[0]]), np.array([2.0, 3.0])).round(6)
    array([[3., 2.],
           [1., 0.]])
    """
    x = np.asarray(x, dtype=np.float64).copy()
    columns = []
    for j in range(x.size):
        step = np.zeros_like(x)
        step.flat[j] = eps
        columns.append((np.asarray(f(x + step)) - np.asarray(f(x - step))).ravel() / (2 * eps))
    return np.stack(columns, axis=1)
