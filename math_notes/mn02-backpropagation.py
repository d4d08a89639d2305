# %% [markdown]
# # Math notes 2 — Backpropagation
#
# *Mathematics for Deep Learning*, part 2 of 3. With the chain rules of note 1 we derive
# the gradient of a loss with respect to every weight and bias of a fully connected
# network of any depth. Good notation makes the result surprisingly short: four lines,
# each a matrix product or an elementwise product.
#
# Sections: notation and the forward pass; three local derivatives; the error signals
# $\delta^{(l)}$ and their backward recursion; gradients as outer products; the two
# losses; the mini-batch matrix form; why running backwards is cheap; a final check
# against PyTorch's autograd.
#
# Uses `dlnotes.backprop` (`Network`, `forward`, `backward`, `loss_and_gradients`,
# `numerical_gradient`): the library code *is* the formulas below, transcribed.
# Runtime: about 3 s, full or smoke.

# %%
import time

import numpy as np
import torch
import torch.nn.functional as F

from dlnotes import backprop as bp
from dlnotes import env

# %%
SMOKE = env.SMOKE
DEVICE = env.device()  # the derivation runs in NumPy; PyTorch checks it at the end
TORCH_DEVICE = DEVICE if DEVICE.type != "mps" else torch.device("cpu")  # MPS has no float64
env.seed_everything(123)
rng = np.random.default_rng(123)
TIMING_SIZES = env.choose(full=[20, 40, 40, 5], smoke=[10, 12, 12, 3])
print(env.banner(DEVICE))

# %% [markdown]
# ## 1. Notation and the forward pass
#
# A network with $L$ layers; layer $l$ has $n_l$ units, and layer $0$ is the input.
# Vectors are columns (note 1). For $l = 1, \ldots, L$:
#
# | symbol | shape | meaning |
# |---|---|---|
# | $a^{(0)} = x$ | $n_0 \times 1$ | the input |
# | $W^{(l)}$ | $n_l \times n_{l-1}$ | weights: row $i$ feeds unit $i$ of layer $l$ |
# | $b^{(l)}$ | $n_l \times 1$ | biases |
# | $z^{(l)} = W^{(l)} a^{(l-1)} + b^{(l)}$ | $n_l \times 1$ | pre-activations |
# | $a^{(l)} = \sigma_l\big(z^{(l)}\big)$ | $n_l \times 1$ | activations ($\sigma_l$ elementwise) |
# | $\mathcal{L} = \ell\big(a^{(L)}, y\big)$ | scalar | the loss against the target $y$ |
#
# Computing $z^{(1)}, a^{(1)}, z^{(2)}, \ldots, a^{(L)}, \mathcal{L}$ in this order is the
# **forward pass**. $W^{(l)}$ has the shape of PyTorch's `nn.Linear(n_{l-1}, n_l).weight`.
#
# **Gradient convention.** For the scalar $\mathcal{L}$ and any vector or matrix $v$,
# $\frac{\partial \mathcal{L}}{\partial v}$ is the array *of the same shape as $v$* holding
# $\frac{\partial \mathcal{L}}{\partial v_{ij}}$ (for a column $v$ that is the gradient
# $\nabla_v \mathcal{L}$, the transpose of note 1's $1 \times n$ Jacobian). The central
# quantity gets its own name, the **error signal** of layer $l$:
#
# $$\delta^{(l)} = \frac{\partial \mathcal{L}}{\partial z^{(l)}} \quad (n_l \times 1):
# \text{ how fast the loss changes as each pre-activation of layer } l \text{ changes.}$$
#
# In the code, dicts keyed by the layer number make `W[l]` read as $W^{(l)}$:

# %%
net = bp.Network.init([3, 5, 4, 2], ["tanh", "sigmoid", "identity"], rng)
x = rng.normal(size=(3, 1))
y = rng.normal(size=(2, 1))
trace = bp.forward(net, x)
for l in range(1, net.L + 1):
    print(
        f"l={l}: W {net.W[l].shape}, b {net.b[l].shape}, z {trace.z[l].shape}, "
        f"activation {net.act[l].name}"
    )
print("a^(L) =", trace.a[net.L].ravel().round(4))
assert net.sizes == [3, 5, 4, 2] and trace.a[3].shape == (2, 1)

