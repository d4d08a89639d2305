"""Layers with hand-written backward passes: Linear, activations, Dropout, Sequential.

Follows Grus, *Data Science from Scratch* 2e, ch. 19 ("The Layer Abstraction" to
"Saving and Loading Models"), with PyTorch's names: ``Linear(in_features,
out_features)`` holds ``weight`` (out x in) and ``bias``, ``Sequential`` names its
parameters ``"0.weight"``, ``"2.bias"`` ..., so a `state_dict` loads straight into the
same ``torch.nn.Sequential``.

A layer takes one sample (a vector) or a batch (a list of vectors). ``forward(x)``
saves what the backward pass needs; ``backward(grad)`` takes dLoss/d(output),
returns dLoss/d(input) and *adds* dLoss/d(parameter) into the gradient tensors
(`grads`, in the order of `params`), as ``loss.backward()`` adds into ``.grad`` in
PyTorch; ``zero_grad()`` clears them. The book overwrites the gradients instead,
which is the same when every backward is followed by one optimizer step.

Parameters and gradients are only ever updated in place (``row[:] = ...``), so an
optimizer can hold on to their rows. Leaves out autograd (each layer writes its own
derivative), convolutions and recurrent layers.

Reference code: https://github.com/joelgrus/data-science-from-scratch/blob/master/scratch/deep_learning.py
"""

from __future__ import annotations

import json
import random
from operator import mul
from pathlib import Path

from dlnotes.atomic import atomic_write
from dlnotes.errors import CheckpointError, InputError, require_number
from dlnotes.scratch.functional import relu, sigmoid, tanh
from dlnotes.scratch.tensor import (
    Tensor,
    copy_tensor,
    is_1d,
    random_tensor,
    shape,
    tensor_apply,
    tensor_combine,
)


