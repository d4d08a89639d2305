# %% [markdown]
# # Math notes 3 — A two-layer network, every number by hand
#
# *Mathematics for Deep Learning*, part 3 of 3: a worked example that makes note 2's
# general result concrete. A network with 2 inputs, 3 sigmoid hidden units and 1 linear
# output meets one training example. We write out every number of the forward and the
# backward pass, then get the same numbers from three pieces of code: our formula code
# (`dlnotes.backprop`), PyTorch's autograd, and the pure-Python Grus-style library
# (`dlnotes.scratch`). Then the same hidden layer meets a mini-batch of two examples with
# a softmax cross-entropy output, again every number by hand and by the three codes, with
# the $\frac{1}{m}$ of the mini-batch in plain view. Finally gradient descent makes the
# loss go down, first on the single example, then on the small XOR task, whose long
# plateau we explain.
#
# Notation as in note 2: $z^{(l)} = W^{(l)} a^{(l-1)} + b^{(l)}$,
# $a^{(l)} = \sigma_l(z^{(l)})$, $\delta^{(l)} = \partial \mathcal{L} / \partial z^{(l)}$.
# Runtime: about 4 s full or smoke (smoke takes fewer XOR steps).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from dlnotes import backprop as bp
from dlnotes import env
from dlnotes.scratch.layers import Linear, Sequential, Sigmoid
from dlnotes.scratch.losses import SSE, SoftmaxCrossEntropy
from dlnotes.scratch.optim import GradientDescent

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
TORCH_DEVICE = DEVICE if DEVICE.type != "mps" else torch.device("cpu")  # MPS has no float64
env.seed_everything(123)
XOR_STEPS = env.choose(full=800, smoke=300)
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
    "delta2": grads.delta[2],
    "dW2": grads.dW[2],
    "db2": grads.db[2],
    "delta1": grads.delta[1],
    "dW1": grads.dW[1],
    "db1": grads.db[1],
    "dx": net.W[1].T @ grads.delta[1],
}
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
    "delta2": z2_t.grad,
    "dW2": model[2].weight.grad,
    "db2": model[2].bias.grad,
    "delta1": z1_t.grad,
    "dW1": model[0].weight.grad,
    "db1": model[0].bias.grad,
    "dx": x_t.grad,
}
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
# ## 5. A mini-batch of two, with a softmax cross-entropy output
#
# Training uses mini-batches and, for classification, softmax cross-entropy. Keep the
# hidden layer of section 1 and give the network **two outputs**, logits for the classes
# 0 and 1:
#
# $$W^{(2)} = \begin{pmatrix} 1 & -1 & 0.5 \\ -0.5 & 1 & 0 \end{pmatrix}, \qquad
# b^{(2)} = \begin{pmatrix} 0.5 \\ 0 \end{pmatrix}.$$
#
# The mini-batch holds $m = 2$ examples as the **columns** of $X$ (note 2, section 6):
# $x_1 = (1, 2)^\top$ of class 0, the example of section 1, and $x_2 = (0, 1)^\top$ of
# class 1. Their one-hot targets are the columns of $Y$:
#
# As before, every number is rounded to 4 decimals from unrounded ones, so a sum of
# rounded numbers may differ from the rounded sum in the last digit.
#
# $$X = \begin{pmatrix} 1 & 0 \\ 2 & 1 \end{pmatrix}, \qquad
# Y = \begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}, \qquad
# \mathcal{L} = \frac{1}{m} \sum_{i=1}^{m} -\log p_{c_i}(x_i)
# = \frac12\big({-\log p_0(x_1)} - \log p_1(x_2)\big).$$
#
# ### Forward, column by column
#
# **Hidden layer.** Column 1 is section 2's $z^{(1)}$. Column 2:
# $W^{(1)} x_2 + b^{(1)} = (0 - 0.5 + 0,\ 0 + 0.5 - 0.5,\ 0 + 0.5 + 0.5)^\top
# = (-0.5,\ 0,\ 1)^\top$, and $\sigma(0) = 0.5$, $\sigma(1) = \frac{1}{1 + e^{-1}} = 0.7311$:
#
# $$Z^{(1)} = \begin{pmatrix} -0.5 & -0.5 \\ 1.5 & 0 \\ 0.5 & 1 \end{pmatrix}, \qquad
# A^{(1)} = \sigma\big(Z^{(1)}\big) = \begin{pmatrix} 0.3775 & 0.3775 \\ 0.8176 & 0.5 \\
# 0.6225 & 0.7311 \end{pmatrix}.$$
#
# **Logits** $Z^{(2)} = W^{(2)} A^{(1)} + b^{(2)} \mathbf 1^\top$. Row 1 of $W^{(2)}$ is
# section 1's output weights, so $Z^{(2)}_{11} = 0.3712$ as before, and
#
# $$\begin{aligned}
# Z^{(2)}_{21} &= -0.5 \cdot 0.3775 + 1 \cdot 0.8176 + 0 \cdot 0.6225 + 0 = 0.6288, \\
# Z^{(2)}_{12} &= 1 \cdot 0.3775 - 1 \cdot 0.5 + 0.5 \cdot 0.7311 + 0.5 = 0.7431, \\
# Z^{(2)}_{22} &= -0.5 \cdot 0.3775 + 1 \cdot 0.5 + 0 \cdot 0.7311 + 0 = 0.3112,
# \end{aligned} \qquad
# Z^{(2)} = \begin{pmatrix} 0.3712 & 0.7431 \\ 0.6288 & 0.3112 \end{pmatrix}.$$
#
# **Softmax, per column.** Column 1: $e^{0.3712} = 1.4495$, $e^{0.6288} = 1.8754$, sum
# $3.3248$, so $p(x_1) = (0.4360,\ 0.5640)$. Column 2: $e^{0.7431} = 2.1024$,
# $e^{0.3112} = 1.3651$, sum $3.4675$, so $p(x_2) = (0.6063,\ 0.3937)$.
#
# **Loss.** $-\log p_0(x_1) = -\log 0.4360 = 0.8302$ and $-\log p_1(x_2) = -\log 0.3937
# = 0.9322$; their mean is $\mathcal{L} = 0.8812$. The network leans the wrong way on both
# examples.

