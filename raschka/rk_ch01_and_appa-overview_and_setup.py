# %% [markdown]
# # Ch. 1 and appendix A — What an LLM is, and the PyTorch this book needs
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, chapter 1
# (understanding large language models) and appendix A (introduction to PyTorch).
#
# Chapter 1 has no code: it explains what a large language model is, where the
# transformer and GPT come from, and the plan of the book. We retell it in prose, with one
# small cell that shows why plain text is enough to train on. Appendix A then gives the
# PyTorch toolkit every later chapter uses: tensors, autograd, `nn.Module`, `Dataset` and
# `DataLoader`, a training loop, saving a model, and choosing a device.
#
# Library names introduced here (module `dlnotes.toy`): `toy_data`, `ToyDataset`, `MLP`,
# `count_parameters`, `train_epoch`, `accuracy`. Used: `dlnotes.env.device`,
# `env.seed_everything`, `env.repo_root`, `dlnotes.checkpoint`. Training on several
# processes at once (the appendix's last section) is its own script, `rk_appa-ddp.py`.
#
# Runtime: a few seconds, full or smoke (the toy problem is tiny either way; smoke mode
# only draws a coarser decision-boundary plot).

# %%
import os
import tempfile
import timeit

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dlnotes import checkpoint, env, toy

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
GRID = env.choose(full=200, smoke=40)  # points per axis in the decision-boundary plot
print(env.banner(DEVICE))

# %% [markdown]
# ## 1.1 What a large language model is
#
# A language model assigns probabilities to text. The models this book builds do it one
# step at a time: given the text so far, they output a probability for every possible
# next *token* (a word or a piece of a word). Generating text is then a loop: pick a
# likely next token, append it, repeat.
#
# "Large" refers to two things: the number of trainable parameters (GPT-2 small has about
# 124 million, GPT-3 175 billion) and the amount of text they learn from (hundreds of
# billions of tokens). They are deep neural networks, so they sit inside deep learning,
# which sits inside machine learning, which sits inside artificial intelligence. What
# sets them apart from earlier NLP systems is generality: one model, trained only to
# continue text, can translate, summarise, answer questions and write code, where older
# systems were built and trained for one task each.
#
# ## 1.2 What they are used for
#
# Chat assistants, machine translation, summarisation, drafting and editing text, code
# completion, search and retrieval over documents, classification (spam, sentiment).
# Building one yourself, even a small one, is the most direct way to see what these
# systems can and cannot do, and to adapt an open model to your own data.

# %% [markdown]
# ## 1.3 Two stages: pretraining, then finetuning
#
# * **Pretraining** runs on a large corpus of raw, unlabeled text. The training signal
#   comes from the text itself: at every position the target is simply the next token.
#   This is called self-supervised learning. The result is a *base* (or *foundation*)
#   model that continues text fluently but does not follow instructions.
# * **Finetuning** continues training the base model on a much smaller labelled data
#   set. *Classification finetuning* uses texts with class labels (e.g. spam / not
#   spam); *instruction finetuning* uses pairs of instructions and good answers, which
#   turns a text continuer into an assistant.
#
# The cell below shows why raw text needs no labels: every prefix of a sentence is an
# input, and the word that follows it is the target. One sentence of $n$ words yields
# $n - 1$ training examples.

# %%
sentence = "an LLM learns to predict the next word".split()
examples = [(sentence[:i], sentence[i]) for i in range(1, len(sentence))]
for context, target in examples[:3]:
    print(f"{' '.join(context):>24} -> {target}")
print("...")
assert len(examples) == len(sentence) - 1 == 7

# %% [markdown]
# ## 1.4 The transformer architecture
#
# Nearly every modern LLM is built from the *transformer* (Vaswani et al., 2017,
# "Attention Is All You Need"). The original was designed for translation and has two
# halves: an *encoder* that turns the input sentence into contextual vectors, and a
# *decoder* that generates the output one token at a time while looking at those
# vectors. The key ingredient in both is *self-attention*: each position computes a
# weighted mix of all the positions it may see, with weights learned from the content,
# so that relationships between distant words cost no more than between neighbours.
#
# Two families took one half each:
#
# * **BERT-style encoders** are trained to fill in masked-out words, seeing the text on
#   both sides; they shine at understanding tasks such as classification.
# * **GPT-style decoders** are trained to predict the next word, seeing only the text to
#   the left; they are built for generation. This book builds a GPT.
#
# ## 1.5 Data at scale
#
# GPT-3 was trained on about 300 billion tokens drawn from a filtered web crawl, web
# pages linked from Reddit, two book corpora and Wikipedia. Gathering and cleaning such a
# corpus, and paying for the compute (millions of dollars for GPT-3), is why most people
# start from openly released pretrained weights. This book pretrains on one short story
# to learn the mechanics, then loads OpenAI's GPT-2 weights.

