"""Tensors as nested Python lists: shape, elementwise maps, random initialisers.

Follows Grus, *Data Science from Scratch* 2e, ch. 19 ("The Tensor"): a tensor is a
list of floats (a vector) or a list of equally shaped tensors. Leaves out
broadcasting, views and dtypes. The 1-D and 2-D cases, which are all a multilayer
perceptron needs, get their own comprehensions; deeper tensors recurse.

Initialisers follow Glorot & Bengio (2010) and ``torch.nn.init``:
``xavier`` draws N(0, 2 / (fan_in + fan_out)), i.e. standard deviation
sqrt(2 / (fan_in + fan_out)). The book's version passes the *variance* where a
standard deviation belongs (std 2/300 instead of sqrt(2/300) for a 200x100 weight).

Reference code: https://github.com/joelgrus/data-science-from-scratch/blob/master/scratch/deep_learning.py
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from operator import mul
from typing import Any

from dlnotes.errors import InputError

Tensor = list[Any]  # list[float] | list[Tensor], every element of one shape
INITS = ("xavier", "normal", "uniform")


def shape(t: Tensor) -> list[int]:
    """Sizes along each dimension, read from the first element at every level.

    >>> shape([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    [2, 3]
    """
    sizes = []
    while isinstance(t, list):
        sizes.append(len(t))
        if not t:
            break
        t = t[0]
    return sizes


def is_1d(t: Tensor) -> bool:
    """True for a vector (a list whose first element is not a list)."""
    return not t or not isinstance(t[0], list)


def tensor_sum(t: Tensor) -> float:
    """The sum of all entries.

    >>> tensor_sum([[1, 2], [3, 4]])
    10
    """
    if is_1d(t):
        return sum(t)
    return sum(tensor_sum(row) for row in t)


def tensor_apply(f: Callable[[float], float], t: Tensor) -> Tensor:
    """A new tensor holding ``f(x)`` for every entry ``x`` of `t`.

    >>> tensor_apply(abs, [[-1.0, 2.0], [3.0, -4.0]])
    [[1.0, 2.0], [3.0, 4.0]]
    """
    if is_1d(t):
        return [f(x) for x in t]
    if is_1d(t[0]):
        return [[f(x) for x in row] for row in t]
    return [tensor_apply(f, row) for row in t]


def zeros_like(t: Tensor) -> Tensor:
    """A tensor of 0.0 with the shape of `t`."""
    if is_1d(t):
        return [0.0] * len(t)
    return [zeros_like(row) for row in t]


def copy_tensor(t: Tensor) -> Tensor:
    """A deep copy (new lists at every level, same floats)."""
    if is_1d(t):
        return list(t)
    return [copy_tensor(row) for row in t]


def tensor_combine(f: Callable[[float, float], float], t1: Tensor, t2: Tensor) -> Tensor:
    """``f(a, b)`` for corresponding entries of two tensors of one shape.

    A shape mismatch is an `InputError` naming both shapes.

    >>> tensor_combine(lambda a, b: a * b, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    [4.0, 10.0, 18.0]
    """
    s1, s2 = shape(t1), shape(t2)
    if s1 != s2:
        raise InputError(f"tensor_combine: shapes {s1} and {s2} differ; they must be equal")
    try:
        return _combine(f, t1, t2)
    except ValueError:  # zip(strict=True) on a ragged tensor
        raise InputError(
            f"tensor_combine: the tensors (shape {s1}) are ragged or their rows differ in length"
        ) from None


def _combine(f: Callable[[float, float], float], t1: Tensor, t2: Tensor) -> Tensor:
    if is_1d(t1):
        return [f(a, b) for a, b in zip(t1, t2, strict=True)]
    return [_combine(f, r1, r2) for r1, r2 in zip(t1, t2, strict=True)]


def dot(v: list[float], w: list[float]) -> float:
    """The dot product of two vectors of equal length.

    >>> dot([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    32.0
    """
    if len(v) != len(w):
        raise InputError(f"dot: vectors of lengths {len(v)} and {len(w)}; they must be equal")
    return sum(map(mul, v, w))


def argmax(xs: list[float]) -> int:
    """Index of the largest entry (the first one on ties).

    >>> argmax([0.1, 0.7, 0.2])
    1
    """
    return max(range(len(xs)), key=xs.__getitem__)


def one_hot(i: int, n: int) -> list[float]:
    """A length-`n` vector that is 1.0 at index `i` and 0.0 elsewhere.

    >>> one_hot(2, 4)
    [0.0, 0.0, 1.0, 0.0]
    """
    if not 0 <= i < n:
        raise InputError(f"one_hot: index {i} is outside 0..{n - 1}")
    return [1.0 if j == i else 0.0 for j in range(n)]


def _draw(dims: tuple[int, ...], sample: Callable[[], float]) -> Tensor:
    if not dims or any(not isinstance(d, int) or d < 0 for d in dims):
        raise InputError(f"tensor dimensions must be non-negative ints, got {list(dims)}")
    if len(dims) == 1:
        return [sample() for _ in range(dims[0])]
    return [_draw(dims[1:], sample) for _ in range(dims[0])]


def random_uniform(
    *dims: int, low: float = 0.0, high: float = 1.0, rng: random.Random | None = None
) -> Tensor:
    """A tensor of shape `dims` drawn uniformly from [low, high).

    `rng` defaults to the `random` module, so ``env.seed_everything`` makes draws repeat.
    """
    draw = (rng or random).random
    width = high - low
    return _draw(dims, lambda: low + width * draw())


def random_normal(
    *dims: int, mean: float = 0.0, std: float = 1.0, rng: random.Random | None = None
) -> Tensor:
    """A tensor of shape `dims` drawn from N(mean, std**2) (note: `std`, not variance)."""
    gauss = (rng or random).gauss
    return _draw(dims, lambda: gauss(mean, std))


def fans(*dims: int) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shaped (out, in, ...), as ``torch.nn.init`` counts them.

    >>> fans(100, 200)
    (200, 100)
    """
    if len(dims) < 2:
        raise InputError(f"fan-in and fan-out need at least 2 dimensions, got shape {list(dims)}")
    receptive = math.prod(dims[2:])
    return dims[1] * receptive, dims[0] * receptive


def random_tensor(*dims: int, init: str = "xavier", rng: random.Random | None = None) -> Tensor:
    """A random tensor: ``xavier`` (Glorot normal), ``normal`` (N(0, 1)) or ``uniform`` ([0, 1)).

    >>> w = random_tensor(200, 100, init="xavier", rng=random.Random(0))
    >>> round(math.sqrt(tensor_sum(tensor_apply(lambda x: x * x, w)) / 20_000), 2)
    0.08
    """
    if init == "xavier":
        fan_in, fan_out = fans(*dims)
        return random_normal(*dims, std=math.sqrt(2.0 / (fan_in + fan_out)), rng=rng)
    if init == "normal":
        return random_normal(*dims, rng=rng)
    if init == "uniform":
        return random_uniform(*dims, rng=rng)
    raise InputError(f"unknown init {init!r}; use one of {', '.join(INITS)}")
