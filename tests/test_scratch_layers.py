"""dlnotes.scratch.layers and .losses: every backward pass against torch autograd
(float64) and central finite differences; state dicts, JSON weights, bad input."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnotes.errors import CheckpointError, InputError
from dlnotes.scratch.layers import (
    Dropout,
    Layer,
    Linear,
    Relu,
    Sequential,
    Sigmoid,
    Tanh,
    load_weights,
    save_weights,
)
from dlnotes.scratch.losses import SSE, SoftmaxCrossEntropy
from dlnotes.scratch.tensor import random_normal, shape

nn = torch.nn


def T(t: list) -> torch.Tensor:
    return torch.tensor(t, dtype=torch.float64)


def torch_twin(layer: Layer) -> nn.Module:
    """The same network in torch (float64), with our weights loaded by name."""
    if isinstance(layer, Sequential):
        module = nn.Sequential(*(torch_twin(inner) for inner in layer.layers))
    elif isinstance(layer, Linear):
        module = nn.Linear(layer.in_features, layer.out_features)
    else:
        module = {Sigmoid: nn.Sigmoid, Tanh: nn.Tanh, Relu: nn.ReLU}[type(layer)]()
    module = module.double()
    module.load_state_dict({k: T(v) for k, v in layer.state_dict().items()})
    return module


def stack(kind: str) -> Layer:
    if kind == "linear":
        return Linear(4, 3)
    if kind in ("sigmoid", "tanh", "relu"):
        return {"sigmoid": Sigmoid, "tanh": Tanh, "relu": Relu}[kind]()
    if kind == "mlp":
        return Sequential(Linear(4, 5), Tanh(), Linear(5, 3), Sigmoid())
    return Sequential([Linear(4, 6, init="normal"), Relu(), Linear(6, 5), Tanh(), Linear(5, 3)])


KINDS = ["linear", "sigmoid", "tanh", "relu", "mlp", "deep"]


def check_against_autograd(layer: Layer, x: list, upstream: list) -> None:
    """Our forward, input gradient and parameter gradients == torch's, to float64 rounding."""
    twin = torch_twin(layer)
    xt = T(x).requires_grad_(True)
    out = twin(xt)
    out.backward(T(upstream))
    ours = layer(x)
    assert T(ours) == pytest.approx(out.detach(), rel=1e-12, abs=1e-12)
    grad_in = layer.backward(upstream)
    assert T(grad_in) == pytest.approx(xt.grad, rel=1e-10, abs=1e-12)
    expected = [p.grad for p in twin.parameters()]
    assert [shape(g) for g in layer.grads()] == [list(e.shape) for e in expected]
    for ours_g, ref in zip(layer.grads(), expected, strict=True):
        assert T(ours_g) == pytest.approx(ref, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [False, True], ids=["sample", "batch"])
def test_backward_equals_torch_autograd(kind: str, batch: bool) -> None:
    random.seed(0)
    layer = stack(kind)
    n_out = 3 if kind not in ("sigmoid", "tanh", "relu") else 4
    x = random_normal(5, 4) if batch else random_normal(4)
    upstream = random_normal(5, n_out) if batch else random_normal(n_out)
    check_against_autograd(layer, x, upstream)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_linear_matches_torch_for_any_size(n_in: int, n_out: int, seed: int) -> None:
    rng = random.Random(seed)
    layer = Linear(n_in, n_out, init="normal", rng=rng)
    check_against_autograd(layer, random_normal(n_in, rng=rng), random_normal(n_out, rng=rng))


def numeric_gradient(f: Callable[[], float], entries: list, h: float = 1e-6) -> list:
    """Central differences of f with respect to each entry of a (nested) list, in place."""
    if isinstance(entries[0], list):
        return [numeric_gradient(f, row, h) for row in entries]
    grads = []
    for i, v in enumerate(entries):
        entries[i] = v + h
        up = f()
        entries[i] = v - h
        down = f()
        entries[i] = v
        grads.append((up - down) / (2 * h))
    return grads