# %%
env.show(bp.forward)

# %% [markdown]
# ## 2. Three local derivatives
#
# Every layer is built from two maps whose Jacobians we found in note 1, section 4:
#
# 1. $z^{(l)} = W^{(l)} a^{(l-1)} + b^{(l)}$ is affine in $a^{(l-1)}$:
#    $\;\frac{\partial z^{(l)}}{\partial a^{(l-1)}} = W^{(l)}$ (an $n_l \times n_{l-1}$ Jacobian);
# 2. $a^{(l)} = \sigma_l(z^{(l)})$ is elementwise:
#    $\;\frac{\partial a^{(l)}}{\partial z^{(l)}} =
#    \operatorname{diag}\big(\sigma_l'(z^{(l)})\big)$;
# 3. in $z_i^{(l)} = \sum_k W_{ik}^{(l)} a_k^{(l-1)} + b_i^{(l)}$ the weight $W_{jk}^{(l)}$
#    appears only in row $i = j$, multiplied by $a_k^{(l-1)}$:
#    $\;\frac{\partial z_i^{(l)}}{\partial W_{jk}^{(l)}} = \begin{cases} a_k^{(l-1)} & i = j \\
#    0 & i \neq j \end{cases}$, $\;$ and likewise
#    $\frac{\partial z_i^{(l)}}{\partial b_j^{(l)}} = 1$ if $i = j$, else $0$.
#
# The activations and their derivatives (the library keeps each derivative beside its
# function):
#
# | $\sigma$ | $\sigma(z)$ | $\sigma'(z)$ |
# |---|---|---|
# | sigmoid | $\frac{1}{1 + e^{-z}}$ | $\sigma(z)\,\big(1 - \sigma(z)\big)$ |
# | tanh | $\tanh z$ | $1 - \tanh^2 z$ |
# | ReLU | $\max(z, 0)$ | $1$ if $z > 0$, else $0$ (we take $0$ at the kink $z = 0$) |
# | identity | $z$ | $1$ |

# %%
points = np.linspace(-3, 3, 12)  # an even count skips 0, where ReLU has no derivative
for name, act in bp.ACTIVATIONS.items():
    numeric = bp.numerical_gradient(lambda v, f=act.f: float(f(v).sum()), points.copy())
    assert np.allclose(act.df(points), numeric, atol=1e-8), name
print("sigma' of", ", ".join(bp.ACTIVATIONS), "agree with central differences")

# %% [markdown]
# ## 3. The output layer's error signal
#
# The loss depends on $z^{(L)}$ through $a^{(L)} = \sigma_L(z^{(L)})$. Chain rule (note 1):
# the $1 \times n_L$ row $\frac{\partial \ell}{\partial a^{(L)}}{}^\top$ times the Jacobian
# $\operatorname{diag}(\sigma_L')$. Multiplying by a diagonal matrix multiplies entry by
# entry, so, writing $\odot$ for the elementwise product,
#
# $$\delta^{(L)} = \frac{\partial \ell}{\partial a^{(L)}} \odot \sigma_L'\big(z^{(L)}\big).$$
#
# Two losses cover most uses (section 6 treats mini-batches):
#
# * **mean squared error** $\ell = \frac{1}{n_L}\sum_i (a_i^{(L)} - y_i)^2$ has
#   $\frac{\partial \ell}{\partial a^{(L)}} = \frac{2}{n_L}\big(a^{(L)} - y\big)$;
# * **softmax cross-entropy** reads $z = a^{(L)}$ as logits (identity output layer),
#   $p = \operatorname{softmax}(z)$, $p_j = \frac{e^{z_j}}{\sum_k e^{z_k}}$, and for the
#   correct class $c$ (one-hot target $y$, $y_c = 1$) has
#   $\ell = -\log p_c = -z_c + \log \sum_k e^{z_k}$. Differentiate:
#   $\frac{\partial \ell}{\partial z_j} = -[j = c] + \frac{e^{z_j}}{\sum_k e^{z_k}}$, so
#
# $$\delta^{(L)} = p - y.$$
#
# The exponentials and the logarithm cancel: the error signal is "predicted probabilities
# minus the truth". That is why frameworks fuse softmax with the cross-entropy.

