# %% [markdown]
# # Ch. 2 — Working with text data
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, chapter 2.
#
# A language model computes with numbers, so text has to become numbers first. This
# chapter builds the whole input pipeline of a GPT: split a text into tokens, give each
# token an id, cut the id sequence into input/target windows for next-token
# prediction, and look each id up in an embedding table, adding a position embedding.
# On the way we compare a word-level tokenizer with GPT-2's byte-pair encoding (BPE),
# and check that our own BPE gives exactly the ids of OpenAI's `tiktoken`.
#
# Library names introduced: `dlnotes.text` (`split_words`, `build_vocab`,
# `SimpleTokenizer`), `dlnotes.bpe` (`BPETokenizer`, `merge`, `pair_counts`),
# `dlnotes.gpt2_tokenizer` (`GPT2Tokenizer`, `tiktoken_gpt2`), `dlnotes.loader`
# (`GPTDataset`, `create_dataloader`). Also used: `dlnotes.data.fetch`, `dlnotes.env`.
#
# Runtime: a few seconds, full or smoke (smoke mode trains a smaller BPE).

# %%
import re
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from dlnotes import data, env
from dlnotes.bpe import BPETokenizer, merge, pair_counts
from dlnotes.errors import InputError
from dlnotes.gpt2_tokenizer import ENDOFTEXT, GPT2Tokenizer, tiktoken_gpt2
from dlnotes.loader import GPTDataset, create_dataloader
from dlnotes.text import UNK, SimpleTokenizer, build_vocab, split_words

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
N_MERGES = env.choose(full=1_000, smoke=100)  # merges learned by our own BPE in 2.5
print(env.banner(DEVICE))

# %%
path = data.fetch("the-verdict")
raw_text = path.read_text(encoding="utf-8")
print(f"{len(raw_text):,} characters; it begins: {raw_text[:99]!r}")
assert len(raw_text) == 20_479

# %% [markdown]
# ## 2.1 Understanding word embeddings
#
# A neural network needs each input as a vector of numbers. An *embedding* maps a
# discrete object (a word, a token, an image patch) to a point in a continuous space,
# and a good one puts things that are used alike near each other. Word2Vec learned such
# vectors by predicting a word from its neighbours; an LLM learns its own embeddings as
# the first layer of the model, trained with everything else, and GPT-2 small uses
# 768 dimensions per token.
#
# We can see the idea without any training: describe each frequent word of the story by
# the words around it (counts within two positions, turned into positive pointwise
# mutual information), then compress those rows with an SVD. Words used alike get
# similar rows.

# %%
words = re.findall(r"[a-z]+", raw_text.lower())
common = [w for w, _ in Counter(words).most_common(300)]
index = {w: i for i, w in enumerate(common)}
counts = np.zeros((len(common), len(common)))
for i, w in enumerate(words):
    for j in range(max(0, i - 2), min(len(words), i + 3)):
        if j != i and w in index and words[j] in index:
            counts[index[w], index[words[j]]] += 1
expected = counts.sum(1, keepdims=True) * counts.sum(0, keepdims=True) / counts.sum()
with np.errstate(divide="ignore"):
    ppmi = np.maximum(np.log(counts / expected), 0)  # log(0) = -inf becomes 0
u, s, _ = np.linalg.svd(ppmi)
word_vectors = u[:, :50] * s[:50]  # one 50-d vector per word
print(word_vectors.shape)


# %%
def cosine(a: str, b: str) -> float:
    va, vb = word_vectors[index[a]], word_vectors[index[b]]
    return float(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb))


print(f"he~she {cosine('he', 'she'):.2f}, he~picture {cosine('he', 'picture'):.2f}")
assert cosine("he", "she") > 2 * cosine("he", "picture")

# %% [markdown]
# Paper has two dimensions, the vectors fifty. To draw some of them we project onto
# their two *principal components* (PCA): centre the vectors, and keep their
# coordinates along the two directions in which they spread most, the top two right
# singular vectors of the centred matrix. From one short story the picture is rough,
# but the verbs *said*, *thought* and *felt* end up on one side and the nouns
# *picture*, *eyes* and *house* on the other.

# %%
shown = "he she i you his her my was had said thought felt picture painting eyes house".split()
points = word_vectors[[index[w] for w in shown]]
points = points / np.linalg.norm(points, axis=1, keepdims=True)
centred = points - points.mean(0)
xy = centred @ np.linalg.svd(centred)[2][:2].T  # coordinates on the two principal axes
fig, ax = plt.subplots(figsize=(5, 4))
ax.scatter(xy[:, 0], xy[:, 1], s=10)
for (x, y), w in zip(xy, shown, strict=True):
    ax.annotate(w, (x, y), fontsize=9)
