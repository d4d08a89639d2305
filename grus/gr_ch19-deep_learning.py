# %% [markdown]
# # Ch. 19 — Deep learning: a small PyTorch-shaped library in pure Python
#
# Source: Joel Grus, *Data Science from Scratch* (2nd ed.), chapter 19.
#
# Chapter 18 wrote one network as nested weight lists and its gradient by hand. Here we
# build the pieces a deep-learning library is made of, each with its own backward pass:
# tensors as nested lists, layers (`Linear`, `Sigmoid`, `Tanh`, `Relu`, `Dropout`,
# `Sequential`), losses (sum of squared errors, softmax cross-entropy) and optimizers
# (gradient descent, momentum). With them we train XOR and FizzBuzz again, then a digit
# classifier, and save and load its weights as JSON. The names are PyTorch's
# (`Linear(in_features, out_features)`, `weight`, `zero_grad`, `step`, `state_dict`), so
# this reads like the torch code in `raschka/`.
#
# Library names used (all pure Python, in `dlnotes.scratch`): `tensor` (`shape`,
# `tensor_sum`, `tensor_apply`, `tensor_combine`, `zeros_like`, `random_tensor`),
# `layers`, `losses`, `optim`, `train` (`train_epoch`, `evaluate`), `fizzbuzz`, and
# `mnist` (`load`, `read_idx`, `to_vectors`).
#
# Digits: full MNIST (60,000 + 10,000 images, fetched and checksummed by `dlnotes.data`)
# when it can be downloaded; offline, and always in smoke mode, scikit-learn's bundled
# 8x8 digits (1,797 images, no download). Runtime: full about 4 minutes offline (most of
# it the book's 1,000 FizzBuzz epochs), about 10 minutes more with MNIST (pure Python
# touches every one of its pixels); smoke a few seconds.

# %%
import array
import math
import operator
import random
import statistics

import matplotlib.pyplot as plt
from matplotlib.ticker import ScalarFormatter
from sklearn.datasets import load_digits
from tqdm.auto import trange

from dlnotes import env
from dlnotes.errors import CheckpointError, DataError, InputError
from dlnotes.scratch import fizzbuzz as fb
from dlnotes.scratch import mnist
from dlnotes.scratch.functional import sigmoid, softmax, tanh
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
from dlnotes.scratch.losses import SSE, Loss, SoftmaxCrossEntropy
from dlnotes.scratch.optim import GradientDescent, Momentum
from dlnotes.scratch.tensor import (
    argmax,
    one_hot,
    random_tensor,
    shape,
    tensor_apply,
    tensor_combine,
    tensor_sum,
    zeros_like,
)
from dlnotes.scratch.train import evaluate, train_epoch

# %%
SMOKE = env.SMOKE
DEVICE = env.device()  # unused: everything here is pure Python on the CPU
env.seed_everything(123)
XOR_EPOCHS = env.choose(full=3000, smoke=3000)  # XOR is cheap; smoke keeps the book's run
FIZZ_SSE_EPOCHS = env.choose(full=1000, smoke=2)
FIZZ_CE_EPOCHS = env.choose(full=150, smoke=2)
DIGIT_EPOCHS = env.choose(full=10, smoke=1)  # MNIST always gets the book's one epoch
RUNS = env.repo_root() / "runs" / "grus"
print(env.banner(DEVICE), "| this chapter runs in pure Python")

# %% [markdown]
# ## 19.1 The tensor
#
# A tensor is a list of floats (a vector) or a list of equally shaped tensors. A handful
# of functions that walk the nesting give us everything we need: the shape, the sum of all
# entries, a function applied to every entry, two tensors combined entry by entry.