# %%
W2_ce = np.array([[1.0, -1.0, 0.5], [-0.5, 1.0, 0.0]])
b2_ce = np.array([[0.5], [0.0]])
X_BATCH, LABELS = np.array([[1.0, 0.0], [2.0, 1.0]]), np.array([0, 1])
M = X_BATCH.shape[1]


def batch_net():
    """Section 1's hidden layer with the two-logit output layer."""
    return bp.Network(
        {1: W1.copy(), 2: W2_ce.copy()}, {1: b1.copy(), 2: b2_ce.copy()}, {1: SIGMOID, 2: IDENTITY}
    )


HAND_BATCH_FORWARD = {  # matrices row by row
    "Z1": [-0.5, -0.5, 1.5, 0.0, 0.5, 1.0],
    "A1": [0.3775, 0.3775, 0.8176, 0.5, 0.6225, 0.7311],
    "Z2": [0.3712, 0.7431, 0.6288, 0.3112],
    "P": [0.4360, 0.6063, 0.5640, 0.3937],
    "loss": [0.8812],
}
ce_loss, ce_grads, ce_trace = bp.loss_and_gradients(batch_net(), X_BATCH, LABELS, "cross_entropy")
batch_ours = {
    "Z1": ce_trace.z[1],
    "A1": ce_trace.a[1],
    "Z2": ce_trace.z[2],
    "P": bp.softmax(ce_trace.z[2]),
    "loss": ce_loss,
}
print(f"{'':>5}   {'by hand':<54} | dlnotes.backprop")
for key, hand in HAND_BATCH_FORWARD.items():
    print(f"{key:>5}   {fmt(hand):<54} | {fmt(batch_ours[key])}")
    assert np.allclose(np.ravel(batch_ours[key]), hand, atol=5e-5), key

