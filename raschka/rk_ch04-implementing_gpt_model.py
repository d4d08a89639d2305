# %% [markdown]
# # Ch. 4 — Implementing a GPT model from scratch to generate text
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, chapter 4,
# and its bonus material on the KV cache.
#
# Chapter 3 gave us the one layer where tokens talk to each other, multi-head
# attention. Here we put the rest of GPT-2 around it: the configuration of the 124M
# model, a placeholder that shows the data flow end to end, layer normalisation, the
# GELU activation, the feed-forward block, shortcut connections, the transformer block
# and the full model. We count its parameters (and those of the three larger GPT-2s,
# without allocating them), let the untrained model continue "Hello, I am", and finally
# make generation cheap with a KV cache.
#
# Library names introduced: `dlnotes.gpt` (`GPTConfig`, `LayerNorm`, `GELU`,
# `FeedForward`, `TransformerBlock`, `GPT`), `dlnotes.generate` (`generate`,
# `stream`) and `dlnotes.cpu_inference` (`inference_copy`, `is_prepacked`). Used:
# `dlnotes.attention.MultiHeadAttention`, `dlnotes.gpt2_tokenizer.tiktoken_gpt2`,
# `dlnotes.fastpath.compile_works`, `dlnotes.env`.
#
# Runtime: a minute or two in full mode on an idle laptop CPU (the 124M model, timed
# generation with and without the cache); a few seconds in smoke mode, which swaps in
# `GPTConfig.tiny()` and shorter generations. The parameter counts of all four GPT-2
# sizes are computed in both modes (on the meta device they cost nothing).

# %%
import dataclasses
import math
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

from dlnotes import env
from dlnotes.attention import MultiHeadAttention
from dlnotes.cpu_inference import inference_copy, is_prepacked
from dlnotes.fastpath import compile_works
from dlnotes.generate import generate, stream
from dlnotes.gpt import GELU, GPT, FeedForward, GPTConfig, LayerNorm, TransformerBlock
from dlnotes.gpt2_tokenizer import tiktoken_gpt2

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
torch.set_printoptions(precision=4, sci_mode=False)
GPT_124M = GPTConfig.book(context_length=1024)  # the book's GPT_CONFIG_124M (ch05 trains at 256)
CFG = GPTConfig.tiny() if SMOKE else GPT_124M
CACHE_DEMO_TOKENS = env.choose(full=100, smoke=20)  # new tokens timed with/without the cache
tokenizer = tiktoken_gpt2()
print(env.banner(DEVICE))

# %% [markdown]
# ## 4.1 Coding an LLM architecture
#
# GPT-2 "small" has 124 million parameters. Everything about its shape fits in a
# handful of numbers, which the library keeps in a frozen dataclass instead of a dict,
# so a typo is an error rather than a silently missing key. The book's chapter-4
# settings are GPT-2's sizes with dropout 0.1 and no bias in the query/key/value
# projection (OpenAI's weights do have that bias; chapter 5 turns it on to load them).

# %%
print(GPT_124M)
assert (GPT_124M.vocab_size, GPT_124M.context_length, GPT_124M.emb_dim) == (50257, 1024, 768)
assert (GPT_124M.n_heads, GPT_124M.n_layers, GPT_124M.drop_rate) == (12, 12, 0.1)
assert GPT_124M.qkv_bias is False

# %% [markdown]
# Before writing any real layer, a placeholder model with the right skeleton: token
# and position embeddings, a stack of blocks that do nothing yet, a final "norm" that
# does nothing either, and a linear output head giving one score per vocabulary entry.
# It already turns a batch of token ids into a tensor of logits of the right shape.


# %%
class PlaceholderGPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.blocks = nn.Sequential(*[nn.Identity() for _ in range(cfg.n_layers)])
        self.final_norm = nn.Identity()
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(positions)  # (B, T, D)
        return self.out_head(self.final_norm(self.blocks(x)))  # (B, T, V)


# %%
texts = ["Every effort moves you", "Every day holds a"]
batch = torch.tensor([tokenizer.encode(t) for t in texts])
torch.manual_seed(123)
logits = PlaceholderGPT(CFG)(batch)
print(batch, "\n->", tuple(logits.shape))
assert batch.tolist() == [[6109, 3626, 6100, 345], [6109, 1110, 6622, 257]]
assert logits.shape == (2, 4, 50257)

