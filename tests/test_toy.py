"""Appendix A's toy pieces: the MLP against a hand-wired forward pass, training against a
plain loop and the book's losses, accuracy and input errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from dlnotes import toy
from dlnotes.errors import InputError


@pytest.mark.parametrize(
    ("inputs", "hidden", "outputs"), [(50, (30, 20), 3), (2, (30, 20), 2), (7, (), 4), (3, (5,), 1)]
)
def test_parameter_count_matches_the_layer_formula(inputs, hidden, outputs) -> None:
    sizes = [inputs, *hidden, outputs]
    expected = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    assert toy.count_parameters(toy.MLP(inputs, outputs, hidden)) == expected


def test_book_network_has_2213_parameters_and_frozen_ones_are_not_counted() -> None:
    model = toy.MLP(50, 3)
    assert toy.count_parameters(model) == 2_213
    model.layers[0].requires_grad_(False)
    assert toy.count_parameters(model) == 2_213 - (50 * 30 + 30)
    assert toy.count_parameters(model, trainable_only=False) == 2_213


def test_forward_is_linear_relu_linear_relu_linear() -> None:
    model = toy.MLP(4, 3, hidden=(6, 5))
    x = torch.randn(8, 4)
    (w1, b1), (w2, b2), (w3, b3) = [
        (layer.weight, layer.bias) for layer in model.layers if isinstance(layer, nn.Linear)
    ]
    expected = F.linear(F.relu(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)), w3, b3)
    torch.testing.assert_close(model(x), expected)


def test_training_reproduces_the_books_losses_and_solves_the_toy_problem() -> None:
    X_train, y_train, X_test, y_test = toy.toy_data()
    torch.manual_seed(123)
    loader = DataLoader(
        toy.ToyDataset(X_train, y_train), batch_size=2, shuffle=True, drop_last=True
    )
    model = toy.MLP(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = [loss for _ in range(3) for loss in toy.train_epoch(model, loader, optimizer)]
    book = [0.75, 0.65, 0.44, 0.13, 0.03, 0.00]  # appendix A, printed to two decimals
    assert [round(v, 2) for v in losses] == book
    assert toy.accuracy(model, [(X_train, y_train)]) == 1.0
    assert toy.accuracy(model, [(X_test, y_test)]) == 1.0


def test_train_epoch_equals_a_plain_sgd_loop() -> None:
    batches = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(5)]
    ours = toy.MLP(3, 2, hidden=(8,))
    reference = copy.deepcopy(ours)
    losses = toy.train_epoch(ours, batches, torch.optim.SGD(ours.parameters(), lr=0.1))
    expected = []
    for x, y in batches:
        loss = F.cross_entropy(reference(x), y)
        grads = torch.autograd.grad(loss, list(reference.parameters()))
        with torch.no_grad():
            for p, g in zip(reference.parameters(), grads, strict=True):
                p -= 0.1 * g
        expected.append(loss.item())
    assert losses == pytest.approx(expected, rel=1e-6)
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_accuracy_counts_argmax_hits_over_all_batches() -> None:
    model = nn.Identity()  # the "logits" are the features themselves
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0, 0])  # hits: yes, yes, no, yes, no
    batches = [(logits[:2], labels[:2]), (logits[2:], labels[2:])]
    assert toy.accuracy(model, batches) == pytest.approx(3 / 5)


def test_bad_input_gives_clear_errors() -> None:
    with pytest.raises(InputError, match="one label per example: got 3 feature rows and 2 labels"):
        toy.ToyDataset(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(InputError, match=r"positive integers: got inputs=0, hidden=\(30, 20\)"):
        toy.MLP(0, 2)
    with pytest.raises(InputError, match="empty loader"):
        toy.accuracy(toy.MLP(2, 2), [])