ax.set(
    title="Words of The Verdict by their neighbours\n(50-d vectors, PCA projection to 2-d)",
    xlabel="first principal component",
    ylabel="second principal component",
)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2.2 Tokenizing text
#
# The first step is to split the text into *tokens*: words and punctuation marks. A
# regular expression with a capture group, `re.split(r"(\s)", text)`, splits on
# whitespace and keeps the separators; adding punctuation and the double dash to the
# group makes them tokens of their own. Dropping the whitespace saves tokens here
# (for code, where indentation matters, one would keep it).

# %%
sample = "Hello, world. Is this-- a test?"
print(re.split(r"(\s)", sample))
print(re.split(r"([,.]|\s)", sample))
print(split_words(sample))  # the final rule, now in the library
env.show(split_words)
assert split_words(sample) == ["Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?"]

# %%
preprocessed = split_words(raw_text)
print(len(preprocessed), preprocessed[:30])
assert len(preprocessed) == 4_690
assert preprocessed[:5] == ["I", "HAD", "always", "thought", "Jack"]

# %% [markdown]
# ## 2.3 Converting tokens into token IDs
#
# The vocabulary numbers the distinct tokens in sorted order (punctuation sorts before
# capital letters, which sort before lower case). A tokenizer holds the vocabulary both
# ways: `encode` maps text to ids, `decode` maps ids back, joining words with spaces and
# then removing the space in front of punctuation.

# %%
vocab = build_vocab(preprocessed)
print(len(vocab), list(vocab.items())[:12])
assert len(vocab) == 1_130
assert vocab["!"] == 0 and vocab["A"] == 11 and vocab["yourself"] == 1_129

# %%
tokenizer = SimpleTokenizer(vocab)
text = """"It's the last he painted, you know,"
       Mrs. Gisburn said with pardonable pride."""
ids = tokenizer.encode(text)
print(ids)
print(tokenizer.decode(ids))
assert ids[:11] == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596]
assert ids[11:] == [5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]
assert split_words(tokenizer.decode(ids)) == split_words(text)  # the words survive

# %% [markdown]
# The words survive, the spacing does not: the decoded text starts `" It' s`. Encoding
# threw the whitespace away, so `decode` sees only the tokens `"`, `It`, `'`, `s` and
# must guess where spaces were. Its one rule is "no space *before* a punctuation mark",
# which is right for `know,` and `Mrs.` but wrong for an apostrophe inside a word (no
# space after it either) and for an opening quote (the space belongs before it, not
# after). A word-level tokenizer cannot tell these apart without keeping the
# whitespace; GPT-2's tokenizer in 2.5 keeps each space inside the token that follows
# it, and so decodes every text exactly.

# %%
decoded = tokenizer.decode(ids)
print(f"{text[:16]!r} -> {decoded[:16]!r}")
assert decoded.startswith("\" It' s the last") and "It's" in text

# %% [markdown]
# ## 2.4 Adding special context tokens
#
# A word the story never uses has no id, and the tokenizer can only refuse it:

# %%
try:
    tokenizer.encode("Hello, do you like tea?")
    raise AssertionError("an unknown word should have been refused")
except InputError as err:
    print(f"error: {err}")
    assert "'Hello'" in str(err)

# %% [markdown]
# Two special tokens fix this: `<|unk|>` stands for any unknown word, and
# `<|endoftext|>` separates independent texts that are joined into one training
# stream, so the model can learn that what follows does not continue what came before.
# (GPT-2 needs only `<|endoftext|>`: its byte-level BPE has no unknown words, as 2.5
# shows.)

# %%
vocab = build_vocab(preprocessed, specials=[ENDOFTEXT, UNK])
print(len(vocab), list(vocab.items())[-5:])
assert len(vocab) == 1_132 and vocab[ENDOFTEXT] == 1_130 and vocab[UNK] == 1_131
tokenizer = SimpleTokenizer(vocab)
text = f" {ENDOFTEXT} ".join(["Hello, do you like tea?", "In the sunlit terraces of the palace."])
ids = tokenizer.encode(text)
print(ids)
print(tokenizer.decode(ids))
assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]

