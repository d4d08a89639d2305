# %% [markdown]
# # Ch. 5 — Pretraining on unlabeled data
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, chapter 5.
#
# Chapter 4 built a GPT that produces gibberish because its weights are random. Here we
# give it a way to measure how wrong it is (cross-entropy of the next token, and its
# cousin perplexity), split a short story into training and validation text, and train
# the 124M-parameter model on it. Then we look at how the next token is *chosen*
# (greedy, temperature, top-k), save and restore a run, and finally load the weights
# OpenAI released for GPT-2, which turn the same architecture into a fluent model.
#
# Library names introduced: `dlnotes.losses` (`batch_loss`, `loader_loss`,
# `perplexity`, `evaluate`), `dlnotes.loader` (`text_to_ids`, `ids_to_text`),
# `dlnotes.train` (`make_optimizer`, `train`, `History`), `dlnotes.checkpoint`
# (`save_checkpoint`, `load_checkpoint`), `dlnotes.pretrained` (`load_gpt2`), `dlnotes.plots`
# (`plot_losses`). Also used: `dlnotes.gpt`, `dlnotes.generate`, `dlnotes.loader`,
# `dlnotes.data`, `dlnotes.env`.
#
# Runtime: full mode trains the book's model for 10 epochs (90 steps of 512 tokens):
# 10-20 minutes on a 2-core CPU in float32, a few minutes in bf16 on a CPU with AMX,
# under a minute on a GPU; the GPT-2 download is 548 MB once. Smoke mode
# (`DLNOTES_SMOKE=1`) trains a tiny model for 3 steps: seconds.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from dlnotes import data, env
from dlnotes.base import load_base
from dlnotes.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dlnotes.errors import DataError
from dlnotes.generate import generate, sample_next
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.gpt2_tokenizer import tiktoken_gpt2
from dlnotes.loader import create_dataloader, ids_to_text, text_to_ids
from dlnotes.losses import amp_dtype, batch_loss, loader_loss, perplexity
from dlnotes.plots import plot_losses
from dlnotes.pretrained import entry, load_gpt2
from dlnotes.train import make_optimizer, print_eval, print_sample, train

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
CFG = GPTConfig.tiny(context_length=256) if SMOKE else GPTConfig.book()
EPOCHS = env.choose(full=10, smoke=1)
MAX_STEPS = env.choose(full=None, smoke=3)  # smoke: stop after 3 optimizer steps
tokenizer = tiktoken_gpt2()
print(env.banner(DEVICE))

# %% [markdown]
# ## 5.1 Evaluating generative text models
#
# ### 5.1.1 Using GPT to generate text
#
# Two small helpers carry text across the model boundary: `text_to_ids` encodes a
# string and adds the batch dimension the model expects, `ids_to_text` goes back. An
# untrained model continues a prompt with random tokens. `GPT` creates its weights in
# the same order as the book's `GPTModel`, so with the same seed the full-size model
# starts from the very same weights and writes the book's gibberish.

# %%
torch.manual_seed(123)
model = GPT(CFG).to(DEVICE).eval()
prompt = text_to_ids("Every effort moves you", tokenizer)
out = generate(model, prompt.to(DEVICE), max_new_tokens=10)
print(ids_to_text(out, tokenizer))
assert prompt.tolist() == [[6109, 3626, 6100, 345]] and out.shape == (1, 14)
if not SMOKE:
    book = "Every effort moves you rentingetic wasnم refres RexMeCHicular stren"
    assert ids_to_text(out, tokenizer) == book

# %% [markdown]
# ### 5.1.2 Calculating the text generation loss
#
# For every position the model outputs one score (logit) per vocabulary entry;
# softmax turns them into probabilities. Training should raise the probability of the
# token that actually comes next. Take two three-token inputs; the targets are the
# inputs shifted by one token.

# %%
# "every effort moves" and "I really like" -> " effort moves you" and " really like chocolate"
inputs = torch.tensor([[16833, 3626, 6100], [40, 1107, 588]])
targets = torch.tensor([[3626, 6100, 345], [1107, 588, 11311]])
with torch.no_grad():
    logits = model(inputs.to(DEVICE)).cpu()  # (2, 3, 50257)