# %% [markdown]
# ### Backward, with the $\frac{1}{m}$
#
# **Output error.** Note 2 (section 6): for the mean of softmax cross-entropies,
# $\Delta^{(2)} = \frac{1}{m}(P - Y)$. The $\frac{1}{m} = \frac12$ enters here, once, and
# every later formula inherits it:
#
# $$P - Y = \begin{pmatrix} 0.4360 - 1 & 0.6063 \\ 0.5640 & 0.3937 - 1 \end{pmatrix}
# = \begin{pmatrix} -0.5640 & 0.6063 \\ 0.5640 & -0.6063 \end{pmatrix}, \qquad
# \Delta^{(2)} = \frac12 (P - Y) = \begin{pmatrix} -0.2820 & 0.3032 \\ 0.2820 & -0.3032
# \end{pmatrix}.$$
#
# Each column of $P - Y$ adds up to 0, because both the probabilities and the one-hot
# target add up to 1. (With two classes the rows are therefore negatives of each other.)
#
# **Output-layer gradients**: $\Delta^{(2)} \big(A^{(1)}\big)^{\!\top}$ is the sum of the
# two examples' outer products, each already carrying its $\frac12$:
#
# $$\frac{\partial \mathcal{L}}{\partial W^{(2)}} =
# \begin{pmatrix} -0.2820 \\ 0.2820 \end{pmatrix}
# \begin{pmatrix} 0.3775 & 0.8176 & 0.6225 \end{pmatrix} +
# \begin{pmatrix} 0.3032 \\ -0.3032 \end{pmatrix}
# \begin{pmatrix} 0.3775 & 0.5 & 0.7311 \end{pmatrix}
# = \begin{pmatrix} -0.1065 & -0.2306 & -0.1755 \\ 0.1065 & 0.2306 & 0.1755 \end{pmatrix}
# + \begin{pmatrix} 0.1145 & 0.1516 & 0.2216 \\ -0.1145 & -0.1516 & -0.2216 \end{pmatrix}
# = \begin{pmatrix} 0.0080 & -0.0790 & 0.0461 \\ -0.0080 & 0.0790 & -0.0461 \end{pmatrix},$$
#
# and $\frac{\partial \mathcal{L}}{\partial b^{(2)}} = \Delta^{(2)} \mathbf 1
# = (-0.2820 + 0.3032,\ 0.2820 - 0.3032)^\top = (0.0211,\ -0.0211)^\top$. The two examples
# pull most weights in opposite directions and largely cancel.
#
# **Back through the weights**, both columns at once, with
# $\big(W^{(2)}\big)^{\!\top} = \begin{pmatrix} 1 & -0.5 \\ -1 & 1 \\ 0.5 & 0 \end{pmatrix}$:
#
# $$\big(W^{(2)}\big)^{\!\top} \Delta^{(2)} = \begin{pmatrix}
# -0.2820 - 0.1410 & 0.3032 + 0.1516 \\ 0.2820 + 0.2820 & -0.3032 - 0.3032 \\
# -0.1410 & 0.1516 \end{pmatrix} = \begin{pmatrix} -0.4230 & 0.4547 \\ 0.5640 & -0.6063 \\
# -0.1410 & 0.1516 \end{pmatrix}.$$
#
# **Back through the sigmoid**: $\sigma'(Z^{(1)}) = A^{(1)} \odot (1 - A^{(1)})$, entry by
# entry; column 1 is section 3's $(0.2350,\ 0.1491,\ 0.2350)$, column 2 is
# $(0.3775 \cdot 0.6225,\ 0.5 \cdot 0.5,\ 0.7311 \cdot 0.2689) = (0.2350,\ 0.25,\ 0.1966)$:
#
# $$\Delta^{(1)} = \begin{pmatrix} -0.4230 \cdot 0.2350 & 0.4547 \cdot 0.2350 \\
# 0.5640 \cdot 0.1491 & -0.6063 \cdot 0.25 \\ -0.1410 \cdot 0.2350 & 0.1516 \cdot 0.1966
# \end{pmatrix} = \begin{pmatrix} -0.0994 & 0.1069 \\ 0.0841 & -0.1516 \\ -0.0331 & 0.0298
# \end{pmatrix}.$$
#
# **Hidden-layer gradients**, $\Delta^{(1)} X^\top$: row $j$ is
# $\Delta^{(1)}_{j1}\,(1, 2) + \Delta^{(1)}_{j2}\,(0, 1)$, and the biases add each row:
#
# $$\frac{\partial \mathcal{L}}{\partial W^{(1)}} = \begin{pmatrix}
# -0.0994 & -0.1988 + 0.1069 \\ 0.0841 & 0.1683 - 0.1516 \\ -0.0331 & -0.0663 + 0.0298
# \end{pmatrix} = \begin{pmatrix} -0.0994 & -0.0920 \\ 0.0841 & 0.0167 \\ -0.0331 & -0.0365
# \end{pmatrix}, \qquad
# \frac{\partial \mathcal{L}}{\partial b^{(1)}} = \Delta^{(1)} \mathbf 1 =
# \begin{pmatrix} 0.0074 \\ -0.0675 \\ -0.0033 \end{pmatrix}.$$
#
# Each of these is the *mean* of the two examples' own gradients (each example alone is a
# batch with $m = 1$): the $\frac12$ put into $\Delta^{(2)}$ is exactly that mean.