# %%
zL = rng.normal(size=(4, 1))
ce = bp.loss_fn("cross_entropy")
numeric = bp.numerical_gradient(lambda v: ce.value(v, np.array([2])), zL.copy())
p_minus_y = bp.softmax(zL) - np.eye(4)[:, [2]]
print("p - y =", p_minus_y.ravel().round(5), "| numeric:", numeric.ravel().round(5))
assert np.allclose(numeric, p_minus_y, atol=1e-8)
mse = bp.loss_fn("mse")
numeric = bp.numerical_gradient(lambda v: mse.value(v, y), trace.a[3].copy())
assert np.allclose(numeric, 2 / 2 * (trace.a[3] - y), atol=1e-8)  # n_L = 2

# %% [markdown]
# ## 4. The backward recursion for $\delta$
#
# The loss depends on $z^{(l)}$ only through the next layer,
# $z^{(l+1)} = W^{(l+1)}\,\sigma_l\big(z^{(l)}\big) + b^{(l+1)}$. By the chain rule with the
# local Jacobians 1 and 2 of section 2, as rows,
#
# $$\frac{\partial \mathcal{L}}{\partial z^{(l)}}{}^{\!\top} =
# \frac{\partial \mathcal{L}}{\partial z^{(l+1)}}{}^{\!\top}\; W^{(l+1)}\;
# \operatorname{diag}\big(\sigma_l'(z^{(l)})\big).$$
#
# Transpose (a diagonal matrix is its own transpose) and turn the diagonal matrix into an
# elementwise product:
#
# $$\delta^{(l)} = \Big(\big(W^{(l+1)}\big)^{\!\top} \delta^{(l+1)}\Big) \odot
# \sigma_l'\big(z^{(l)}\big), \qquad l = L-1, \ldots, 1.$$
#
# Read entry $j$ as note 1's sum over paths: unit $j$ of layer $l$ reaches the loss through
# every unit $i$ of layer $l+1$, with rate $\sigma_l'(z_j^{(l)})\,W_{ij}^{(l+1)}$ into
# $z_i^{(l+1)}$ and then rate $\delta_i^{(l+1)}$ onward:
# $\delta_j^{(l)} = \sum_i \delta_i^{(l+1)} W_{ij}^{(l+1)} \sigma_l'(z_j^{(l)})$.
# The same weights that carry signals forward carry errors backward, transposed.
#
# Check: nudge the entries of $z^{(l)}$ one at a time, finish the forward pass from
# there, and compare the loss's rate of change with the recursion's $\delta^{(l)}$.

# %%
loss_value, grads, trace = bp.loss_and_gradients(net, x, y, "mse")


def loss_from_layer(l, z_l):
    """Finish the forward pass from the pre-activations z^(l) and return the loss."""
    a = net.act[l].f(z_l)
    for k in range(l + 1, net.L + 1):
        a = net.act[k].f(net.W[k] @ a + net.b[k])
    return mse.value(a, y)


for l in range(net.L, 0, -1):
    numeric = bp.numerical_gradient(lambda v, l=l: loss_from_layer(l, v), trace.z[l].copy())
    print(f"delta^({l}) = {grads.delta[l].ravel().round(5)}")
    assert np.allclose(grads.delta[l], numeric, rtol=1e-6, atol=1e-9)

# %% [markdown]
# ## 5. Gradients for every weight and bias: outer products
#
# Local derivative 3 says $W_{jk}^{(l)}$ reaches the loss only through $z_j^{(l)}$, at rate
# $a_k^{(l-1)}$. So $\frac{\partial \mathcal{L}}{\partial W_{jk}^{(l)}} = \delta_j^{(l)}\,
# a_k^{(l-1)}$: "error at the receiving end times signal at the sending end". As a matrix,
# that is an **outer product** (column times row), shaped like $W^{(l)}$:
#
# $$\frac{\partial \mathcal{L}}{\partial W^{(l)}} = \delta^{(l)}\,\big(a^{(l-1)}\big)^{\!\top}
# \quad (n_l \times 1)(1 \times n_{l-1}), \qquad
# \frac{\partial \mathcal{L}}{\partial b^{(l)}} = \delta^{(l)}.$$
#
# Altogether, **backpropagation** is four lines. After one forward pass that stores every
# $z^{(l)}$ and $a^{(l)}$:
#
# $$\boxed{\begin{aligned}
# \delta^{(L)} &= \frac{\partial \ell}{\partial a^{(L)}} \odot \sigma_L'\big(z^{(L)}\big) \\
# \delta^{(l)} &= \big(W^{(l+1)}\big)^{\!\top} \delta^{(l+1)} \odot \sigma_l'\big(z^{(l)}\big)
# \qquad (l = L-1, \ldots, 1) \\
# \frac{\partial \mathcal{L}}{\partial W^{(l)}} &= \delta^{(l)}\,\big(a^{(l-1)}\big)^{\!\top} \\
# \frac{\partial \mathcal{L}}{\partial b^{(l)}} &= \delta^{(l)}
# \end{aligned}}$$