probas = torch.softmax(logits, dim=-1)
target_probas = probas.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (2, 3)
print("probability of each correct next token:\n", target_probas)
assert probas.shape == (2, 3, 50257) and (target_probas < 1e-3).all()  # untrained: ~1/50257
if not SMOKE:
    book = torch.tensor([7.4541e-05, 3.1061e-05, 1.1563e-05])
    assert torch.allclose(target_probas[0], book, rtol=1e-3)

# %% [markdown]
# Multiplying many small probabilities underflows, so we add their logarithms instead.
# The average log-probability of the targets is what training pushes up (towards 0);
# flipping its sign gives the quantity to push down, the **cross-entropy loss**.
# PyTorch's `F.cross_entropy` does the softmax, the pick and the average in one stable
# call on the flattened (batch·tokens, vocabulary) logits; `batch_loss` wraps it.

# %%
neg_avg_log_proba = -torch.log(target_probas).mean()
loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
print(f"by hand {neg_avg_log_proba:.4f}, F.cross_entropy {loss:.4f}")
assert torch.isclose(neg_avg_log_proba, loss, atol=1e-4)
assert math.isclose(batch_loss(model, inputs, targets).item(), loss.item(), abs_tol=1e-4)
assert abs(loss.item() - math.log(50257)) < 0.5
assert SMOKE or abs(loss.item() - 10.7940) < 1e-3  # the book's number

# %% [markdown]
# **Perplexity** is `exp(loss)`: the number of tokens the model is, in effect, choosing
# between uniformly. Untrained, that is about the whole vocabulary (the book: 48,725.8).

# %%
print(f"perplexity {perplexity(loss.item()):,.0f} (vocabulary: 50,257)")
assert 20_000 < perplexity(loss.item()) < 100_000
assert SMOKE or abs(perplexity(loss.item()) - 48_725.8) < 5

# %% [markdown]
# ### 5.1.3 Calculating the training and validation set losses
#
# The training text is Edith Wharton's short story *The Verdict*: 20,479 characters,
# 5,145 GPT-2 tokens. The first 90 % of the characters are for training, the rest for
# validation. Windows of 256 tokens with stride 256 (no overlap) give 9 training
# batches of 2 and a single validation batch.

# %%
text = data.fetch("the-verdict").read_text(encoding="utf-8")
split = int(0.90 * len(text))
loader_args = dict(batch_size=2, max_length=256, stride=256, tokenizer=tokenizer)
train_loader = create_dataloader(text[:split], drop_last=True, shuffle=True, **loader_args)
val_loader = create_dataloader(text[split:], drop_last=False, shuffle=False, **loader_args)
train_tokens = sum(x.numel() for x, _ in train_loader)
val_tokens = sum(x.numel() for x, _ in val_loader)
print(f"{len(text):,} characters, {len(tokenizer.encode(text)):,} tokens")
print(f"training tokens: {train_tokens:,}, validation tokens: {val_tokens:,}")
assert (len(text), len(tokenizer.encode(text))) == (20_479, 5_145)
assert (train_tokens, val_tokens) == (4_608, 512)

# %% [markdown]
# `loader_loss` averages `batch_loss` over a loader's batches. Before training, both
# losses sit near ln(50,257) ≈ 10.8 (the book: 10.98758 and 10.98111).

# %%
n_batches = env.choose(full=None, smoke=2)  # None: all batches
train_loss = loader_loss(model, train_loader, n_batches)
val_loss = loader_loss(model, val_loader, n_batches)
print(f"training loss {train_loss:.3f}, validation loss {val_loss:.3f}")
tolerance = 0.3 if SMOKE else 2e-3  # the tiny smoke model starts a little further off
assert abs(train_loss - 10.98758) < tolerance and abs(val_loss - 10.98111) < tolerance
env.show(loader_loss)