# %%
HAND_BATCH_BACKWARD = {
    "Delta2": [-0.2820, 0.3032, 0.2820, -0.3032],
    "dW2": [0.0080, -0.0790, 0.0461, -0.0080, 0.0790, -0.0461],
    "db2": [0.0211, -0.0211],
    "Delta1": [-0.0994, 0.1069, 0.0841, -0.1516, -0.0331, 0.0298],
    "dW1": [-0.0994, -0.0920, 0.0841, 0.0167, -0.0331, -0.0365],
    "db1": [0.0074, -0.0675, -0.0033],
}
batch_ours |= {
    "Delta2": ce_grads.delta[2],
    "dW2": ce_grads.dW[2],
    "db2": ce_grads.db[2],
    "Delta1": ce_grads.delta[1],
    "dW1": ce_grads.dW[1],
    "db1": ce_grads.db[1],
}
print(f"{'':>6}   {'by hand':<54} | dlnotes.backprop")
for key, hand in HAND_BATCH_BACKWARD.items():
    print(f"{key:>6}   {fmt(hand):<54} | {fmt(batch_ours[key])}")
    assert np.allclose(np.ravel(batch_ours[key]), hand, atol=5e-5), key
assert np.allclose(ce_grads.delta[2], (bp.softmax(ce_trace.z[2]) - np.eye(2)[:, LABELS]) / M)
singles = [
    bp.loss_and_gradients(batch_net(), X_BATCH[:, [i]], LABELS[[i]], "cross_entropy")[1]
    for i in range(M)
]
for l in (1, 2):
    assert np.allclose(ce_grads.dW[l], np.mean([g.dW[l] for g in singles], axis=0))
    assert np.allclose(ce_grads.db[l], np.mean([g.db[l] for g in singles], axis=0))

# %% [markdown]
# **PyTorch** takes the examples as rows and `F.cross_entropy` averages over them by
# default, so it computes this very $\mathcal{L}$; the gradients of the retained
# pre-activations are the transposed $\Delta$'s. **`dlnotes.scratch`** sums its losses over
# a batch (PyTorch's `reduction="sum"`), so we divide its loss, and the gradient we feed
# into `backward`, by $m$: that is the $\frac1m$ again, put in by hand.

