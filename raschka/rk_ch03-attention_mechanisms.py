# %% [markdown]
# # Ch. 3 — Coding attention mechanisms
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, chapter 3.
#
# Attention is the one part of a GPT where tokens exchange information. This chapter
# builds it up in small steps, each cell checked against the book's printed numbers:
# dot-product attention with no weights at all, then trainable query/key/value
# projections, then a causal mask so a token cannot see the future, dropout, and
# finally several heads at once. The teaching versions stay in this script; the final
# one lives in the library as `dlnotes.attention.MultiHeadAttention` (chapter 4 builds
# the GPT on it), and the last cells check that it equals ours.
#
# Library names used: `MultiHeadAttention` (new here, with a fused `qkv` projection and
# an SDPA path), `env.device`, `env.seed_everything`, `env.show`.
#
# Runtime: a few seconds, full or smoke (smoke mode only shortens the GPT-2-sized timing
# at the end).

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlnotes import env
from dlnotes.attention import MultiHeadAttention

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
torch.set_printoptions(precision=4, sci_mode=False)


def near(actual: torch.Tensor, book: list[float]) -> bool:
    """True if `actual` matches numbers printed in the book (to its 4 decimals)."""
    return torch.allclose(actual, torch.tensor(book), atol=1e-4)


# The toy examples are six 3-d vectors: they run on the CPU. DEVICE is for the GPT-2 sizes.
GPT2_TOKENS = env.choose(full=1024, smoke=128)  # sequence length timed at GPT-2 sizes
print(env.banner(DEVICE))

# %% [markdown]
# ## 3.1 Why long sequences are hard without attention
#
# Translating word by word fails: German puts verbs where English does not, and one word
# may become two. Before transformers, the standard answer was an *encoder–decoder RNN*.
# The encoder reads the source sentence one token at a time, updating a hidden state;
# the decoder then generates the translation from that final hidden state alone.
#
# The weak spot is that single vector. Whatever the decoder needs about word 1 of a long
# sentence has to survive every later update of the encoder's state, and the state has
# the same fixed size whether the sentence has 6 tokens or 60:

# %%
rnn = nn.RNN(input_size=3, hidden_size=4, batch_first=True)
for length in (6, 60):
    _, final_state = rnn(torch.randn(1, length, 3))
    print(f"{length:>2} tokens -> final hidden state of shape {tuple(final_state.shape)}")
assert final_state.shape == (1, 1, 4)

# %% [markdown]
# ## 3.2 Attention: let every position look at every other
#
# Bahdanau attention (2014) kept the RNN but let the decoder, at each output step, look
# back at *all* encoder states and take a weighted mix of them, the weights saying how
# relevant each input token is right now. Three years later, the transformer paper
# ("Attention is all you need") dropped the recurrence altogether.
#
# *Self*-attention is the variant used in GPT: the positions of one sequence attend to
# the positions of that same sequence. For each token it produces a *context vector*, a
# weighted sum of (projections of) all tokens, where the weights come from how well the
# token's query matches each other token's key.
#
# ## 3.3 Self-attention without trainable weights
#
# ### 3.3.1 One query
#
# The book's running example: "Your journey starts with one step", each word already
# embedded as a 3-d vector. Take "journey" (row 1) as the query. Its attention score
# with each token is a dot product: large when the two vectors point the same way.

# %%
words = ["Your", "journey", "starts", "with", "one", "step"]
inputs = torch.tensor(
    [
        [0.43, 0.15, 0.89],  # Your
        [0.55, 0.87, 0.66],  # journey
        [0.57, 0.85, 0.64],  # starts
        [0.22, 0.58, 0.33],  # with
        [0.77, 0.25, 0.10],  # one
        [0.05, 0.80, 0.55],  # step
    ]
)
query = inputs[1]
attn_scores_2 = torch.empty(len(inputs))
for i, x_i in enumerate(inputs):
    attn_scores_2[i] = torch.dot(x_i, query)
print(attn_scores_2)
assert near(attn_scores_2, [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])

# %% [markdown]
# Scores are turned into *attention weights* that are positive and sum to 1. Dividing
# by the sum does that, but softmax is the standard choice: it is positive even for
# negative scores and stretches the gaps between them. Written naively as
# `exp(s) / exp(s).sum()` it overflows for large scores; `torch.softmax` subtracts the
# maximum first, which leaves the result unchanged.

