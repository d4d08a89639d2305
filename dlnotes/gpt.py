"""A GPT-2 style language model: configuration presets, layer norm, GELU, blocks, GPT.

Follows Raschka, *Build a Large Language Model (From Scratch)*, ch04 (the book's
``GPTModel``), laid out like nanoGPT's ``model.py``
(https://github.com/karpathy/nanoGPT/blob/master/model.py): modules carry GPT-2's own
names (``wte``, ``wpe``, ``h``, ``ln_1``, ``mlp.c_fc``, ``ln_f``, ``lm_head``) so
loading OpenAI's weights (`dlnotes.gpt2_weights`) is a short rename table. The book's
names map as ``tok_emb``→``wte``, ``pos_emb``→``wpe``, ``trf_blocks``→``h``,
``norm1``/``norm2``→``ln_1``/``ln_2``, ``ff``→``mlp``, ``final_norm``→``ln_f``,
``out_head``→``lm_head``, and layer norm's ``scale``/``shift``→``weight``/``bias``.

Symbols used in shape comments: B batch, T new positions, D embedding size
(``emb_dim``), V vocabulary size.

Leaves out: training helpers (`dlnotes.train`), text generation (`dlnotes.generate`),
padding masks, and any positional scheme other than GPT-2's learned absolute one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes.attention import KVCache, MultiHeadAttention
from dlnotes.errors import InputError, require_bool, require_int, require_number

# name -> (emb_dim, n_layers, n_heads) of the four released GPT-2 models.
GPT2_SIZES: dict[str, tuple[int, int, int]] = {
    "124M": (768, 12, 12),
    "355M": (1024, 24, 16),
    "774M": (1280, 36, 20),
    "1558M": (1600, 48, 25),
}
# Other names for them (any case): the Hub's repository names and the sizes' words.
GPT2_ALIASES = {
    "small": "124M",
    "medium": "355M",
    "large": "774M",
    "xl": "1558M",
    "gpt2": "124M",
    "gpt2-medium": "355M",
    "gpt2-large": "774M",
    "gpt2-xl": "1558M",
}


def gpt2_size(name: object) -> str:
    """The size key ("124M", ...) for a GPT-2 size or alias, in any case.

    >>> gpt2_size("GPT2-Medium"), gpt2_size("124m")
    ('355M', '124M')
    """
    if not isinstance(name, str):
        raise InputError(f"the GPT-2 size must be a name such as '124M', got {name!r}")
    key = GPT2_ALIASES.get(name.strip().lower(), name.strip().upper())
    if key not in GPT2_SIZES:
        known = ", ".join([*GPT2_SIZES, *GPT2_ALIASES])
        raise InputError(f"unknown GPT-2 size {name!r}; known sizes: {known}")
    return key


@dataclass(frozen=True)
class GPTConfig:
    """Sizes and switches of a GPT model (the book's ``GPT_CONFIG_124M`` dict as a dataclass).

    >>> GPTConfig.gpt2("medium").emb_dim
    1024
    >>> GPTConfig.book().context_length
    256
    """

    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False
    tie_weights: bool = False  # share one matrix between wte and lm_head, as GPT-2 does
    layer_norm_eps: float = 1e-5  # GPT-2's; HF's config.json calls it layer_norm_epsilon

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            require_int(f"GPTConfig.{name}", getattr(self, name))
        if self.emb_dim % self.n_heads:
            raise InputError(f"emb_dim={self.emb_dim} must be divisible by n_heads={self.n_heads}")
        require_number("GPTConfig.drop_rate", self.drop_rate, "[0, 1)")
        require_number("GPTConfig.layer_norm_eps", self.layer_norm_eps, "(0, 1)")
        for name in ("qkv_bias", "tie_weights"):
            require_bool(f"GPTConfig.{name}", getattr(self, name))

    @classmethod
    def gpt2(cls, size: str = "124M", **overrides: object) -> GPTConfig:
        """OpenAI's GPT-2 of that size ("124M"…"1558M", "small"…"xl", "gpt2-medium", ...;
        any case): biased qkv, tied head."""
        emb_dim, n_layers, n_heads = GPT2_SIZES[gpt2_size(size)]
        base = cls(
            emb_dim=emb_dim, n_layers=n_layers, n_heads=n_heads, qkv_bias=True, tie_weights=True
        )
        return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]

    @classmethod
    def book(cls, **overrides: object) -> GPTConfig:
        """The book's 124M model as ch05 trains it: context 256, no qkv bias, separate head."""
        return dataclasses.replace(cls(context_length=256), **overrides)  # type: ignore[arg-type]

    @classmethod
    def tiny(cls, **overrides: object) -> GPTConfig:
        """A model small enough for smoke runs and tests (GPT-2's vocabulary, ~3.3M parameters)."""
        base = cls(context_length=64, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
        return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]

    @classmethod
    def preset(cls, name: str, **overrides: object) -> GPTConfig:
        """Any preset by name: a GPT-2 size, "book" or "tiny".

        >>> GPTConfig.preset("xl").n_layers
        48
        """
        lowered = name.strip().lower() if isinstance(name, str) else name
        if lowered == "book":
            return cls.book(**overrides)
        if lowered == "tiny":
            return cls.tiny(**overrides)
        try:
            size = gpt2_size(name)
        except InputError:
            names = ", ".join([*GPT2_SIZES, *GPT2_ALIASES, "book", "tiny"])
            raise InputError(f"unknown GPT preset {name!r}; known presets: {names}") from None
        return cls.gpt2(size, **overrides)


