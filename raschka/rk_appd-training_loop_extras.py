# %% [markdown]
# # Appendix D — Adding bells and whistles to the training loop
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, appendix D.
#
# Chapter 5 trained with one fixed learning rate. Real pretraining runs add three
# things that make training steadier: a **warmup** that raises the learning rate
# gradually over the first steps, a **cosine decay** that lowers it smoothly
# afterwards, and **gradient clipping**, which caps the size of any single update. We
# build each by hand, check it against the library, and then train the chapter-5 model
# with all three.
#
# Library names introduced: `dlnotes.schedule` (`warmup_cosine`, `WarmupCosine`),
# `dlnotes.train.grad_norm`, `dlnotes.plots.plot_lr`; `train(..., scheduler=,
# grad_clip=)`. Also used: `dlnotes.train`, `dlnotes.gpt`, `dlnotes.loader`.
#
# Runtime: full mode trains the book's model for 15 epochs (135 steps of 512 tokens):
# several minutes on a CPU, seconds on a GPU. Smoke mode trains a tiny model for 3 steps.

# %%
import math

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

from dlnotes import data, env
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.gpt2_tokenizer import tiktoken_gpt2
from dlnotes.loader import create_dataloader
from dlnotes.losses import batch_loss
from dlnotes.plots import plot_losses, plot_lr
from dlnotes.schedule import warmup_cosine
from dlnotes.train import (
    grad_norm,
    make_optimizer,
    print_eval,
    print_sample,
    train,
)

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
CFG = GPTConfig.tiny(context_length=256) if SMOKE else GPTConfig.book()
tokenizer = tiktoken_gpt2()
print(env.banner(DEVICE))

# %% [markdown]
# The data are chapter 5's: *The Verdict*, 90 % for training in 9 batches of 2 × 256
# tokens, the rest for validation.

# %%
text = data.fetch("the-verdict").read_text(encoding="utf-8")
split = int(0.90 * len(text))
loader_args = dict(batch_size=2, max_length=256, stride=256, tokenizer=tokenizer)
train_loader = create_dataloader(text[:split], drop_last=True, shuffle=True, **loader_args)
val_loader = create_dataloader(text[split:], drop_last=False, shuffle=False, **loader_args)
assert (len(train_loader), len(val_loader)) == (9, 1)

# %% [markdown]
# ## D.1 Learning rate warmup
#
# At the start the weights are random and the gradients large and noisy; full-size
# steps then can throw the model somewhere it struggles to recover from. Warmup starts
# from a small `initial_lr` and adds the same increment each step until `peak_lr`. The
# book's example: 15 epochs of 9 steps, 20 % of them (27) warming up from 1e-4 to 0.01.

# %%
n_epochs, initial_lr, peak_lr = 15, 1e-4, 0.01
total_steps = len(train_loader) * n_epochs
warmup_steps = int(0.2 * total_steps)
increment = (peak_lr - initial_lr) / warmup_steps
warmup_lrs = [
    initial_lr + s * increment if s < warmup_steps else peak_lr for s in range(total_steps)
]
ax = plot_lr(warmup_lrs)
ax.set_title("Linear warmup over the first 27 steps")
ax.figure.tight_layout()
plt.show()
assert (total_steps, warmup_steps) == (135, 27)
assert math.isclose(warmup_lrs[warmup_steps - 1] + increment, peak_lr)

# %% [markdown]
# ## D.2 Cosine decay
#
# After the warmup the rate follows half a cosine from `peak_lr` down to `min_lr`
# (here a tenth of `initial_lr`): it falls slowly at first, fastest in the middle, and
# flattens out at the end, so the last steps make only fine adjustments.

# %%
min_lr = 0.1 * initial_lr


def book_lr(step):
    if step < warmup_steps:
        return initial_lr + step * increment
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


cosine_lrs = [book_lr(s) for s in range(total_steps)]
ax = plot_lr(cosine_lrs)
ax.set_title("Warmup, then cosine decay")
ax.figure.tight_layout()
plt.show()
assert cosine_lrs[warmup_steps] == peak_lr and cosine_lrs[-1] < 1e-4

# %% [markdown]
# `dlnotes.schedule.warmup_cosine` is the same schedule as a PyTorch `LambdaLR`, so it
# is stepped like any scheduler and saved with a checkpoint (its test checks it against
# PyTorch's `LinearLR` followed by `CosineAnnealingLR`).

# %%
probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak_lr)
schedule = warmup_cosine(probe, total_steps, warmup_steps, initial_lr=initial_lr, min_lr=min_lr)
library_lrs = []
for _ in range(total_steps):
    library_lrs.append(probe.param_groups[0]["lr"])
    probe.step()
    schedule.step()
assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(library_lrs, cosine_lrs, strict=True))

# %% [markdown]
# ## D.3 Gradient clipping
#
# Clipping by norm treats all gradients as one long vector: if its length exceeds
# `max_norm`, every gradient is scaled down by the same factor so the length is exactly
# `max_norm`; otherwise nothing changes. The direction of the update is kept, only its
# size is capped. On one batch of the untrained model:

# %%
max_norm = env.choose(full=1.0, smoke=0.1)  # the tiny smoke model has smaller gradients
torch.manual_seed(123)
model = GPT(CFG).to(DEVICE)
inputs, targets = next(iter(train_loader))
batch_loss(model, inputs, targets).backward()
largest = max(p.grad.abs().max().item() for p in model.parameters())
before = grad_norm(model.parameters())
total = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm).item()
after = grad_norm(model.parameters())
largest_after = max(p.grad.abs().max().item() for p in model.parameters())
print(f"gradient norm {before:.3f} -> {after:.3f}")
print(f"largest gradient entry {largest:.4f} -> {largest_after:.4f}")
# Norms summed in float32 over the 163 M gradients of the full model round by a few
# tenths of a percent; the scaling itself is exact: every entry times max_norm / total.
assert before > max_norm and math.isclose(after, max_norm, rel_tol=1e-2)
assert math.isclose(largest_after, largest * max_norm / (total + 1e-6), rel_tol=1e-5)

# %% [markdown]
# ## D.4 The modified training function
#
# `train` takes the two as options: a scheduler stepped after every optimizer step, and
# `grad_clip`, the norm to clip to. (The book clips only after the warmup; we clip from
# the first step, which changes little since warmup already keeps the early steps
# small.) The book's run: peak rate 0.001, warmup and decay from and to 1e-5, 15 epochs,
# clipping at norm 1, evaluation every 5 steps on one batch (every step in smoke mode,
# whose 3 steps would otherwise leave a single point to plot).

# %%
train_steps = env.choose(full=total_steps, smoke=3)
torch.manual_seed(123)
model = GPT(CFG).to(DEVICE)
optimizer = make_optimizer(model, lr=0.001, weight_decay=0.1)
scheduler = warmup_cosine(
    optimizer, train_steps, int(0.2 * train_steps), initial_lr=1e-5, min_lr=1e-5
)


# %%
history = train(
    model,
    train_loader,
    val_loader,
    optimizer,
    epochs=n_epochs,
    max_steps=train_steps,
    eval_every=env.choose(full=5, smoke=1),
    eval_batches=1,
    scheduler=scheduler,
    grad_clip=1.0,
    on_eval=print_eval,
    on_epoch_end=print_sample("Every effort moves you", tokenizer),
)
print(f"final: train loss {history.train_loss[-1]:.3f}, val loss {history.val_loss[-1]:.3f}")
assert len(history.lr) == train_steps and math.isclose(max(history.lr), 0.001)
if not SMOKE:
    assert history.train_loss[-1] < 1.0  # memorised, as in chapter 5

# %% [markdown]
# The recorded learning rates are the schedule above with the book's D.4 settings, and
# `history.grad_norm` holds each step's gradient norm before clipping (right panel,
# with the limit dotted). The untrained full-size model starts well above the limit
# (2.26 on the batch of D.3), so clipping acts on the first steps, where the weights
# are random and the updates least reliable; the panel shows where the norm then
# settles. The tiny model of smoke mode has gradients below 1 throughout, so there
# nothing is clipped.

# %%
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 3.8))
plot_losses(history, tokens_per_epoch=len(train_loader) * 512, ax=left)
plot_lr(history.lr, ax=middle)
right.plot(history.grad_norm, ".-", label="before clipping")
right.axhline(1.0, color="k", linestyle=":", label="clipping limit")
right.set(xlabel="optimizer step", ylabel="gradient norm", yscale="log")
right.legend()
for line in left.lines + middle.lines:  # markers: smoke mode has only a few points
    line.set_marker(".")
for ax in (middle, right):
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
left.set_title("Losses", pad=14)  # clear of the epochs axis
middle.set_title("Learning rate per step")
right.set_title("Gradient norm per step")
fig.tight_layout()
fig.subplots_adjust(top=0.8)  # tight_layout leaves no room for a title above a top axis
plt.show()
clipped = [step for step, n in enumerate(history.grad_norm) if n > 1.0]
print(f"clipped at {len(clipped)} of {len(history.grad_norm)} steps (norm above 1): {clipped}")
assert len(history.grad_norm) == train_steps
assert SMOKE or history.grad_norm[0] > 1.0  # the first step is clipped