# %% [markdown]
# ## 4.2 Normalizing activations with layer normalization
#
# Deep networks train badly when the activations entering a layer drift in scale from
# step to step. Layer normalisation rescales each position's feature vector to mean 0
# and variance 1, then applies a learned scale and shift so the network can undo it
# where that helps. Here is the problem on a tiny layer: five inputs, six ReLU outputs.

# %%
torch.manual_seed(123)
batch_example = torch.randn(2, 5)
layer = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
out = layer(batch_example)
mean, var = out.mean(dim=-1, keepdim=True), out.var(dim=-1, keepdim=True)
print(out, "\nmean:", mean.flatten(), "variance:", var.flatten())
assert torch.allclose(mean.flatten(), torch.tensor([0.1324, 0.2170]), atol=1e-4)
assert torch.allclose(var.flatten(), torch.tensor([0.0231, 0.0398]), atol=1e-4)

# %% [markdown]
# Normalising by hand: subtract the mean, divide by the standard deviation.

# %%
out_norm = (out - mean) / torch.sqrt(var)
print("mean:", out_norm.mean(dim=-1), "variance:", out_norm.var(dim=-1))
assert torch.allclose(out_norm.mean(dim=-1), torch.zeros(2), atol=1e-6)
assert torch.allclose(out_norm.var(dim=-1), torch.ones(2))

# %% [markdown]
# As a layer, two details are added: a small `eps` under the square root, so a constant
# row does not divide by zero, and the *biased* variance (divide by n, not n − 1),
# which is what GPT-2 was trained with. The learned scale and shift start as 1 and 0.


# %%
class ScratchLayerNorm(nn.Module):
    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


# %%
out_ln = ScratchLayerNorm(emb_dim=5)(batch_example)
print("mean:", out_ln.mean(dim=-1), "variance:", out_ln.var(dim=-1, unbiased=False))
assert torch.allclose(out_ln.mean(dim=-1), torch.zeros(2), atol=1e-6)
assert torch.allclose(out_ln.var(dim=-1, unbiased=False), torch.ones(2), atol=1e-4)
assert torch.allclose(out_ln, nn.LayerNorm(5)(batch_example), atol=1e-6)

# %% [markdown]
# The library's `LayerNorm` computes the same in one fused call (`F.layer_norm`): when
# a GPT generates token by token, six small kernels per norm add up. It names the
# scale and shift `weight` and `bias`, as GPT-2's checkpoints do.

# %%
env.show(LayerNorm)
assert torch.allclose(LayerNorm(emb_dim=5)(batch_example), out_ln, atol=1e-6)

# %% [markdown]
# ## 4.3 Implementing a feed forward network with GELU activations
#
# GPT-2's feed-forward layers use GELU instead of ReLU: x times the probability that a
# standard normal variable is below x. It is smooth, lets a little negative signal
# through, and has a non-zero gradient for negative inputs. GPT-2 uses a cheap tanh
# approximation of it, which we write out; it equals `nn.GELU(approximate="tanh")`
# and the library's `GELU` (one fused kernel again).


# %%
class ScratchGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1.0 + torch.tanh(inner))


# %%
x = torch.linspace(-3, 3, 100)
gelu, relu = ScratchGELU(), nn.ReLU()
assert torch.allclose(gelu(x), nn.GELU(approximate="tanh")(x), atol=1e-6)
assert torch.allclose(gelu(x), GELU()(x), atol=1e-6)
print(f"largest gap to the exact (erf) GELU: {(gelu(x) - nn.GELU()(x)).abs().max():.1e}")
assert (gelu(x) - nn.GELU()(x)).abs().max() < 1e-3

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
for ax, (name, fn) in zip(axes, [("GELU", gelu), ("ReLU", relu)], strict=True):
    ax.plot(x, fn(x))
    ax.set(title=f"{name} activation", xlabel="x", ylabel=f"{name}(x)")
    ax.grid(True)
plt.tight_layout()
plt.show()

# %% [markdown]
# The feed-forward block works on each position separately: widen from D to 4·D
# dimensions, apply GELU, come back to D. The expansion gives the model room; the
# shape in equals the shape out, so blocks can be stacked.