# %% [markdown]
# ## 5.2 Training an LLM
#
# One optimizer step: clear the gradients, compute the batch loss, backpropagate,
# let AdamW update every weight. Every 5 steps the model is evaluated (dropout off) on
# 5 batches of each loader, and after every epoch it writes a sample from the same
# prompt, so we can watch it learn. `train` does this, counting the tokens seen.
#
# The library's loop adds speed without changing the recipe: matrix products in
# bfloat16 where the hardware has it (autocast; the weights stay float32), a fused
# AdamW kernel, and no waiting for each step's loss (the losses stay on the device
# until an evaluation needs them). The book's settings: AdamW, learning rate 4e-4,
# weight decay 0.1, 10 epochs.

# %%
torch.manual_seed(123)
model = GPT(CFG).to(DEVICE)
optimizer = make_optimizer(model, lr=4e-4, weight_decay=0.1)


# %%
history = train(
    model,
    train_loader,
    val_loader,
    optimizer,
    epochs=EPOCHS,
    max_steps=MAX_STEPS,
    eval_every=env.choose(full=5, smoke=2),
    eval_batches=env.choose(full=5, smoke=1),
    on_eval=print_eval,
    on_epoch_end=print_sample("Every effort moves you", tokenizer),
)
final = (history.train_loss[-1], history.val_loss[-1])
print(f"last evaluation, after {history.tokens_seen[-1]:,} tokens seen: ", end="")
print(f"train loss {final[0]:.3f}, val loss {final[1]:.3f}")
if SMOKE:
    assert len(history.step_loss) == MAX_STEPS and all(map(math.isfinite, history.step_loss))
else:
    assert final[0] < 1.0 and final[1] < 7.0  # the book: 0.391 and 6.452
if not SMOKE and DEVICE.type == "cpu" and amp_dtype(DEVICE) is None:
    # float32 on a CPU draws the book's dropout masks: its step-0 numbers exactly
    first = (history.train_loss[0], history.val_loss[0])
    assert abs(first[0] - 9.781) < 1e-3 and abs(first[1] - 9.933) < 1e-3

# %% [markdown]
# The training loss falls towards zero while the validation loss stops improving
# after a couple of epochs and then creeps up: on a 5,000-token story a 124M-parameter
# model memorises its training text (the samples quote it) instead of learning
# English. Real pretraining uses billions of tokens and sees most of them once.
#
# In float32 on a CPU the run repeats the book's digit for digit, from 9.781 / 9.933 at
# step 0 to 0.391 / 6.452 at step 85, samples included: same initial weights, same
# batch order, same dropout masks. With bf16 (a GPU, or a CPU with AMX) the numbers
# drift a little but stay in the same band.

# %%
ax = plot_losses(history, tokens_per_epoch=train_tokens)
for line in ax.lines:  # a marker per evaluation (smoke mode has only two)
    line.set_marker("o")
ax.set_title("Pretraining on The Verdict", pad=14)  # clear of the epochs axis on top
ax.figure.tight_layout()
ax.figure.subplots_adjust(top=0.78)
plt.show()

# %% [markdown]
# ## 5.3 Decoding strategies to control randomness
#
# Greedy decoding takes the most likely token every time, so a prompt always gives the
# same continuation, and a trained model tends to repeat memorised passages.

# %%
model.eval()
ids = generate(model, text_to_ids("Every effort moves you", tokenizer).to(DEVICE), 25)
print(ids_to_text(ids, tokenizer))
again = generate(model, text_to_ids("Every effort moves you", tokenizer).to(DEVICE), 25)
assert torch.equal(ids, again)

# %% [markdown]
# ### 5.3.1 Temperature scaling
#
# Sampling instead draws the next token from the softmax distribution. A toy
# vocabulary of nine words shows the effect: greedy picks "forward" every time, while
# sampling 1,000 times picks "forward" about 58 % of the time and "toward" 34 %
# (the book's counts, reproduced exactly with seed 123).

# %%
vocab = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"]
next_logits = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])
probs = torch.softmax(next_logits, dim=0)
torch.manual_seed(123)
draws = [torch.multinomial(probs, num_samples=1).item() for _ in range(1_000)]
counts = torch.bincount(torch.tensor(draws), minlength=len(vocab)).tolist()
print({word: n for word, n in zip(vocab, counts, strict=True) if n})
assert vocab[int(next_logits.argmax())] == "forward"
assert counts == [73, 0, 0, 582, 2, 0, 0, 343, 0]