# %%
model_ce = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 2)).double().to(TORCH_DEVICE)
state_ce = {"0.weight": W1, "0.bias": b1.ravel(), "2.weight": W2_ce, "2.bias": b2_ce.ravel()}
model_ce.load_state_dict({k: torch.tensor(v) for k, v in state_ce.items()})
Z1_t = model_ce[0](torch.tensor(X_BATCH.T, device=TORCH_DEVICE))  # (m, 3): examples in rows
Z1_t.retain_grad()
Z2_t = model_ce[2](model_ce[1](Z1_t))
Z2_t.retain_grad()
ce_loss_t = nn.functional.cross_entropy(Z2_t, torch.tensor(LABELS, device=TORCH_DEVICE))
ce_loss_t.backward()
torch_batch = {
    "Delta2": Z2_t.grad.T,
    "dW2": model_ce[2].weight.grad,
    "db2": model_ce[2].bias.grad,
    "Delta1": Z1_t.grad.T,
    "dW1": model_ce[0].weight.grad,
    "db1": model_ce[0].bias.grad,
}
torch_batch = {k: v.detach().cpu().numpy() for k, v in torch_batch.items()}

scratch_ce = Sequential(Linear(2, 3), Sigmoid(), Linear(3, 2))
scratch_ce.load_state_dict({k: v.tolist() for k, v in state_ce.items()})
rows_x = X_BATCH.T.tolist()  # the scratch layers take a batch as a list of rows, like torch
rows_y = [np.eye(2)[c].tolist() for c in LABELS]  # and one-hot targets
logits = scratch_ce.forward(rows_x)
scratch_ce_loss = SoftmaxCrossEntropy().loss(logits, rows_y) / M
scratch_ce.zero_grad()
summed = SoftmaxCrossEntropy().gradient(logits, rows_y)
scratch_ce.backward([[g / M for g in row] for row in summed])
scratch_batch = dict(zip(["dW1", "db1", "dW2", "db2"], scratch_ce.grads(), strict=True))

print(
    f"loss: by hand 0.8812 | ours {ce_loss:.10f} | torch {ce_loss_t.item():.10f} | "
    f"scratch {scratch_ce_loss:.10f}"
)
assert np.isclose(ce_loss, ce_loss_t.item(), rtol=1e-14)
assert np.isclose(ce_loss, scratch_ce_loss, rtol=1e-14)
print(f"{'':>6}   {'by hand':<54} | equal (to 1e-12) in")
for key, hand in HAND_BATCH_BACKWARD.items():
    agree = ["dlnotes.backprop"]
    for name, values in {"torch": torch_batch, "scratch": scratch_batch}.items():
        if key in values:
            ours_key = np.reshape(batch_ours[key], np.shape(values[key]))
            assert np.allclose(values[key], ours_key, rtol=1e-12, atol=1e-15), (name, key)
            agree.append(name)
    print(f"{key:>6}   {fmt(hand):<54} | {', '.join(agree)}")

# %% [markdown]
# ## 6. Gradient descent on the single example
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
    for l in net.W:
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
# ## 7. A small nonlinear task: XOR, and its long plateau
#
# XOR asks for output 1 when exactly one of two binary inputs is 1. Four points make it a
# toy, but it is the smallest task that needs a hidden layer: its points cannot be split
# by a straight line (Grus builds a network for it by hand in ch. 18). Our 2-3-1 network
# learns it by full-batch gradient descent on all four examples at once, with note 2's
# mini-batch formulas (examples as the columns of $X$), starting from the weights of
# section 1, learning rate $\eta = 0.5$. We record the loss and the length of the gradient
# at every step.

