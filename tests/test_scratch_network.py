"""dlnotes.scratch.network and .fizzbuzz (Grus ch. 18): perceptrons, hand-written
backprop against torch autograd and finite differences, XOR from random weights."""

from __future__ import annotations

import random

import pytest
import torch

from dlnotes.errors import InputError
from dlnotes.scratch import fizzbuzz as fb
from dlnotes.scratch.network import (
    feed_forward,
    gradient_step,
    perceptron_output,
    random_network,
    sqerror_gradients,
)

GATES = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]


def test_perceptron_gates_by_hand() -> None:
    assert [perceptron_output([2.0, 2.0], -3.0, x) for x in GATES] == [0, 0, 0, 1]  # AND
    assert [perceptron_output([2.0, 2.0], -1.0, x) for x in GATES] == [0, 1, 1, 1]  # OR
    assert [perceptron_output([-2.0], 1.0, [x]) for x in (0.0, 1.0)] == [1, 0]  # NOT


def test_no_single_perceptron_computes_xor() -> None:
    # a coarse grid search over one perceptron's weights finds AND and OR but never XOR
    grid = [v / 2 for v in range(-8, 9)]
    tables = {
        tuple(perceptron_output([a, b], c, x) for x in GATES)
        for a in grid
        for b in grid
        for c in grid
    }
    assert (0, 0, 0, 1) in tables and (0, 1, 1, 1) in tables
    assert (0, 1, 1, 0) not in tables


def test_hand_weighted_xor_network() -> None:
    xor = [[[20.0, 20.0, -30.0], [20.0, 20.0, -10.0]], [[-60.0, 60.0, -30.0]]]
    outputs = [feed_forward(xor, x)[-1][0] for x in GATES]
    assert outputs[0] < 0.001 and outputs[3] < 0.001
    assert outputs[1] > 0.999 and outputs[2] > 0.999


def torch_sse_gradients(network: list, x: list, target: list) -> list:
    weights = [torch.tensor(layer, dtype=torch.float64, requires_grad=True) for layer in network]
    h = torch.tensor(x, dtype=torch.float64)
    for w in weights:
        h = torch.sigmoid(w[:, :-1] @ h + w[:, -1])  # last column is the bias
    ((h - torch.tensor(target, dtype=torch.float64)) ** 2).sum().backward()
    return [w.grad for w in weights]


@pytest.mark.parametrize("sizes", [[2, 2, 1], [3, 4, 2], [4, 5, 3, 2]])
def test_sqerror_gradients_equal_autograd_of_the_full_sse(sizes: list[int]) -> None:
    rng = random.Random(sum(sizes))
    network = [
        [[w * 4 - 2 for w in neuron] for neuron in layer] for layer in random_network(sizes, rng)
    ]
    x = [rng.random() for _ in range(sizes[0])]
    target = [rng.random() for _ in range(sizes[-1])]
    ours = sqerror_gradients(network, x, target)
    for mine, ref in zip(ours, torch_sse_gradients(network, x, target), strict=True):
        assert torch.tensor(mine, dtype=torch.float64) == pytest.approx(ref, rel=1e-10, abs=1e-14)


def test_sqerror_gradients_equal_finite_differences() -> None:
    rng = random.Random(0)
    network = random_network([2, 3, 2], rng)
    x, target = [0.3, -0.7], [1.0, 0.0]

    def sse() -> float:
        return sum((o - t) ** 2 for o, t in zip(feed_forward(network, x)[-1], target, strict=True))

    grads = sqerror_gradients(network, x, target)
    h = 1e-6
    for layer, layer_grad in zip(network, grads, strict=True):
        for neuron, neuron_grad in zip(layer, layer_grad, strict=True):
            for i, w in enumerate(neuron):
                neuron[i] = w + h
                up = sse()
                neuron[i] = w - h
                down = sse()
                neuron[i] = w
                assert neuron_grad[i] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-9)


def test_xor_from_random_weights_trains_to_100_percent() -> None:
    random.seed(0)
    network = random_network([2, 2, 1])
    targets = [[0.0], [1.0], [1.0], [0.0]]
    for _ in range(10_000):
        for x, y in zip(GATES, targets, strict=True):
            # 0.5 on the full SSE is the book's step of 1.0 on half the SSE
            network = gradient_step(network, sqerror_gradients(network, x, y), 0.5)
    outputs = [feed_forward(network, x)[-1][0] for x in GATES]
    assert [round(o) for o in outputs] == [0, 1, 1, 0]
    assert outputs[0] < 0.05 and outputs[3] < 0.05 and min(outputs[1:3]) > 0.95


def test_sqerror_gradients_rejects_a_wrong_target() -> None:
    with pytest.raises(InputError, match="target has 2 entries but the network has 1 outputs"):
        sqerror_gradients(random_network([2, 2, 1]), [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(InputError, match=r"got \[2\]"):
        random_network([2])


def test_fizzbuzz_encodings_agree_with_the_game() -> None:
    for n in range(1, 1024):
        said = (
            "fizzbuzz"
            if n % 15 == 0
            else "fizz"
            if n % 3 == 0
            else "buzz"
            if n % 5 == 0
            else str(n)
        )
        k = fb.fizzbuzz_class(n)
        assert fb.say(n, k) == said and fb.fizz_buzz_encode(n)[k] == 1.0
        assert fb.binary_encode(n) == [float(c) for c in reversed(format(n, "010b"))]
    assert fb.binary_encode(999) == [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]
    xs, ys = fb.dataset(fb.TRAIN_RANGE)
    assert len(xs) == len(ys) == 923 and len(fb.dataset(fb.TEST_RANGE)[0]) == 100
    with pytest.raises(InputError, match="1024 does not fit in 10 bits"):
        fb.binary_encode(1024)