# %% [markdown]
# Dividing the logits by a temperature *T* before the softmax sharpens the distribution
# (*T* < 1, towards greedy) or flattens it (*T* > 1, towards uniform). At *T* = 5 the
# nonsense "every effort moves you pizza" gets 4.3 % of the draws.

# %%
temperatures = [1.0, 0.1, 5.0]
scaled = [torch.softmax(next_logits / t, dim=0) for t in temperatures]
fig, ax = plt.subplots(figsize=(6, 3))
for i, (t, p) in enumerate(zip(temperatures, scaled, strict=True)):
    ax.bar(torch.arange(len(vocab)) + (i - 1) * 0.25, p, 0.25, label=f"temperature {t}")
ax.set_xticks(range(len(vocab)), vocab, rotation=90)
ax.set(xlabel="next token", ylabel="probability", title="Softmax with temperature")
ax.legend()
fig.tight_layout()
plt.show()
assert abs(scaled[2][vocab.index("pizza")].item() - 0.043) < 5e-4
assert scaled[1][vocab.index("forward")] > 0.99

# %% [markdown]
# ### 5.3.2 Top-k sampling
#
# Top-k keeps only the *k* highest logits and sets the rest to −∞, so after the softmax
# the unlikely tail gets probability exactly 0, however high the temperature.

# %%
top_logits, top_pos = torch.topk(next_logits, 3)
masked = torch.where(next_logits < top_logits[-1], float("-inf"), next_logits)
topk_probs = torch.softmax(masked, dim=0)
print(top_logits, top_pos, topk_probs.round(decimals=4), sep="\n")
assert top_pos.tolist() == [3, 7, 0]
expected = torch.tensor([0.0615, 0, 0, 0.5775, 0, 0, 0, 0.3610, 0])
assert torch.allclose(topk_probs, expected, atol=1e-4)

# %% [markdown]
# ### 5.3.3 Modifying the text generation function
#
# `dlnotes.generate` combines both: `temperature=0` is greedy, otherwise it samples
# with the temperature, from the `top_k` best tokens when given. With *k* = 3 the
# library's sampler never leaves the three candidates.

# %%
gen = torch.Generator().manual_seed(123)
picks = sample_next(next_logits.expand(1_000, -1), temperature=5.0, top_k=3, generator=gen)
assert set(picks.tolist()) == {0, 3, 7}
gen = torch.Generator(device=DEVICE).manual_seed(123)
prompt = text_to_ids("Every effort moves you", tokenizer).to(DEVICE)
ids = generate(model, prompt, 15, temperature=1.4, top_k=25, generator=gen)
print(ids_to_text(ids, tokenizer))
assert ids.shape == (1, 19)

# %% [markdown]
# ## 5.4 Loading and saving model weights in PyTorch
#
# To continue training later we need the optimizer's state too: AdamW keeps two running
# averages per weight, so the file is about three times the model. `save_checkpoint`
# writes model, optimizer and random-number state to a temporary file and renames it
# into place, so an interruption never leaves half a file; `load_checkpoint` checks the
# file and that it fits the model before loading. (`train(..., checkpoint=path)`
# uses the same files to resume an interrupted run exactly.)

# %%
path = env.repo_root() / "runs" / "ch05" / "model_and_optimizer.pt"
save_checkpoint(path, model, optimizer, step=history.eval_steps[-1])
print(f"saved {path.stat().st_size / 1e6:,.0f} MB to {path}")
restored = GPT(CFG).to(DEVICE)
restored_opt = make_optimizer(restored, lr=4e-4, weight_decay=0.1)
load_checkpoint(path, restored, restored_opt)
with torch.no_grad():
    assert torch.equal(restored.eval()(prompt), model(prompt))
assert restored_opt.state_dict()["state"][0]["exp_avg"].equal(
    optimizer.state_dict()["state"][0]["exp_avg"]
)