# %%
env.show(FeedForward)
ffn = FeedForward(CFG)
x = torch.rand(2, 3, CFG.emb_dim)
print(tuple(x.shape), "->", tuple(ffn(x).shape))
assert ffn(x).shape == x.shape
assert sum(p.numel() for p in FeedForward(GPT_124M).parameters()) == 4_722_432

# %% [markdown]
# ## 4.4 Adding shortcut connections
#
# In a deep stack, the gradient reaching the first layers is a long product of
# per-layer factors and tends to vanish. A shortcut (residual) connection adds a
# layer's input to its output, so the gradient has a direct path back. The book shows
# it on five small layers (3 → 3 → 3 → 3 → 3 → 1), the same weights with and without
# shortcuts, and prints the mean absolute gradient of each layer's weight.


# %%
class DeepNet(nn.Module):
    def __init__(self, sizes: list[int], use_shortcut: bool) -> None:
        super().__init__()
        self.use_shortcut = use_shortcut
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(a, b), ScratchGELU()) for a, b in pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            y = layer(x)
            x = x + y if self.use_shortcut and y.shape == x.shape else y  # last layer: 3 -> 1
        return x


def weight_grads(use_shortcut: bool) -> list[float]:
    torch.manual_seed(123)
    model = DeepNet([3, 3, 3, 3, 3, 1], use_shortcut)
    loss = nn.MSELoss()(model(torch.tensor([[1.0, 0.0, -1.0]])), torch.tensor([[0.0]]))
    loss.backward()
    return [layer[0].weight.grad.abs().mean().item() for layer in model.layers]


# %%
plain, residual = weight_grads(False), weight_grads(True)
for i, (a, b) in enumerate(zip(plain, residual, strict=True)):
    print(f"layer {i}: mean |grad| without shortcuts {a:.6f}, with {b:.6f}")
book_plain = [0.00020174, 0.00012011, 0.00071520, 0.00139887, 0.00504965]
book_residual = [0.22169793, 0.20694105, 0.32896996, 0.26657325, 1.32585418]
assert torch.allclose(torch.tensor(plain), torch.tensor(book_plain), rtol=1e-4, atol=0)
assert torch.allclose(torch.tensor(residual), torch.tensor(book_residual), rtol=1e-4, atol=0)

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.semilogy(plain, "o-", label="without shortcuts")
ax.semilogy(residual, "o-", label="with shortcuts")
ax.set_xticks(range(len(plain)))  # whole layers only
ax.set(
    title="Gradients reaching each layer",
    xlabel="layer (0 = nearest the input)",
    ylabel="mean |weight gradient|",
)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Without shortcuts the first layer gets a gradient 25 times smaller than the last;
# with them all layers get gradients of the same order.
#
# ## 4.5 Connecting attention and linear layers in a transformer block
#
# A transformer block is two sub-layers, each with a shortcut around it: multi-head
# attention (chapter 3's `MultiHeadAttention`) and the feed-forward block. GPT-2
# normalises *before* each sub-layer ("pre-LayerNorm"), and applies dropout to each
# sub-layer's output before adding it back. Input and output shapes are equal, so
# GPT-2 stacks 12 of them. The library names follow GPT-2's checkpoint: `ln_1`,
# `attn`, `ln_2`, `mlp`.

# %%
env.show(TransformerBlock)
torch.manual_seed(123)
block = TransformerBlock(CFG)
x = torch.rand(2, 4, CFG.emb_dim)
print(tuple(x.shape), "->", tuple(block(x).shape))
assert block(x).shape == x.shape and isinstance(block.attn, MultiHeadAttention)

# %% [markdown]
# ## 4.6 Coding the GPT model
#
# Replace the placeholder's parts with the real ones: the blocks, a final layer norm,
# and the output head. (The library's `GPT` calls the embeddings `wte` and `wpe`, the
# blocks `h`, the final norm `ln_f` and the head `lm_head`, GPT-2's names.) In training
# mode, with the book's seed, our model gives the book's logits to four decimals: the
# library creates the layers in the same order as the book, and drawing the fused
# query/key/value weight in one go gives the same numbers as drawing three.

