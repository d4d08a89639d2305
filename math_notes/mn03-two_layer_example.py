# %% [markdown]
# # Math notes 3 — A two-layer network, every number by hand
#
# *Mathematics for Deep Learning*, part 3 of 3: a worked example that makes note 2's
# general result concrete. A network with 2 inputs, 3 sigmoid hidden units and 1 linear
# output meets one training example. We write out every number of the forward and the
# backward pass, then get the same numbers from three pieces of code: our formula code
# (`dlnotes.backprop`), PyTorch's autograd, and the pure-Python Grus-style library
# (`dlnotes.scratch`). Finally a few steps of gradient descent make the loss go down,
# first on this example, then on the classic XOR task.
#
# Notation as in note 2: $z^{(l)} = W^{(l)} a^{(l-1)} + b^{(l)}$,
# $a^{(l)} = \sigma_l(z^{(l)})$, $\delta^{(l)} = \partial \mathcal{L} / \partial z^{(l)}$.
# Runtime: about 4 s full, 3 s smoke (fewer XOR steps).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from dlnotes import backprop as bp
from dlnotes import env
from dlnotes.scratch.layers import Linear, Sequential, Sigmoid
from dlnotes.scratch.losses import SSE
from dlnotes.scratch.optim import GradientDescent

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
TORCH_DEVICE = DEVICE if DEVICE.type != "mps" else torch.device("cpu")  # MPS has no float64
env.seed_everything(123)
XOR_STEPS = env.choose(full=1500, smoke=300)
print(env.banner(DEVICE))

# %% [markdown]
# ## 1. The network and the example
#
# Sizes $n_0 = 2$, $n_1 = 3$, $n_2 = 1$; the hidden layer uses the sigmoid
# $\sigma(z) = \frac{1}{1 + e^{-z}}$, the output layer the identity; the loss is the
# squared error $\mathcal{L} = \big(a^{(2)} - y\big)^2$ (note 2's MSE with $m = n_L = 1$).
# The weights are picked so that the pre-activations come out round:
#
# $$W^{(1)} = \begin{pmatrix} 0.5 & -0.5 \\ 1 & 0.5 \\ -1 & 0.5 \end{pmatrix}, \quad
# b^{(1)} = \begin{pmatrix} 0 \\ -0.5 \\ 0.5 \end{pmatrix}, \quad
# W^{(2)} = \begin{pmatrix} 1 & -1 & 0.5 \end{pmatrix}, \quad
# b^{(2)} = \begin{pmatrix} 0.5 \end{pmatrix},$$
#
# and the example is $x = \begin{pmatrix} 1 \\ 2 \end{pmatrix}$ with target $y = 1$.
# All numbers below are rounded to 4 decimals (and computed from unrounded ones).

# %%
W1 = np.array([[0.5, -0.5], [1.0, 0.5], [-1.0, 0.5]])
b1 = np.array([[0.0], [-0.5], [0.5]])
W2 = np.array([[1.0, -1.0, 0.5]])
b2 = np.array([[0.5]])
x, y = np.array([[1.0], [2.0]]), np.array([[1.0]])
SIGMOID, IDENTITY = bp.activation("sigmoid"), bp.activation("identity")


def fmt(values):
    """Numbers to 4 decimals, for the tables."""
    return "  ".join(f"{v:+.4f}" for v in np.ravel(values))


def example_net():
    """A fresh copy of the network above (gradient descent below changes its weights)."""
    return bp.Network(
        {1: W1.copy(), 2: W2.copy()}, {1: b1.copy(), 2: b2.copy()}, {1: SIGMOID, 2: IDENTITY}
    )


