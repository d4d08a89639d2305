"""dlnotes.scratch.optim and .train: steps equal torch.optim.SGD; XOR and FizzBuzz train."""

from __future__ import annotations

import random

import pytest
import torch

from dlnotes.env import SMOKE
from dlnotes.errors import InputError
from dlnotes.scratch import fizzbuzz as fb
from dlnotes.scratch.layers import Linear, Sequential, Sigmoid, Tanh
from dlnotes.scratch.losses import SSE, SoftmaxCrossEntropy
from dlnotes.scratch.optim import GradientDescent, Momentum
from dlnotes.scratch.tensor import random_normal
from dlnotes.scratch.train import evaluate, train_epoch

nn = torch.nn


def twin(net: Sequential) -> nn.Sequential:
    module = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    module.load_state_dict(
        {k: torch.tensor(v, dtype=torch.float64) for k, v in net.state_dict().items()}
    )
    return module


def close(net: Sequential, module: nn.Module) -> None:
    for name, p in module.state_dict().items():
        assert torch.tensor(net.state_dict()[name], dtype=torch.float64) == pytest.approx(
            p, rel=1e-11, abs=1e-13
        )


@pytest.mark.parametrize(
    ("momentum", "dampening"), [(0.0, 0.0), (0.9, 0.0), (0.9, 0.9), (0.5, 0.2)]
)
def test_steps_equal_torch_sgd(momentum: float, dampening: float) -> None:
    random.seed(0)
    net = Sequential(Linear(3, 4), Tanh(), Linear(4, 2))
    module = twin(net)
    if momentum:
        ours = Momentum(net, lr=0.1, momentum=momentum, dampening=dampening)
    else:
        ours = GradientDescent(net, lr=0.1)
    reference = torch.optim.SGD(module.parameters(), lr=0.1, momentum=momentum, dampening=dampening)
    loss = SSE()
    for _ in range(4):  # several steps, so the momentum buffer matters
        x, y = random_normal(3), random_normal(2)
        ours.zero_grad()
        predicted = net(x)
        net.backward(loss.gradient(predicted, y))
        ours.step()
        reference.zero_grad()
        (
            (module(torch.tensor(x, dtype=torch.float64)) - torch.tensor(y, dtype=torch.float64))
            ** 2
        ).sum().backward()
        reference.step()
        close(net, module)


def test_the_books_momentum_is_ours_with_lr_times_one_minus_mu() -> None:
    # the book keeps u <- mu u + (1 - mu) g from u = 0 and steps p <- p - lr u
    layer = Linear(3, 1)
    layer.weight, layer.bias = [[1.0, -2.0, 0.5]], [0.25]
    ours = Momentum(layer, lr=0.1 * (1 - 0.8), momentum=0.8)
    book_p, book_u = [1.0, -2.0, 0.5, 0.25], [0.0] * 4
    for x in ([1.0, 0.0, 2.0], [-1.0, 3.0, 0.5], [0.5, 0.5, 0.5]):
        ours.zero_grad()
        y = layer(x)[0]
        layer.backward([2 * y])  # gradient of y**2
        ours.step()
        y_book = sum(w * v for w, v in zip(book_p, x, strict=False)) + book_p[3]
        grad = [2 * y_book * v for v in [*x, 1.0]]
        book_u = [0.8 * u + 0.2 * g for u, g in zip(book_u, grad, strict=True)]
        book_p = [w - 0.1 * u for w, u in zip(book_p, book_u, strict=True)]
        assert [*layer.weight[0], *layer.bias] == pytest.approx(book_p, rel=1e-12)


def test_mini_batches_equal_torch_with_summed_loss() -> None:
    random.seed(1)
    net = Sequential(Linear(3, 4), Tanh(), Linear(4, 2))
    module = twin(net)
    xs, ys = random_normal(10, 3), [[1.0, 0.0] if i % 3 else [0.0, 1.0] for i in range(10)]
    total = train_epoch(net, SoftmaxCrossEntropy(), Momentum(net, lr=0.05), xs, ys, batch_size=4)
    reference = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    expected = 0.0
    for start in range(0, 10, 4):
        x = torch.tensor(xs[start : start + 4], dtype=torch.float64)
        y = torch.tensor(ys[start : start + 4], dtype=torch.float64)
        reference.zero_grad()
        loss = nn.functional.cross_entropy(module(x), y, reduction="sum")
        loss.backward()
        reference.step()
        expected += loss.item()
    assert total == pytest.approx(expected, rel=1e-12)
    close(net, module)


def test_bad_settings_are_named() -> None:
    net = Linear(2, 1)
    with pytest.raises(InputError, match="lr=0"):
        GradientDescent(net, lr=0)
    with pytest.raises(InputError, match="momentum=1.0"):
        Momentum(net, lr=0.1, momentum=1.0)
    with pytest.raises(InputError, match="3 inputs but 2 targets"):
        train_epoch(net, SSE(), GradientDescent(net, lr=0.1), [[0.0, 0.0]] * 3, [[0.0]] * 2)
    with pytest.raises(InputError, match="batch_size must be at least 1, got 0"):
        train_epoch(net, SSE(), GradientDescent(net, lr=0.1), [], [], batch_size=0)


def test_xor_trains_to_100_percent() -> None:
    random.seed(0)
    xs = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    ys = [[0.0], [1.0], [1.0], [0.0]]
    net = Sequential(Linear(2, 2), Sigmoid(), Linear(2, 1))
    optimizer, loss = GradientDescent(net, lr=0.1), SSE()
    for _ in range(3000):
        total = train_epoch(net, loss, optimizer, xs, ys)
    assert total < 0.01
    assert [round(net(x)[0]) for x in xs] == [0, 1, 1, 0]


@pytest.mark.skipif(SMOKE, reason="full-mode training (about 15 s on an idle machine)")
def test_fizzbuzz_reaches_90_percent_on_1_to_100() -> None:
    """The notes' recipe (Linear-Tanh-Linear, softmax cross-entropy, momentum), fewer epochs."""
    random.seed(0)
    net = Sequential(Linear(10, 25, init="uniform"), Tanh(), Linear(25, 4, init="uniform"))
    optimizer, loss = Momentum(net, lr=0.01, momentum=0.9), SoftmaxCrossEntropy()
    xs, ys = fb.dataset(fb.TRAIN_RANGE)
    for _ in range(90):  # 93 of 100 right with this seed; the notes train 150 epochs
        train_epoch(net, loss, optimizer, xs, ys)
    _, accuracy = evaluate(net, loss, *fb.dataset(fb.TEST_RANGE))
    assert accuracy >= 0.90