# %%
env.show(GPT.forward)
torch.manual_seed(123)
model = GPT(CFG).to(DEVICE)
out = model(batch.to(DEVICE)).cpu()
print("output shape:", tuple(out.shape))
print(out)
assert out.shape == (2, 4, 50257)
if not SMOKE:
    assert torch.allclose(out[0, 0, :3], torch.tensor([0.3613, 0.4222, -0.0711]), atol=1e-4)
    assert torch.allclose(out[1, 3, -3:], torch.tensor([1.2630, -0.1858, 0.0388]), atol=1e-4)

# %% [markdown]
# ### Counting parameters
#
# The book's model has 163 million parameters, not 124 million: its output head is a
# separate 50,257 × 768 matrix. GPT-2 *ties* the head to the token embedding (one
# matrix both looks tokens up and scores them), and without the second copy the count
# is GPT-2's 124 million. `GPTConfig(tie_weights=True)` builds it that way.

# %%
with torch.device("meta"):  # shapes only: no memory, no random numbers
    gpt_124m = GPT(GPT_124M)
total = gpt_124m.num_parameters()
print(f"total parameters: {total:,}")
print("token embedding", tuple(gpt_124m.wte.weight.shape), "= output head", end=" ")
print(tuple(gpt_124m.lm_head.weight.shape))
print(f"without the output head (tied weights): {gpt_124m.num_parameters(count_head=False):,}")
assert total == 163_009_536 and gpt_124m.num_parameters(count_head=False) == 124_412_160
if not SMOKE:  # the model built above, with real storage
    assert sum(p.numel() for p in model.parameters()) == total

# %%
size_mb = total * 4 / 1024**2  # float32: 4 bytes per parameter
print(f"size in float32: {size_mb:.2f} MB")
assert round(size_mb, 2) == 621.83

block_124m = gpt_124m.h[0]
n_attn = sum(p.numel() for p in block_124m.attn.parameters())
n_mlp = sum(p.numel() for p in block_124m.mlp.parameters())
print(f"one block: attention {n_attn:,}, feed-forward {n_mlp:,} parameters")
assert (n_attn, n_mlp) == (2_360_064, 4_722_432)

# %% [markdown]
# The larger GPT-2s change only the width, the depth and the number of heads. On
# PyTorch's meta device the models have shapes but no storage, so counting the 1.6
# billion parameters of GPT-2 XL takes a fraction of a second and no memory.

# %%
book_counts = {
    "medium": (406_212_608, 354_749_440),
    "large": (838_220_800, 773_891_840),
    "xl": (1_637_792_000, 1_557_380_800),
}
for size, (untied, tied) in book_counts.items():
    cfg = GPTConfig.gpt2(size, qkv_bias=False, tie_weights=False, drop_rate=0.1)
    with torch.device("meta"):
        counted = GPT(cfg)
    n, n_tied = counted.num_parameters(), counted.num_parameters(count_head=False)
    print(
        f"GPT-2 {size:<6} (D={cfg.emb_dim}, {cfg.n_layers} layers, {cfg.n_heads} heads): "
        f"{n:,} parameters, {n_tied:,} tied, {n * 4 / 1024**3:.2f} GB in float32"
    )
    assert (n, n_tied) == (untied, tied)

# %% [markdown]
# ## 4.7 Generating text
#
# A GPT predicts one token at a time. Feed it the ids so far; the logits at the last
# position score every candidate for the next token; pick the highest (greedy
# decoding), append it, repeat. Softmax is not needed for the pick (it keeps the
# order) but shows the model's probabilities. Input longer than the context is cropped
# to its last `context_length` tokens. One step by hand:

# %%
model.eval()  # dropout off
start = "Hello, I am"
ids = torch.tensor([tokenizer.encode(start)], device=DEVICE)
with torch.no_grad():
    next_logits = model(ids)[:, -1, :]  # (1, V): the last position only
probs = torch.softmax(next_logits, dim=-1)
next_id = probs.argmax(dim=-1, keepdim=True)  # (1, 1)
print(ids.tolist(), "->", next_id.item(), repr(tokenizer.decode([next_id.item()])))
assert ids.tolist() == [[15496, 11, 314, 716]]
assert next_id.item() == next_logits.argmax().item()

# %% [markdown]
# `generate` repeats that step. Untrained, the model continues with noise: the book's
# model writes "Featureiman Byeswickattribute argue", and so does ours in full mode.