# %% [markdown]
# ## 2. The forward pass by hand
#
# **Hidden pre-activations**, one row of $W^{(1)}$ per unit:
#
# $$z^{(1)} = W^{(1)} x + b^{(1)} = \begin{pmatrix}
# 0.5 \cdot 1 - 0.5 \cdot 2 + 0 \\ 1 \cdot 1 + 0.5 \cdot 2 - 0.5 \\ -1 \cdot 1 + 0.5 \cdot 2 + 0.5
# \end{pmatrix} = \begin{pmatrix} -0.5 \\ 1.5 \\ 0.5 \end{pmatrix}.$$
#
# **Hidden activations**: $\sigma(-0.5) = \frac{1}{1 + e^{0.5}} = \frac{1}{2.6487} = 0.3775$,
# $\sigma(1.5) = \frac{1}{1 + e^{-1.5}} = \frac{1}{1.2231} = 0.8176$, and
# $\sigma(0.5) = 1 - \sigma(-0.5) = 0.6225$ (the sigmoid is symmetric:
# $\sigma(-z) = 1 - \sigma(z)$). So $a^{(1)} = (0.3775,\ 0.8176,\ 0.6225)^\top$.
#
# **Output** (identity activation, so $a^{(2)} = z^{(2)}$):
#
# $$z^{(2)} = W^{(2)} a^{(1)} + b^{(2)} = 1 \cdot 0.3775 - 1 \cdot 0.8176 + 0.5 \cdot 0.6225
# + 0.5 = 0.3712.$$
#
# **Loss**: $\mathcal{L} = (0.3712 - 1)^2 = (-0.6288)^2 = 0.3954$.
# The network predicts far too little.

# %%
HAND_FORWARD = {
    "z1": [-0.5, 1.5, 0.5],
    "a1": [0.3775, 0.8176, 0.6225],
    "z2": [0.3712],
    "a2": [0.3712],
    "loss": [0.3954],
}
net = example_net()
loss, grads, trace = bp.loss_and_gradients(net, x, y, "mse")
ours = {"z1": trace.z[1], "a1": trace.a[1], "z2": trace.z[2], "a2": trace.a[2], "loss": loss}
print(f"{'':>6}   {'by hand':<24} | dlnotes.backprop")
for key, hand in HAND_FORWARD.items():
    print(f"{key:>6}   {fmt(hand):<24} | {fmt(ours[key])}")
    assert np.allclose(np.ravel(ours[key]), hand, atol=5e-5), key

# %% [markdown]
# ## 3. The backward pass by hand
#
# **Output error.** $\frac{\partial \mathcal{L}}{\partial a^{(2)}} = 2\,(a^{(2)} - y)
# = 2 \cdot (-0.6288) = -1.2576$, and the identity has derivative $1$, so
#
# $$\delta^{(2)} = -1.2576 \cdot 1 = -1.2576.$$
#
# **Output-layer gradients**, an outer product (here a number times a row):
#
# $$\frac{\partial \mathcal{L}}{\partial W^{(2)}} = \delta^{(2)} \big(a^{(1)}\big)^{\!\top}
# = -1.2576 \cdot \begin{pmatrix} 0.3775 & 0.8176 & 0.6225 \end{pmatrix}
# = \begin{pmatrix} -0.4748 & -1.0282 & -0.7828 \end{pmatrix}, \qquad
# \frac{\partial \mathcal{L}}{\partial b^{(2)}} = -1.2576.$$
#
# **Back through the weights.** $\big(W^{(2)}\big)^{\!\top} \delta^{(2)} =
# (1,\ -1,\ 0.5)^\top \cdot (-1.2576) = (-1.2576,\ 1.2576,\ -0.6288)^\top$.
#
# **Back through the sigmoid.** $\sigma'(z) = \sigma(z)\,(1 - \sigma(z))$, so
# $\sigma'(z^{(1)}) = (0.3775 \cdot 0.6225,\ 0.8176 \cdot 0.1824,\ 0.6225 \cdot 0.3775)
# = (0.2350,\ 0.1491,\ 0.2350)$. Multiply entry by entry:
#
# $$\delta^{(1)} = \begin{pmatrix} -1.2576 \cdot 0.2350 \\ 1.2576 \cdot 0.1491 \\
# -0.6288 \cdot 0.2350 \end{pmatrix} = \begin{pmatrix} -0.2955 \\ 0.1876 \\ -0.1478
# \end{pmatrix}.$$
#
# **Hidden-layer gradients**, the outer product with the input $x = (1, 2)^\top$:
#
# $$\frac{\partial \mathcal{L}}{\partial W^{(1)}} = \delta^{(1)} x^\top =
# \begin{pmatrix} -0.2955 & -0.5911 \\ 0.1876 & 0.3751 \\ -0.1478 & -0.2955 \end{pmatrix},
# \qquad \frac{\partial \mathcal{L}}{\partial b^{(1)}} = \delta^{(1)}.$$
#
# (And, for free, how the loss responds to the input itself:
# $\frac{\partial \mathcal{L}}{\partial x} = \big(W^{(1)}\big)^{\!\top} \delta^{(1)}
# = (0.1876,\ 0.1677)^\top$.)
#
# **Reading the signs.** The output is too low, so $\delta^{(2)} < 0$: a descent step
# ($\theta \leftarrow \theta - \eta\,\partial \mathcal{L}/\partial \theta$) raises $b^{(2)}$
# and every weight from a (positive) hidden activation. Hidden unit 2 feeds the output
# with weight $-1$, so its $\delta$ is positive: the step lowers its incoming weights,
# making it *less* active, which also raises the output. Each weight's gradient is
# "error at its receiving end times signal at its sending end".

