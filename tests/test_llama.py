"""The Llama model, part by part and whole, against independent references.

RMSNorm = `torch.nn.RMSNorm`; RoPE = transformers' rotary embedding; grouped-query
attention = multi-head attention with repeated key/value heads written out; SwiGLU by
hand; whole random tiny models = `transformers.LlamaForCausalLM` with the same weights,
also after a round trip through a GGUF file written the way llama.cpp's converter
writes one (query/key rows permuted).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlnotes.attention import KVCache
from dlnotes.cpu_inference import inference_copy
from dlnotes.errors import DataError, InputError
from dlnotes.generate import generate
from dlnotes.llama import (
    GroupedQueryAttention,
    Llama,
    LlamaBlock,
    LlamaConfig,
    RMSNorm,
    RoPE,
    SwiGLU,
    config_from_hf,
    convert_hf_state_dict,
    kv_cache_bytes_per_token,
    load_gguf,
    model_from_state_dict,
    rope_tables,
    unpermute_rope,
)

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
from transformers.models.llama import modeling_llama  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# (heads, kv heads, tied, rope base): multi-head, two groups, one group; tied and untied.
CONFIGS = [(4, 4, True, 10_000.0), (8, 2, False, 1_000.0), (6, 1, True, 100_000.0)]


def hf_config(n_heads: int, n_kv: int, tied: bool, base: float, **kw) -> object:
    return transformers.LlamaConfig(
        vocab_size=kw.get("vocab_size", 97),
        hidden_size=kw.get("hidden_size", 48),
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv,
        max_position_embeddings=kw.get("context", 24),
        rope_theta=base,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        initializer_range=0.2,  # larger than 0.02 so that logits vary
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def hf_pair(config) -> tuple:
    hf = transformers.LlamaForCausalLM(config).eval()
    cfg = config_from_hf(config.to_dict())
    return hf, model_from_state_dict(convert_hf_state_dict(hf.state_dict(), cfg), cfg)


# --- parts -------------------------------------------------------------------------------


def test_rmsnorm_equals_torch_rmsnorm(monkeypatch) -> None:
    ours, ref = RMSNorm(24, eps=1e-5), torch.nn.RMSNorm(24, eps=1e-5)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
    x = torch.randn(3, 5, 24) * 4
    torch.testing.assert_close(ours(x), ref(x))
    by_hand = x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * ours.weight
    torch.testing.assert_close(ours(x), by_hand)
    # bfloat16 in, bfloat16 out, statistics in float32 (x² of 300 overflows no bfloat16)
    half = copy.deepcopy(ours).to(torch.bfloat16)(x.bfloat16() * 100)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), by_hand, atol=0.05, rtol=0.02)

    # the spelled-out path for PyTorch before 2.4
    monkeypatch.delattr(F, "rms_norm")
    torch.testing.assert_close(ours(x), by_hand)


def test_rope_equals_transformers_rotary_embedding() -> None:
    config = hf_config(4, 2, True, 500.0, hidden_size=64, context=40)
    rotary = modeling_llama.LlamaRotaryEmbedding(config)
    head_dim = 16
    start, T = 7, 9
    q = torch.randn(2, 4, T, head_dim)  # (B, H, T, hs): transformers' layout
    k = torch.randn(2, 2, T, head_dim)
    positions = torch.arange(start, start + T)[None].expand(2, T)
    cos, sin = rotary(q, positions)
    q_ref, k_ref = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)

    rope = RoPE(head_dim, 40, 500.0)
    ours_cos, ours_sin = rope_tables(head_dim, 40, 500.0)
    assert torch.equal(ours_cos[start : start + T], cos[0]) and torch.equal(
        ours_sin[start : start + T], sin[0]
    )
    # ours works on (B, T, heads, hs)
    torch.testing.assert_close(rope(q.transpose(1, 2), start).transpose(1, 2), q_ref)
    torch.testing.assert_close(rope(k.transpose(1, 2), start).transpose(1, 2), k_ref)


def test_rope_scores_depend_only_on_the_distance() -> None:
    rope = RoPE(8, 64, 10_000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> float:
        return float((rope(q, i) * rope(k, j)).sum())

    assert math.isclose(score(3, 1), score(40, 38), rel_tol=1e-5, abs_tol=1e-5)
    assert math.isclose(score(0, 0), float((q * k).sum()), rel_tol=1e-5, abs_tol=1e-6)


def reference_gqa(attn: GroupedQueryAttention, x: torch.Tensor) -> torch.Tensor:
    """Multi-head attention with each key/value head repeated for its query heads, written
    out: scores, causal mask, softmax, weighted sum."""
    B, T, _ = x.shape
    H, K, hs = attn.n_heads, attn.n_kv_heads, attn.head_dim
    wq, wk, wv = attn.qkv.weight.split([H * hs, K * hs, K * hs])
    q = (x @ wq.T).view(B, T, H, hs)
    k = (x @ wk.T).view(B, T, K, hs)
    v = (x @ wv.T).view(B, T, K, hs).transpose(1, 2)
    q, k = attn.rope(q).transpose(1, 2), attn.rope(k).transpose(1, 2)
    k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
    scores = q @ k.transpose(2, 3) / math.sqrt(hs)
    scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -math.inf)
    ctx = torch.softmax(scores, dim=-1) @ v  # (B, H, T, hs)
    return ctx.transpose(1, 2).reshape(B, T, H * hs) @ attn.out_proj.weight.T


@pytest.mark.parametrize("n_heads,n_kv", [(4, 4), (6, 2), (6, 1)])
def test_gqa_equals_mha_with_repeated_kv_heads_cached_or_not(n_heads: int, n_kv: int) -> None:
    cfg = LlamaConfig.tiny(emb_dim=48, n_heads=n_heads, n_kv_heads=n_kv, context_length=16)
    attn = GroupedQueryAttention(cfg)
    torch.nn.init.normal_(attn.qkv.weight, std=0.3)
    x = torch.randn(2, 12, 48)
    with torch.no_grad():
        ref = reference_gqa(attn, x)
        torch.testing.assert_close(attn(x), ref)
        cache = KVCache(2, n_kv, cfg.head_dim, 16)
        # a prefix, a chunk after it, then one token at a time: the three code paths
        parts = [attn(x[:, :5], cache), attn(x[:, 5:9], cache)]
        parts += [attn(x[:, t : t + 1], cache) for t in range(9, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), ref)
    assert cache.k.shape == (2, n_kv, 16, cfg.head_dim)  # only the key/value heads are kept


def test_swiglu_by_hand() -> None:
    mlp = SwiGLU(16, 40)
    x = torch.randn(3, 16)
    w_gate, w_up = mlp.gate_up.weight[:40], mlp.gate_up.weight[40:]
    gate = x @ w_gate.T
    by_hand = (gate * torch.sigmoid(gate) * (x @ w_up.T)) @ mlp.down.weight.T
    torch.testing.assert_close(mlp(x), by_hand)


def test_block_runs_on_its_own_positions_from_its_cache() -> None:
    block = LlamaBlock(LlamaConfig.tiny())
    x = torch.randn(2, 6, 32)
    cache = KVCache(2, 2, 8, 10)
    with torch.no_grad():
        full = block(x)
        torch.testing.assert_close(block(x, cache), full)
        assert cache.pos == 6


# --- whole models --------------------------------------------------------------------------


@pytest.mark.parametrize("n_heads,n_kv,tied,base", CONFIGS)
def test_logits_equal_transformers_llama(n_heads, n_kv, tied, base) -> None:
    hf, ours = hf_pair(hf_config(n_heads, n_kv, tied, base))
    assert ours.cfg.tie_weights == tied and (ours.lm_head.weight is ours.wte.weight) == tied
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())
    idx = torch.randint(0, 97, (3, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-5, rtol=0)
        parts = ours.embed(idx)
        for block in ours.h:
            parts = block(parts)
        torch.testing.assert_close(ours.head(parts), ours(idx))


def test_greedy_generation_equals_transformers_and_cache_equals_no_cache() -> None:
    hf, ours = hf_pair(hf_config(8, 2, False, 1_000.0, context=64))
    prompt = torch.randint(2, 97, (2, 5))
    ref = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=False,
        max_new_tokens=20,
        eos_token_id=None,
        pad_token_id=1,
    )
    out = generate(ours, prompt, 20)
    assert torch.equal(out, ref)
    assert torch.equal(generate(ours, prompt, 20, use_cache=False), out)


def test_generation_past_the_context_re_encodes_like_no_cache() -> None:
    torch.manual_seed(3)
    model = Llama(LlamaConfig.tiny(context_length=12, vocab_size=50)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    prompt = torch.randint(0, 50, (1, 4))
    out = generate(model, prompt, 20)
    assert out.shape == (1, 24)
    assert torch.equal(out, generate(model, prompt, 20, use_cache=False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_copy_generates(dtype: torch.dtype) -> None:
    model = Llama(LlamaConfig.tiny(vocab_size=50)).eval()
    prompt = torch.tensor([[1, 2, 3]])
    out = generate(inference_copy(model, dtype), prompt, 5)
    assert out.shape == (1, 8)
    if dtype == torch.float32:
        assert torch.equal(out, generate(model, prompt, 5))


def test_new_cache_holds_key_value_heads_only() -> None:
    model = Llama(LlamaConfig.tiny())
    cache = model.new_cache(3, 20)
    assert len(cache) == 2 and cache[0].k.shape == (3, 2, 20, 8)
    with pytest.raises(InputError, match="cache length"):
        model.new_cache(1, 65)
    cfg = LlamaConfig.smollm2_135m()
    # SmolLM2: 30 blocks x 3 kv heads x 64 x (k, v) x 2 bytes = 23,040 bytes per token
    assert kv_cache_bytes_per_token(cfg) == 23_040
    full = dataclasses.replace(cfg, n_kv_heads=cfg.n_heads)
    assert kv_cache_bytes_per_token(full) == 3 * kv_cache_bytes_per_token(cfg)


def test_config_presets_and_validation() -> None:
    cfg = LlamaConfig.smollm2_135m()
    assert (cfg.emb_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (
        576,
        30,
        9,
        3,
        64,
    )
    with torch.device("meta"):
        assert Llama(cfg).num_parameters() == 134_515_008
    for bad, match in [
        (dict(n_heads=5), "divisible"),
        (dict(n_kv_heads=3), "multiple of n_kv_heads"),
        (dict(n_layers=0), "n_layers"),
        (dict(emb_dim=36, n_heads=4, n_kv_heads=4), "even"),
        (dict(rope_base=-1.0), "rope_base"),
        (dict(hidden_dim=2.5), "hidden_dim"),
        (dict(norm_eps=float("nan")), r"LlamaConfig.norm_eps must be a number > 0, got nan"),
        (dict(tie_weights="no"), "LlamaConfig.tie_weights must be True or False, got 'no'"),
    ]:
        with pytest.raises(InputError, match=match):
            LlamaConfig.tiny(**bad)


def test_bad_input_is_a_clear_error() -> None:
    model = Llama(LlamaConfig.tiny(context_length=8)).eval()
    with pytest.raises(InputError, match="exceed the context length 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(InputError, match="outside the vocabulary"):
        model(torch.tensor([[49152]]))
    with pytest.raises(InputError, match="tensor of token ids"):
        model([[1, 2]])
    cache = model.new_cache(1, 8)
    model(torch.zeros(1, 8, dtype=torch.long), cache)
    with pytest.raises(InputError, match="8 cached"):
        model(torch.zeros(1, 1, dtype=torch.long), cache)


# --- GGUF files written as llama.cpp writes them ----------------------------------------------


def permute_for_gguf(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter (convert_hf_to_gguf.py, ``LlamaModel.permute``)."""
    return (
        w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


GGUF_NAMES = {
    "embed_tokens": "token_embd",
    "norm": "output_norm",
    "lm_head": "output",
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def write_gguf(
    path: Path,
    hf,
    *,
    qtype=None,
    arch: str = "llama",
    drop_key: str | None = None,
    block_count: int | None = None,
) -> Path:
    """A GGUF of a HF Llama: metadata, permuted q/k rows, 2-D weights in `qtype` (F32 if None);
    `block_count` overrides the number of blocks the metadata claims."""
    c = hf.config
    writer = gguf.GGUFWriter(path, arch)
    keys = {
        "block_count": c.num_hidden_layers if block_count is None else block_count,
        "context_length": c.max_position_embeddings,
        "embedding_length": c.hidden_size,
        "feed_forward_length": c.intermediate_size,
        "head_count": c.num_attention_heads,
        "head_count_kv": c.num_key_value_heads,
        "rope_freq_base": config_from_hf(c.to_dict()).rope_base,
        "layer_norm_rms_eps": c.rms_norm_eps,
        "vocab_size": c.vocab_size,
    }
    for key, value in keys.items():
        if key != drop_key:
            getattr(writer, f"add_{key}")(value)
    for name, tensor in hf.state_dict().items():
        name = name.removeprefix("model.")
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        stem = name.removesuffix(".weight")
        prefix = ""
        if stem.startswith("layers."):
            _, i, stem = stem.split(".", 2)
            prefix = f"blk.{i}."
        w = tensor.numpy().astype(np.float32)
        if stem == "self_attn.q_proj":
            w = permute_for_gguf(w, c.num_attention_heads)
        elif stem == "self_attn.k_proj":
            w = permute_for_gguf(w, c.num_key_value_heads)
        out = f"{prefix}{GGUF_NAMES[stem]}.weight"
        if qtype is None or w.ndim == 1:
            writer.add_tensor(out, w)
        else:
            writer.add_tensor(out, gguf.quants.quantize(w, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("n_heads,n_kv,tied,base", CONFIGS)
def test_gguf_round_trip_undoes_the_rope_permutation(tmp_path, n_heads, n_kv, tied, base) -> None:
    hf, _ = hf_pair(hf_config(n_heads, n_kv, tied, base, hidden_size=96, vocab_size=64))
    model = load_gguf(write_gguf(tmp_path / "tiny.gguf", hf))
    # GGUF stores eps and the RoPE base as float32
    expected = config_from_hf(hf.config.to_dict())
    assert model.cfg == dataclasses.replace(
        expected,
        norm_eps=float(np.float32(expected.norm_eps)),
        rope_base=float(np.float32(expected.rope_base)),
    )
    idx = torch.randint(0, 64, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=1e-5, rtol=0)
        # without undoing the permutation the logits are different
        for block in model.h:
            w = block.attn.qkv.weight
            q_rows = n_heads * model.cfg.head_dim
            w[:q_rows] = unpermute_rope(w[:q_rows].clone(), n_heads)
        assert (model(idx) - hf(idx).logits).abs().max() > 1e-3


@pytest.mark.parametrize("qtype", [gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_1])
def test_quantized_gguf_equals_transformers_gguf_loader(tmp_path, qtype) -> None:
    hf, _ = hf_pair(hf_config(8, 2, False, 1_000.0, hidden_size=64, vocab_size=64))
    path = write_gguf(tmp_path / "tiny.gguf", hf, qtype=qtype)
    ours = load_gguf(path)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, dtype=torch.float32
    ).eval()
    idx = torch.randint(0, 64, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), ref(idx).logits, atol=1e-5, rtol=0)
        assert (ours(idx) - hf(idx).logits).abs().max() > 1e-4  # quantization did change it


def test_load_gguf_in_bfloat16(tmp_path) -> None:
    hf, _ = hf_pair(hf_config(4, 2, True, 10_000.0, hidden_size=64, vocab_size=64))
    model = load_gguf(write_gguf(tmp_path / "tiny.gguf", hf), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.rope.cos.dtype == torch.bfloat16
    idx = torch.randint(0, 64, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(model(idx).float(), hf(idx).logits, atol=0.15, rtol=0.05)


def test_bad_gguf_files_are_data_errors(tmp_path) -> None:
    hf, _ = hf_pair(hf_config(4, 2, True, 10_000.0, hidden_size=64, vocab_size=64))
    good = write_gguf(tmp_path / "good.gguf", hf, qtype=gguf.GGMLQuantizationType.Q8_0)
    with pytest.raises(DataError, match="'gpt2' model"):
        load_gguf(write_gguf(tmp_path / "gpt2.gguf", hf, arch="gpt2"))
    with pytest.raises(DataError, match="unsupported GGUF tensor type Q4_0"):
        load_gguf(write_gguf(tmp_path / "q40.gguf", hf, qtype=gguf.GGMLQuantizationType.Q4_0))
    with pytest.raises(DataError, match="lacks the metadata llama.block_count"):
        load_gguf(write_gguf(tmp_path / "nokey.gguf", hf, drop_key="block_count"))
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size - 100])
    with pytest.raises(DataError, match="truncated or corrupted"):
        load_gguf(cut)
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(DataError, match="not a readable GGUF"):
        load_gguf(garbage)
    with pytest.raises(DataError, match="no GGUF file"):
        load_gguf(tmp_path / "missing.gguf")


def test_tensors_left_over_are_refused(tmp_path) -> None:
    """A file with more blocks than its metadata claims is not loaded short of a block."""
    from dlnotes.errors import CheckpointError

    hf, _ = hf_pair(hf_config(4, 2, True, 10_000.0))
    path = write_gguf(tmp_path / "extra.gguf", hf, block_count=hf.config.num_hidden_layers - 1)
    with pytest.raises(DataError, match="no place for, e.g. 'layers.1."):
        load_gguf(path)
    cfg = config_from_hf(hf.config.to_dict())
    fewer = dataclasses.replace(cfg, n_layers=cfg.n_layers - 1)
    with pytest.raises(CheckpointError, match="n_layers=1 has no place for"):
        convert_hf_state_dict(hf.state_dict(), fewer)


def test_model_from_state_dict_reports_missing_and_misshapen_tensors() -> None:
    from dlnotes.errors import CheckpointError

    cfg = LlamaConfig.tiny()
    state = copy.copy(Llama(cfg).state_dict())
    del state["h.1.mlp.down.weight"]
    with pytest.raises(CheckpointError, match="h.1.mlp.down.weight"):
        model_from_state_dict(state, cfg)
    state = Llama(cfg).state_dict()
    state["ln_f.weight"] = torch.ones(3)
    with pytest.raises(CheckpointError, match=r"ln_f.weight has shape \(3,\)"):
        model_from_state_dict(state, cfg)


def test_f16_tensors_load(tmp_path) -> None:
    hf, _ = hf_pair(hf_config(4, 2, True, 10_000.0, hidden_size=64, vocab_size=64))
    model = load_gguf(write_gguf(tmp_path / "f16.gguf", hf, qtype=gguf.GGMLQuantizationType.F16))
    idx = torch.randint(0, 64, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=2e-2, rtol=0)
    assert F.cosine_similarity(model(idx).flatten(), hf(idx).logits.flatten(), dim=0) > 0.999