# %% [markdown]
# ## 5.5 Loading pretrained weights from OpenAI
#
# OpenAI released GPT-2's weights in four sizes (124M, 355M, 774M, 1558M parameters).
# The book converts OpenAI's TensorFlow files; we read the same weights from the
# `model.safetensors` file the Hugging Face Hub publishes, which `load_gpt2` downloads
# once (checksummed) and converts to our `GPT` (GPT-2 proper: context 1024, biases in
# the query/key/value projection, output head tied to the token embedding).
# Without a network connection this cell prints why and the rest is skipped. A smoke
# run uses the weights only if they are already downloaded: 548 MB is no smoke test.

# %%
gpt2 = None
if SMOKE and not (data.data_dir() / entry("124M").path).is_file():
    print("(smoke mode does not download GPT-2's weights: skipping the rest of 5.5)")
else:
    try:
        gpt2 = load_gpt2("124M").to(DEVICE)
    except DataError as exc:
        print(f"error: {exc}")
        print("(skipping the rest of 5.5: GPT-2's weights are not available here)")

# %% [markdown]
# Pretrained on 40 GB of web text, the model writes fluent English, and on *The
# Verdict*, which it never trained on, its losses are far below our own model's
# validation loss (the book: 3.755 training, 3.560 validation).

# %%
if gpt2 is not None:
    torch.manual_seed(123)
    prompt = text_to_ids("Every effort moves you", tokenizer).to(DEVICE)
    ids = generate(gpt2, prompt, 25, temperature=1.5, top_k=50)
    print(ids_to_text(ids, tokenizer))
    gpt2_losses = (loader_loss(gpt2, train_loader, n_batches), loader_loss(gpt2, val_loader))
    print(f"GPT-2 124M: train loss {gpt2_losses[0]:.3f}, val loss {gpt2_losses[1]:.3f}")
    if not SMOKE:
        assert abs(gpt2_losses[0] - 3.755) < 0.02 and abs(gpt2_losses[1] - 3.560) < 0.02

# %% [markdown]
# ## Summary
#
# - A language model is trained to maximise the probability of each next token; the
#   loss is the cross-entropy, and perplexity (its exponential) reads as "how many
#   tokens it hesitates between".
# - Training loop: batch loss → backward → AdamW step, evaluate every few steps on
#   held-out text, look at samples. On one short story the model memorises: training
#   loss below 1, validation loss stuck above 6.
# - Decoding: greedy is deterministic; temperature reshapes the distribution; top-k
#   cuts its tail. Sampling with both gives varied but sensible text.
# - Checkpoints hold model, optimizer and random state, written atomically.
# - OpenAI's GPT-2 weights drop into the same architecture.
#
# Now in the library: `dlnotes.losses` (`batch_loss`, `loader_loss`, `perplexity`,
# `evaluate`), `dlnotes.loader` (`text_to_ids`, `ids_to_text`), `dlnotes.train`
# (`make_optimizer`, `train`, `History`), `dlnotes.checkpoint` (`save_checkpoint`,
# `load_checkpoint`), `dlnotes.pretrained` (`load_gpt2`, `fetch_weights`), `dlnotes.plots`
# (`plot_losses`, `plot_lr`).

# %% [markdown]
# ## Exercises
#
# **5.1 — How often is "pizza" drawn?** Sample the next word of the nine-word toy
# vocabulary 1,000 times at each of the temperatures 1, 0.1 and 5 (one draw at a time,
# seed 123, as in 5.3.1) and count "pizza". Check each count against what its
# probability predicts: $1000\,p$, give or take a few standard deviations
# $\sqrt{1000\,p(1-p)}$.

# %% tags=["solution"]
pizza = vocab.index("pizza")
for t in temperatures:
    p = torch.softmax(next_logits / t, dim=0)
    torch.manual_seed(123)
    n = sum(torch.multinomial(p, num_samples=1).item() == pizza for _ in range(1_000))
    q = p[pizza].item()
    expected, sd = 1_000 * q, math.sqrt(1_000 * q * (1 - q))
    print(f"temperature {t}: pizza {n} times in 1,000 (probability {q:.2%})")
    assert abs(n - expected) <= 4 * sd + 1
    assert t != 0.1 or n == 0  # at 0.1 its probability is below 1e-30