# %%
for l in range(1, net.L + 1):
    for name, param, grad in (("W", net.W[l], grads.dW[l]), ("b", net.b[l], grads.db[l])):
        numeric = bp.numerical_gradient(lambda _: bp.loss_and_gradients(net, x, y)[0], param)
        assert np.allclose(grad, numeric, rtol=1e-6, atol=1e-9), (name, l)
    assert np.allclose(grads.dW[l], np.outer(grads.delta[l], trace.a[l - 1]))
n_params = sum(net.W[l].size + net.b[l].size for l in net.W)
print(f"loss {loss_value:.6f}; all {n_params} derivatives agree with central differences")

# %% [markdown]
# ## 6. A mini-batch in matrix form
#
# Training averages the loss over a mini-batch of $m$ examples,
# $\mathcal{L} = \frac{1}{m}\sum_{i=1}^m \ell\big(a_i^{(L)}, y_i\big)$. Store the examples as
# the **columns** of $X = A^{(0)} = [x_1 \cdots x_m]$, $n_0 \times m$. The forward pass is
# the same formula with matrices ($\mathbf 1$ is a column of $m$ ones, so $b\,\mathbf 1^\top$
# repeats $b$ in every column; NumPy's broadcasting does that for us):
#
# $$Z^{(l)} = W^{(l)} A^{(l-1)} + b^{(l)} \mathbf 1^\top, \qquad A^{(l)} = \sigma_l(Z^{(l)}).$$
#
# A derivative of a sum is the sum of the derivatives, and example $i$ only touches column
# $i$. So column $i$ of $\Delta^{(l)} = \frac{\partial \mathcal{L}}{\partial Z^{(l)}}$ is
# $\frac{1}{m}$ times example $i$'s own $\delta^{(l)}$: the factor $\frac{1}{m}$ enters once,
# in $\Delta^{(L)}$, and the recursion is *literally the same formula*, applied to all
# columns at once:
#
# $$\Delta^{(L)} = \frac{\partial \mathcal{L}}{\partial A^{(L)}} \odot \sigma_L'(Z^{(L)}),
# \qquad \Delta^{(l)} = \big(W^{(l+1)}\big)^{\!\top} \Delta^{(l+1)} \odot \sigma_l'(Z^{(l)}).$$
#
# The weight gradient is the average of the examples' outer products, and a matrix product
# $\Delta A^\top$ is exactly the sum of the outer products of matching columns:
#
# $$\frac{\partial \mathcal{L}}{\partial W^{(l)}} = \sum_{i=1}^m \Delta_{:,i}^{(l)}
# \big(A_{:,i}^{(l-1)}\big)^{\!\top} = \Delta^{(l)} \big(A^{(l-1)}\big)^{\!\top},
# \qquad \frac{\partial \mathcal{L}}{\partial b^{(l)}} = \Delta^{(l)} \mathbf 1.$$
#
# (For the losses: MSE averages over all $m\,n_L$ entries, so
# $\frac{\partial \mathcal{L}}{\partial A^{(L)}} = \frac{2}{m\,n_L}(A^{(L)} - Y)$; softmax
# cross-entropy gives $\Delta^{(L)} = \frac{1}{m}(P - Y)$.) That is the whole library:

# %%
env.show(bp.backward)