# %%
by_sum = attn_scores_2 / attn_scores_2.sum()
naive = torch.exp(attn_scores_2) / torch.exp(attn_scores_2).sum()
attn_weights_2 = torch.softmax(attn_scores_2, dim=0)
print("divide by sum:", by_sum, "\nsoftmax:      ", attn_weights_2)
assert near(by_sum, [0.1455, 0.2278, 0.2249, 0.1285, 0.1077, 0.1656])
assert near(attn_weights_2, [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581])
assert torch.allclose(naive, attn_weights_2) and math.isclose(
    attn_weights_2.sum().item(), 1.0, rel_tol=1e-6
)
big = torch.tensor([1000.0, 1001.0])
naive_big = torch.exp(big) / torch.exp(big).sum()  # exp(1000) is inf in float32: inf / inf
print("naive on [1000, 1001]:", naive_big, " torch:", torch.softmax(big, 0))
assert torch.isnan(naive_big).all()

# %% [markdown]
# The context vector for "journey" is the weighted sum of all input vectors.

# %%
context_vec_2 = torch.zeros(3)
for w_i, x_i in zip(attn_weights_2, inputs, strict=True):
    context_vec_2 += w_i * x_i
print(context_vec_2)
assert near(context_vec_2, [0.4419, 0.6515, 0.5683])

# %% [markdown]
# ### 3.3.2 Every token at once
#
# The same three steps for all six queries. The double loop of dot products is exactly
# the matrix product `inputs @ inputs.T`; softmax runs along each row (`dim=-1`: each
# query's weights over all keys), and a second matrix product mixes the inputs.

# %%
loop_scores = torch.empty(6, 6)
for i, x_i in enumerate(inputs):
    for j, x_j in enumerate(inputs):
        loop_scores[i, j] = torch.dot(x_i, x_j)
attn_scores = inputs @ inputs.T
attn_weights = torch.softmax(attn_scores, dim=-1)
all_context_vecs = attn_weights @ inputs
print(attn_weights, all_context_vecs, sep="\n")
assert torch.allclose(loop_scores, attn_scores) and torch.allclose(attn_scores[1], attn_scores_2)
assert torch.allclose(attn_weights.sum(dim=-1), torch.ones(6))
assert torch.allclose(all_context_vecs[1], context_vec_2)
assert near(all_context_vecs[4], [0.4671, 0.5910, 0.5266])

# %% [markdown]
# A heat map of the weights: row = the query token, column = the token it attends to.
# Without trainable weights, a score is just a dot product, so long vectors pointing the
# way most others do win: "journey" and "starts" (almost the same vector) draw the most
# weight from nearly every query. Learning *what* to attend to needs trainable weights.

# %%
fig, ax = plt.subplots(figsize=(4.5, 4))
im = ax.imshow(attn_weights, cmap="viridis")
ax.set_xticks(range(6), words, rotation=45)
ax.set_yticks(range(6), words)
ax.set_xlabel("attends to (key)")
ax.set_ylabel("query")
fig.colorbar(im, ax=ax, label="attention weight")
ax.set_title("Simplified self-attention weights")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3.4 Self-attention with trainable weights
#
# ### 3.4.1 Queries, keys and values, step by step
#
# Real attention ("scaled dot-product attention") first projects each input three
# ways with trainable matrices: a *query* (what this token is looking for), a *key*
# (what it offers to be found by) and a *value* (what it passes on when attended to).
# Scores are query · key, the mix is over values. Here d_in = 3 and d_out = 2; the
# weights are fixed random numbers (`requires_grad=False`) since we only run forward.

# %%
x_2 = inputs[1]
d_in, d_out = inputs.shape[1], 2
torch.manual_seed(123)
W_query = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
W_key = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
W_value = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
query_2 = x_2 @ W_query
keys, values = inputs @ W_key, inputs @ W_value
attn_scores_2 = query_2 @ keys.T
print("query_2:", query_2, "\nscores for query 2:", attn_scores_2)
assert keys.shape == values.shape == (6, 2)
assert near(query_2, [0.4306, 1.4551])
assert math.isclose(query_2.dot(keys[1]).item(), 1.8524, abs_tol=1e-4)
assert near(attn_scores_2, [1.2705, 1.8524, 1.8111, 1.0795, 0.5577, 1.5440])

