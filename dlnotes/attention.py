"""Causal multi-head self-attention, as used by GPT-2, with an optional KV cache.

Follows Raschka, *Build a Large Language Model (From Scratch)*, ch03 (the final
``MultiHeadAttention``), with one projection for queries, keys and values
(``qkv``), as GPT-2's ``c_attn`` and `torch.nn.MultiheadAttention`'s
``in_proj_weight`` do, so converting either checkpoint is a copy.

Symbols used in shape comments: B batch, T new positions, S positions attended to
(cached + new), H heads, hs head size (d_out / H), D = d_out.

Leaves out: cross-attention, padding masks, rotary or relative positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes.errors import InputError


class KVCache:
    """Keys and values of the positions seen so far, in preallocated buffers.

    One per attention layer; `append` writes new keys/values in place (no
    concatenation per token), `pos` counts the filled positions.
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
        shape = (batch_size, num_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store (B, H, T, hs) keys and values; return all filled (B, H, S, hs) ones."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise InputError(
                f"KV cache holds {self.max_len} positions; {self.pos} are filled and "
                f"{k.shape[2]} more were given"
            )
        if k.shape[0] != self.k.shape[0]:
            raise InputError(
                f"KV cache was made for batch size {self.k.shape[0]}, got {k.shape[0]}"
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
    Both give the same result.
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
        if num_heads < 1 or d_out % num_heads != 0:
            raise InputError(
                f"d_out={d_out} must be divisible by num_heads={num_heads} "
                "(each head gets d_out / num_heads dimensions)"
            )
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {dropout}")
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

    def _check(self, x: Tensor, cache: KVCache | None) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_in:
            raise InputError(
                f"attention expects input of shape (batch, tokens, {self.d_in}), "
                f"got {tuple(x.shape)}"
            )
        start = cache.pos if cache is not None else 0
        if start + x.shape[1] > self.context_length:
            raise InputError(
                f"sequence of {start + x.shape[1]} positions is longer than the context "
                f"length {self.context_length}"
            )

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """(B, T, d_in) -> (B, T, D); with `cache`, x holds only the new positions."""
        self._check(x, cache)
        B, T, _ = x.shape
        start = cache.pos if cache is not None else 0
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
                ctx = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked, dropout_p=p)
        else:
            scores = q @ k.transpose(2, 3) / math.sqrt(self.head_dim)  # (B, H, T, S)
            scores = scores.masked_fill(blocked, float("-inf"))
            weights = self.attn_dropout(torch.softmax(scores, dim=-1))
            ctx = weights @ v  # (B, H, T, hs)
        ctx = ctx.transpose(1, 2).reshape(B, T, self.d_out)  # (B, T, D)
        return self.out_proj(ctx)