# %%
HAND_BACKWARD = {
    "delta2": [-1.2576],
    "dW2": [-0.4748, -1.0282, -0.7828],
    "db2": [-1.2576],
    "delta1": [-0.2955, 0.1876, -0.1478],
    "dW1": [-0.2955, -0.5911, 0.1876, 0.3751, -0.1478, -0.2955],
    "db1": [-0.2955, 0.1876, -0.1478],
    "dx": [0.1876, 0.1677],
}
ours |= {
    "delta2": grads.delta[2], "dW2": grads.dW[2], "db2": grads.db[2],
    "delta1": grads.delta[1], "dW1": grads.dW[1], "db1": grads.db[1],
    "dx": net.W[1].T @ grads.delta[1],
}  # fmt: skip
print(f"{'':>6}   {'by hand':<52} | dlnotes.backprop")
for key, hand in HAND_BACKWARD.items():
    print(f"{key:>6}   {fmt(hand):<52} | {fmt(ours[key])}")
    assert np.allclose(np.ravel(ours[key]), hand, atol=5e-5), key

# %% [markdown]
# ## 4. The same numbers from PyTorch and from the pure-Python library
#
# **PyTorch**: `nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1))` in float64
# with our weights (an `nn.Linear` weight has exactly our $W^{(l)}$'s shape), the same
# loss, `backward()`; the $\delta$'s are the gradients of the retained pre-activations.
#
# **`dlnotes.scratch`** is written on Python lists after Joel Grus (*Data Science from
# Scratch*, ch. 19), each layer with its own hand-written `backward`. It names its
# parameters like PyTorch (`"0.weight"`, ...) and its `SSE` loss is our squared error
# for a single example.

# %%
model = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1)).double().to(TORCH_DEVICE)
state = {"0.weight": W1, "0.bias": b1.ravel(), "2.weight": W2, "2.bias": b2.ravel()}
model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
x_t = torch.tensor(x.T, device=TORCH_DEVICE, requires_grad=True)  # (1, 2): a row, as torch likes
z1_t = model[0](x_t)
z1_t.retain_grad()
z2_t = model[2](model[1](z1_t))
z2_t.retain_grad()
loss_t = nn.functional.mse_loss(z2_t, torch.tensor(y.T, device=TORCH_DEVICE))
loss_t.backward()
torch_grads = {
    "delta2": z2_t.grad, "dW2": model[2].weight.grad, "db2": model[2].bias.grad,
    "delta1": z1_t.grad, "dW1": model[0].weight.grad, "db1": model[0].bias.grad,
    "dx": x_t.grad,
}  # fmt: skip
torch_grads = {k: v.detach().cpu().numpy() for k, v in torch_grads.items()}