class LayerNorm(nn.Module):
    """Normalise each position's D features to mean 0, variance 1, then scale and shift.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance (divide
    by D) as GPT-2 was trained with. Chapter 4 derives it op by op; here one fused call
    computes it, which saves five kernel launches per norm when generating token by
    token and keeps the statistics in float32 for a bfloat16 model.
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(emb_dim))  # the book's `scale`
        self.bias = nn.Parameter(torch.zeros(emb_dim))  # the book's `shift`

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class GELU(nn.Module):
    """GELU with GPT-2's tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).

    Chapter 4 writes the formula out; the fused kernel computes the same in one pass.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Position-wise MLP: D -> 4D -> GELU -> D."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim)
        self.gelu = GELU()
        self.c_proj = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


def dropout(module: nn.Module, x: Tensor) -> Tensor:
    """`module(x)`, skipped where it would return `x` anyway: in eval mode or at p = 0.

    Decoding and p = 0 training then pay no module call per dropout site. The rate is
    read at every call, so a dropout module swapped in later (ch04's exercise) counts.
    """
    if module.training and getattr(module, "p", 1.0) > 0:
        return module(x)
    return x


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)), with dropout on each branch."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.attn = MultiHeadAttention(
            cfg.emb_dim,
            cfg.emb_dim,
            cfg.context_length,
            dropout=cfg.drop_rate,
            num_heads=cfg.n_heads,
            qkv_bias=cfg.qkv_bias,
        )
        self.ln_2 = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.mlp = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.drop_rate)  # the book's `drop_shortcut`

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + dropout(self.drop, self.attn(self.ln_1(x), cache))
        return x + dropout(self.drop, self.mlp(self.ln_2(x)))


def check_token_ids(
    idx: object, vocab_size: int, what: str = "input", *, check_range: bool = True
) -> None:
    """Raise `InputError` unless `idx` is a non-empty (batch, tokens) integer tensor of ids
    in ``0..vocab_size-1``; `what` names it in the message ("input", "prompt").

    ``check_range=False`` checks only type, shape and dtype: reading the ids' range back
    from a GPU waits for it, which `GPT.forward` should not do at every step.

    >>> check_token_ids(torch.tensor([[3, 7]]), vocab_size=5, what="prompt")
    Traceback (most recent call last):
    dlnotes.errors.InputError: prompt token id 7 is outside the vocabulary 0..4
    """
    if not isinstance(idx, Tensor):
        raise InputError(
            f"the {what} must be a tensor of token ids, got a {type(idx).__name__} "
            "(use torch.tensor([ids]) for one sequence)"
        )
    if idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
        raise InputError(
            f"the {what} must be integer token ids of shape (batch, tokens), got a {idx.dtype} "
            f"tensor of shape {tuple(idx.shape)} (use ids.unsqueeze(0) for one sequence)"
        )
    if idx.numel() == 0:
        raise InputError(
            f"the {what} is empty (an empty sequence of shape {tuple(idx.shape)}): "
            "give at least one token id"
        )
    if not check_range:
        return
    lo, hi = torch.aminmax(idx)
    if lo < 0 or hi >= vocab_size:
        bad = int(lo) if lo < 0 else int(hi)
        raise InputError(f"{what} token id {bad} is outside the vocabulary 0..{vocab_size - 1}")