@pytest.mark.parametrize("kind", ["mlp", "deep"])
@pytest.mark.parametrize("loss_fn", [SSE(), SoftmaxCrossEntropy()], ids=repr)
def test_backward_equals_finite_differences(kind: str, loss_fn) -> None:
    random.seed(1)
    net = stack(kind)
    x = random_normal(4)
    target = [0.0, 1.0, 0.0]

    def loss() -> float:
        return loss_fn(net(x), target)

    predicted = net(x)
    net.zero_grad()
    grad_in = net.backward(loss_fn.gradient(predicted, target))
    assert grad_in == pytest.approx(numeric_gradient(loss, x), rel=1e-5, abs=1e-8)
    for param, grad in zip(net.params(), net.grads(), strict=True):
        assert T(grad) == pytest.approx(T(numeric_gradient(loss, param)), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("batch", [False, True], ids=["sample", "batch"])
def test_losses_equal_torch(batch: bool) -> None:
    random.seed(2)
    z = random_normal(4, 3) if batch else random_normal(3)
    y = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 1.0, 0.0]]
    y = y if batch else [0.2, 0.3, 0.5]
    references = [
        (SSE(), lambda a, b: nn.functional.mse_loss(a, b, reduction="sum")),
        (SoftmaxCrossEntropy(), lambda a, b: nn.functional.cross_entropy(a, b, reduction="sum")),
    ]
    for ours, reference in references:
        zt = T(z).requires_grad_(True)
        expected = reference(zt, T(y))
        expected.backward()
        assert ours.loss(z, y) == pytest.approx(expected.item(), rel=1e-12)
        assert T(ours.gradient(z, y)) == pytest.approx(zt.grad, rel=1e-12, abs=1e-15)


def test_relu_and_unnormalised_targets_agree_with_torch_at_the_edges() -> None:
    # Relu's derivative at exactly 0 is 0 in torch; random inputs never hit it
    x = [-1.0, 0.0, 2.0]
    xt = T(x).requires_grad_(True)
    torch.relu(xt).backward(T([1.0, 1.0, 1.0]))
    relu = Relu()
    relu(x)
    assert relu.backward([1.0, 1.0, 1.0]) == xt.grad.tolist() == [0.0, 0.0, 1.0]
    # cross-entropy against targets that do not sum to 1: -sum y log softmax(z)
    z, y = [0.5, -1.0, 2.0], [0.5, 0.0, 1.0]
    zt = T(z).requires_grad_(True)
    expected = nn.functional.cross_entropy(zt, T(y), reduction="sum")
    expected.backward()
    ce = SoftmaxCrossEntropy()
    assert ce.loss(z, y) == pytest.approx(expected.item(), rel=1e-12)
    assert ce.gradient(z, y) == pytest.approx(zt.grad.tolist(), rel=1e-12)


def test_sse_gradient_is_the_full_not_half_derivative() -> None:
    # the book's ch. 18 returns (p - y): the gradient of SSE / 2
    assert SSE().loss([3.0], [1.0]) == 4.0
    assert SSE().gradient([3.0], [1.0]) == [4.0]


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    ce = SoftmaxCrossEntropy()
    z, y = [1000.0, -1000.0, 0.0], [0.0, 1.0, 0.0]
    zt = T(z).requires_grad_(True)
    expected = nn.functional.cross_entropy(zt, T(y), reduction="sum")
    expected.backward()
    assert ce.loss(z, y) == pytest.approx(2000.0) == expected.item()
    assert ce.gradient(z, y) == pytest.approx(zt.grad.tolist())


def test_gradients_accumulate_until_zero_grad() -> None:
    random.seed(3)
    net = stack("mlp")
    x, g = random_normal(4), random_normal(3)
    net(x)
    net.backward(g)
    once = [T(grad) for grad in net.grads()]  # copies
    net(x)
    net.backward(g)
    for grad, first in zip(net.grads(), once, strict=True):
        assert T(grad) == pytest.approx(2 * first)
    net.zero_grad()
    assert all(T(grad).abs().sum() == 0 for grad in net.grads())


def test_dropout_matches_torch_with_the_same_mask_and_is_identity_in_eval() -> None:
    drop = Dropout(0.25, rng=random.Random(0))
    x = [[float(i + j) for j in range(8)] for i in range(50)]
    out = drop(x)
    kept = [[v != 0.0 for v in row] for row in out]
    mask = T([[1.0 if k else 0.0 for k in row] for row in kept])
    assert 0.18 < 1 - mask[:, 1:].mean().item() < 0.32  # about p of the entries dropped
    assert T(out) == pytest.approx(T(x) * mask / 0.75)  # torch's scaling: 1 / (1 - p)
    assert T(drop.backward(x)) == pytest.approx(T(x) * mask / 0.75)
    drop.eval()
    assert drop(x) is x and drop.backward(x) is x
    with pytest.raises(InputError, match="in \\[0, 1\\), got 1.0"):
        Dropout(1.0)