# %%
scratch = Sequential(Linear(2, 3), Sigmoid(), Linear(3, 1))
scratch.load_state_dict({k: v.tolist() for k, v in state.items()})
prediction = scratch.forward(x.ravel().tolist())
scratch_loss = SSE().loss(prediction, y.ravel().tolist())
scratch.zero_grad()
dx_scratch = scratch.backward(SSE().gradient(prediction, y.ravel().tolist()))
scratch_grads = dict(zip(["dW1", "db1", "dW2", "db2"], scratch.grads(), strict=True))
scratch_grads["dx"] = dx_scratch  # the scratch layers keep no deltas; the rest is compared
print(
    f"loss: by hand 0.3954 | ours {loss:.10f} | torch {loss_t.item():.10f} | "
    f"scratch {scratch_loss:.10f}"
)
assert np.isclose(loss, loss_t.item(), rtol=1e-14) and np.isclose(loss, scratch_loss, rtol=1e-14)

# %%
print(f"{'':>6}   {'by hand':<52} | equal (to 1e-12) in")
for key, hand in HAND_BACKWARD.items():
    found = {"torch": torch_grads, "scratch": scratch_grads}
    agree = ["dlnotes.backprop"]
    for name, values in found.items():
        if key in values:
            assert np.allclose(
                values[key], np.reshape(ours[key], np.shape(values[key])), rtol=1e-12, atol=1e-15
            ), (name, key)
            agree.append(name)
    print(f"{key:>6}   {fmt(hand):<52} | {', '.join(agree)}")

# %% [markdown]
# ## 5. Gradient descent on this example
#
# A step of gradient descent with learning rate $\eta$ moves every parameter against its
# gradient, $\theta \leftarrow \theta - \eta\,\frac{\partial \mathcal{L}}{\partial \theta}$.
# Note 1's linear approximation predicts the effect: the loss changes by about
# $\nabla \mathcal{L}^\top (-\eta \nabla \mathcal{L}) = -\eta\,\|\nabla \mathcal{L}\|^2$,
# a decrease, as long as $\eta$ is small enough for the approximation to hold. Here
# $\|\nabla \mathcal{L}\|^2 = 4.3432$ (the sum of the squares of all 13 gradient entries
# above), so with $\eta = 0.05$ the first step should lower the loss by about
# $0.05 \cdot 4.3432 = 0.2172$.
#
# Five steps, with our formulas, with `torch.optim.SGD` and with the scratch library's
# `GradientDescent`, side by side:

# %%
LR, STEPS = 0.05, 5
net = example_net()
opt_t = torch.optim.SGD(model.parameters(), lr=LR)
opt_s = GradientDescent(scratch, lr=LR)
x_row, y_row = torch.tensor(x.T, device=TORCH_DEVICE), torch.tensor(y.T, device=TORCH_DEVICE)


def descent_step(net, X, Y, lr):
    """One step of gradient descent; returns the loss before it and the decrease
    note 1's linear approximation predicts, lr * |gradient|^2."""
    loss, grads, _ = bp.loss_and_gradients(net, X, Y)
    for l in net.W:  # noqa: E741 (the layer index, as in the maths)
        net.W[l] -= lr * grads.dW[l]
        net.b[l] -= lr * grads.db[l]
    return loss, lr * sum((g**2).sum() for g in [*grads.dW.values(), *grads.db.values()])


def step_torch():
    opt_t.zero_grad()
    loss = nn.functional.mse_loss(model(x_row), y_row)
    loss.backward()
    opt_t.step()
    return loss.item()


def step_scratch():
    opt_s.zero_grad()
    prediction = scratch.forward(x.ravel().tolist())
    scratch.backward(SSE().gradient(prediction, y.ravel().tolist()))
    opt_s.step()
    return SSE().loss(prediction, y.ravel().tolist())