# %% [markdown]
# Before the softmax the scores are divided by √d_k (d_k = the key size). Why: if query
# and key entries are roughly independent with variance 1, their dot product is a sum of
# d_k such products, with variance d_k. At GPT-2's d_k = 64 the scores have a standard
# deviation near 8, and softmax of such spread-out numbers is almost one-hot: nearly all
# weight on one token, and gradients through the softmax close to zero, so training
# stalls. Dividing by √d_k brings the spread back to about 1:

# %%
q, k = torch.randn(1000, 64), torch.randn(1000, 10, 64)  # 1000 queries, 10 keys each
raw = torch.einsum("qd,qkd->qk", q, k)  # (1000, 10) unscaled scores
peak = {}
for name, scores in (("raw", raw), ("scaled", raw / math.sqrt(64))):
    peak[name] = torch.softmax(scores, dim=-1).max(dim=-1).values.mean().item()
    print(f"{name:>6}: score std {scores.std():5.2f}, mean largest of 10 weights {peak[name]:.2f}")
assert raw.std() > 6 and 0.8 < (raw / 8).std() < 1.2
assert peak["raw"] > 2 * peak["scaled"]

# %%
d_k = keys.shape[-1]
attn_weights_2 = torch.softmax(attn_scores_2 / d_k**0.5, dim=-1)
context_vec_2 = attn_weights_2 @ values
print(attn_weights_2, context_vec_2)
assert near(attn_weights_2, [0.1500, 0.2264, 0.2199, 0.1311, 0.0906, 0.1820])
assert near(context_vec_2, [0.3061, 0.8210])

# %% [markdown]
# ### 3.4.2 As a module
#
# The same computation for all tokens, wrapped in an `nn.Module`. First with raw
# `nn.Parameter` matrices, exactly as above (same seed, so the same numbers; row 1 is
# the context vector of "journey").