def test_train_and_eval_reach_nested_layers() -> None:
    inner = Dropout(0.5)
    net = Sequential(Linear(2, 2), Sequential(inner, Tanh()))
    net.eval()
    assert not inner.training
    net.train()
    assert inner.training


def test_state_dict_uses_torch_names_and_loads_into_torch() -> None:
    random.seed(4)
    net = stack("deep")
    assert list(net.state_dict()) == [f"{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]
    n_torch = sum(p.numel() for p in torch_twin(net).parameters())
    assert net.num_params() == n_torch == (4 * 6 + 6) + (6 * 5 + 5) + (5 * 3 + 3)


def test_json_weights_round_trip_exactly(tmp_path: Path) -> None:
    random.seed(5)
    net = stack("deep")
    path = save_weights(net, tmp_path / "sub" / "weights.json")
    other = stack("deep")
    assert other.state_dict() != net.state_dict()
    rows_before = [id(row) for row in other.params()[0]]
    load_weights(other, path)
    assert other.state_dict() == net.state_dict()  # bit for bit
    assert [id(row) for row in other.params()[0]] == rows_before  # loaded in place
    x = random_normal(4)
    assert other(x) == net(x)


def test_loading_weights_that_do_not_fit_names_the_problem(tmp_path: Path) -> None:
    small = Sequential(Linear(10, 25), Tanh(), Linear(25, 4))
    path = save_weights(small, tmp_path / "w.json")
    wider = Sequential(Linear(10, 30), Tanh(), Linear(30, 4))
    before = wider.state_dict()
    with pytest.raises(
        CheckpointError,
        match=r"0.weight has shape \[25, 10\] in the weights but"
        r" \[30, 10\] in the model",
    ):
        load_weights(wider, path)
    assert wider.state_dict() == before  # nothing half-loaded
    with pytest.raises(CheckpointError, match=r"missing \['0.bias'\]"):
        small.load_state_dict({k: v for k, v in small.state_dict().items() if k != "0.bias"})
    state = small.state_dict() | {"9.weight": [[1.0]]}
    with pytest.raises(CheckpointError, match=r"unexpected \['9.weight'\]"):
        small.load_state_dict(state)
    ragged = small.state_dict()
    ragged["2.weight"][1] = ragged["2.weight"][1][:-1]
    with pytest.raises(CheckpointError, match=r"2.weight is ragged or not all numbers"):
        small.load_state_dict(ragged)
    wordy = small.state_dict()
    wordy["0.bias"][3] = "0.5"
    with pytest.raises(CheckpointError, match=r"0.bias is ragged .* a \[25\] tensor of numbers"):
        small.load_state_dict(wordy)
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match="not a JSON weights file"):
        load_weights(small, tmp_path / "bad.json")
    (tmp_path / "list.json").write_text(json.dumps([[1.0]]))
    with pytest.raises(CheckpointError, match="JSON list, expected an object"):
        load_weights(small, tmp_path / "list.json")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_weights(small, tmp_path / "missing.json")


def test_linear_rejects_wrong_sizes() -> None:
    layer = Linear(3, 2)
    with pytest.raises(
        InputError,
        match=r"Linear\(in_features=3, out_features=2\) got an input "
        "of length 4; expected 3",
    ):
        layer([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(InputError, match="got an input of length 2; expected 3"):
        layer([[1.0, 2.0, 3.0], [1.0, 2.0]])
    with pytest.raises(InputError, match="backward called before forward"):
        Linear(3, 2).backward([1.0, 1.0])
    layer([1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="gradient of length 3; expected 2"):
        layer.backward([1.0, 1.0, 1.0])
    with pytest.raises(InputError, match="in_features=0"):
        Linear(0, 2)
    with pytest.raises(InputError, match="Sequential takes Layers, got int"):
        Sequential(Linear(1, 1), 3)