# %% [markdown]
# ## Summary
#
# - Warmup raises the learning rate linearly over the first steps; cosine decay then
#   lowers it smoothly to a floor. Both are one `LambdaLR` factor.
# - Clipping by norm rescales all gradients together when their joint length is too
#   large, keeping the update's direction.
# - With these, the chapter-5 model trains to the same low training loss; on a single
#   short story no schedule prevents it from memorising.
#
# Now in the library: `dlnotes.schedule` (`warmup_cosine`, `WarmupCosine`),
# `dlnotes.train.grad_norm`, `train(..., scheduler=, grad_clip=)` with
# `History.lr` and `History.grad_norm`, `dlnotes.plots.plot_lr`.

# %% [markdown]
# ## Exercises
#
# **1 — The schedule by hand.** For the run of D.4, write down the learning rate of
# step $s$ from the formula: linear from `initial_lr` to the peak over the first
# `warmup_steps` steps, then
# $\mathrm{lr} = \mathrm{min} + (\mathrm{peak} - \mathrm{min})\cdot\tfrac12
# (1 + \cos(\pi p))$ with $p$ the fraction of the decay done. Check it against every
# rate `train` recorded, and against the scheduler at the book's steps 13 (mid-warmup)
# and 81 (halfway down the cosine: exactly halfway between peak and floor).


# %% tags=["solution"]
def hand_lr(step: int, total: int, warmup: int, peak: float, start: float, floor: float) -> float:
    if step < warmup:
        return start + (peak - start) * step / warmup
    p = (step - warmup) / (total - warmup)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * p))


run = dict(total=train_steps, warmup=int(0.2 * train_steps), peak=0.001, start=1e-5, floor=1e-5)
for step, lr in enumerate(history.lr):
    assert math.isclose(lr, hand_lr(step, **run), rel_tol=1e-9), step

book = dict(total=135, warmup=27, peak=0.001, start=1e-5, floor=1e-5)
probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.001)
schedule = warmup_cosine(probe, 135, 27, initial_lr=1e-5, min_lr=1e-5)
scheduled = []
for _ in range(135):
    scheduled.append(probe.param_groups[0]["lr"])
    probe.step()
    schedule.step()
for step in (0, 13, 27, 81, 134):
    print(f"step {step:3d}: scheduler {scheduled[step]:.6f}, by hand {hand_lr(step, **book):.6f}")
    assert math.isclose(scheduled[step], hand_lr(step, **book), rel_tol=1e-9)
assert math.isclose(scheduled[81], (0.001 + 1e-5) / 2, rel_tol=1e-9)

# %% [markdown]
# **2 — Clipping by hand.** Compute the gradient norm of one batch yourself, as the
# square root of the sum of every gradient entry squared, and compare it with
# `grad_norm` and with what `clip_grad_norm_` returns. Then clip by hand (multiply
# every gradient by `max_norm / norm` if the norm is larger) and check that PyTorch's
# clipping gives the same gradients. What does clipping do when the norm is already
# below the limit?

# %% tags=["solution"]
torch.manual_seed(123)
model = GPT(CFG).to(DEVICE)
inputs, targets = next(iter(val_loader))
batch_loss(model, inputs, targets).backward()


def norm_by_hand(parameters) -> float:
    """sqrt of the sum of all squared gradient entries, summed in float64."""
    return math.sqrt(sum((p.grad.double() ** 2).sum().item() for p in parameters))


by_hand = norm_by_hand(model.parameters())
saved = [p.grad.clone() for p in model.parameters()]
library = grad_norm(model.parameters())
returned = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm).item()
print(f"norm by hand {by_hand:.5f}, grad_norm {library:.5f}, clip_grad_norm_ {returned:.5f}")
# PyTorch sums the squares in float32, which rounds: at the 4th digit for the smoke
# model's 3 million gradients, by a few tenths of a percent for the full model's 163 M
assert math.isclose(by_hand, library, rel_tol=1e-2)
assert math.isclose(by_hand, returned, rel_tol=1e-2) and by_hand > max_norm
scale = max_norm / (returned + 1e-6)  # PyTorch's own guard against dividing by zero
for p, g in zip(model.parameters(), saved, strict=True):
    torch.testing.assert_close(p.grad, g * scale, rtol=1e-5, atol=1e-12)
assert math.isclose(norm_by_hand(model.parameters()), by_hand * scale, rel_tol=1e-6)
unchanged = [p.grad.clone() for p in model.parameters()]
torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10 * max_norm)  # below the limit
assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), unchanged, strict=True))