# %%
m = 8
X, Y = rng.normal(size=(3, m)), rng.normal(size=(2, m))
_, batch, batch_trace = bp.loss_and_gradients(net, X, Y, "mse")
singles = [bp.loss_and_gradients(net, X[:, [i]], Y[:, [i]])[1] for i in range(m)]
for l in range(1, net.L + 1):
    outer_sum = sum(np.outer(batch.delta[l][:, i], batch_trace.a[l - 1][:, i]) for i in range(m))
    assert np.allclose(batch.dW[l], outer_sum)
    assert np.allclose(batch.dW[l], np.mean([g.dW[l] for g in singles], axis=0))
    assert np.allclose(batch.db[l], np.mean([g.db[l] for g in singles], axis=0))
print(f"batch of {m}: Delta A^T = sum of outer products = mean of per-example gradients")

# %% [markdown]
# ## 7. Why backwards? The cost of reverse mode
#
# The gradient of the loss with respect to the input is, by note 1's section 6, a row
# vector times a product of Jacobians,
# $\frac{\partial \ell}{\partial a^{(L)}}{}^{\!\top} J_L J_{L-1} \cdots J_1$. Evaluated from
# the **left** (reverse mode, what backpropagation does), every step is a vector times an
# $n_l \times n_{l-1}$ matrix: about $n_l n_{l-1}$ multiplications, the same as the forward
# pass. Evaluated from the **right** (forward mode), we carry a full Jacobian
# $\partial a^{(l)} / \partial x$ of size $n_l \times n_0$ and pay up to $n_0$ times more.
#
# For the gradient with respect to the **parameters** the gap is wider. Say the network
# has $P$ weights and biases; one forward pass costs about $P$ multiplications. Forward
# mode (or finite differences) needs one pass per parameter: about $P^2$. Reverse mode
# needs the forward pass, the $\delta$ recursion (one $W^\top \delta$ per layer, $\approx P$)
# and the outer products ($\approx P$): about $3P$, i.e. *three forward passes, however
# many parameters there are*. For a 100-million-parameter model that is the difference
# between the cost of 3 forward passes and of $10^8$ of them. The price is memory: the
# backward pass needs every $z^{(l)}$ and $a^{(l)}$ of the forward pass, which is why
# training uses more memory than inference.


# %%
def multiplications(sizes):
    """Multiplications for d loss / d input: from the left vs from the right."""
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    left = sum(n_in * n_out for n_in, n_out in layers)  # row vector times J_l
    right = sum(n_in * n_out * sizes[0] for n_in, n_out in layers[1:])  # J_l times J_(l-1)...J_1
    return left, right + sizes[0] * sizes[-1]


mnist = [784, 256, 256, 10]
left, right = multiplications(mnist)
P = sum(n_out * (n_in + 1) for n_in, n_out in zip(mnist[:-1], mnist[1:], strict=True))
print(f"MLP {mnist}: from the left {left:,} | from the right {right:,} ({right / left:.0f}x)")
print(f"parameters: reverse ~3P = {3 * P:,} | one pass per parameter ~P^2 = {P**2:,}")
assert right > 100 * left and P**2 > 10_000 * 3 * P

# %% [markdown]
# The same on the clock: finite differences (two forward passes per parameter) against
# one forward and one backward pass.

# %%
tnet = bp.Network.init(TIMING_SIZES, ["tanh", "tanh", "identity"], rng)
tX, tY = rng.normal(size=(TIMING_SIZES[0], 16)), rng.normal(size=(TIMING_SIZES[-1], 16))
start = time.perf_counter()
_, tgrads, _ = bp.loss_and_gradients(tnet, tX, tY)
t_backprop = time.perf_counter() - start
start = time.perf_counter()
numeric = {
    l: bp.numerical_gradient(lambda _: bp.loss_and_gradients(tnet, tX, tY)[0], tnet.W[l])
    for l in tnet.W
}
t_numeric = time.perf_counter() - start
n_weights = sum(w.size for w in tnet.W.values())
print(
    f"{n_weights} weights: backprop {t_backprop * 1e3:.2f} ms, "
    f"finite differences {t_numeric * 1e3:.0f} ms ({t_numeric / t_backprop:.0f}x slower)"
)
assert all(np.allclose(tgrads.dW[l], numeric[l], atol=1e-8) for l in tnet.W)