class DecoderLM(nn.Module):
    """What GPT and Llama share: a KV cache per block, checked input, `forward` as
    ``embed`` -> blocks in ``h`` -> ``head``, and a parameter count.

    A subclass sets ``cfg`` (with ``vocab_size``, ``context_length``, ``tie_weights``),
    ``wte``, ``h``, ``ln_f``, ``lm_head`` and defines `embed`, `kv_heads` and `head_dim`.
    """

    cfg: Any  # GPTConfig, LlamaConfig
    wte: nn.Embedding
    h: nn.ModuleList
    ln_f: nn.Module
    lm_head: nn.Linear

    @property
    def kv_heads(self) -> int:
        """Key/value heads a cache stores per block."""
        raise NotImplementedError

    @property
    def head_dim(self) -> int:
        raise NotImplementedError

    def embed(self, idx: Tensor, start: int = 0) -> Tensor:
        raise NotImplementedError

    def new_cache(self, batch_size: int, max_len: int | None = None) -> list[KVCache]:
        """Empty preallocated KV caches (one per block) on the model's device and dtype."""
        ctx = self.cfg.context_length
        max_len = ctx if max_len is None else max_len
        if isinstance(max_len, bool) or not isinstance(max_len, int) or not 1 <= max_len <= ctx:
            raise InputError(f"cache length must be in 1..{ctx} (the context), got {max_len!r}")
        like = self.wte.weight
        return [
            KVCache(
                batch_size,
                self.kv_heads,
                self.head_dim,
                max_len,
                device=like.device,
                dtype=like.dtype,
            )
            for _ in self.h
        ]

    def _check(self, idx: Tensor, start: int) -> None:
        # Ids are range-checked where they enter (prompt, loader, tokenizer); here only on
        # the CPU, where it costs no wait for an accelerator, and not in compiled code,
        # where a check that reads the ids would split the graph.
        on_cpu = not isinstance(idx, Tensor) or idx.device.type == "cpu"
        range_check = on_cpu and not torch.compiler.is_compiling()
        check_token_ids(idx, self.cfg.vocab_size, what="input", check_range=range_check)
        if start + idx.shape[1] > self.cfg.context_length:
            raise InputError(
                f"{start + idx.shape[1]} positions ({start} cached + {idx.shape[1]} new) exceed "
                f"the context length {self.cfg.context_length}; crop the input to the last "
                f"{self.cfg.context_length} tokens"
            )

    def forward(
        self, idx: Tensor, cache: list[KVCache] | None = None, *, last_only: bool = False
    ) -> Tensor:
        """(B, T) token ids -> (B, T, V) logits, or (B, 1, V) with `last_only`.

        With `cache` (from `new_cache`), `idx` holds only the new tokens: they are placed
        after the cached ones, and their keys and values are added to the cache.
        """
        start = cache[0].pos if cache else 0
        self._check(idx, start)
        x = self.embed(idx, start)
        for i, block in enumerate(self.h):
            x = block(x, cache[i] if cache else None)
        if last_only:
            # Generation needs the next token only: skip the (T-1) x V head products.
            x = x[:, -1:]  # (B, 1, D)
        return self.head(x)

    def head(self, x: Tensor) -> Tensor:
        """(B, T, D) output of the last block -> (B, T, V) logits: final norm, output layer."""
        return self.lm_head(self.ln_f(x))

    def num_parameters(self, *, count_head: bool = True) -> int:
        """Parameters, a shared tensor counted once; `count_head=False` drops an untied head."""
        total = sum(p.numel() for p in self.parameters())
        if not count_head and not self.cfg.tie_weights:
            total -= self.lm_head.weight.numel()
        return total


class GPT(DecoderLM):
    """Token + position embeddings, `n_layers` blocks, a final norm and a linear head to logits."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.wpe = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop = nn.Dropout(cfg.drop_rate)
        self.h = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_f = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.lm_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            # One (V, D) matrix both looks tokens up and scores them (38.6M fewer at 124M).
            self.lm_head.weight = self.wte.weight

    @property
    def kv_heads(self) -> int:
        return self.cfg.n_heads

    @property
    def head_dim(self) -> int:
        return self.cfg.emb_dim // self.cfg.n_heads

    def embed(self, idx: Tensor, start: int = 0) -> Tensor:
        """(B, T) ids at positions ``start..start+T-1`` -> (B, T, D) input of the first block.

        With `head` and the blocks in `h`, this splits `forward` into parts, so a caller
        can run a frozen bottom of the model once and reuse its output (ch06).
        """
        pos = torch.arange(start, start + idx.shape[1], device=idx.device)
        return dropout(self.drop, self.wte(idx) + self.wpe(pos))