# %%
t = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
print("shape", shape(t), "| sum", tensor_sum(t), "| doubled", tensor_apply(lambda x: 2 * x, t))
assert shape([1.0, 2.0, 3.0]) == [3] and shape(t) == [2, 3]
assert tensor_sum(t) == 21.0 and zeros_like(t) == [[0.0] * 3] * 2
assert tensor_combine(operator.mul, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == [4.0, 10.0, 18.0]
try:
    tensor_combine(operator.add, t, [1.0, 2.0, 3.0])
except InputError as exc:
    print("mismatched shapes:", exc)

# %% [markdown]
# ## 19.2 The layer abstraction
#
# A layer knows its `forward` computation and its `backward` one: given the gradient of
# the loss with respect to its output, it returns the gradient with respect to its input,
# and *adds* the gradients of its parameters into `grads()` (in the order of `params()`),
# as PyTorch adds into `.grad`; `zero_grad()` clears them. (The book overwrites instead;
# that agrees as long as every backward pass is followed by one step.) The sigmoid layer
# shows the pattern: `forward` saves what `backward` needs.

# %%
env.show(Sigmoid)

# %% [markdown]
# ## 19.3 The linear layer
#
# `Linear(in_features, out_features)` computes $y = W x + b$ with `weight` $W$ of shape
# (out, in), as in PyTorch: output $o$ is
#
# $$y_o = \sum_i W_{oi}\, x_i + b_o.$$
#
# Its backward pass receives $g_o = \partial L / \partial y_o$ for every output and needs
# three things, each one application of the chain rule,
# $\partial L / \partial \theta = \sum_p g_p\, \partial y_p / \partial \theta$:
#
# * **weights**: $W_{oi}$ appears only in $y_o$, multiplied by $x_i$, so
#   $\partial L / \partial W_{oi} = g_o\, x_i$: the outer product $g\, x^\top$, "error at
#   the receiving end times signal at the sending end";
# * **biases**: $b_o$ appears only in $y_o$, with slope 1, so $\partial L / \partial b_o = g_o$;
# * **inputs**: $x_i$ appears in *every* output, in $y_o$ with slope $W_{oi}$, so the paths
#   add up: $\partial L / \partial x_i = \sum_o g_o W_{oi}$, i.e. $W^\top g$, column $i$ of
#   $W$ dotted with $g$. This is what the layer below receives as its $g$.
#
# (These are the formulas of the math notes, `mn02-backpropagation.py`, for one layer.)
# Written out for one sample, with the gradients *added* into `weight_grad` and
# `bias_grad`:


# %%
class ScratchLinear(Layer):
    """y = W x + b for one sample: the derivation above, line by line."""

    param_names = ("weight", "bias")

    def __init__(self, weight: list[list[float]], bias: list[float]) -> None:
        self.weight, self.bias = weight, bias
        self.weight_grad, self.bias_grad = zeros_like(weight), zeros_like(bias)

    def forward(self, x: list[float]) -> list[float]:
        self.input = x
        return [
            sum(w * xi for w, xi in zip(row, x, strict=True)) + b
            for row, b in zip(self.weight, self.bias, strict=True)
        ]

    def backward(self, g: list[float]) -> list[float]:
        x = self.input
        for o, g_o in enumerate(g):
            for i, x_i in enumerate(x):
                self.weight_grad[o][i] += g_o * x_i  # dL/dW_oi = g_o x_i
            self.bias_grad[o] += g_o  # dL/db_o = g_o
        return [sum(g[o] * self.weight[o][i] for o in range(len(g))) for i in range(len(x))]


random.seed(0)
library = Linear(3, 2)
library.bias = [0.1, -0.2]
mine = ScratchLinear([list(row) for row in library.weight], list(library.bias))
x, g = [1.0, -2.0, 0.5], [0.3, -1.0]
assert mine(x) == library(x)
for _ in range(2):  # twice: both must add into their gradients
    dx_mine, dx_library = mine.backward(g), library.backward(g)
assert all(math.isclose(a, b, rel_tol=1e-15) for a, b in zip(dx_mine, dx_library, strict=True))
assert mine.weight_grad == library.weight_grad == [[2 * go * xi for xi in x] for go in g]
assert mine.bias_grad == library.bias_grad == [0.6, -2.0]
print("forward", mine(x), "| dL/dx", [round(v, 6) for v in dx_mine])
print("dL/dW after two backward passes", mine.weight_grad)

# %% [markdown]
# The library's `Linear` computes exactly this; it also takes a batch (a list of
# samples), checks its sizes and skips the rows that a `Relu` or `Dropout` zeroed. From
# here on we use it:

# %%
env.show(Linear.forward)
env.show(Linear._backward)

# %% [markdown]
# The initial weights matter. Glorot and Bengio's *xavier* initialisation draws them from
# a normal distribution with variance $2 / (\text{fan}_{in} + \text{fan}_{out})$, so signals
# neither grow nor shrink through the layers. **A slip in the book**: its `random_normal`
# multiplies by the *variance* where the standard deviation belongs, so its xavier weights
# for a 200x100 layer have standard deviation $2/300 \approx 0.0067$ instead of
# $\sqrt{2/300} \approx 0.082$, twelve times too small. (Its `normal` init has variance 1,
# where the mix-up does not show.) Ours, measured:

# %%
w = random_tensor(200, 100, init="xavier")
measured = statistics.pstdev(x for row in w for x in row)
glorot, book = math.sqrt(2 / 300), 2 / 300
print(f"xavier std for 200x100: {measured:.4f} (Glorot's {glorot:.4f}, the book's {book:.4f})")
assert abs(measured - glorot) < 0.003
uniform = [x for row in random_tensor(100, 100, init="uniform") for x in row]
assert 0 <= min(uniform) and max(uniform) < 1 and abs(statistics.fmean(uniform) - 0.5) < 0.01

# %% [markdown]
# ## 19.4 Neural networks as a sequence of layers
#
# `Sequential` runs its layers forwards and their backward passes in reverse, and names
# their parameters `"0.weight"`, `"0.bias"`, `"2.weight"`... as `torch.nn.Sequential` does.
# Before trusting any backward pass we check it against central finite differences, for
# every parameter of a small network under softmax cross-entropy (the tests also compare
# every layer and loss with PyTorch's autograd):

# %%
random.seed(0)
net = Sequential(Linear(3, 4), Tanh(), Linear(4, 5), Relu(), Linear(5, 2), Sigmoid())
print(net)
x, target, loss_fn, h = [0.5, -1.0, 2.0], [1.0, 0.0], SoftmaxCrossEntropy(), 1e-6
net.zero_grad()
net.backward(loss_fn.gradient(net(x), target))
worst = 0.0
for param, grad in zip(net.params(), net.grads(), strict=True):
    pairs = zip(param, grad, strict=True) if shape(param)[1:] else [(param, grad)]  # 2-D or 1-D
    for row, grad_row in pairs:
        for i, v in enumerate(row):
            row[i] = v + h
            up = loss_fn(net(x), target)
            row[i] = v - h
            down = loss_fn(net(x), target)
            row[i] = v
            worst = max(worst, abs((up - down) / (2 * h) - grad_row[i]))
print(f"{net.num_params()} parameters; largest difference from finite differences: {worst:.1e}")
assert worst < 1e-8

# %% [markdown]
# ## 19.5 Loss and optimization
#
# A loss returns a number and its gradient with respect to the predictions. `SSE` is the
# sum of squared errors $\sum (p - y)^2$ with gradient $2 (p - y)$: the factor 2 belongs to
# it (chapter 18's backpropagation of the book drops it). An optimizer updates the
# parameters in place from their gradients: `GradientDescent` takes
# $p \leftarrow p - \text{lr} \cdot g$; `Momentum` is `torch.optim.SGD` with momentum
# $\mu$: $v \leftarrow \mu v + g$, $p \leftarrow p - \text{lr} \cdot v$.
#
# Both pieces are short enough to write here. The SSE's gradient is the chain rule on
# each term: $\frac{\partial}{\partial p_j} \sum_k (p_k - y_k)^2 = 2\,(p_j - y_j)$; gradient
# descent moves every entry of every parameter against its gradient. We check them
# against the library's `SSE` and `GradientDescent`, and the gradient against central
# differences:


# %%
class ScratchSSE(Loss):
    """Sum of squared errors of one prediction vector, and its gradient 2 (p - y)."""

    def loss(self, predicted: list[float], target: list[float]) -> float:
        return sum((p - y) ** 2 for p, y in zip(predicted, target, strict=True))

    def gradient(self, predicted: list[float], target: list[float]) -> list[float]:
        return [2 * (p - y) for p, y in zip(predicted, target, strict=True)]


class ScratchGradientDescent:
    """p <- p - lr g for every entry of every parameter, in place."""

    def __init__(self, model: Layer, lr: float) -> None:
        self.model, self.lr = model, lr

    def step(self) -> None:
        for param, grad in zip(self.model.params(), self.model.grads(), strict=True):
            rows = zip(param, grad, strict=True) if shape(param)[1:] else [(param, grad)]
            for p_row, g_row in rows:
                p_row[:] = [p - self.lr * d for p, d in zip(p_row, g_row, strict=True)]


p, y = [0.2, 0.9, -0.4], [0.0, 1.0, 0.0]
assert ScratchSSE().loss(p, y) == SSE().loss(p, y)
assert ScratchSSE().gradient(p, y) == SSE().gradient(p, y)
for j in range(3):
    up, down = list(p), list(p)
    up[j] += h
    down[j] -= h
    numeric = (ScratchSSE().loss(up, y) - ScratchSSE().loss(down, y)) / (2 * h)
    assert math.isclose(numeric, ScratchSSE().gradient(p, y)[j], rel_tol=1e-6)
random.seed(1)
nets = [Sequential(Linear(3, 4), Tanh(), Linear(4, 3)) for _ in range(2)]
nets[1].load_state_dict(nets[0].state_dict())
optimizers = [ScratchGradientDescent(nets[0], lr=0.1), GradientDescent(nets[1], lr=0.1)]
for _ in range(3):  # three steps of each, from the same start
    for model, optimizer in zip(nets, optimizers, strict=True):
        model.zero_grad()
        model.backward(ScratchSSE().gradient(model(x), y))
        optimizer.step()
assert nets[0].state_dict() == nets[1].state_dict()
print("ScratchSSE == SSE (and central differences);", end=" ")
print("3 steps of ScratchGradientDescent == GradientDescent, weight for weight")

# %% [markdown]
# The book's momentum keeps an average $u \leftarrow \mu u + (1 - \mu) g$ instead of
# `Momentum`'s $v$; unrolled, $u = (1 - \mu) v$, so its learning rate 0.1 with $\mu = 0.9$
# is our 0.01, step for step:

# %%
book_w, book_u, ours = 1.0, 0.0, Linear(1, 1, init="normal")
ours.weight, ours.bias = [[1.0]], [0.0]
opt = Momentum(ours, lr=0.1 * (1 - 0.9), momentum=0.9)
for _ in range(5):  # minimise w**2 both ways
    book_u = 0.9 * book_u + 0.1 * (2 * book_w)
    book_w -= 0.1 * book_u
    opt.zero_grad()
    ours([1.0])
    ours.backward([2 * ours.weight[0][0]])  # d(w**2)/dw, fed through the input x = 1
    opt.step()
print(f"after 5 steps: book's rule {book_w:.12f}, ours {ours.weight[0][0]:.12f}")
assert math.isclose(book_w, ours.weight[0][0], rel_tol=1e-12)

# %% [markdown]
# ## 19.6 Example: XOR revisited
#
# The chapter-18 XOR network as layers: `Linear(2, 2)`, `Sigmoid`, `Linear(2, 1)`, trained
# with gradient descent on the squared error. `train_epoch` is the loop the rest of the
# chapter uses: for each example, `zero_grad`, forward, loss, backward, `step`.

# %%
env.show(train_epoch)

# %%
xor_x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
xor_y = [[0.0], [1.0], [1.0], [0.0]]
random.seed(0)
xor_net = Sequential(Linear(2, 2), Sigmoid(), Linear(2, 1))
opt = GradientDescent(xor_net, lr=0.1)
for _ in trange(XOR_EPOCHS, desc="XOR"):
    xor_loss = train_epoch(xor_net, SSE(), opt, xor_x, xor_y)
print(f"loss {xor_loss:.5f}; predictions", [round(xor_net(x)[0], 3) for x in xor_x])
for name, param in xor_net.state_dict().items():
    print(f"  {name}: {param}")
assert [round(xor_net(x)[0]) for x in xor_x] == [0, 1, 1, 0] and xor_loss < 0.01

# %% [markdown]
# ## 19.7 Other activation functions
#
# `Tanh` squashes to (-1, 1) and is centred at 0, which often trains faster than the
# sigmoid; `Relu` is $\max(x, 0)$, with derivative 1 for positive inputs and 0 otherwise.
# Large inputs must not overflow: `math.exp(1000)` raises, so the sigmoid only ever
# exponentiates non-positive numbers, tanh is `math.tanh`, and softmax subtracts the
# largest logit first.

# %%
big = [-1000.0, -1.0, 0.0, 1.0, 1000.0]
print("tanh   ", Tanh()(big))
print("relu   ", Relu()(big))
print("sigmoid", Sigmoid()(big))
print("softmax", softmax([1000.0, 0.0, -1000.0]))
assert Tanh()(big)[0] == -1.0 and Tanh()(big)[-1] == 1.0 and Sigmoid()(big)[0] == 0.0
assert softmax([1000.0, 0.0, -1000.0]) == [1.0, math.exp(-1000.0), 0.0]
assert tanh(0.5) == math.tanh(0.5)

# %% [markdown]
# ## 19.8 Example: FizzBuzz revisited
#
# Chapter 18's problem with the new pieces: 10 binary digits in, 25 tanh units, four
# sigmoid outputs, squared error, momentum (the book's 0.1 and 0.9, i.e. our `lr=0.01`),
# weights uniform in [0, 1) as in the book, and the book's 1,000 epochs. It learns
# slowly. We record the accuracy on 1-100 after every epoch, to compare with the
# cross-entropy run of 19.9.


# %%
def fizzbuzz_report(model: Layer) -> float:
    """Print what the model says for 1-100 and the numbers it gets wrong; return accuracy."""
    said = {n: argmax(model(fb.binary_encode(n))) for n in fb.TEST_RANGE}
    wrong = [n for n, k in said.items() if k != fb.fizzbuzz_class(n)]
    print(" ".join(fb.say(n, k) for n, k in said.items()))
    print("misclassified:", ", ".join(f"{n} (said {fb.say(n, said[n])})" for n in wrong) or "none")
    return 1 - len(wrong) / len(said)


def fizzbuzz_accuracy(model: Layer) -> float:
    """The fraction of 1-100 the model gets right."""
    right = sum(argmax(model(fb.binary_encode(n))) == fb.fizzbuzz_class(n) for n in fb.TEST_RANGE)
    return right / len(fb.TEST_RANGE)


# %%
fizz_x, fizz_y = fb.dataset(fb.TRAIN_RANGE)
random.seed(0)
fizz_sse = Sequential(
    Linear(10, 25, init="uniform"), Tanh(), Linear(25, 4, init="uniform"), Sigmoid()
)
opt = Momentum(fizz_sse, lr=0.01, momentum=0.9)
curves = {"sigmoid outputs, squared error": []}  # accuracy on 1-100 after every epoch
bar = trange(FIZZ_SSE_EPOCHS, desc="FizzBuzz, SSE")
for _ in bar:
    loss = train_epoch(fizz_sse, SSE(), opt, fizz_x, fizz_y)
    curves["sigmoid outputs, squared error"].append(fizzbuzz_accuracy(fizz_sse))
    bar.set_postfix(loss=f"{loss:.1f}", test=f"{curves['sigmoid outputs, squared error'][-1]:.0%}")
accuracy_sse = fizzbuzz_report(fizz_sse)
assert math.isclose(accuracy_sse, curves["sigmoid outputs, squared error"][-1])
print(f"test accuracy on 1-100 (sigmoid outputs, squared error): {accuracy_sse:.0%}")
if not SMOKE:
    assert accuracy_sse >= 0.85

# %% [markdown]
# ## 19.9 Softmaxes and cross-entropy
#
# For classification the better loss turns the outputs (logits $z$) into probabilities with
# softmax and takes the negative log-likelihood of the right class $c$:
# $L = -\sum_k y_k \log \operatorname{softmax}(z)_k = \operatorname{logsumexp}(z) - z_c$
# for a one-hot $y$. Its gradient is pleasantly simple, $\operatorname{softmax}(z) - y$.
# We compute the loss through logsumexp, so it never overflows nor takes $\log 0$ (the
# book adds $10^{-30}$ inside the log instead):

# %%
ce = SoftmaxCrossEntropy()
huge, class_1 = [1000.0, -1000.0, 0.0], [0.0, 1.0, 0.0]
print(f"loss of logits {huge} for class 1: {ce(huge, class_1)}")
assert ce(huge, class_1) == 2000.0  # logsumexp(z) = 1000, minus z_1 = -1000
assert ce.gradient([0.0, 0.0], [1.0, 0.0]) == [-0.5, 0.5]  # softmax (0.5, 0.5) minus y

# %% [markdown]
# The FizzBuzz network again, without the final sigmoid (its four outputs are now logits),
# for 150 epochs (the book: 100):

# %%
random.seed(0)
fizz_ce = Sequential(Linear(10, 25, init="uniform"), Tanh(), Linear(25, 4, init="uniform"))
opt = Momentum(fizz_ce, lr=0.01, momentum=0.9)
curves["softmax cross-entropy"] = []
bar = trange(FIZZ_CE_EPOCHS, desc="FizzBuzz, cross-entropy")
for _ in bar:
    loss = train_epoch(fizz_ce, ce, opt, fizz_x, fizz_y)
    curves["softmax cross-entropy"].append(fizzbuzz_accuracy(fizz_ce))
    bar.set_postfix(loss=f"{loss:.1f}", test=f"{curves['softmax cross-entropy'][-1]:.0%}")
accuracy_ce = fizzbuzz_report(fizz_ce)
print(f"test accuracy on 1-100 (softmax cross-entropy): {accuracy_ce:.0%}")
assert math.isclose(accuracy_ce, curves["softmax cross-entropy"][-1])
if not SMOKE:
    assert accuracy_ce >= 0.96

# %% [markdown]
# The two runs epoch by epoch (in full mode on a logarithmic epoch axis). The dotted line is what
# always answering "number" earns: 53 of 1-100 are plain numbers (chapter 18).


# %%
def first_epoch(curve: list[float], level: float) -> int | None:
    """The first epoch (counting from 1) whose accuracy reaches `level`, if any."""
    return next((epoch for epoch, acc in enumerate(curve, start=1) if acc >= level), None)


fig, ax = plt.subplots(figsize=(7, 3.8))
for name, curve in curves.items():
    ax.plot(range(1, len(curve) + 1), curve, "o-" if len(curve) < 30 else "-", label=name)
    print(
        f"{name}: {len(curve)} epochs; 85 % first at epoch {first_epoch(curve, 0.85)}, "
        f"90 % at {first_epoch(curve, 0.90)}; best {max(curve):.0%}, last {curve[-1]:.0%}"
    )
ax.axhline(0.53, color="k", ls=":", label="always 'number': 53 %")
if max(len(curve) for curve in curves.values()) >= 20:  # a log axis shows both runs' starts
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
ax.set(
    title="FizzBuzz: accuracy on 1-100 after each epoch",
    xlabel="epoch",
    ylabel="fraction right",
    ylim=(0, 1),
)
ax.legend(loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# In full mode the squared-error run first reaches 90 % at epoch 268 and ends, after
# 1,000 epochs, at 90 % (its best along the way: 92 %). The cross-entropy run reaches
# 90 % at epoch 60, less than a quarter as many epochs, and ends at 97 %.
#
# Both start with a long flat stretch. The cross-entropy run starts at 53 %, what saying
# "number" for everything earns, as chapter 18's network did. The squared-error run sits
# at 15 % for twenty-odd epochs for another reason: with weights uniform in [0, 1), every
# output unit starts with an input between about 7.6 and 12.9, deep in the sigmoid's flat
# part, where its derivative $\sigma (1 - \sigma)$ is between $10^{-6}$ and $10^{-3}$. The
# squared error's gradient has to pass through that derivative, so it barely reaches the
# weights, and the accuracy stays at its starting value, where the network answers "buzz"
# for nearly everything. Cross-entropy on the logits has no sigmoid to pass: its
# gradient is $\operatorname{softmax}(z) - y$, large whenever the answer is wrong.

# %%
random.seed(0)
fresh = Sequential(Linear(10, 25, init="uniform"), Tanh(), Linear(25, 4, init="uniform"))
starts = [fresh(fb.binary_encode(n)) for n in fb.TEST_RANGE]
lowest, highest = min(min(z) for z in starts), max(max(z) for z in starts)
slopes = [sigmoid(z) * (1 - sigmoid(z)) for z in (lowest, highest)]
said_buzz = sum(argmax(z) == 2 for z in starts)
print(
    f"inputs of the output sigmoids at the start: {lowest:.1f} to {highest:.1f}; "
    f"sigmoid' there: {slopes[1]:.1e} to {slopes[0]:.1e}; 'buzz' for {said_buzz} of 1-100"
)
assert lowest > 7 and max(slopes) < 1e-3 and said_buzz > 90
if not SMOKE:
    sse_curve, ce_curve = curves["sigmoid outputs, squared error"], curves["softmax cross-entropy"]
    assert first_epoch(ce_curve, 0.9) * 4 < first_epoch(sse_curve, 0.9)
    assert max(ce_curve) > max(sse_curve) and ce_curve[-1] > sse_curve[-1]

# %% [markdown]
# ## 19.10 Dropout
#
# While training, `Dropout(p)` zeroes each entry with probability $p$, so no unit can rely
# on any other being there. Like `torch.nn.Dropout` it scales the kept entries by
# $1 / (1 - p)$, which keeps the expected output equal to the input, and in evaluation mode
# (`model.eval()`) it does nothing. (The book keeps entries unscaled while training and
# multiplies by $1 - p$ at evaluation: the same in expectation, but the evaluation path
# then differs from PyTorch's.)

# %%
drop = Dropout(0.1)
ones = [1.0] * 10_000
dropped = drop(ones)
print(f"training: {dropped.count(0.0)} of 10,000 zeroed, mean {statistics.fmean(dropped):.3f}")
assert 800 < dropped.count(0.0) < 1200 and abs(statistics.fmean(dropped) - 1) < 0.05
drop.eval()
assert drop(ones) == ones

# %% [markdown]
# ## 19.11 Example: digits
#
# MNIST when it can be downloaded (full mode); offline and in smoke mode, scikit-learn's
# 8x8 digits, shuffled with a fixed seed and split 80/20.

# %%
SOURCE = "digits"
if SMOKE:
    print("smoke mode: scikit-learn's bundled 8x8 digits (no download)")
else:
    try:
        train_images, train_labels = mnist.load("train")
        test_images, test_labels = mnist.load("test")
        SOURCE = "mnist"
    except DataError as exc:
        print(f"{exc}\n-> offline: using scikit-learn's bundled 8x8 digits instead of MNIST")
if SOURCE == "digits":
    bunch = load_digits()
    order = list(range(len(bunch.target)))
    random.Random(0).shuffle(order)
    cut = int(0.8 * len(order))
    pixels = bunch.images.astype("uint8")  # values 0..16
    train_images, test_images = (
        mnist.Idx((len(part), 8, 8), array.array("B", pixels[part].ravel().tolist()))
        for part in (order[:cut], order[cut:])
    )
    train_labels, test_labels = (
        mnist.Idx((len(part),), array.array("B", bunch.target[part].tolist()))
        for part in (order[:cut], order[cut:])
    )
SIDE, LEVELS = train_images.shape[1], 256 if SOURCE == "mnist" else 17
MIN_ACCURACY = 0.85 if SOURCE == "mnist" else 0.90  # 8x8 digits, 10 epochs: 93 % and 95 %
print(f"{SOURCE}: train {train_images.shape}, test {test_images.shape}")
if SOURCE == "mnist":
    assert train_images.shape == (60_000, 28, 28) and test_images.shape == (10_000, 28, 28)

# %%
fig, axes = plt.subplots(10, 10, figsize=(6, 6))
for ax, image in zip(axes.flat, train_images.rows()[:100], strict=True):
    ax.imshow([image[r * SIDE : (r + 1) * SIDE] for r in range(SIDE)], cmap="Greys")
    ax.axis("off")
fig.suptitle(f"the first 100 training images ({SOURCE})")
plt.show()

# %% [markdown]
# As in the book: subtract the mean pixel value, divide by the number of grey levels,
# flatten each image into a vector, and one-hot encode the labels. (`to_vectors` builds
# each pixel's float once, from a table of the possible values.)

# %%
mean_pixel = statistics.fmean(train_images.data)
train_x = mnist.to_vectors(train_images, mean_pixel, LEVELS)
test_x = mnist.to_vectors(test_images, mean_pixel, LEVELS)
train_y = [one_hot(label, 10) for label in train_labels.data]
test_y = [one_hot(label, 10) for label in test_labels.data]
assert abs(tensor_sum(train_x)) < 1e-9 * len(train_x) * len(train_x[0])  # centred
if SMOKE:
    train_x, train_y, test_x, test_y = train_x[:300], train_y[:300], test_x[:100], test_y[:100]
N_IN = len(train_x[0])
print(f"{len(train_x)} training and {len(test_x)} test vectors of {N_IN} values")

# %% [markdown]
# Logistic regression first: one `Linear` layer whose 10 outputs are logits for softmax
# cross-entropy. The book's optimiser for MNIST, momentum 0.01 and 0.99, is our
# `Momentum(lr=0.0001, momentum=0.99)`. MNIST gets the book's single epoch.


# %%
def fit(model: Layer, epochs: int, name: str) -> float:
    """Train with softmax cross-entropy and the book's momentum; return test accuracy."""
    optimizer, loss = Momentum(model, lr=1e-4, momentum=0.99), SoftmaxCrossEntropy()
    for epoch in range(1 if SOURCE == "mnist" else epochs):
        total = train_epoch(model, loss, optimizer, train_x, train_y, desc=f"{name} {epoch + 1}")
        _, acc = evaluate(model, loss, train_x, train_y)
        print(
            f"{name} epoch {epoch + 1}: loss {total / len(train_x):.3f}, train accuracy {acc:.3f}"
        )
    test_loss, test_acc = evaluate(model, loss, test_x, test_y)
    print(f"{name}: test loss {test_loss / len(test_x):.3f}, test accuracy {test_acc:.1%}")
    return test_acc


random.seed(0)
logistic = Linear(N_IN, 10)
logistic_acc = fit(logistic, DIGIT_EPOCHS, "logistic regression")
if not SMOKE:
    assert logistic_acc >= MIN_ACCURACY

# %% [markdown]
# A deeper network, with dropout after each hidden linear layer, as in the book:
# 30 tanh units, then 10, then the 10 logits. `fit` trains it in training mode and
# `evaluate` switches dropout off.

# %%
random.seed(0)
deep = Sequential(
    Linear(N_IN, 30), Dropout(0.1), Tanh(), Linear(30, 10), Dropout(0.1), Tanh(), Linear(10, 10)
)
deep_acc = fit(deep, DIGIT_EPOCHS, "deep")
if not SMOKE:
    assert deep_acc >= MIN_ACCURACY

# %% [markdown]
# ## 19.12 Saving and loading models
#
# `save_weights` writes the `state_dict` (names to nested lists) as JSON; Python writes
# every float with enough digits to read back the same number, so a load round-trips
# exactly. Loading checks every name and shape against the model first.

# %%
path = save_weights(deep, RUNS / f"{SOURCE}_deep.json")
copy = Sequential(
    Linear(N_IN, 30), Dropout(0.1), Tanh(), Linear(30, 10), Dropout(0.1), Tanh(), Linear(10, 10)
)
load_weights(copy, path)
print(f"saved {deep.num_params()} parameters to {path} ({path.stat().st_size:,} bytes)")
assert copy.state_dict() == deep.state_dict()
assert evaluate(copy, SoftmaxCrossEntropy(), test_x, test_y) == evaluate(
    deep, SoftmaxCrossEntropy(), test_x, test_y
)
try:
    load_weights(Sequential(Linear(N_IN, 20), Tanh(), Linear(20, 10)), path)
except CheckpointError as exc:
    print("loading into a narrower network:", exc)

# %% [markdown]
# ## Summary
#
# * A deep-learning library is layers that each know their own derivative, losses with
#   their gradients, and optimizers that step parameters in place; autograd (appendix A.4 of
#   Raschka's book, via PyTorch) automates exactly the `backward` methods written here.
# * Keep a loss and its gradient together (SSE has the factor 2), draw xavier weights with
#   *standard deviation* $\sqrt{2 / (\text{fan}_{in} + \text{fan}_{out})}$, and never
#   exponentiate a large positive number.
# * The book's momentum $(\text{lr}, \mu)$ is PyTorch's SGD with learning rate
#   $\text{lr}(1 - \mu)$; with it, a 10-25-4 tanh network learns FizzBuzz from 101-1023 and
#   gets 1-100 nearly all right.
#
# Now in the library (`dlnotes.scratch`): `tensor` (`shape`, `tensor_sum`, `tensor_apply`,
# `tensor_combine`, `zeros_like`, `random_tensor`), `functional` (`sigmoid`, `tanh`,
# `softmax`, `logsumexp`), `layers` (`Layer`, `Linear`, `Sigmoid`, `Tanh`, `Relu`,
# `Dropout`, `Sequential`, `save_weights`, `load_weights`), `losses` (`SSE`,
# `SoftmaxCrossEntropy`), `optim` (`GradientDescent`, `Momentum`), `train` (`train_epoch`,
# `evaluate`) and `mnist` (`read_idx`, `load`, `to_vectors`).

# %% [markdown]
# ## Exercises
#
# **1. A layer of your own.** Write a `LeakyRelu(slope)` layer, $f(x) = x$ for $x > 0$ and
# $\text{slope} \cdot x$ otherwise, with its own `backward`, so that it works on one sample
# and on a batch. Check its outputs and input gradients against PyTorch's
# `F.leaky_relu` and autograd, inside a small `Sequential` trained for one step.

# %% tags=["solution"]
import torch
import torch.nn.functional as F


class LeakyRelu(Layer):
    """x for x > 0, slope * x otherwise; derivative 1 or slope (slope at 0, as torch)."""

    def __init__(self, slope: float = 0.01) -> None:
        self.slope = slope

    def forward(self, x):
        self.input = x
        return tensor_apply(lambda v: v if v > 0 else self.slope * v, x)

    def backward(self, grad):
        return tensor_combine(lambda v, g: g if v > 0 else self.slope * g, self.input, grad)


random.seed(2)
leaky_net = Sequential(Linear(3, 4), LeakyRelu(0.1), Linear(4, 2))
batch_x, batch_y = [[0.5, -1.0, 2.0], [-1.5, 0.3, 0.0]], [[1.0, 0.0], [0.0, 1.0]]
leaky_net.zero_grad()
dx_leaky = leaky_net.backward(ce.gradient(leaky_net(batch_x), batch_y))
state = {k: torch.tensor(v, dtype=torch.float64) for k, v in leaky_net.state_dict().items()}
params = {k: v.requires_grad_() for k, v in state.items()}
x_t = torch.tensor(batch_x, dtype=torch.float64, requires_grad=True)
hidden = F.leaky_relu(F.linear(x_t, params["0.weight"], params["0.bias"]), 0.1)
logits_t = F.linear(hidden, params["2.weight"], params["2.bias"])
F.cross_entropy(logits_t, torch.tensor(batch_y, dtype=torch.float64), reduction="sum").backward()
assert torch.allclose(torch.tensor(leaky_net(batch_x), dtype=torch.float64), logits_t)
assert torch.allclose(torch.tensor(dx_leaky, dtype=torch.float64), x_t.grad, rtol=1e-12)
for (name, _), grad in zip(leaky_net.named_params(), leaky_net.grads(), strict=True):
    assert torch.allclose(torch.tensor(grad, dtype=torch.float64), params[name].grad, rtol=1e-12)
assert LeakyRelu(0.1)([-2.0, 3.0]) == [-0.2, 3.0]
print(
    "LeakyRelu: outputs, input gradients and all",
    leaky_net.num_params(),
    "parameter gradients agree with PyTorch autograd",
)

# %% [markdown]
# **2. Momentum against PyTorch.** Train two copies of one small network for five steps on
# the same batch, one with our `Momentum(lr=0.05, momentum=0.9)` and one with
# `torch.optim.SGD(lr=0.05, momentum=0.9)`, and show the weights agree after every step.
# Then show that `Momentum` with `momentum=0` takes exactly the steps of `GradientDescent`.

# %% tags=["solution"]
random.seed(3)
ours = Sequential(Linear(3, 4), Tanh(), Linear(4, 2))
theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
theirs = theirs.double()
theirs.load_state_dict(
    {k: torch.tensor(v, dtype=torch.float64) for k, v in ours.state_dict().items()}
)
ours_opt = Momentum(ours, lr=0.05, momentum=0.9)
theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
batch_t = torch.tensor(batch_x, dtype=torch.float64)
targets_t = torch.tensor(batch_y, dtype=torch.float64)
for step in range(5):
    ours_opt.zero_grad()
    ours.backward(SSE().gradient(ours(batch_x), batch_y))
    ours_opt.step()
    theirs_opt.zero_grad()
    F.mse_loss(theirs(batch_t), targets_t, reduction="sum").backward()
    theirs_opt.step()
    for name, value in theirs.state_dict().items():
        assert torch.allclose(
            torch.tensor(ours.state_dict()[name], dtype=torch.float64), value, rtol=1e-12
        ), (
            step,
            name,
        )
print("5 steps of Momentum == torch.optim.SGD(momentum=0.9), weight for weight")
random.seed(4)
pair = [Sequential(Linear(3, 4), Tanh(), Linear(4, 2)) for _ in range(2)]
pair[1].load_state_dict(pair[0].state_dict())
for model, optimizer in zip(
    pair, [Momentum(pair[0], 0.1, momentum=0.0), GradientDescent(pair[1], 0.1)], strict=True
):
    for _ in range(5):
        optimizer.zero_grad()
        model.backward(SSE().gradient(model(batch_x), batch_y))
        optimizer.step()
assert pair[0].state_dict() == pair[1].state_dict()

# %% [markdown]
# **3. Cross-entropy, checked.** For a batch of logits and one-hot targets, compare
# `SoftmaxCrossEntropy`'s loss and gradient with PyTorch's `F.cross_entropy` (summed over
# the batch, as ours is). Explain why each row of the gradient adds up to zero, and why
# adding the same number to every logit of a row changes neither the loss nor the
# gradient.

# %% tags=["solution"]
# Each row of the gradient is softmax(z) - y: both add up to 1, so their difference to 0.
# softmax(z + c) = softmax(z), and logsumexp(z + c) - (z + c)_k = logsumexp(z) - z_k.
random.seed(5)
logits = random_tensor(6, 4, init="normal")
labels = [random.randrange(4) for _ in range(6)]
onehots = [one_hot(k, 4) for k in labels]
z_t = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
loss_t = F.cross_entropy(z_t, torch.tensor(labels), reduction="sum")
loss_t.backward()
grad = ce.gradient(logits, onehots)
assert math.isclose(ce(logits, onehots), loss_t.item(), rel_tol=1e-12)
assert torch.allclose(torch.tensor(grad, dtype=torch.float64), z_t.grad, rtol=1e-12)
assert all(abs(sum(row)) < 1e-12 for row in grad)
shifted = [[v + 100.0 for v in row] for row in logits]
assert math.isclose(ce(shifted, onehots), ce(logits, onehots), rel_tol=1e-12)
assert all(
    math.isclose(a, b, abs_tol=1e-12)
    for r, s in zip(ce.gradient(shifted, onehots), grad, strict=True)
    for a, b in zip(r, s, strict=True)
)
print(
    f"loss {ce(logits, onehots):.6f} (torch {loss_t.item():.6f}); row sums of the gradient:",
    [f"{sum(row):+.0e}" for row in grad],
)