# %% [markdown]
# ## 8. PyTorch's autograd computes the same numbers
#
# Autograd is reverse mode too: it records the forward pass and then runs exactly this
# backward recursion (each operation supplies its local Jacobian-times-vector). Rebuilt in
# PyTorch the usual way, with examples as **rows** (`F.linear` computes
# $X W^\top + b$), in float64, the gradients agree with ours to rounding error.
# `tests/test_backprop.py` repeats this for many depths, widths, activations and both
# losses.

# %%
Wt = {l: torch.tensor(net.W[l], device=TORCH_DEVICE, requires_grad=True) for l in net.W}
bt = {l: torch.tensor(net.b[l].ravel(), device=TORCH_DEVICE, requires_grad=True) for l in net.b}
h = torch.tensor(X.T, device=TORCH_DEVICE)  # (m, n0): PyTorch puts examples in rows
torch_act = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda t: t}
for l in net.W:
    h = torch_act[net.act[l].name](F.linear(h, Wt[l], bt[l]))
F.mse_loss(h, torch.tensor(Y.T, device=TORCH_DEVICE)).backward()
for l in net.W:
    assert np.allclose(Wt[l].grad.cpu().numpy(), batch.dW[l], rtol=1e-10, atol=1e-14)
    assert np.allclose(bt[l].grad.cpu().numpy(), batch.db[l].ravel(), rtol=1e-10, atol=1e-14)
print("PyTorch autograd == our four formulas, layer by layer (float64)")

# %% [markdown]
# ## Summary
#
# * Notation: $z^{(l)} = W^{(l)} a^{(l-1)} + b^{(l)}$, $a^{(l)} = \sigma_l(z^{(l)})$,
#   error signals $\delta^{(l)} = \partial \mathcal{L} / \partial z^{(l)}$.
# * Backpropagation: $\delta^{(L)} = \partial \ell / \partial a^{(L)} \odot \sigma_L'$;
#   $\delta^{(l)} = (W^{(l+1)})^\top \delta^{(l+1)} \odot \sigma_l'$;
#   $\partial \mathcal{L} / \partial W^{(l)} = \delta^{(l)} a^{(l-1)\top}$;
#   $\partial \mathcal{L} / \partial b^{(l)} = \delta^{(l)}$.
# * Softmax with cross-entropy gives $\delta^{(L)} = p - y$.
# * Mini-batches: the same formulas on matrices with examples as columns;
#   $\Delta A^\top$ sums the outer products; the $\frac1m$ enters once, at the output.
# * Reverse mode costs a few forward passes whatever the number of parameters; forward
#   mode or finite differences cost one pass per parameter.
#
# Now in the library: `dlnotes.backprop` — `Network`, `forward`, `backward`,
# `loss_and_gradients`, `ACTIVATIONS`, `LOSSES`, `softmax`.
# Next: `mn03-two_layer_example.py`, every number of a small network by hand.

# %% [markdown]
# ## Exercises
#
# **1. $\delta = p - y$ by hand.** A network's output layer gives the logits
# $z = (0,\ \log 2,\ \log 5)^\top$ for an example of class $c = 0$. Work out by hand
# $p = \operatorname{softmax}(z)$, the loss $-\log p_0$ and the error signal
# $\delta^{(L)}$, then check all three against `dlnotes.backprop` (a one-layer identity
# network whose output *is* $z$) and against PyTorch's `F.cross_entropy`.

# %% tags=["solution"]
# e^z = (1, 2, 5), sum 8: p = (1/8, 2/8, 5/8); loss = -log(1/8) = log 8 = 2.0794;
# delta = p - y = (1/8 - 1, 2/8, 5/8) = (-0.875, 0.25, 0.625).
z_logits = np.array([[0.0], [np.log(2.0)], [np.log(5.0)]])
hand_p, hand_loss, hand_delta = [0.125, 0.25, 0.625], np.log(8.0), [-0.875, 0.25, 0.625]
one_layer = bp.Network({1: np.eye(3)}, {1: np.zeros((3, 1))}, {1: "identity"})
value, g, _ = bp.loss_and_gradients(one_layer, z_logits, np.array([0]), "cross_entropy")
assert np.allclose(bp.softmax(z_logits).ravel(), hand_p)
assert np.isclose(value, hand_loss) and np.allclose(g.delta[1].ravel(), hand_delta)
z_t = torch.tensor(z_logits.T, device=TORCH_DEVICE, requires_grad=True)
F.cross_entropy(z_t, torch.tensor([0], device=TORCH_DEVICE)).backward()
assert np.allclose(z_t.grad.cpu().numpy().ravel(), hand_delta, rtol=1e-12)
print(f"p = {hand_p}, loss = log 8 = {value:.4f}, delta = {g.delta[1].ravel()}")