# %%
out = generate(model, ids, max_new_tokens=6, use_cache=False)
print(out.tolist(), repr(tokenizer.decode(out[0].tolist())))
assert out.shape == (1, 10) and out[0, :4].tolist() == ids[0].tolist()
if not SMOKE:
    assert out[0, 4:].tolist() == [27018, 24086, 47843, 30961, 42348, 7267]
    assert tokenizer.decode(out[0].tolist()) == "Hello, I am Featureiman Byeswickattribute argue"

# %% [markdown]
# ## KV cache: generating without recomputing the past
#
# Each step above runs the model over the whole sequence, although only the newest
# token is new: the keys and values of all earlier positions are recomputed every time,
# so n tokens cost about n²/2 position-passes. A *KV cache* keeps each layer's keys and
# values; a step then feeds only the newest token, appends its key and value, and
# attends over everything stored. Nothing else changes: attention at the last position
# needs the past only through those keys and values. The library preallocates the
# cache (`GPT.new_cache`) and `generate(use_cache=True)`, the default, uses it. Same
# ids as without it:

# %%
timings, outputs = {}, {}
for use_cache in (False, True):
    start_time = time.perf_counter()
    outputs[use_cache] = generate(model, batch.to(DEVICE), CACHE_DEMO_TOKENS, use_cache=use_cache)
    timings[use_cache] = time.perf_counter() - start_time
speedup = timings[False] / timings[True]
print(
    f"{CACHE_DEMO_TOKENS} tokens x 2 sequences: {timings[False]:.2f} s without the cache, "
    f"{timings[True]:.2f} s with it"
)
if speedup >= 1:
    print(f"the cache made generation {speedup:.1f}x faster")
else:
    print(
        f"the cache took {1 / speedup:.1f}x longer here: this model is so small that a step "
        "costs about the same whether it computes one position or all of them, and the "
        "cache's bookkeeping is extra; at GPT-2's size the saved work dominates"
    )
assert torch.equal(outputs[False], outputs[True])

# %% [markdown]
# ### Aside: bfloat16 for faster generation on any machine
#
# With the cache, a step reads every weight once and does little arithmetic with it,
# so at batch size 1 its speed is set by memory bandwidth: GPT-2 small's float32
# weights are half a gigabyte per token. bfloat16 keeps float32's range with 8 bits of
# mantissa instead of 24, in half the bytes. `model.to(torch.bfloat16)` works on every
# device; `dlnotes.cpu_inference.inference_copy(model, torch.bfloat16)` returns such a
# copy too, and on CPUs whose oneDNN library has bfloat16 kernels (AVX512-BF16, AMX) it
# also hands each weight to oneDNN prepacked once (plain bfloat16 re-lays it out at
# every call). It first runs that fast path on a tiny layer; where it fails (an
# AVX2-only laptop, an Apple CPU) or `DLNOTES_GENERIC_CPU=1` is set, the copy is plain
# bfloat16. (In float32, `inference_copy(model, torch.float32)` prepacks the same way:
# on some CPUs the BLAS library's matrix-vector product streams the weights at half the
# memory's speed, and oneDNN's does not.)
# The logits move by a few hundredths, which can flip a near tie between two tokens.

# %%
fast = inference_copy(model, torch.bfloat16)
path = "oneDNN-prepacked" if is_prepacked(fast) else "plain"
start_time = time.perf_counter()
fast_out = generate(fast, batch.to(DEVICE), CACHE_DEMO_TOKENS)
fast_time = time.perf_counter() - start_time
with torch.no_grad():
    gap = (fast(batch.to(DEVICE)).float() - model(batch.to(DEVICE))).abs().max().item()
agree = (fast_out == outputs[True]).float().mean().item()
print(
    f"bfloat16 ({path} on {DEVICE.type}): {fast_time:.2f} s, "
    f"{timings[True] / fast_time:.2f}x the speed of the float32 cache; "
    f"largest logit change {gap:.3f}; {agree:.0%} of ids as in float32"
)
if fast_time > timings[True]:
    print("(a model this small is bound by per-step overhead, not by reading its weights)")
assert fast_out.shape == outputs[True].shape and gap < 0.1