# %%
class SelfAttentionParams(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries, keys, values = x @ self.W_query, x @ self.W_key, x @ self.W_value
        weights = torch.softmax(queries @ keys.T / keys.shape[-1] ** 0.5, dim=-1)
        return weights @ values


torch.manual_seed(123)
sa_params = SelfAttentionParams(d_in, d_out)
out_params = sa_params(inputs)
print(out_params)
assert torch.allclose(out_params[1], context_vec_2)
assert near(out_params[0], [0.2996, 0.8053])

# %% [markdown]
# `nn.Linear` without bias is the same matrix product, with two practical gains: a
# better initialisation than `torch.rand`, and PyTorch's tuned kernels. It stores its
# weight as (d_out, d_in) and computes `x @ weight.T`, so copying its weights into the
# `nn.Parameter` version means transposing them, after which the two agree exactly.


# %%
class SelfAttentionLinear(nn.Module):
    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        weights = torch.softmax(queries @ keys.T / keys.shape[-1] ** 0.5, dim=-1)
        return weights @ values


torch.manual_seed(789)
sa_linear = SelfAttentionLinear(d_in, d_out)
out_linear = sa_linear(inputs)
with torch.no_grad():
    for name in ("W_query", "W_key", "W_value"):
        getattr(sa_params, name).copy_(getattr(sa_linear, name).weight.T)
print(out_linear)
assert near(out_linear[0], [-0.0739, 0.0713])
assert torch.allclose(sa_params(inputs), out_linear, atol=1e-6)

# %% [markdown]
# ## 3.5 Hiding future tokens: causal attention
#
# A GPT predicts the next token from the previous ones, so when computing the context
# vector of position i it must not use positions after i. In the weight matrix that
# means: zero everything above the diagonal.
#
# ### 3.5.1 The causal mask
#
# First attempt: compute the weights as before, multiply by a lower-triangular matrix of
# ones, and renormalise each row to sum to 1 again.

# %%
queries, keys = sa_linear.W_query(inputs), sa_linear.W_key(inputs)
attn_scores = queries @ keys.T
attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
context_length = attn_scores.shape[0]
mask_simple = torch.tril(torch.ones(context_length, context_length))
masked_simple = attn_weights * mask_simple
renormalised = masked_simple / masked_simple.sum(dim=-1, keepdim=True)
print(renormalised)
assert near(attn_weights[0], [0.1921, 0.1646, 0.1652, 0.1550, 0.1721, 0.1510])
assert near(renormalised[1, :2], [0.5517, 0.4483])

# %% [markdown]
# Is information leaking, since the softmax saw the future scores? No: after
# renormalising, each row is exp(s_j) / Σ_{visible} exp(s_k) over the visible j only;
# the future scores cancel out of the ratio. That also gives the cheaper way: set the
# future scores to −∞ *before* the softmax (exp(−∞) = 0), one pass instead of three.

# %%
future = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
masked = attn_scores.masked_fill(future, -torch.inf)
causal_weights = torch.softmax(masked / keys.shape[-1] ** 0.5, dim=-1)
print(masked)
assert torch.allclose(causal_weights, renormalised, atol=1e-6)
assert (causal_weights[future] == 0).all()

# %% [markdown]
# The causal weights as a heat map, drawn like the one in 3.3: everything above the
# diagonal is exactly 0, so row i mixes only tokens 0 … i. The first token can attend
# only to itself (weight 1); later rows spread their weight over more and more tokens.

# %%
fig, ax = plt.subplots(figsize=(5, 4))
im = ax.imshow(causal_weights.detach(), cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(6), words, rotation=45)
ax.set_yticks(range(6), words)
ax.set_xlabel("attends to (key)")
ax.set_ylabel("query")
fig.colorbar(im, ax=ax, label="attention weight")
ax.set_title("Causal attention weights")
fig.tight_layout()
plt.show()
assert causal_weights[0, 0] == 1.0

# %% [markdown]
# ### 3.5.2 Dropout on the attention weights
#
# During training, dropout zeroes each weight with probability p and scales the rest by
# 1/(1−p), so the expected total is unchanged; it keeps the model from relying on a few
# fixed attention links. In evaluation mode dropout does nothing. With p = 0.5 on a
# matrix of ones, about half become 0 and the rest 2 (the book's exact pattern for seed
# 123).

# %%
torch.manual_seed(123)
dropout = nn.Dropout(0.5)
dropped = dropout(torch.ones(6, 6))
print(dropped)
assert set(dropped.unique().tolist()) <= {0.0, 2.0}
assert dropped[0].tolist() == [2.0, 2.0, 0.0, 2.0, 2.0, 0.0]
train_out = dropout(causal_weights)
dropout.eval()
assert torch.equal(dropout(causal_weights), causal_weights)  # eval: identity
assert not torch.equal(train_out, causal_weights)

# %% [markdown]
# ### 3.5.3 A causal attention module for batches
#
# Inputs now come in batches, (batch, tokens, d_in), so the key transpose swaps the last
# two dimensions only. The mask is a *buffer*: not trained, but saved and moved with the
# module by `.to(device)`. It is built once for the longest context and sliced to the
# actual number of tokens.


# %%
class CausalAttention(nn.Module):
    def __init__(
        self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False
    ) -> None:
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer(
            "mask", torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_tokens = x.shape[1]
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        scores = queries @ keys.transpose(1, 2)  # (batch, tokens, tokens)
        scores = scores.masked_fill(self.mask[:n_tokens, :n_tokens], -torch.inf)
        weights = self.dropout(torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1))
        return weights @ values


batch = torch.stack((inputs, inputs))
torch.manual_seed(123)
ca = CausalAttention(d_in, d_out, batch.shape[1], 0.0)
context_vecs = ca(batch)
print(context_vecs.shape, context_vecs[0], sep="\n")
assert context_vecs.shape == (2, 6, 2) and torch.equal(context_vecs[0], context_vecs[1])
assert near(context_vecs[0, 0], [-0.4519, 0.2216])
assert near(context_vecs[0, 5], [-0.5299, -0.1081])

# %% [markdown]
# ## 3.6 Multi-head attention
#
# ### 3.6.1 A stack of single heads
#
# One head learns one notion of relevance. Several heads, each with its own
# projections, can attend to different things (syntax, nearby words, a repeated name);
# their context vectors are concatenated. The simplest implementation is literally a
# list of `CausalAttention` modules run one after another.


# %%
class MultiHeadAttentionWrapper(nn.Module):
    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        num_heads: int,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            CausalAttention(d_in, d_out, context_length, dropout, qkv_bias)
            for _ in range(num_heads)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(x) for head in self.heads], dim=-1)


torch.manual_seed(123)
wrapper = MultiHeadAttentionWrapper(d_in, d_out, batch.shape[1], 0.0, num_heads=2)
wrapped = wrapper(batch)
print(wrapped.shape, wrapped[0], sep="\n")
assert wrapped.shape == (2, 6, 4)
assert torch.equal(wrapped[..., :2], context_vecs)  # same seed: head 0 is the module above
assert near(wrapped[0, 0, 2:], [0.4772, 0.1063])