# %% [markdown]
# **2. A gradient check catches a planted bug.** Below is `backward` with one slip: the
# hidden layers' recursion forgets the factor $\sigma_l'(z^{(l)})$. Run a gradient check
# (central differences against the formulas) on the network of section 1 and show that
# it finds the bug: which layers' gradients are wrong, and which are still right? Why?


# %% tags=["solution"]
def buggy_backward(net, trace, dL_daL):
    """`bp.backward` with the hidden layers' sigma' left out."""
    delta = {net.L: dL_daL * net.act[net.L].df(trace.z[net.L])}
    for l in range(net.L - 1, 0, -1):
        delta[l] = net.W[l + 1].T @ delta[l + 1]  # the slip: no * sigma'(z[l])
    return {l: delta[l] @ trace.a[l - 1].T for l in delta}


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30)


fwd = bp.forward(net, X)
buggy = buggy_backward(net, fwd, mse.grad(fwd.a[net.L], Y))
for l in net.W:
    numeric = bp.numerical_gradient(lambda _: bp.loss_and_gradients(net, X, Y)[0], net.W[l])
    right, wrong = relative_error(batch.dW[l], numeric), relative_error(buggy[l], numeric)
    print(f"layer {l}: correct backward {right:.1e} | buggy backward {wrong:.1e}")
    assert right < 1e-7
    # The output layer's delta needs no hidden sigma', so only the layers below it break.
    assert wrong < 1e-7 if l == net.L else wrong > 1e-2

# %% [markdown]
# **3. An activation of your own.** The *softplus* $\sigma(z) = \log(1 + e^z)$ is a smooth
# ReLU. Find its derivative, define it as a `bp.Activation`, build a
# $[3, 4, 4, 2]$ network with softplus hidden layers, and check the gradients of every
# weight from `bp.loss_and_gradients` against PyTorch's autograd (`F.softplus`) on a batch
# of 5 examples with cross-entropy.

# %% tags=["solution"]
# d/dz log(1 + e^z) = e^z / (1 + e^z) = sigmoid(z); logaddexp(0, z) avoids overflow.
softplus = bp.Activation("softplus", lambda z: np.logaddexp(0.0, z), bp.activation("sigmoid").f)
assert np.allclose(
    softplus.df(points),
    bp.numerical_gradient(lambda v: float(softplus.f(v).sum()), points.copy()),
    atol=1e-8,
)
drawn = bp.Network.init([3, 4, 4, 2], ["identity"] * 3, rng)  # random W and b to start from
sp_net = bp.Network(drawn.W, drawn.b, {1: softplus, 2: softplus, 3: "identity"})
sp_X, sp_labels = rng.normal(size=(3, 5)), np.array([0, 1, 1, 0, 1])
_, sp_grads, _ = bp.loss_and_gradients(sp_net, sp_X, sp_labels, "cross_entropy")
Ws_t = {l: torch.tensor(sp_net.W[l], device=TORCH_DEVICE, requires_grad=True) for l in sp_net.W}
bs_t = {
    l: torch.tensor(sp_net.b[l].ravel(), device=TORCH_DEVICE, requires_grad=True) for l in sp_net.b
}
h_t = torch.tensor(sp_X.T, device=TORCH_DEVICE)
for l in sp_net.W:
    h_t = F.linear(h_t, Ws_t[l], bs_t[l])
    h_t = F.softplus(h_t) if l < sp_net.L else h_t
F.cross_entropy(h_t, torch.tensor(sp_labels, device=TORCH_DEVICE)).backward()
for l in sp_net.W:
    assert np.allclose(Ws_t[l].grad.cpu().numpy(), sp_grads.dW[l], rtol=1e-10, atol=1e-14)
    assert np.allclose(bs_t[l].grad.cpu().numpy(), sp_grads.db[l].ravel(), rtol=1e-10, atol=1e-14)
print("softplus network: our formulas == PyTorch autograd for every W and b")