# %% [markdown]
# ### Aside: a compiled decoding step
#
# What a step spends beyond reading the weights is mostly Python and PyTorch's per-op
# dispatch: some 80 small operations per block (layer norms, reshapes, the cache write,
# GELU, residual adds), each a few microseconds. `generate(..., compile=True)` hands the
# one-token step to `torch.compile`, which traces it once into a graph and fuses the
# elementwise work; the prompt and any re-encoding stay eager. The first call pays
# seconds of compiling (once per process and model structure), so it is for long
# outputs. Where no compiler works (`dlnotes.fastpath.compile_works` tries a tiny
# function first) or `DLNOTES_GENERIC_CPU=1` is set, the same call decodes eagerly. The
# arithmetic is the same up to rounding, so the ids are too.

# %%
start_time = time.perf_counter()
compiled_out = generate(model, batch.to(DEVICE), CACHE_DEMO_TOKENS, compile=True)
build_time = time.perf_counter() - start_time
start_time = time.perf_counter()
generate(model, batch.to(DEVICE), CACHE_DEMO_TOKENS, compile=True)
compiled_time = time.perf_counter() - start_time
if compile_works(DEVICE):
    print(
        f"compiled: {build_time:.1f} s for the first call (building the step), then "
        f"{compiled_time:.2f} s: {timings[True] / compiled_time:.2f}x the eager cache's speed"
    )
    if compiled_time > timings[True]:
        print("(at this size and length the timings are mostly noise)")
else:
    print(f"no compiler works here: compile=True decoded eagerly ({compiled_time:.2f} s)")
assert torch.equal(compiled_out, outputs[True])

# %% [markdown]
# The cache holds 2 (keys and values) × layers × context × D numbers per sequence:
# 75 MB for GPT-2 small at 1,024 tokens in float32. Because GPT-2's position
# embeddings are absolute, a cache cannot slide past the context length; there
# `generate` re-encodes the last `context_length` tokens each step, exactly as the
# uncached version does.
#
# `stream` yields each token as soon as it exists, which is how chat interfaces print
# text while the model is still writing.

# %%
pieces = []
for token in stream(model, ids, max_new_tokens=8):
    pieces.append(tokenizer.decode(token.tolist()))
    print(pieces[-1], end="", flush=True)
print()
assert len(pieces) == 8
assert "".join(pieces) == tokenizer.decode(generate(model, ids, 8)[0, 4:].tolist())

# %% [markdown]
# ## Summary
#
# - A GPT is embeddings (token + position), a stack of identical transformer blocks,
#   a final layer norm and a linear head that scores every vocabulary entry.
# - Layer norm keeps each position's activations at mean 0, variance 1; GELU is a
#   smooth ReLU; the feed-forward block widens each position to 4·D and back.
# - Shortcut connections keep gradients alive in deep stacks; pre-norm blocks put a
#   layer norm before attention and before the feed-forward block.
# - The book's GPT-2 small has 163,009,536 parameters; tying the output head to the
#   token embedding, as GPT-2 does, leaves 124,412,160 (621.83 MB in float32 untied).
#   Medium, large and XL: 406.2M, 838.2M and 1,637.8M (354.7M, 773.9M, 1,557.4M tied).
# - Generation repeats: run the model, take the last position's logits, pick a token,
#   append. A KV cache makes each step cost one position instead of the whole sequence.
#
# Now in the library: `dlnotes.gpt` — `GPTConfig` (`.gpt2(size)`, `.book()`, `.tiny()`,
# `.preset(name)`), `LayerNorm`, `GELU`, `FeedForward`, `TransformerBlock`, `GPT` (with
# `new_cache`, `num_parameters`, `last_only=`); `dlnotes.generate` — `generate`
# (greedy, `temperature`, `top_k`, `eos_id`, `use_cache`, `generator`), `stream`,
# `sample_next`; `dlnotes.cpu_inference` — `inference_copy`, `is_prepacked`. Chapter 5
# trains this model and loads OpenAI's weights into it with `dlnotes.gpt2_weights`.

# %% [markdown]
# ## Exercises
#
# **4.1 — Feed-forward against attention.** Count the parameters of one transformer
# block's feed-forward module and of its attention module, first by formula in the
# embedding size D (no query/key/value bias, as in the book's configuration), then in
# code. Which is larger, and by how much, for each GPT-2 size?