# %% [markdown]
# ## 2.5 Byte pair encoding
#
# GPT-2 splits text into sub-word tokens with *byte pair encoding*. It starts from the
# 256 possible bytes, so every text can be encoded, and its vocabulary adds 50,000
# merged byte sequences learned from a large corpus, plus `<|endoftext|>`: 50,257 ids.
# Frequent words are one token; a rare word becomes a few pieces. OpenAI's `tiktoken`
# implements it in Rust (the book calls `tiktoken.get_encoding("gpt2")`;
# `tiktoken_gpt2()` is the same, working offline from our data folder).
#
# Special tokens must be allowed explicitly, so that a user's text cannot smuggle one in.

# %%
gpt2 = tiktoken_gpt2()
text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
try:
    gpt2.encode(text)
except ValueError as err:
    print(f"without allowed_special: {str(err).splitlines()[0]}")
ids = gpt2.encode(text, allowed_special={ENDOFTEXT})
print(ids)
print(gpt2.decode(ids))
assert ids[:10] == [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554]
assert ids[10:] == [262, 4252, 18250, 8812, 2114, 286, 617, 34680, 27271, 13]

# %%
ids = gpt2.encode("Akwirw ier")
print([gpt2.decode([i]) for i in ids])  # an unknown word becomes sub-words
assert ids == [33901, 86, 343, 86, 220, 959] and gpt2.decode(ids) == "Akwirw ier"
enc_text = gpt2.encode(raw_text)
print(f"the-verdict: {len(enc_text):,} BPE tokens for {len(preprocessed):,} words")
assert len(enc_text) == 5_145

# %% [markdown]
# ### Our own BPE, equal to GPT-2's
#
# BPE encoding in three steps:
#
# 1. *Pre-tokenize* with a regex: GPT-2 splits into chunks such as `" world"`,
#    `"'s"`, `" 123"` or a run of spaces, and never merges across chunks.
# 2. Turn each chunk into its UTF-8 bytes, one id per byte (GPT-2 gives the 256 bytes
#    its own order of ids, printable characters first).
# 3. Repeatedly find the adjacent pair whose merge was learned earliest and merge it,
#    until no learned pair is left.
#
# `GPT2Tokenizer` reads OpenAI's `encoder.json` and `vocab.bpe` (the merges in the
# order they were learned). Here is step 3 by hand for one chunk, with the library's
# two helpers `pair_counts` and `merge`:

# %%
ours = GPT2Tokenizer.pretrained()
chunk = " someunknownPlace"  # one chunk of the sentence above
ids = [ours.byte_ids[b] for b in chunk.encode("utf-8")]
while len(ids) > 1:
    pair = min(pair_counts(ids), key=lambda p: ours.merges.get(p, float("inf")))
    if pair not in ours.merges:
        break
    ids = merge(ids, pair, ours.merges[pair])
    print([ours.decode([i]) for i in ids])
assert ids == gpt2.encode(chunk) == ours.encode(chunk)

# %%
text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
assert ours.encode(text, allowed_special={ENDOFTEXT}) == gpt2.encode(
    text, allowed_special={ENDOFTEXT}
)
assert ours.encode(raw_text) == enc_text  # all 5,145 ids equal tiktoken's
assert ours.decode(enc_text) == raw_text
for tricky in ["  spaces\n\n and 123,456 ", "naïve café 你好 👋🏽", "I'm sure they'll"]:
    assert ours.encode(tricky) == gpt2.encode(tricky)
    print(f"{tricky!r:34} -> {ours.encode(tricky)}")

# %% [markdown]
# ### Training a BPE
#
# The merges themselves are learned: count every adjacent pair in the (pre-tokenized)
# corpus, merge the most frequent pair into a new id, and repeat. Recounting the whole
# corpus after each merge is slow; `BPETokenizer.train` keeps the pair counts and, per
# pair, the chunks that contain it, and after a merge updates only those chunks. On one
# short story the first merges are spaces before common letters and short words:

# %%
verdict_bpe = BPETokenizer.train(raw_text, 256 + N_MERGES + 1, special_tokens=[ENDOFTEXT])
first = [verdict_bpe.decode([i]) for i in list(verdict_bpe.merges.values())[:12]]
print(first)
ids = verdict_bpe.encode(raw_text)
print(f"{N_MERGES} merges: {len(ids):,} tokens for the story (GPT-2: {len(enc_text):,})")
assert verdict_bpe.decode(ids) == raw_text and len(verdict_bpe.merges) == N_MERGES
assert len(ids) < len(raw_text.encode()) / 1.7  # merges shorten the byte sequence
assert SMOKE or len(ids) == 6_454
saved = verdict_bpe.save(env.repo_root() / "runs" / "ch02" / "verdict-bpe.json")
assert BPETokenizer.load(saved).encode(raw_text) == ids