class Layer:
    """A step of a network: `forward`, `backward`, and its `params` with their `grads`."""

    param_names: tuple[str, ...] = ()  # attribute names; gradients live in f"{name}_grad"
    training: bool = True

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def backward(self, grad: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def named_params(self) -> list[tuple[str, Tensor]]:
        return [(name, getattr(self, name)) for name in self.param_names]

    def params(self) -> list[Tensor]:
        return [p for _, p in self.named_params()]

    def grads(self) -> list[Tensor]:
        return [getattr(self, f"{name}_grad") for name in self.param_names]

    def zero_grad(self) -> None:
        for g in self.grads():
            _fill_zero(g)

    def train(self, mode: bool = True) -> Layer:
        """Switch training behaviour (Dropout) on or off; returns the layer."""
        self.training = mode
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def num_params(self) -> int:
        return sum(_count(p) for p in self.params())

    def state_dict(self) -> dict[str, Tensor]:
        """Copies of the parameters by name."""
        return {name: copy_tensor(p) for name, p in self.named_params()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Copy `state` into the parameters (in place); a misfit is a `CheckpointError`."""
        own = dict(self.named_params())
        problems = []
        if missing := sorted(own.keys() - state.keys()):
            problems.append(f"missing {missing}")
        if unexpected := sorted(state.keys() - own.keys()):
            problems.append(f"unexpected {unexpected}")
        for name in sorted(own.keys() & state.keys()):
            if not _fits(state[name], own[name]):
                want = shape(own[name])  # shape() reads first entries, so it can match
                problems.append(
                    f"{name} has shape {shape(state[name])} in the weights but {want} in the model"
                    if shape(state[name]) != want
                    else f"{name} is ragged or not all numbers; expected a {want} tensor of numbers"
                )
        if problems:
            raise CheckpointError("the weights do not fit the model: " + "; ".join(problems))
        for name, param in own.items():
            _assign(param, state[name])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _count(t: Tensor) -> int:
    return len(t) if is_1d(t) else sum(_count(row) for row in t)


def _fill_zero(t: Tensor) -> None:
    if is_1d(t):
        t[:] = [0.0] * len(t)
    else:
        for row in t:
            _fill_zero(row)


def _fits(src: object, dst: Tensor) -> bool:
    """Whether `src` (e.g. read from JSON) has exactly the shape of `dst`, with numbers."""
    if not isinstance(src, list) or len(src) != len(dst):
        return False
    if is_1d(dst):
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in src)
    return all(_fits(s, d) for s, d in zip(src, dst, strict=True))


def _assign(dst: Tensor, src: Tensor) -> None:
    if is_1d(dst):
        dst[:] = [float(v) for v in src]
    else:
        for d, s in zip(dst, src, strict=True):
            _assign(d, s)


class Linear(Layer):
    """y = W x + b with W of shape (out_features, in_features), as ``torch.nn.Linear``.

    `init` is ``xavier`` (Glorot normal weights, zero biases, as Glorot & Bengio),
    ``normal`` or ``uniform`` (weights and biases drawn alike, as in the book).

    >>> layer = Linear(2, 1)
    >>> layer.weight, layer.bias = [[1.0, -1.0]], [0.5]
    >>> layer([3.0, 1.0]), layer.backward([1.0]), layer.weight_grad
    ([2.5], [1.0, -1.0], [[3.0, 1.0]])
    """

    param_names = ("weight", "bias")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: str = "xavier",
        rng: random.Random | None = None,
    ) -> None:
        if in_features < 1 or out_features < 1:
            raise InputError(
                f"Linear needs positive sizes, got in_features={in_features}, "
                f"out_features={out_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.weight = random_tensor(out_features, in_features, init=init, rng=rng)
        if init == "xavier":
            self.bias = [0.0] * out_features
        else:
            self.bias = random_tensor(out_features, init=init, rng=rng)
        self.weight_grad = [[0.0] * in_features for _ in range(out_features)]
        self.bias_grad = [0.0] * out_features
        self.input: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.input = x
        if is_1d(x):
            return self._forward(x)
        return [self._forward(row) for row in x]

    def _forward(self, x: list[float]) -> list[float]:
        if len(x) != self.in_features:
            raise InputError(
                f"{self!r} got an input of length {len(x)}; expected {self.in_features}"
            )
        return [sum(map(mul, w, x)) + b for w, b in zip(self.weight, self.bias, strict=False)]

    def backward(self, grad: Tensor) -> Tensor:
        x = self.input
        if x is None:
            raise InputError(f"{self!r}: backward called before forward")
        if is_1d(x):
            return self._backward(x, grad)
        if len(grad) != len(x):
            raise InputError(
                f"{self!r}: the gradient has {len(grad)} rows but the batch had {len(x)}"
            )
        return [self._backward(xi, gi) for xi, gi in zip(x, grad, strict=True)]

    def _backward(self, x: list[float], g: list[float]) -> list[float]:
        if len(g) != self.out_features:
            raise InputError(
                f"{self!r} got a gradient of length {len(g)}; expected {self.out_features}"
            )
        # (lengths were checked above, so no zip(strict=True) in this hot path)
        # y[o] = sum_i W[o][i] x[i] + b[o], so dL/dW[o][i] = g[o] x[i], dL/db[o] = g[o]
        for gw, go in zip(self.weight_grad, g, strict=False):
            if go:  # a zero row (after Relu or Dropout) adds nothing
                gw[:] = [a + go * xi for a, xi in zip(gw, x, strict=False)]
        self.bias_grad[:] = [a + go for a, go in zip(self.bias_grad, g, strict=False)]
        # ... and dL/dx[i] = sum_o g[o] W[o][i]: a dot product with column i
        return [sum(map(mul, column, g)) for column in zip(*self.weight, strict=False)]

    def __repr__(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features})"


class Sigmoid(Layer):
    """Elementwise logistic function; its derivative s (1 - s) reuses the output s."""

    def forward(self, x: Tensor) -> Tensor:
        self.output = tensor_apply(sigmoid, x)
        return self.output

    def backward(self, grad: Tensor) -> Tensor:
        return tensor_combine(lambda s, g: s * (1.0 - s) * g, self.output, grad)


class Tanh(Layer):
    """Elementwise tanh; its derivative 1 - t**2 reuses the output t."""

    def forward(self, x: Tensor) -> Tensor:
        self.output = tensor_apply(tanh, x)
        return self.output

    def backward(self, grad: Tensor) -> Tensor:
        return tensor_combine(lambda t, g: (1.0 - t * t) * g, self.output, grad)


class Relu(Layer):
    """Elementwise max(x, 0); its derivative is 1 where x > 0, else 0 (0 at x = 0, as torch)."""

    def forward(self, x: Tensor) -> Tensor:
        self.input = x
        return tensor_apply(relu, x)

    def backward(self, grad: Tensor) -> Tensor:
        return tensor_combine(lambda x, g: g if x > 0 else 0.0, self.input, grad)


class Dropout(Layer):
    """Zero each entry with probability `p` while training, as ``torch.nn.Dropout``.

    Kept entries are scaled by 1 / (1 - p) ("inverted dropout"), so evaluation is the
    identity. The book instead keeps them as they are and scales by (1 - p) at
    evaluation; the expected outputs agree.
    """

    def __init__(self, p: float = 0.5, rng: random.Random | None = None) -> None:
        require_number("Dropout probability", p, "[0, 1)")
        self.p, self.rng = p, rng
        self.mask: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            self.mask = None
            return x
        draw, p, keep = (self.rng or random).random, self.p, 1.0 / (1.0 - self.p)
        self.mask = tensor_apply(lambda _: 0.0 if draw() < p else keep, x)
        return tensor_combine(mul, x, self.mask)

    def backward(self, grad: Tensor) -> Tensor:
        if self.mask is None:
            return grad
        return tensor_combine(mul, grad, self.mask)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse.

    ``Sequential(a, b, c)`` as in torch; ``Sequential([a, b, c])`` (the book's form) works too.
    """

    def __init__(self, *layers: Layer | list[Layer]) -> None:
        if len(layers) == 1 and isinstance(layers[0], list | tuple):
            layers = tuple(layers[0])
        bad = [type(layer).__name__ for layer in layers if not isinstance(layer, Layer)]
        if bad:
            raise InputError(f"Sequential takes Layers, got {', '.join(bad)}")
        self.layers: list[Layer] = list(layers)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def named_params(self) -> list[tuple[str, Tensor]]:
        return [
            (f"{i}.{name}", p)
            for i, layer in enumerate(self.layers)
            for name, p in layer.named_params()
        ]

    def grads(self) -> list[Tensor]:
        return [g for layer in self.layers for g in layer.grads()]

    def train(self, mode: bool = True) -> Layer:
        for layer in self.layers:
            layer.train(mode)
        self.training = mode
        return self

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


def save_weights(model: Layer, path: str | Path) -> Path:
    """Write ``model.state_dict()`` as JSON (floats round-trip exactly); returns the path."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(model.state_dict(), fh)
    return Path(path)


def load_weights(model: Layer, path: str | Path) -> None:
    """Load weights written by `save_weights`; a bad or misfitting file is a `CheckpointError`."""
    try:
        state = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CheckpointError(f"cannot read weights from {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not a JSON weights file ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(state).__name__}, expected an object of named tensors"
        )
    model.load_state_dict(state)
