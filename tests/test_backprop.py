"""dlnotes.backprop: the delta-recursion formulas against PyTorch autograd (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnotes import backprop as bp
from dlnotes.errors import InputError

TORCH_ACT = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda z: z,
}


def torch_reference(net: bp.Network, x: np.ndarray, y: np.ndarray, loss: str):
    """The same network written the PyTorch way (rows are examples), differentiated by autograd."""
    Ws = {l: torch.tensor(net.W[l], requires_grad=True) for l in net.W}  # noqa: E741
    bs = {l: torch.tensor(net.b[l][:, 0], requires_grad=True) for l in net.b}  # noqa: E741
    h = torch.tensor(x.T)  # (m, n0)
    zs = {}
    for l in range(1, net.L + 1):  # noqa: E741
        zs[l] = F.linear(h, Ws[l], bs[l])
        zs[l].retain_grad()
        h = TORCH_ACT[net.act[l].name](zs[l])
    if loss == "mse":
        value = F.mse_loss(h, torch.tensor(y.T))
    else:
        value = F.cross_entropy(h, torch.tensor(y))
    value.backward()
    return value, Ws, bs, zs


def random_problem(sizes, acts, loss, m, seed):
    rng = np.random.default_rng(seed)
    net = bp.Network.init(sizes, acts, rng)
    # Shift inputs away from 0 so that no ReLU sits exactly on its kink.
    x = rng.normal(size=(sizes[0], m)) * 2.0
    y = rng.normal(size=(sizes[-1], m)) if loss == "mse" else rng.integers(0, sizes[-1], m)
    return net, x, y


def assert_matches_autograd(net, x, y, loss):
    value, grads, trace = bp.loss_and_gradients(net, x, y, loss)
    t_value, Ws, bs, zs = torch_reference(net, x, y, loss)
    np.testing.assert_allclose(value, t_value.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(trace.a[net.L].T, TORCH_ACT[net.act[net.L].name](zs[net.L]).detach())
    for l in range(1, net.L + 1):  # noqa: E741
        np.testing.assert_allclose(grads.delta[l], zs[l].grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads.dW[l], Ws[l].grad.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads.db[l][:, 0], bs[l].grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize(
    "sizes", [[3, 2], [2, 3, 1], [4, 5, 3], [3, 8, 6, 4, 2]], ids=["L1", "L2-231", "L2", "L4"]
)
def test_gradients_equal_autograd(sizes, act, loss):
    acts = [act] * (len(sizes) - 2) + ["identity" if loss == "cross_entropy" else act]
    net, x, y = random_problem(sizes, acts, loss, m=5, seed=len(sizes) * 7 + sizes[0])
    assert_matches_autograd(net, x, y, loss)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=6),
    acts=st.lists(st.sampled_from(list(bp.ACTIVATIONS)), min_size=5, max_size=5),
    loss=st.sampled_from(["mse", "cross_entropy"]),
    m=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_random_networks_equal_autograd(sizes, acts, loss, m, seed):
    # Any mix of activations, including a non-identity one under the softmax.
    net, x, y = random_problem(sizes, acts[: len(sizes) - 1], loss, m, seed)
    assert_matches_autograd(net, x, y, loss)


def test_gradients_equal_finite_differences():
    net, x, y = random_problem([3, 4, 2], ["tanh", "sigmoid"], "mse", m=3, seed=0)
    _, grads, _ = bp.loss_and_gradients(net, x, y)
    for l in (1, 2):  # noqa: E741
        for param, grad in ((net.W[l], grads.dW[l]), (net.b[l], grads.db[l])):
            numeric = bp.numerical_gradient(lambda _: bp.loss_and_gradients(net, x, y)[0], param)
            np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_batch_gradient_is_mean_of_outer_products():
    net, x, y = random_problem([2, 3, 2], ["sigmoid", "identity"], "mse", m=4, seed=1)
    _, batch, _ = bp.loss_and_gradients(net, x, y)
    singles = [bp.loss_and_gradients(net, x[:, [i]], y[:, [i]])[1] for i in range(4)]
    for l in (1, 2):  # noqa: E741
        np.testing.assert_allclose(batch.dW[l], np.mean([g.dW[l] for g in singles], axis=0))
        np.testing.assert_allclose(batch.db[l], np.mean([g.db[l] for g in singles], axis=0))


def test_single_sigmoid_neuron_by_hand():
    # a = sigmoid(0) = 1/2, sigmoid' = 1/4, L = (1/2 - 1)^2 = 1/4,
    # dL/da = -1, delta = -1/4, dL/dw = delta * x = -1/2, dL/db = -1/4.
    net = bp.Network({1: np.array([[0.0]])}, {1: np.array([[0.0]])}, {1: bp.activation("sigmoid")})
    value, grads, _ = bp.loss_and_gradients(net, np.array([[2.0]]), np.array([[1.0]]))
    assert value == 0.25
    assert grads.delta[1].item() == -0.25
    assert grads.dW[1].item() == -0.5
    assert grads.db[1].item() == -0.25


def test_cross_entropy_delta_is_p_minus_y():
    z = np.array([[0.0], [np.log(3.0)]])
    net = bp.Network({1: np.eye(2)}, {1: np.zeros((2, 1))}, {1: bp.activation("identity")})
    value, grads, _ = bp.loss_and_gradients(net, z, np.array([1]), "cross_entropy")
    np.testing.assert_allclose(value, -np.log(0.75))
    np.testing.assert_allclose(grads.delta[1], [[0.25], [-0.25]])


@pytest.mark.parametrize("name", list(bp.ACTIVATIONS))
def test_activation_derivatives_equal_autograd(name):
    z = torch.linspace(-4, 4, 50, dtype=torch.float64, requires_grad=True)  # 0 not in it
    TORCH_ACT[name](z).sum().backward()
    np.testing.assert_allclose(
        bp.activation(name).f(z.detach().numpy()), TORCH_ACT[name](z).detach()
    )
    np.testing.assert_allclose(bp.activation(name).df(z.detach().numpy()), z.grad, rtol=1e-12)


def test_sigmoid_does_not_overflow():
    assert bp.activation("sigmoid").f(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]


def test_numerical_jacobian_equals_autograd():
    def f(v):
        return np.array([np.sin(v[0]) * v[1], v[0] ** 2 + np.exp(v[1]), v[1] ** 3])

    def f_torch(v):
        return torch.stack([torch.sin(v[0]) * v[1], v[0] ** 2 + torch.exp(v[1]), v[1] ** 3])

    x = np.array([0.3, -1.2])
    expected = torch.autograd.functional.jacobian(f_torch, torch.tensor(x))
    np.testing.assert_allclose(bp.numerical_jacobian(f, x), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bp.activation("gelu"), "unknown activation 'gelu'"),
        (lambda: bp.loss_fn("hinge"), "unknown loss 'hinge'"),
        (
            lambda: bp.Network.init([2, 3], ["tanh", "tanh"], np.random.default_rng(0)),
            r"sizes \[2, 3\] and 2 activation",
        ),
        (
            lambda: bp.Network(
                {1: np.ones((3, 2)), 2: np.ones((1, 4))},
                {1: np.ones((3, 1)), 2: np.ones((1, 1))},
                {1: bp.activation("tanh"), 2: bp.activation("tanh")},
            ),
            "layer 2: W2 has 4 columns but layer 1 has 3 units",
        ),
        (
            lambda: bp.Network({1: np.ones((3, 2))}, {1: np.ones(3)}, {1: bp.activation("tanh")}),
            r"got W1 \(3, 2\) and b1 \(3,\)",
        ),
    ],
)
def test_bad_configuration_is_an_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()


def test_lists_and_activation_names_are_accepted_and_junk_is_an_input_error():
    net = bp.Network({1: [[2.0, -1.0]]}, {1: [[0.5]]}, {1: "tanh"})
    assert net.W[1].dtype == np.float64 and net.act[1] is bp.activation("tanh")
    np.testing.assert_allclose(bp.forward(net, [[1.0], [1.0]]).a[1], np.tanh([[1.5]]))
    with pytest.raises(InputError, match="unknown activation 'swish'"):
        bp.Network({1: [[1.0]]}, {1: [[0.0]]}, {1: "swish"})
    with pytest.raises(InputError, match="weights and biases must be arrays of numbers"):
        bp.Network({1: [[1.0, 2.0], [3.0]]}, {1: [[0.0], [0.0]]}, {1: "tanh"})


def test_bad_data_is_an_input_error():
    net = bp.Network.init([2, 3, 2], ["tanh", "identity"], np.random.default_rng(0))
    with pytest.raises(InputError, match=r"shape \(n0, m\) = \(2, m\).*got \(4, 2\)"):
        bp.forward(net, np.ones((4, 2)))
    with pytest.raises(InputError, match=r"targets must have the output's shape \(2, 3\)"):
        bp.loss_and_gradients(net, np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(InputError, match=r"class labels must lie in 0..1, got 0..2"):
        bp.loss_and_gradients(net, np.ones((2, 3)), np.array([0, 1, 2]), "cross_entropy")
    with pytest.raises(InputError, match=r"need 3 class labels"):
        bp.loss_and_gradients(net, np.ones((2, 3)), np.array([0, 1]), "cross_entropy")