# %% [markdown]
# A thousand merges learned from this story alone still leave it about a quarter longer
# than GPT-2's 50,000 merges do (6,454 tokens against 5,145): a bigger vocabulary
# means longer tokens, and GPT-2 learned its merges from far more text.
#
# ## 2.6 Data sampling with a sliding window
#
# An LLM is trained to predict the next token. From a window of `max_length` ids, the
# input is the window and the target is the same window shifted one to the right, so a
# window of 4 holds 4 predictions: after `x[:1]` comes `y[0]`, after `x[:2]` comes
# `y[1]`, and so on.

# %%
enc_sample = enc_text[50:]
context_size = 4
x, y = enc_sample[:context_size], enc_sample[1 : context_size + 1]
print(f"x: {x}\ny:      {y}")
for i in range(1, context_size + 1):
    print(f"{gpt2.decode(enc_sample[:i])!r:>22} ----> {gpt2.decode([enc_sample[i]])!r}")
assert x == [290, 4920, 2241, 287] and y == [4920, 2241, 287, 257]

# %% [markdown]
# `GPTDataset` turns a text (or ids already encoded) into such windows, a new one every
# `stride` ids, and `create_dataloader` batches them. The book's first batches:

# %%
env.show(GPTDataset.__getitem__)
loader = create_dataloader(raw_text, batch_size=1, max_length=4, stride=1, shuffle=False)
batches = iter(loader)
first_batch, second_batch = next(batches), next(batches)
print(first_batch, second_batch, sep="\n")
assert first_batch[0].tolist() == [[40, 367, 2885, 1464]]
assert second_batch[1].tolist() == [[2885, 1464, 1807, 3619]]

# %% [markdown]
# The stride sets how much consecutive windows overlap: `max_length - stride` ids are
# shared. Stride 1 gives the most (highly overlapping) samples; a stride equal to
# `max_length` uses every id once as an input, which avoids overfitting to repeated
# windows.

# %%
for stride in (1, 2, 4):
    ds = GPTDataset(enc_text, max_length=4, stride=stride)
    first_two = [ds[0][0].tolist(), ds[1][0].tolist()]
    print(f"stride {stride}: {len(ds):,} windows, overlap {4 - stride}, first two {first_two}")
assert len(GPTDataset(enc_text, max_length=4, stride=4)) == len(range(0, 5_145 - 4, 4))

# %%
loader = create_dataloader(raw_text, batch_size=8, max_length=4, stride=4, shuffle=False)
inputs, targets = next(iter(loader))
print("inputs:\n", inputs, "\ntargets:\n", targets)
assert inputs.shape == targets.shape == (8, 4)
assert inputs[:, 0].tolist() == [40, 1807, 10899, 15632, 922, 568, 1049, 284]
assert torch.equal(inputs[:, 1:], targets[:, :-1])

# %% [markdown]
# A text too short for even one window is an error that says what is needed, rather
# than an empty loader:

# %%
try:
    create_dataloader("Hello, world", batch_size=1, max_length=256)
    raise AssertionError("a 3-token text should have been refused")
except InputError as err:
    print(f"error: {err}")
    assert "has 3 tokens" in str(err) and "at least 257" in str(err)

# %% [markdown]
# ## 2.7 Creating token embeddings
#
# An embedding layer is a lookup table: row `i` of its weight matrix is the vector for
# id `i`. It computes the same as multiplying a one-hot vector by the matrix, without
# building the one-hot vector; the rows are ordinary weights, trained by backprop.

# %%
torch.manual_seed(123)
embedding_layer = nn.Embedding(6, 3)  # 6 ids, 3 dimensions
print(embedding_layer.weight)
book_row_0 = torch.tensor([0.3374, -0.1778, -0.1690])
assert torch.allclose(embedding_layer.weight[0], book_row_0, atol=1e-4)
ids = torch.tensor([2, 3, 5, 1])
one_hot = nn.functional.one_hot(ids, num_classes=6).float()
assert torch.allclose(embedding_layer(ids), one_hot @ embedding_layer.weight)

# %% [markdown]
# ## 2.8 Encoding word positions
#
# Attention (chapter 3) treats its inputs as a set: without help, the same token gets
# the same vector wherever it stands. GPT-2 adds an *absolute positional embedding*, a
# second trained table with one row per position, to each token's embedding. The book's
# sizes: the 50,257 GPT-2 ids in 256 dimensions, batches of 8 windows of 4 tokens.