# %% [markdown]
# ## 1.6 A closer look at GPT
#
# A GPT is a stack of identical transformer decoder blocks (12 in GPT-2 small, 96 in
# GPT-3) between a token embedding at the bottom and a linear layer to vocabulary logits
# at the top. It is *autoregressive*: each generated token becomes part of the input for
# the next step. Nothing in its training asks it to translate or answer questions;
# such abilities *emerge* from predicting the next token over enough varied text, and a
# few examples in the prompt (*few-shot*) or none at all (*zero-shot*) can be enough to
# steer it.
#
# ## 1.7 The plan of the book
#
# 1. **Stage 1, building an LLM:** preparing text as tokens and training examples
#    (ch. 2), the attention mechanism (ch. 3), the GPT architecture (ch. 4).
# 2. **Stage 2, pretraining:** a training loop with evaluation and text generation,
#    then loading pretrained GPT-2 weights (ch. 5).
# 3. **Stage 3, finetuning:** a spam classifier (ch. 6) and an instruction-following
#    assistant (ch. 7).
#
# Everything runs on a laptop CPU; a GPU only makes it faster. The rest of this script is
# appendix A, the PyTorch needed for all three stages.

# %% [markdown]
# ## A.1 PyTorch in three parts
#
# PyTorch is (1) a *tensor library*, like NumPy but able to run on GPUs; (2) an *automatic
# differentiation engine* (autograd) that computes gradients of any computation built
# from tensors; and (3) a *deep learning library* of layers, losses, optimisers and data
# loading utilities. Check the installation, and which accelerators this machine offers
# (`dlnotes.env.device()` picks the first of cuda, mps, cpu unless `DLNOTES_DEVICE` says
# otherwise):

# %%
print("torch", torch.__version__)
print("CUDA available:", torch.cuda.is_available())
print("Apple MPS available:", torch.backends.mps.is_available())
print("this script uses:", DEVICE)
assert DEVICE.type in env.available_devices()

# %% [markdown]
# ## A.2 Tensors
#
# A tensor is an n-dimensional array: a scalar has 0 dimensions, a vector 1, a matrix 2.
# Python integers become `int64` tensors and Python floats `float32` (64-bit precision
# rarely helps deep learning and costs memory and speed; GPUs are fastest at 32 bits and
# below).