# %% [markdown]
# **5.2 — Other settings.** Draw 2,000 samples from the toy logits with `sample_next` for
# a few (temperature, top-k) pairs: (0.5, all), (1, 3), (5, 3), (5, all), (2, 1). Check
# that top-k never leaves the k best words, that k = 1 is greedy whatever the
# temperature, and that the frequencies match the softmax of the kept logits divided by
# the temperature. Which settings would you pick for varied but sensible text?

# %% tags=["solution"]
best = torch.argsort(next_logits, descending=True)
for t, k in ((0.5, None), (1.0, 3), (5.0, 3), (5.0, None), (2.0, 1)):
    gen = torch.Generator().manual_seed(123)
    picks = sample_next(next_logits.expand(2_000, -1), temperature=t, top_k=k, generator=gen)
    kept = next_logits.clone()
    if k is not None:
        kept[best[k:]] = -torch.inf
    predicted = torch.softmax(kept / t, dim=0)
    freq = torch.bincount(picks, minlength=len(vocab)) / 2_000
    print(f"T={t}, top_k={k}: " + ", ".join(f"{vocab[i]} {freq[i]:.2f}" for i in best[:4]))
    assert set(picks.tolist()) <= set(best[: k or len(vocab)].tolist())
    assert torch.allclose(freq, predicted, atol=0.04)  # ~3.5 standard deviations of 2,000
    if k == 1:
        assert (picks == next_logits.argmax()).all()
# A low temperature or a small k stays close to greedy (safe, repetitive); a high
# temperature with a moderate k (1.4 and 25 in 5.3.3) varies the text while never
# picking from the long tail of nonsense.

# %% [markdown]
# **5.3 — Deterministic decoding, two ways.** Make `generate` give the same text on
# every run: once without any randomness at all, and once while still sampling.

# %% tags=["solution"]
prompt = text_to_ids("Every effort moves you", tokenizer).to(DEVICE)
greedy = generate(model, prompt, 10)
# 1. no randomness: temperature 0 (greedy), or top_k=1 at any temperature
assert torch.equal(generate(model, prompt, 10, temperature=2.0, top_k=1), greedy)
# 2. sampling from a generator with a fixed seed: the same draws on every run
runs = [
    generate(model, prompt, 10, temperature=1.4, top_k=25, generator=gen)
    for gen in (torch.Generator(device=DEVICE).manual_seed(7) for _ in range(2))
]
print(ids_to_text(greedy, tokenizer), "|", ids_to_text(runs[0], tokenizer), sep="\n")
assert torch.equal(runs[0], runs[1])

# %% [markdown]
# **5.4 — Continue pretraining from the checkpoint.** Load the file saved in 5.4 into a
# fresh model and optimizer and train a few more steps. Show that this continues the
# run exactly: the same steps taken by the model still in memory, with its own
# optimizer, give the same losses and weights (start both from the same random state,
# which decides batch order and dropout). What changes if you restore only the model's
# weights and start a new optimizer?

# %% tags=["solution"]
more_steps = env.choose(full=3, smoke=1)


def continue_training(net: GPT, opt: torch.optim.Optimizer) -> list[float]:
    set_rng_state(start_state)  # the same batches and dropout masks for every run
    run = train(net, train_loader, val_loader, opt, max_steps=more_steps, eval_batches=1)
    return run.step_loss


resumed = GPT(CFG).to(DEVICE)
resumed_opt = make_optimizer(resumed, lr=4e-4, weight_decay=0.1)
load_checkpoint(path, resumed, resumed_opt)
adam_steps = resumed_opt.state_dict()["state"][0]["step"].item()
start_state = rng_state()
losses_resumed = continue_training(resumed, resumed_opt)
losses_memory = continue_training(model, optimizer)  # the run that was saved, kept in memory
fresh = GPT(CFG).to(DEVICE)
load_checkpoint(path, fresh)  # weights only: the optimizer starts from scratch
losses_fresh = continue_training(fresh, make_optimizer(fresh, lr=4e-4, weight_decay=0.1))
print(f"resumed {losses_resumed}\nin memory {losses_memory}\nnew optimizer {losses_fresh}")