# %%
X_XOR = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])  # (n0, m) = (2, 4)
Y_XOR = np.array([[0.0, 1.0, 1.0, 0.0]])
xor_net = example_net()
xor_steps = [descent_step(xor_net, X_XOR, Y_XOR, lr=0.5) for _ in range(XOR_STEPS)]
xor_losses = [loss for loss, _ in xor_steps]
xor_grad_norms = [np.sqrt(decrease / 0.5) for _, decrease in xor_steps]  # |g| from lr |g|^2
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
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
axes[0].plot(losses, "o-")
axes[0].set(title="one example, 5 steps (section 6)", xlabel="step", ylabel="squared error")
axes[1].semilogy(xor_losses, label="loss (mean squared error)")
axes[1].semilogy(xor_grad_norms, label="gradient length")
axes[1].axhline(0.25, color="k", ls=":", label="best affine fit: 0.25")
axes[1].set(title="XOR, full-batch descent", xlabel="step", ylabel="loss, gradient length")
axes[1].legend(fontsize=8)
image = axes[2].contourf(G1, G2, surface, levels=20, cmap="coolwarm")
axes[2].scatter(*X_XOR, c=Y_XOR.ravel(), cmap="coolwarm", edgecolors="k", s=80)
axes[2].set(title=f"learned function after {XOR_STEPS} steps", xlabel="$x_1$", ylabel="$x_2$")
fig.colorbar(image, ax=axes[2], label="network output $a^{(2)}$")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Why the long plateau?** After a few zig-zag steps ($\eta = 0.5$ is close to the
# largest step the output bias tolerates) the loss settles at $0.25$ and stays there for
# a couple of hundred steps, with a gradient dozens of times shorter than at the start;
# then it suddenly falls to almost zero.
#
# $0.25$ is exactly what the best *affine* function of the inputs,
# $c_0 + c_1 x_1 + c_2 x_2$, achieves: each input is 1 in half the examples and the
# target is 1 in half of those, so the targets are uncorrelated with both inputs and the
# least-squares fit is the constant $0.5$, off by $0.5$ at every point (checked below).
# While its sigmoids work near their middle, where they are nearly straight, the network
# is nearly affine, and gradient descent first does what an affine map can: it outputs
# about $0.5$ everywhere. There the output layer has nothing left to gain and the hidden
# units receive only weak, nearly cancelling error signals. To do better the hidden units
# must use their curvature in *different* ways (one becoming OR-like, another AND-like,
# as in Grus's hand-made network), and the gradient towards that is tiny at first. Like a
# ball near a saddle, the weights drift away slowly, the differences between the units
# grow at every step, and once they are large the loss drops steeply. Plateaus like this
# one also open the training of real networks; a larger learning rate, momentum or
# another starting point shortens them, and exercise 1 shows a start from which the
# network never escapes.

# %%
affine = np.vstack([np.ones(4), X_XOR]).T  # rows (1, x1, x2)
coef, *_ = np.linalg.lstsq(affine, Y_XOR.ravel(), rcond=None)
affine_loss = np.mean((affine @ coef - Y_XOR.ravel()) ** 2)
on_plateau = [k for k, loss in enumerate(xor_losses) if abs(loss - 0.25) < 0.01]
print(f"best affine fit: {coef.round(6) + 0.0} (c0, c1, c2), loss {affine_loss:.4f}")
print(
    f"loss within 0.01 of 0.25 at {len(on_plateau)} steps, from step {on_plateau[0]} to "
    f"{on_plateau[-1]}; gradient length {xor_grad_norms[0]:.3f} at the start, "
    f"{min(xor_grad_norms[k] for k in on_plateau):.4f} at its smallest there"
)
assert np.allclose(coef, [0.5, 0, 0]) and np.isclose(affine_loss, 0.25)
assert len(on_plateau) > 100 and abs(xor_losses[100] - 0.25) < 0.01
assert min(xor_grad_norms[k] for k in on_plateau) < xor_grad_norms[0] / 30

# %% [markdown]
# ## Summary
#
# * One forward and backward pass of a 2-3-1 sigmoid network, by hand: every number
#   follows from the four formulas of note 2 and a calculator. Each weight's gradient is
#   "error at the receiving end times signal at the sending end".
# * Our formula code (`dlnotes.backprop`), PyTorch's autograd and the pure-Python Grus-style
#   library (`dlnotes.scratch`) give the same loss, $\delta$'s, weight, bias and input
#   gradients to 12 digits.
# * A mini-batch of two with softmax cross-entropy: $\Delta^{(2)} = \frac1m (P - Y)$ brings
#   in the $\frac1m$ once; $\Delta^{(l)} A^{(l-1)\top}$ adds the examples' outer products, so
#   every gradient is the mean of the per-example gradients. The three codes agree again
#   (the scratch library sums over the batch, so it divides by $m$ by hand).
# * Gradient descent lowers the loss by about $\eta\,\|\nabla \mathcal{L}\|^2$ per small
#   step (note 1's linear approximation). Trained on all four points, the same network
#   learns XOR after a long plateau at $0.25$, the loss of the best affine fit, which it
#   leaves only once its hidden units have learned to differ.
#
# Now in the library: nothing new; this note uses `dlnotes.backprop`, and compares with
# `dlnotes.scratch` (`Sequential`, `Linear`, `Sigmoid`, `SSE`, `SoftmaxCrossEntropy`,
# `GradientDescent`).

# %% [markdown]
# ## Exercises
#
# **1. A start that never learns XOR.** Start the XOR training of section 7 from weights
# where the three hidden units are *identical*: every row of $W^{(1)}$ equal to
# $(0.5, -0.5)$, every entry of $b^{(1)}$ equal to $0$, every entry of $W^{(2)}$ equal to
# $0.5$. Show from the backward formulas that the three units receive the same gradient,
# so they stay identical forever; confirm it by training, and show that the loss then
# stays far above what section 7 reached.

# %% tags=["solution"]
# Identical rows of W1 and b1 give identical rows of Z1 and A1; with equal entries of W2,
# W2^T Delta2 has identical rows, so Delta1, dW1 and db1 do too, and dW2 = Delta2 A1^T
# has equal entries. Every step keeps the symmetry: the network acts like a 2-1-1 one,
# whose single hidden unit cannot carve out XOR.
twin_net = bp.Network(
    {1: np.tile([[0.5, -0.5]], (3, 1)), 2: np.full((1, 3), 0.5)},
    {1: np.zeros((3, 1)), 2: np.zeros((1, 1))},
    {1: SIGMOID, 2: IDENTITY},
)
twin_losses = [descent_step(twin_net, X_XOR, Y_XOR, lr=0.5)[0] for _ in range(XOR_STEPS)]
rows = twin_net.W[1]
print(f"after {XOR_STEPS} steps, W1 rows:\n{rows.round(6)}\nW2 {twin_net.W[2].round(6)}")
print(f"loss {twin_losses[-1]:.4f} (section 7's start: {xor_losses[-1]:.2e})")
assert np.allclose(rows, rows[0], rtol=0, atol=1e-12) and np.ptp(twin_net.b[1]) < 1e-12
assert np.ptp(twin_net.W[2]) < 1e-12
assert twin_losses[-1] > 0.2  # stuck near the affine fit's 0.25
if not SMOKE:
    assert twin_losses[-1] > 1000 * xor_losses[-1]

# %% [markdown]
# **2. How large may a step be?** For the single example of sections 1-3, take one step
# of gradient descent with each learning rate $\eta$ in $0.005, 0.01, \ldots, 1$ and record
# the loss after it. Which $\eta$ lowers the loss most, and from which $\eta$ on does the
# step make it *worse*? Check that for the smallest $\eta$ the decrease is within 2 % of
# the prediction $\eta\,\|\nabla \mathcal{L}\|^2$ of section 6.

# %% tags=["solution"]
lrs = np.round(np.arange(0.005, 1.0001, 0.005), 3)
_, first_grads, _ = bp.loss_and_gradients(example_net(), x, y)
start_loss = HAND_FORWARD["loss"][0]
after = []
for lr in lrs:
    stepped = example_net()
    for l in stepped.W:
        stepped.W[l] -= lr * first_grads.dW[l]
        stepped.b[l] -= lr * first_grads.db[l]
    after.append(bp.loss_and_gradients(stepped, x, y)[0])
after = np.array(after)
best, worse = lrs[after.argmin()], lrs[np.argmax(after > history[0][0])]
print(f"best step eta = {best} (loss {after.min():.5f}); from eta = {worse} the loss rises")
print(f"eta = {lrs[0]}: decrease {history[0][0] - after[0]:.5f}, predicted {lrs[0] * 4.3432:.5f}")
assert (
    0.15 <= best <= 0.25
    and 0.3 <= worse <= 0.4
    and np.isclose(start_loss, history[0][0], atol=5e-5)
)
assert np.all(after[lrs >= worse] > history[0][0])  # every larger step overshoots too
assert abs((history[0][0] - after[0]) / (lrs[0] * 4.3432) - 1) < 0.02

# %% [markdown]
# **3. A tanh hidden layer, by hand.** Redo sections 2 and 3 with $\tanh$ instead of the
# sigmoid in the hidden layer (same weights, same example, squared error). With
# $\tanh' = 1 - \tanh^2$, compute $a^{(1)}$, the output, $\delta^{(2)}$ and $\delta^{(1)}$ by
# hand, and check them against `dlnotes.backprop` and PyTorch.

# %% tags=["solution"]
# z1 = (-0.5, 1.5, 0.5) as before; a1 = tanh(z1) = (-0.4621, 0.9051, 0.4621);
# z2 = -0.4621 - 0.9051 + 0.5 * 0.4621 + 0.5 = -0.6362; delta2 = 2 (z2 - 1) = -3.2724;
# W2^T delta2 = (-3.2724, 3.2724, -1.6362); tanh' = 1 - a1^2 = (0.7864, 0.1807, 0.7864);
# delta1 = (-2.5736, 0.5913, -1.2868).
hand_tanh = {
    "a1": [-0.4621, 0.9051, 0.4621],
    "z2": [-0.6362],
    "delta2": [-3.2724],
    "delta1": [-2.5736, 0.5913, -1.2868],
}
tanh_net = bp.Network(
    {1: W1.copy(), 2: W2.copy()}, {1: b1.copy(), 2: b2.copy()}, {1: "tanh", 2: IDENTITY}
)
_, tanh_grads, tanh_trace = bp.loss_and_gradients(tanh_net, x, y)
tanh_ours = {
    "a1": tanh_trace.a[1],
    "z2": tanh_trace.z[2],
    "delta2": tanh_grads.delta[2],
    "delta1": tanh_grads.delta[1],
}
z1_tanh = torch.tensor(x.T, device=TORCH_DEVICE) @ torch.tensor(W1.T, device=TORCH_DEVICE)
z1_tanh = (z1_tanh + torch.tensor(b1.T, device=TORCH_DEVICE)).requires_grad_()
out_tanh = torch.tanh(z1_tanh) @ torch.tensor(W2.T, device=TORCH_DEVICE) + b2.item()
((out_tanh - 1.0) ** 2).sum().backward()
for key, hand in hand_tanh.items():
    print(f"{key:>6}   {fmt(hand):<27} | {fmt(tanh_ours[key])}")
    assert np.allclose(np.ravel(tanh_ours[key]), hand, atol=5e-5), key
assert np.allclose(z1_tanh.grad.cpu().numpy().ravel(), tanh_grads.delta[1].ravel(), rtol=1e-12)