# %%
scalar = torch.tensor(1)
vector = torch.tensor([1, 2, 3])
matrix = torch.tensor([[1, 2], [3, 4]])
cube = torch.tensor([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
print([t.ndim for t in (scalar, vector, matrix, cube)], vector.dtype)
assert [t.ndim for t in (scalar, vector, matrix, cube)] == [0, 1, 2, 3]
assert vector.dtype == torch.int64
assert torch.tensor([1.0, 2.0]).dtype == torch.float32
assert vector.to(torch.float32).dtype == torch.float32

# %% [markdown]
# Shapes, and two ways to change them. `view` reinterprets the same memory (no copy), so
# it only works when the elements are laid out compatibly; `reshape` returns a view when
# it can and copies otherwise. A transpose (`.T`) is a view with swapped strides, hence
# not contiguous.

# %%
t = torch.tensor([[1, 2, 3], [4, 5, 6]])
print(t.shape, t.view(3, 2).tolist(), t.T.tolist())
assert t.shape == torch.Size([2, 3])
assert t.view(3, 2).data_ptr() == t.data_ptr()  # same storage: a view, not a copy
assert not t.T.is_contiguous()
assert t.T.reshape(6).tolist() == [1, 4, 2, 5, 3, 6]  # reshape copied; .view(6) would fail
print(t @ t.T)
assert (t @ t.T).tolist() == [[14, 32], [32, 77]]
assert torch.equal(t @ t.T, t.matmul(t.T))

# %% [markdown]
# ## A.3 Models as computation graphs
#
# Take logistic regression with one input: $z = x_1 w_1 + b$, $a = \sigma(z)$, and the
# binary cross-entropy loss $L = -[y \log a + (1 - y)\log(1 - a)]$ for a true label $y$.
# PyTorch records each operation on tensors that require gradients, building a graph from
# the parameters to the loss as the forward pass runs.

# %%
y = torch.tensor([1.0])  # true label
x1 = torch.tensor([1.1])  # input feature
w1 = torch.tensor([2.2], requires_grad=True)
b = torch.tensor([0.0], requires_grad=True)
z = x1 * w1 + b
a = torch.sigmoid(z)
loss = F.binary_cross_entropy(a, y)
print(f"z = {z.item():.2f}, a = {a.item():.4f}, loss = {loss.item():.4f}")
assert abs(loss.item() - 0.0852) < 5e-5

# %% [markdown]
# ## A.4 Automatic differentiation
#
# By hand, with the chain rule: $\frac{\partial L}{\partial a} = -\frac{y}{a} +
# \frac{1-y}{1-a}$ and $\frac{da}{dz} = a(1 - a)$; their product simplifies to
# $\frac{\partial L}{\partial z} = a - y$. Then $\frac{\partial z}{\partial w_1} = x_1$
# and $\frac{\partial z}{\partial b} = 1$, so
#
# $$\frac{\partial L}{\partial w_1} = (a - y)\,x_1, \qquad
# \frac{\partial L}{\partial b} = a - y.$$
#
# Autograd walks the graph backwards and must agree. `torch.autograd.grad` returns the
# gradients; `loss.backward()` instead stores them in each leaf's `.grad`, which is what
# training loops use.

# %%
grad_w1, grad_b = torch.autograd.grad(loss, (w1, b), retain_graph=True)
manual_w1, manual_b = ((a - y) * x1).detach(), (a - y).detach()
print(f"autograd: dL/dw1 = {grad_w1.item():.4f}, dL/db = {grad_b.item():.4f}")
print(f"by hand:  dL/dw1 = {manual_w1.item():.4f}, dL/db = {manual_b.item():.4f}")
torch.testing.assert_close(grad_w1, manual_w1)
torch.testing.assert_close(grad_b, manual_b)
assert round(grad_w1.item(), 4) == -0.0898 and round(grad_b.item(), 4) == -0.0817
loss.backward()
assert torch.equal(w1.grad, grad_w1) and torch.equal(b.grad, grad_b)

# %% [markdown]
# ## A.5 Multilayer neural networks
#
# A model is a subclass of `torch.nn.Module`: layers are created in `__init__` (which
# registers their parameters) and used in `forward`. The book's network has two hidden
# layers of 30 and 20 units with ReLU between them, and returns raw scores (*logits*):
# the softmax that turns them into probabilities is folded into the loss function, which
# is numerically safer. It lives in the library as `dlnotes.toy.MLP`:

# %%
env.show(toy.MLP)

# %% [markdown]
# With 50 inputs and 3 outputs it has $50 \cdot 30 + 30 + 30 \cdot 20 + 20 + 20 \cdot 3 + 3
# = 2{,}213$ trainable parameters. PyTorch initialises each `Linear` layer's weights with
# small random numbers (scaled by the layer's fan-in), so seeding first makes them
# reproducible.

# %%
torch.manual_seed(123)
model = toy.MLP(num_inputs=50, num_outputs=3)
print(model)
n_params = toy.count_parameters(model)
print(f"trainable parameters: {n_params:,}")
assert n_params == 50 * 30 + 30 + 30 * 20 + 20 + 20 * 3 + 3 == 2_213
assert model.layers[0].weight.shape == (30, 50)  # (out_features, in_features)

# %% [markdown]
# A forward pass on one random example gives three logits. Inside `torch.no_grad()`
# PyTorch builds no graph: use it whenever gradients are not needed (inference,
# evaluation), to save memory and time.

# %%
X = torch.rand((1, 50))
with torch.no_grad():
    logits = model(X)
probs = torch.softmax(logits, dim=1)
print(logits, probs, sep="\n")
assert logits.shape == (1, 3) and not logits.requires_grad
torch.testing.assert_close(probs.sum(), torch.tensor(1.0))

# %% [markdown]
# ## A.6 Efficient data loaders
#
# A `Dataset` says how to get example *i* (`__getitem__`) and how many there are
# (`__len__`); a `DataLoader` batches, shuffles and (with `num_workers > 0`) loads in
# background processes. The toy problem has five training and two test points in the
# plane, in two classes. Shuffling draws from PyTorch's global random generator, so the
# seed fixes the batch order. `drop_last=True` drops the final, smaller batch (one lone
# example would give a noisy update). `num_workers=0` loads in the main process, which is
# right for tiny data and in notebooks.

# %%
X_train, y_train, X_test, y_test = toy.toy_data()
train_ds, test_ds = toy.ToyDataset(X_train, y_train), toy.ToyDataset(X_test, y_test)
torch.manual_seed(123)
train_loader = DataLoader(train_ds, batch_size=2, shuffle=True, num_workers=0, drop_last=True)
test_loader = DataLoader(test_ds, batch_size=2, shuffle=False, num_workers=0)
for i, (features, labels) in enumerate(train_loader):
    print(f"batch {i}: labels {labels.tolist()}, features\n{features}")
assert len(train_ds) == 5 and len(test_ds) == 2
assert len(train_loader) == 2 and len(test_loader) == 1  # 5 // 2 batches; the 5th point waits

# %% [markdown]
# ## A.7 A typical training loop
#
# Per batch: forward pass, cross-entropy loss on the logits, `optimizer.zero_grad()`
# (gradients accumulate otherwise), `loss.backward()`, `optimizer.step()`. `model.train()`
# and `model.eval()` switch layers such as dropout between their training and inference
# behaviour (this MLP has none, but the habit matters later). The batch loop is
# `toy.train_epoch`, moving each batch to the model's device:

# %%
env.show(toy.train_epoch)

# %% [markdown]
# Three epochs of SGD with learning rate 0.5, printing each batch's loss as the book
# does. The model is created on the CPU (so the seed gives the same weights everywhere),
# then moved to `DEVICE`.

# %%
torch.manual_seed(123)
model = toy.MLP(num_inputs=2, num_outputs=2).to(DEVICE)
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
num_epochs = 3
history = []
for epoch in range(num_epochs):
    losses = toy.train_epoch(model, train_loader, optimizer, DEVICE)
    for i, value in enumerate(losses):
        print(f"epoch {epoch + 1:03d}/{num_epochs:03d} | batch {i:03d} | train loss {value:.2f}")
    history += losses
book = [0.75, 0.65, 0.44, 0.13, 0.03, 0.00]
assert all(abs(ours - theirs) <= 0.0051 for ours, theirs in zip(history, book, strict=True))

# %% [markdown]
# Predictions: the class with the largest logit. Softmax shows how confident the model
# is; `toy.accuracy` counts correct arg-max predictions over a loader. The toy problem is
# linearly separable, so both sets end at 100 %.

# %%
model.eval()
with torch.no_grad():
    probs = torch.softmax(model(X_train.to(DEVICE)), dim=1).cpu()
torch.set_printoptions(sci_mode=False)  # 0.0009 rather than 8.9419e-04
print(probs)
predictions = probs.argmax(dim=1)
assert torch.equal(predictions, y_train)
assert torch.allclose(
    probs[:, 0], torch.tensor([0.9991, 0.9982, 0.9949, 0.0491, 0.0307]), atol=2e-4
)
train_acc = toy.accuracy(model, train_loader, DEVICE)
test_acc = toy.accuracy(model, test_loader, DEVICE)
print(f"train accuracy {train_acc:.0%}, test accuracy {test_acc:.0%}")
assert train_acc == test_acc == 1.0

# %% [markdown]
# The learned decision boundary: the model's predicted class over a grid of points
# (test points drawn as crosses).

# %%
xs = torch.linspace(-2.5, 3.5, GRID)
grid = torch.cartesian_prod(xs, xs)  # (GRID * GRID, 2), first column varies slowest
with torch.no_grad():
    regions = model(grid.to(DEVICE)).argmax(dim=1).cpu().reshape(GRID, GRID)
fig, ax = plt.subplots(figsize=(4, 4))
ax.contourf(xs, xs, regions.T, alpha=0.3, cmap="coolwarm")  # .T: rows must follow y
ax.scatter(X_train[:, 0], X_train[:, 1], c=y_train, cmap="coolwarm", edgecolors="k")
ax.scatter(X_test[:, 0], X_test[:, 1], c=y_test, cmap="coolwarm", marker="X", s=80)
ax.set(xlabel="$x_1$", ylabel="$x_2$", title="toy MLP decision regions")
plt.show()
assert set(regions.unique().tolist()) == {0, 1}

# %% [markdown]
# ## A.8 Saving and loading models
#
# A model's learned state is its `state_dict`: an ordered mapping from parameter names to
# tensors. Save that, not the pickled model object. Two details make it robust:
#
# * **Write atomically**: save to a temporary file in the same folder, then rename it over
#   the target. A crash mid-save leaves the old file intact instead of a truncated one,
#   and `os.replace` is atomic on one filesystem.
# * **Load with `weights_only=True`**: a checkpoint is a pickle, and unpickling can run
#   arbitrary code; this option only accepts tensors and plain containers. (It is the
#   default since PyTorch 2.6; we say it anyway.) `map_location="cpu"` lets a file
#   written on a GPU load on any machine.

# %%
path = env.repo_root() / "runs" / "appa" / "model.pth"
path.parent.mkdir(parents=True, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
with os.fdopen(fd, "wb") as fh:
    torch.save(model.state_dict(), fh)
os.chmod(tmp, 0o644)  # mkstemp makes its file private (0600); a saved model is an ordinary file
os.replace(tmp, path)
assert path.stat().st_mode & 0o777 == 0o644
print(f"saved {path} ({path.stat().st_size:,} bytes)")

# %%
restored = toy.MLP(num_inputs=2, num_outputs=2)
restored.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
restored.to(DEVICE).eval()
with torch.no_grad():
    assert torch.equal(restored(X_test.to(DEVICE)), model(X_test.to(DEVICE)))
assert toy.accuracy(restored, test_loader, DEVICE) == 1.0

# %% [markdown]
# From chapter 5 on, training runs save through `dlnotes.checkpoint`, which does the same
# atomic write (plus an `fsync`) and also stores the optimizer, the random-generator
# states and a CRC-32 that catches corrupted files. The weights it restores are the same:

# %%
ckpt = checkpoint.save_checkpoint(path.with_name("checkpoint.pth"), model, optimizer, step=6)
fresh = toy.MLP(num_inputs=2, num_outputs=2)
info = checkpoint.load_checkpoint(ckpt, fresh, restore_rng=False)
assert info["step"] == 6
for name, tensor in restored.state_dict().items():
    assert torch.equal(fresh.state_dict()[name], tensor.cpu()), name

# %% [markdown]
# ## A.9 Using GPUs
#
# Every tensor lives on a device, and an operation needs all its inputs on the same one.
# `.to(device)` moves a tensor (returning a copy) or a module (in place, moving its
# parameters). The code above never names a device: `DEVICE = env.device()` chose it, and
# `train_epoch` and `accuracy` move each batch there. The same script therefore runs on
# a CPU, an NVIDIA GPU (`cuda`) or an Apple GPU (`mps`); set `DLNOTES_DEVICE=cpu` to
# force the CPU. Hard-coding `.cuda()` would break the script on the other two.

# %%
a_tensor = torch.tensor([1.0, 2.0, 3.0]).to(DEVICE)
print(a_tensor.device, next(model.parameters()).device)
assert a_tensor.device.type == next(model.parameters()).device.type == DEVICE.type
if DEVICE.type != "cpu":
    try:
        torch.tensor([1.0, 2.0, 3.0]) + a_tensor  # one CPU tensor, one accelerator tensor
    except RuntimeError as exc:
        print("mixing devices fails:", str(exc).splitlines()[0])

# %% [markdown]
# With several GPUs, *distributed data parallel* training runs one process per device,
# each with a full copy of the model and its own slice of every epoch's data, and
# averages the gradients between them after each backward pass. That is the next
# script, `rk_appa-ddp.py`, which trains this same toy model on two processes.
#
# ## Summary
#
# * An LLM is a deep network trained to predict the next token; pretraining on raw text
#   gives a base model, finetuning on labelled data gives a classifier or an assistant.
#   GPT is the decoder half of the transformer, built around self-attention.
# * Tensors have a dtype, a shape and a device; `view` shares memory, `reshape` may copy.
# * Autograd reproduces the hand-derived gradients of logistic regression,
#   $(a - y)x_1$ and $a - y$.
# * The appendix-A MLP (50 → 30 → 20 → 3) has 2,213 parameters; on the toy data,
#   three epochs of SGD give the book's losses and 100 % train and test accuracy.
# * Save a `state_dict` atomically and load it with `weights_only=True` (training runs use
#   `dlnotes.checkpoint`, which also keeps the optimizer and RNG states); pick the device
#   once with `env.device()` and move data with `.to(device)`.
#
# Now in the library (`dlnotes.toy`): `toy_data`, `ToyDataset`, `MLP`, `count_parameters`,
# `train_epoch`, `accuracy`.

# %% [markdown]
# ## Exercises
#
# **A.3 — Counting parameters.** How many trainable parameters has the network trained
# in A.7, `toy.MLP(num_inputs=2, num_outputs=2)`? Work it out layer by layer (weights
# plus biases), then check with `toy.count_parameters` and by summing `p.numel()`.

# %% tags=["solution"]
by_hand = (2 * 30 + 30) + (30 * 20 + 20) + (20 * 2 + 2)  # three Linear layers
small = toy.MLP(num_inputs=2, num_outputs=2)
print(f"by hand {by_hand}, counted {toy.count_parameters(small)}")
assert by_hand == toy.count_parameters(small) == 752
assert sum(p.numel() for p in small.parameters() if p.requires_grad) == 752

# %% [markdown]
# **A.4 — CPU against accelerator.** Time the matrix product of a 100 × 200 and a
# 200 × 300 random matrix on the CPU and, where this machine has one, on the GPU; then
# the same for two 2,048 × 2,048 matrices. Which device wins, and does the answer depend
# on the size? Check that both devices compute the same product. (GPU kernels run
# asynchronously: wait for them before stopping the clock.)


# %% tags=["solution"]
def time_matmul(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    """Best-of-5 seconds per product on `a`'s device."""
    a @ b  # warm-up
    sync = {"cuda": torch.cuda.synchronize, "mps": torch.mps.synchronize}.get(a.device.type)

    def run() -> None:
        a @ b
        if sync is not None:
            sync()

    return min(timeit.repeat(run, number=repeats, repeat=5)) / repeats


sizes = [(100, 200, 300)] + ([] if SMOKE else [(2048, 2048, 2048)])
for n, k, m in sizes:
    torch.manual_seed(123)
    a, b = torch.rand(n, k), torch.rand(k, m)
    repeats = 100 if n < 1000 else 3
    cpu_time = time_matmul(a, b, repeats)
    print(f"({n}x{k}) @ ({k}x{m}): CPU {cpu_time * 1e6:,.1f} µs", end="")
    if DEVICE.type == "cpu":
        print(" (no accelerator here: nothing to compare with)")
        continue
    a_dev, b_dev = a.to(DEVICE), b.to(DEVICE)
    dev_time = time_matmul(a_dev, b_dev, repeats)
    print(f", {DEVICE.type} {dev_time * 1e6:,.1f} µs ({cpu_time / dev_time:.1f}x)")
    # same product up to float32 rounding (the devices sum in different orders)
    torch.testing.assert_close((a_dev @ b_dev).cpu(), a @ b, rtol=1e-4, atol=1e-3)
assert (a @ b).shape == (sizes[-1][0], sizes[-1][2])

# What to expect: a small product is over in microseconds on either device, and on
# a GPU much of that is the cost of launching the kernel, so its lead is small or
# absent; at 2,048 x 2,048 the GPU's thousands of cores win by a wide margin.

# %% [markdown]
# **A.5 (our own) — Check autograd by finite differences.** For the logistic-regression
# loss of section A.3, estimate $\partial L / \partial w_1$ as $(L(w_1 + h) - L(w_1 - h)) / 2h$
# and compare it with autograd's $-0.0898$. Why does a central difference in float64
# get so close, and what happens to the estimate if $h$ is made very small in float32?


# %% tags=["solution"]
def loss_at(w: float, dtype: torch.dtype) -> float:
    z_w = torch.tensor([1.1], dtype=dtype) * w
    return F.binary_cross_entropy(torch.sigmoid(z_w), torch.tensor([1.0], dtype=dtype)).item()


h = 1e-5
estimate = (loss_at(2.2 + h, torch.float64) - loss_at(2.2 - h, torch.float64)) / (2 * h)
print(f"finite difference {estimate:.6f}, autograd {grad_w1.item():.6f}")
assert abs(estimate - grad_w1.item()) < 1e-6  # central difference: error of order h^2
# float32 has about 7 significant digits: 2.2 +- 1e-7 both round to the same number,
# so the two losses are equal and the estimate is 0, however exact the formula.
tiny_h = 1e-7
rough = (loss_at(2.2 + tiny_h, torch.float32) - loss_at(2.2 - tiny_h, torch.float32)) / (2 * tiny_h)
print(f"float32 with h = 1e-7: {rough:.4f}")
assert torch.tensor(2.2 + tiny_h, dtype=torch.float32) == torch.tensor(2.2, dtype=torch.float32)
assert rough == 0.0