# %%
vocab_size, output_dim, max_length = 50_257, 256, 4
token_embedding_layer = nn.Embedding(vocab_size, output_dim).to(DEVICE)
pos_embedding_layer = nn.Embedding(max_length, output_dim).to(DEVICE)
loader = create_dataloader(
    raw_text, batch_size=8, max_length=max_length, stride=max_length, shuffle=False
)
inputs, _ = next(iter(loader))
token_embeddings = token_embedding_layer(inputs.to(DEVICE))  # (8, 4, 256)
pos_embeddings = pos_embedding_layer(torch.arange(max_length, device=DEVICE))  # (4, 256)
input_embeddings = token_embeddings + pos_embeddings  # broadcast over the batch
print(token_embeddings.shape, pos_embeddings.shape, input_embeddings.shape)
assert input_embeddings.shape == (8, 4, 256)
assert torch.allclose(input_embeddings[3] - token_embeddings[3], pos_embeddings, atol=1e-6)

# %% [markdown]
# ## Summary
#
# - Text becomes tokens, tokens become ids through a vocabulary, and ids become vectors
#   through an embedding table; a position embedding added on top tells the model where
#   each token stands.
# - A word vocabulary (1,130 words for The Verdict) fails on unseen words unless it has
#   `<|unk|>`; `<|endoftext|>` separates joined texts.
# - GPT-2's byte-level BPE never meets an unknown word: it falls back to sub-words and,
#   at worst, bytes. The Verdict is 5,145 GPT-2 tokens. Our BPE gives tiktoken's ids
#   exactly, and trains its own merges incrementally.
# - Training samples are sliding windows with targets shifted by one; the stride sets the
#   overlap.
#
# Now in the library: `dlnotes.text` (`split_words`, `build_vocab`, `SimpleTokenizer`),
# `dlnotes.bpe` (`BPETokenizer` with `train`/`encode`/`decode`/`save`/`load`, `merge`,
# `pair_counts`), `dlnotes.gpt2_tokenizer` (`GPT2Tokenizer`, `tiktoken_gpt2`,
# `bytes_to_unicode`), `dlnotes.loader` (`GPTDataset`, `create_dataloader`, used for
# pretraining in chapter 5).

# %% [markdown]
# ## Exercises
#
# **2.1 — An unknown word, piece by piece.** Encode `"Akwirw ier"` with GPT-2's
# tokenizer. Decode each id on its own, join the pieces, and check that they give the
# input back; then encode each piece on its own and check that it is exactly its one id.
# Does our own `GPT2Tokenizer` cut the word the same way? (The book's ids: 33901, 86,
# 343, 86, 220, 959.)

# %% tags=["solution"]
word = "Akwirw ier"
word_ids = gpt2.encode(word)
pieces = [gpt2.decode([i]) for i in word_ids]
print(list(zip(word_ids, pieces, strict=True)))
assert word_ids == [33901, 86, 343, 86, 220, 959]
assert "".join(pieces) == word  # the pieces cover the text, nothing lost or added
assert [gpt2.encode(piece) for piece in pieces] == [[i] for i in word_ids]
assert ours.encode(word) == word_ids and [ours.decode([i]) for i in word_ids] == pieces

# %% [markdown]
# **2.2 — Other windows.** Build loaders over the story with `max_length=2, stride=2`
# and with `max_length=8, stride=2`. Predict how many windows each has from the number
# of tokens (5,145), check the first batch against the token ids directly, and check
# that consecutive windows of the second share `max_length - stride` ids.

# %% tags=["solution"]
for max_length, stride in ((2, 2), (8, 2)):
    loader = create_dataloader(
        raw_text, batch_size=4, max_length=max_length, stride=stride, shuffle=False
    )
    inputs, targets = next(iter(loader))
    n_windows = len(loader.dataset)
    # a window starts every `stride` ids, and needs max_length + 1 ids for its target
    predicted = (len(enc_text) - max_length - 1) // stride + 1
    print(f"max_length {max_length}, stride {stride}: {n_windows:,} windows\n{inputs}")
    assert n_windows == predicted == len(range(0, len(enc_text) - max_length, stride))
    for b in range(4):
        start = b * stride
        assert inputs[b].tolist() == enc_text[start : start + max_length]
        assert targets[b].tolist() == enc_text[start + 1 : start + max_length + 1]
    overlap = max_length - stride
    assert torch.equal(inputs[1:, :overlap], inputs[:-1, stride:])