def largest_gap(a: GPT, b: GPT) -> float:
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    return max((p - q).abs().max().item() for p, q in pairs)


assert resumed_opt.state_dict()["state"][0]["step"].item() == adam_steps + more_steps
assert torch.allclose(torch.tensor(losses_resumed), torch.tensor(losses_memory), atol=1e-3)
# A new AdamW starts with empty running averages, so its first updates have another
# size and the run leaves the saved one's path: a checkpoint for resuming must hold the
# optimizer too.
assert largest_gap(resumed, model) < 1e-3 * largest_gap(resumed, fresh)

# %% [markdown]
# **5.5 — A pretrained model on The Verdict.** Compute the training and validation loss
# of a pretrained model on this chapter's split of the story. The book gets 3.755 and
# 3.560 with GPT-2 124M. Use the base this machine has (`dlnotes.base.load_base`:
# GPT-2 where it can be downloaded, otherwise SmolLM2-135M; smoke mode uses a random
# tiny model). Losses of models with other tokenizers are not directly comparable:
# their tokens are different units of text.

# %% tags=["solution"]
try:
    base = load_base(device=DEVICE)
except (DataError, ImportError) as exc:
    print(f"no pretrained base here ({exc}); using the random tiny model instead")
    base = load_base("tiny", device=DEVICE)
window = min(256, base.context_length)
base_args = dict(batch_size=2, max_length=window, stride=window, shuffle=False)
# the same 90 % / 10 % split of the characters, in the base's own tokens
base_train = create_dataloader(base.tokenizer.encode(text[:split]), **base_args)
base_val = create_dataloader(base.tokenizer.encode(text[split:]), drop_last=False, **base_args)
with torch.no_grad():
    base_losses = (
        loader_loss(base.model, base_train, n_batches),  # smoke mode: only 2 batches
        loader_loss(base.model, base_val),
    )
print(f"{base!r}\ntrain loss {base_losses[0]:.3f}, val loss {base_losses[1]:.3f}")
print("the book, GPT-2 124M: train loss 3.755, val loss 3.560")
if base.name == "gpt2-124M":
    assert abs(base_losses[0] - 3.755) < 0.02 and abs(base_losses[1] - 3.560) < 0.02
elif base.pretrained:
    assert max(base_losses) < 4.5  # SmolLM2-135M: 3.865 and 3.617, in its own tokens
else:
    assert abs(base_losses[1] - math.log(base.model.cfg.vocab_size)) < 0.5

# %% [markdown]
# **5.6 — Larger models.** How large are GPT-2 medium, large and XL, as released (biased
# query/key/value projections, output head tied to the token embedding), and how much
# memory do their float32 weights need? Where the weights can be downloaded (full mode
# only: 1.4 GB for medium), compute medium's losses on the story as in 5.5 and compare
# them with 124M's, and compare the texts both write from the same prompt.

# %% tags=["solution"]
released = {
    "124M": 124_439_808,
    "355M": 354_823_168,
    "774M": 774_030_080,
    "1558M": 1_557_611_200,
}
for size, n_released in released.items():
    with torch.device("meta"):  # shapes only
        n = GPT(GPTConfig.gpt2(size)).num_parameters()
    print(f"GPT-2 {size:>5}: {n:>13,} parameters, {n * 4 / 1e9:.1f} GB in float32")
    assert n == n_released
medium = None
if not SMOKE:
    try:
        medium = load_gpt2("355M").to(DEVICE)
    except DataError as exc:
        print(f"(GPT-2 355M is not available here: {exc})")
if medium is not None:
    with torch.no_grad():
        medium_losses = (loader_loss(medium, train_loader), loader_loss(medium, val_loader))
    print(f"GPT-2 355M: train loss {medium_losses[0]:.3f}, val loss {medium_losses[1]:.3f}")
    print("GPT-2 124M (the book): train loss 3.755, val loss 3.560")
    torch.manual_seed(123)
    print(ids_to_text(generate(medium, prompt, 25, temperature=1.5, top_k=50), tokenizer))
    assert max(medium_losses) < 4.5