# %% tags=["solution"]
per_block = {}
for size in ("small", "medium", "large", "xl"):
    cfg = GPTConfig.gpt2(size, qkv_bias=False)
    d = cfg.emb_dim
    attn_formula = 3 * d * d + (d * d + d)  # query, key, value; output projection with bias
    mlp_formula = (d * 4 * d + 4 * d) + (4 * d * d + d)  # widen to 4D and back, with biases
    with torch.device("meta"):
        blk = TransformerBlock(cfg)
    counted = (
        sum(p.numel() for p in blk.attn.parameters()),
        sum(p.numel() for p in blk.mlp.parameters()),
    )
    per_block[size] = counted
    ratio = counted[1] / counted[0]
    print(f"{size:>6} (D={d}): attention {counted[0]:,}, feed-forward {counted[1]:,}, {ratio:.4f}x")
    assert counted == (attn_formula, mlp_formula)
    assert math.isclose(ratio, 2 + 3 / (4 * d + 1))  # (8D² + 5D) / (4D² + D): just over 2
assert per_block["small"] == (2_360_064, 4_722_432)  # the book's numbers

# %% [markdown]
# **4.2 — All sizes from one formula.** Write the total parameter count of the book's
# GPT (separate output head, no qkv bias) as a formula in the vocabulary size V, the
# context length T, the width D and the number of blocks L, and check it against the
# counts above for small (163,009,536), medium, large and XL. How much memory does each
# need in float32?


# %% tags=["solution"]
def gpt_parameters(v: int, t: int, d: int, n_layers: int) -> int:
    per_block = (4 * d * d + d) + (8 * d * d + 5 * d) + 2 * (2 * d)  # attention, MLP, 2 norms
    return v * d + t * d + n_layers * per_block + 2 * d + v * d  # + final norm and head


sizes = {"small": (163_009_536, 124_412_160)} | book_counts
for size, (untied, tied) in sizes.items():
    cfg = GPTConfig.gpt2(size, qkv_bias=False, tie_weights=False)
    n = gpt_parameters(cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_layers)
    print(f"{size:>6}: {n:,} parameters, {n * 4 / 1024**3:.2f} GB in float32")
    assert n == untied and n - cfg.vocab_size * cfg.emb_dim == tied  # tying drops one V x D

# %% [markdown]
# **4.3 — Three dropout rates.** The model uses one `drop_rate` for the embeddings, the
# attention weights and the shortcut branches. Build a GPT with a separate rate for
# each, without changing the library: the attention rate can go through the
# configuration, the other two dropout layers can be replaced after construction.
# Check that the weights are those of an ordinary `GPT` with the same seed, that
# evaluation mode ignores all three rates, and that the embedding rate is the fraction
# of embedding outputs dropped in training mode. (A tiny model is enough.)


# %% tags=["solution"]
class GPTThreeDropouts(GPT):
    def __init__(self, cfg: GPTConfig, emb: float, attn: float, shortcut: float) -> None:
        super().__init__(dataclasses.replace(cfg, drop_rate=attn))  # attention gets `attn`
        self.drop = nn.Dropout(emb)  # after the token + position embeddings
        for blk in self.h:
            blk.drop = nn.Dropout(shortcut)  # on each branch before it is added back


tiny = GPTConfig.tiny()
torch.manual_seed(123)
three = GPTThreeDropouts(tiny, emb=0.5, attn=0.2, shortcut=0.3)
torch.manual_seed(123)
plain_gpt = GPT(tiny)
rates = {name: m.p for name, m in three.named_modules() if isinstance(m, nn.Dropout)}
print({name: p for name, p in rates.items() if not name.startswith("h.1")})
assert rates["drop"] == 0.5 and rates["h.0.drop"] == rates["h.1.drop"] == 0.3
assert all(blk.attn.dropout == 0.2 for blk in three.h)
assert all(
    torch.equal(p, q) for p, q in zip(three.parameters(), plain_gpt.parameters(), strict=True)
)
token_ids = torch.randint(0, tiny.vocab_size, (8, tiny.context_length))
three.eval()
assert torch.equal(three(token_ids), plain_gpt.eval()(token_ids))  # eval: no dropout at all
three.train()
dropped = (three.embed(token_ids) == 0).float().mean().item()
print(f"fraction of embedding outputs zeroed in training mode: {dropped:.3f}")
assert abs(dropped - 0.5) < 0.02