# %% [markdown]
# ### 3.6.2 One projection, split into heads
#
# Running heads one by one wastes the hardware. Instead: one query projection of size
# d_out for all heads together, reshaped (B, T, d_out) → (B, T, H, hs) → (B, H, T, hs)
# so that the heads become a batch dimension and a single batched matrix product does
# them all (hs = d_out / H, the head size). Afterwards the heads are put back side by
# side and passed through an output projection, a linear layer that mixes them (the
# wrapper had none). d_out now means the total size, so d_out = 2 with 2 heads gives
# 1-d heads. (This version trusts d_out to divide by num_heads; the library's checks.)


# %%
class MultiHeadAttentionSplit(nn.Module):
    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        num_heads: int,
        qkv_bias: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer(
            "mask", torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        # (B, T, d_out) -> (B, T, H, hs) -> (B, H, T, hs)
        q, k, v = (
            w(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
            for w in (self.W_query, self.W_key, self.W_value)
        )
        scores = (q @ k.transpose(2, 3)).masked_fill(self.mask[:T, :T], -torch.inf)  # (B, H, T, T)
        weights = self.dropout(torch.softmax(scores / self.head_dim**0.5, dim=-1))
        # (B, H, T, hs) -> (B, T, H, hs) -> (B, T, d_out): heads side by side again
        ctx = (weights @ v).transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)
        return self.out_proj(ctx)


torch.manual_seed(123)
mha_split = MultiHeadAttentionSplit(d_in, d_out, batch.shape[1], 0.0, num_heads=2)
split_out = mha_split(batch)
print(split_out.shape, split_out[0], sep="\n")
assert split_out.shape == (2, 6, 2)
assert near(split_out[0, 0], [0.3190, 0.4858])
assert near(split_out[0, 5], [0.2575, 0.4028])

# %% [markdown]
# The split version *is* the wrapper, computed differently: stack the heads' query
# matrices row by row into one (each head owns a block of hs output rows), the same for
# keys and values, and make the output projection the identity. Then both agree, here
# with 3 heads of size 2.

# %%
torch.manual_seed(0)
wrapper3 = MultiHeadAttentionWrapper(d_in, 2, 6, 0.0, num_heads=3, qkv_bias=True)
split3 = MultiHeadAttentionSplit(d_in, 6, 6, 0.0, num_heads=3, qkv_bias=True)
with torch.no_grad():
    for name in ("W_query", "W_key", "W_value"):
        stacked = [getattr(head, name) for head in wrapper3.heads]
        getattr(split3, name).weight.copy_(torch.cat([lin.weight for lin in stacked]))
        getattr(split3, name).bias.copy_(torch.cat([lin.bias for lin in stacked]))
    split3.out_proj.weight.copy_(torch.eye(6))
    split3.out_proj.bias.zero_()
assert torch.allclose(split3(batch), wrapper3(batch), atol=1e-6)
print("split heads == stacked single heads")

# %% [markdown]
# ### The library version
#
# `dlnotes.attention.MultiHeadAttention` is this split version with two changes. The
# three projections are fused into one `qkv` layer whose weight holds the query, key and
# value rows in that order (as GPT-2's checkpoint and `torch.nn.MultiheadAttention` store
# them), so one matrix product makes all three. And `use_sdpa=True` (the default) hands
# the masked softmax and weighted sum to PyTorch's
# `scaled_dot_product_attention`, which picks a fused kernel. It also takes a `KVCache`,
# used in chapter 4 to generate text without recomputing past keys and values.
#
# Cutting the library's fused weight into three blocks of rows and copying them into our
# split version gives identical outputs, on both of the library's paths:

# %%
for use_sdpa in (False, True):
    torch.manual_seed(123)
    lib = MultiHeadAttention(
        d_in, 4, batch.shape[1], 0.0, num_heads=2, qkv_bias=True, use_sdpa=use_sdpa
    )
    ours = MultiHeadAttentionSplit(d_in, 4, batch.shape[1], 0.0, num_heads=2, qkv_bias=True)
    with torch.no_grad():
        for name, w, b in zip(
            ("W_query", "W_key", "W_value"),
            lib.qkv.weight.chunk(3),
            lib.qkv.bias.chunk(3),
            strict=True,
        ):
            getattr(ours, name).weight.copy_(w)
            getattr(ours, name).bias.copy_(b)
        ours.out_proj.load_state_dict(lib.out_proj.state_dict())
    assert torch.allclose(lib(batch), ours(batch), atol=1e-6), use_sdpa
print(lib)

# %%
env.show(MultiHeadAttention)

# %% [markdown]
# ## GPT-2 small: sizes and cost
#
# The smallest GPT-2 has 12 attention layers, each with 12 heads over 768 dimensions
# (head size 64) and a context of 1,024 tokens. Parameters of one such layer: the fused
# projection 768 × 3·768 (plus 3·768 biases, which GPT-2 uses) and the output projection
# 768 × 768 + 768. Without the qkv bias that is the book's 2,360,064.

# %%
gpt2_attn = MultiHeadAttention(768, 768, 1024, 0.0, num_heads=12, qkv_bias=True)
n_params = sum(p.numel() for p in gpt2_attn.parameters())
no_bias = n_params - gpt2_attn.qkv.bias.numel()
print(f"one GPT-2-small attention layer: {n_params:,} parameters ({no_bias:,} without qkv bias)")
print(f"12 layers: {12 * n_params / 1e6:.1f} M of GPT-2 small's 124 M")
assert no_bias == 2_360_064 and n_params == 2_362_368

# %% [markdown]
# Compute per sequence of T tokens (d = 768, a multiply-add counted as 2 FLOPs): the
# projections cost 2·T·d·3d + 2·T·d·d = 8·T·d², the scores Q·Kᵀ and the weighted sum of
# values 2·T²·d each, so 4·T²·d. The projections grow linearly with T, attention
# quadratically; at d = 768 they are equal at T = 2d = 1,536, a bit beyond GPT-2's
# context. Memory is the other quadratic cost: the spelled-out path keeps an H × T × T
# weight matrix per sequence for the backward pass (48 MiB in float32 at T = 1,024),
# which SDPA's fused (flash-attention style) kernels avoid by working block by block.
# PyTorch's FLOP counter agrees with the formula:


# %%
def attention_flops(t: int, d: int) -> int:
    return 8 * t * d * d + 4 * t * t * d


plain = MultiHeadAttention(768, 768, 1024, 0.0, num_heads=12, qkv_bias=True, use_sdpa=False)
plain.load_state_dict(gpt2_attn.state_dict())
with FlopCounterMode(display=False) as counter, torch.no_grad():
    plain(torch.randn(1, GPT2_TOKENS, 768))
counted, formula = counter.get_total_flops(), attention_flops(GPT2_TOKENS, 768)
print(f"T={GPT2_TOKENS}: {counted / 1e9:.2f} GFLOP counted, formula {formula / 1e9:.2f}")
print(f"at T=1024: {attention_flops(1024, 768) / 1e9:.2f} GFLOP per sequence")
print(f"attention weights, 12 heads x 1024 x 1024 float32: {12 * 1024**2 * 4 / 2**20:.0f} MiB")
assert counted == formula

# %% [markdown]
# And the wall-clock time of one forward pass on this machine's device, both paths
# (they must agree):


# %%
def sync() -> None:
    """Wait for queued GPU work: kernels run asynchronously, the clock would stop too early."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    elif DEVICE.type == "mps":
        torch.mps.synchronize()


plain, fused = plain.to(DEVICE).eval(), gpt2_attn.to(DEVICE).eval()
x = torch.randn(1, GPT2_TOKENS, 768, device=DEVICE)
with torch.no_grad():
    for name, module in (("plain", plain), ("SDPA", fused)):
        module(x)  # warm-up: the first call pays for kernel selection and allocation
        sync()
        start = time.perf_counter()
        module(x)
        sync()
        print(f"{name:>5}: {(time.perf_counter() - start) * 1e3:6.1f} ms for {GPT2_TOKENS} tokens")
    assert torch.allclose(plain(x), fused(x), atol=1e-4)

# %% [markdown]
# ## Summary
#
# - Attention replaces the RNN's single bottleneck state: every position computes a
#   weighted mix of all (visible) positions, weights = softmax of query · key.
# - Scores are scaled by 1/√d_k so that softmax stays soft as head sizes grow.
# - Causal attention masks future positions with −∞ before the softmax, which is the
#   same as zeroing and renormalising afterwards; dropout on the weights acts only in
#   training mode.
# - Multi-head attention is several heads side by side; computing them as one projection
#   split into heads, plus an output projection, is the efficient form.
# - One GPT-2-small attention layer has about 2.36 M parameters and costs 8·T·d² + 4·T²·d
#   FLOPs per sequence.
#
# Now in the library: `dlnotes.attention.MultiHeadAttention` (fused `qkv`, `out_proj`,
# `use_sdpa`) and `dlnotes.attention.KVCache` (used from chapter 4 on).

# %% [markdown]
# ## Exercises
#
# **3.1 — Same computation, other weights' layout.** Section 3.4.2 copied the
# `nn.Linear` version's weights into the `nn.Parameter` version. Go the other way:
# build both with different seeds and a head size of 4, copy the `nn.Parameter`
# matrices into the `nn.Linear` layers, and check that the outputs agree. Which way
# round does a matrix have to be stored in `nn.Linear`?

# %% tags=["solution"]
torch.manual_seed(1)
v1 = SelfAttentionParams(d_in, 4)
torch.manual_seed(2)
v2 = SelfAttentionLinear(d_in, 4)
assert not torch.allclose(v1(inputs), v2(inputs))
with torch.no_grad():
    for name in ("W_query", "W_key", "W_value"):
        # Linear keeps (d_out, d_in) and computes x @ weight.T: store the transpose
        getattr(v2, name).weight.copy_(getattr(v1, name).T)
print(v2(inputs))
assert torch.allclose(v1(inputs), v2(inputs), atol=1e-6)

# %% [markdown]
# **3.2 — Two heads, two output dimensions.** `MultiHeadAttentionWrapper` with two
# heads of size 2 returned 4-dimensional context vectors. Change one argument so that
# two heads give 2-dimensional vectors, and check that each output column is one head.

# %% tags=["solution"]
torch.manual_seed(123)
wrapper_2d = MultiHeadAttentionWrapper(d_in, 1, batch.shape[1], 0.0, num_heads=2)  # d_out=1
out_2d = wrapper_2d(batch)
print(out_2d.shape, out_2d[0], sep="\n")
assert out_2d.shape == (2, 6, 2)
for h, head in enumerate(wrapper_2d.heads):
    assert torch.equal(out_2d[..., h : h + 1], head(batch))

# %% [markdown]
# **3.3 — GPT-2-sized attention.** Build our `MultiHeadAttentionSplit` at the size of
# GPT-2 small: 768 inputs and outputs, 12 heads, a context of 1,024 tokens, no bias in
# the query/key/value projections. Count its parameters by hand and in code (the book:
# 2,360,064), check the head size, and run it on a few tokens.

# %% tags=["solution"]
torch.manual_seed(123)
gpt2_split = MultiHeadAttentionSplit(768, 768, 1024, 0.0, num_heads=12)
counted = sum(p.numel() for p in gpt2_split.parameters())
by_hand = 3 * 768 * 768 + (768 * 768 + 768)  # W_q, W_k, W_v; out_proj with its bias
print(f"{counted:,} parameters, head size {gpt2_split.head_dim}")
assert counted == by_hand == 2_360_064 and gpt2_split.head_dim == 64
library = MultiHeadAttention(768, 768, 1024, 0.0, num_heads=12, qkv_bias=False)
assert sum(p.numel() for p in library.parameters()) == counted
assert gpt2_split(torch.randn(2, 5, 768)).shape == (2, 5, 768)

# %% [markdown]
# **3.4 — No peeking.** Check the causal mask on behaviour rather than on the weights:
# change the last token of the input and show that the context vectors of all earlier
# positions stay exactly the same, while the last one changes. Does the same hold
# without the mask (`SelfAttentionLinear`)?

# %% tags=["solution"]
torch.manual_seed(123)
causal = CausalAttention(d_in, d_out, 6, 0.0)
changed = batch.clone()
changed[:, -1] = torch.tensor([0.9, -0.3, 0.2])
before, after = causal(batch), causal(changed)
assert torch.equal(before[:, :-1], after[:, :-1]) and not torch.equal(before[:, -1], after[:, -1])
unmasked_before, unmasked_after = sa_linear(batch[0]), sa_linear(changed[0])
assert not torch.allclose(unmasked_before[:-1], unmasked_after[:-1])  # everyone sees the end
print("causal: earlier positions unchanged; unmasked: every position moved")
