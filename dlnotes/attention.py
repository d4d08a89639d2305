"""Causal multi-head self-attention, as used by GPT-2, with an optional KV cache.

Follows Raschka, *Build a Large Language Model (From Scratch)*, ch03 (the final
``MultiHeadAttention``; https://github.com/rasbt/LLMs-from-scratch/tree/main/ch03),
with one projection for queries, keys and values (``qkv``), as GPT-2's ``c_attn``
and `torch.nn.MultiheadAttention`'s ``in_proj_weight`` do, so converting either
checkpoint is a copy. The rows of ``qkv.weight`` are the query, key and value
projections in that order.

Symbols used in shape comments: B batch, T new positions, S positions attended to
(cached + new), H heads, hs head size (d_out / H), D = d_out.

Leaves out: cross-attention, padding masks, rotary or relative positions,
grouped-query attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes.errors import InputError, require_int, require_number


def check_attention_input(x: Tensor, width: int, context_length: int, cache: KVCache | None) -> int:
    """The position `x`'s first token takes (the cache's fill, else 0), once `x` is
    checked to be (batch, tokens, `width`) and to fit in the context with what is cached."""
    if x.dim() != 3 or x.shape[-1] != width:
        raise InputError(
            f"attention expects input of shape (batch, tokens, {width}), got {tuple(x.shape)}"
        )
    start = cache.pos if cache is not None else 0
    if start + x.shape[1] > context_length:
        cached = f" ({start} cached + {x.shape[1]} new)" if cache is not None else ""
        raise InputError(
            f"sequence of {start + x.shape[1]} positions{cached} is longer than the "
            f"context length {context_length}"
        )
    return start


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        require_int(name, value)


class KVCache:
    """Keys and values of the positions seen so far, in preallocated buffers.

    One per attention layer; `append` writes new keys/values in place (no
    concatenation per token), `pos` counts the filled positions.

    >>> cache = KVCache(batch_size=1, num_heads=2, head_dim=4, max_len=8)
    >>> keys, values = cache.append(torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4))
    >>> tuple(keys.shape), cache.pos
    ((1, 2, 3, 4), 3)
    """

    def __init__(
        self,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        max_len: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_positive(
            batch_size=batch_size, num_heads=num_heads, head_dim=head_dim, max_len=max_len
        )
        shape = (batch_size, num_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store (B, H, T, hs) keys and values; return all filled (B, H, S, hs) ones."""
        B, H, _, hs = self.k.shape
        if k.dim() != 4 or k.shape != v.shape or (k.shape[0], k.shape[1], k.shape[3]) != (B, H, hs):
            raise InputError(
                f"KV cache was made for keys/values of shape (batch={B}, heads={H}, T, "
                f"head_dim={hs}), got keys {tuple(k.shape)} and values {tuple(v.shape)}"
            )
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise InputError(
                f"KV cache holds {self.max_len} positions; {self.pos} are filled and "
                f"{k.shape[2]} more were given"
            )
        self.k[:, :, self.pos : end] = k
        self.v[:, :, self.pos : end] = v
        self.pos = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def reset(self) -> None:
        """Forget all positions (the buffers are reused)."""
        self.pos = 0


class MultiHeadAttention(nn.Module):
    """Causal self-attention with `num_heads` heads over sequences up to `context_length`.

    ``use_sdpa=True`` computes the attention with
    `torch.nn.functional.scaled_dot_product_attention` (fused kernels);
    ``False`` spells it out: scores, causal mask, softmax, dropout, weighted sum.
    Both give the same result (up to float rounding, and except for which
    weights dropout happens to zero in training mode).

    >>> mha = MultiHeadAttention(d_in=3, d_out=4, context_length=6, num_heads=2)
    >>> mha(torch.rand(2, 5, 3)).shape
    torch.Size([2, 5, 4])
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float = 0.0,
        num_heads: int = 1,
        qkv_bias: bool = False,
        use_sdpa: bool = True,
    ) -> None:
        super().__init__()
        _check_positive(d_in=d_in, d_out=d_out, context_length=context_length, num_heads=num_heads)
        if d_out % num_heads != 0:
            raise InputError(
                f"d_out={d_out} must be divisible by num_heads={num_heads} "
                "(each head gets d_out / num_heads dimensions)"
            )
        require_number("dropout", dropout, "[0, 1)")
        self.d_in, self.d_out = d_in, d_out
        self.num_heads, self.head_dim = num_heads, d_out // num_heads
        self.context_length = context_length
        self.dropout = dropout
        self.use_sdpa = use_sdpa
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.attn_dropout = nn.Dropout(dropout)
        # True above the diagonal = "may not look there"; not saved in checkpoints.
        mask = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), 1)
        self.register_buffer("mask", mask, persistent=False)

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"context_length={self.context_length}, use_sdpa={self.use_sdpa}"
        )

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """(B, T, d_in) -> (B, T, D); with `cache`, x holds only the new positions."""
        start = check_attention_input(x, self.d_in, self.context_length, cache)
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.d_out, dim=2)  # 3 × (B, T, D)
        # (B, T, D) -> (B, T, H, hs) -> (B, H, T, hs)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, S, hs), S = start + T
        S = k.shape[2]
        blocked = self.mask[start : start + T, :S]  # (T, S)
        p = self.dropout if self.training else 0.0
        if self.use_sdpa:
            if start == 0:
                # S == T: the plain lower-triangular mask, which lets SDPA pick its fastest kernel.
                ctx = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                # A single new token may look at every cached one: no mask needed at all.
                allowed = None if T == 1 else ~blocked
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        else:
            scores = q @ k.transpose(2, 3) / math.sqrt(self.head_dim)  # (B, H, T, S)
            scores = scores.masked_fill(blocked, float("-inf"))
            weights = self.attn_dropout(torch.softmax(scores, dim=-1))
            ctx = weights @ v  # (B, H, T, hs)
        ctx = ctx.transpose(1, 2).reshape(B, T, self.d_out)  # (B, T, D)
        return self.out_proj(ctx)