# %%
history = [(*descent_step(net, x, y, LR), step_torch(), step_scratch()) for _ in range(STEPS + 1)]
print("step | loss (ours)  torch        scratch      | predicted decrease | actual decrease")
for k, (loss, predicted, loss_t, loss_s) in enumerate(history[:-1]):
    actual = loss - history[k + 1][0]
    print(f"{k:>4} | {loss:.10f} {loss_t:.10f} {loss_s:.10f} | {predicted:18.4f} | {actual:.4f}")
    assert np.allclose([loss_t, loss_s], loss, rtol=1e-12) and 0 < actual < predicted
assert np.isclose(history[0][1], 0.05 * 4.3432, atol=1e-4)
losses = [h[0] for h in history]
assert all(a > b for a, b in zip(losses[:-1], losses[1:], strict=True)), "falls at every step"

# %% [markdown]
# The prediction is within about 15%, and always a little optimistic: along each step the
# loss curves upwards, so its tangent line promises a bit more than the curve delivers.
#
# ## 6. A realistic task: XOR
#
# XOR asks for output 1 when exactly one of two binary inputs is 1. Its four points cannot
# be split by a straight line, so a network needs a hidden layer to fit them (Grus builds
# one by hand in ch. 18). Our 2-3-1 network learns it by full-batch gradient descent
# on all four examples at once, with note 2's mini-batch formulas (examples as the columns
# of $X$), starting from the weights of section 1, learning rate $\eta = 0.5$.

# %%
X_XOR = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])  # (n0, m) = (2, 4)
Y_XOR = np.array([[0.0, 1.0, 1.0, 0.0]])
xor_net = example_net()
xor_losses = [descent_step(xor_net, X_XOR, Y_XOR, lr=0.5)[0] for _ in range(XOR_STEPS)]
outputs = bp.forward(xor_net, X_XOR).a[2]
print(f"loss {xor_losses[0]:.4f} -> {xor_losses[-1]:.2e} after {XOR_STEPS} steps")
print("inputs ", [tuple(int(v) for v in col) for col in X_XOR.T], "\noutputs", fmt(outputs))
assert xor_losses[-1] < 0.7 * xor_losses[0]
if not SMOKE:
    assert np.abs(outputs - Y_XOR).max() < 0.01, "XOR learned"

# %%
grid = np.linspace(-0.25, 1.25, 61)
G1, G2 = np.meshgrid(grid, grid)
surface = bp.forward(xor_net, np.stack([G1.ravel(), G2.ravel()])).a[2].reshape(G1.shape)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
axes[0].plot(losses, "o-")
axes[0].set(title="one example, 5 steps (section 5)", xlabel="step", ylabel="loss")
axes[1].semilogy(xor_losses)
axes[1].set(title="XOR, full-batch descent", xlabel="step", ylabel="mean squared error")
image = axes[2].contourf(G1, G2, surface, levels=20, cmap="coolwarm")
axes[2].scatter(*X_XOR, c=Y_XOR.ravel(), cmap="coolwarm", edgecolors="k", s=80)
axes[2].set(title="learned function on the plane", xlabel="$x_1$", ylabel="$x_2$")
fig.colorbar(image, ax=axes[2])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * One forward and backward pass of a 2-3-1 sigmoid network, by hand: every number
#   follows from the four formulas of note 2 and a calculator. Each weight's gradient is
#   "error at the receiving end times signal at the sending end".
# * Our formula code (`dlnotes.backprop`), PyTorch's autograd and the pure-Python Grus-style
#   library (`dlnotes.scratch`) give the same loss, $\delta$'s, weight, bias and input
#   gradients to 12 digits.
# * Gradient descent lowers the loss by about $\eta\,\|\nabla \mathcal{L}\|^2$ per small
#   step (note 1's linear approximation); the same network, trained on all four points,
#   learns XOR.
#
# Now in the library: nothing new; this note uses `dlnotes.backprop`, and compares with
# `dlnotes.scratch` (`Sequential`, `Linear`, `Sigmoid`, `SSE`, `GradientDescent`).
