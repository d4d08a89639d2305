"""MultiHeadAttention and KVCache vs nn.MultiheadAttention, SDPA, autograd and the book."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from dlnotes.attention import KVCache, MultiHeadAttention
from dlnotes.env import available_devices
from dlnotes.errors import InputError

PATHS = pytest.mark.parametrize("use_sdpa", [False, True], ids=["plain", "sdpa"])

# Raschka ch03: "Your journey starts with one step" as six 3-d embeddings.
BOOK_INPUTS = torch.tensor(
    [
        [0.43, 0.15, 0.89],
        [0.55, 0.87, 0.66],
        [0.57, 0.85, 0.64],
        [0.22, 0.58, 0.33],
        [0.77, 0.25, 0.10],
        [0.05, 0.80, 0.55],
    ]
)


def _causal_mask(t: int) -> torch.Tensor:
    return torch.triu(torch.ones(t, t, dtype=torch.bool), 1)


@torch.no_grad()
def _copy_from_reference(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    # nn.MultiheadAttention stacks W_q, W_k, W_v by rows in in_proj_weight, as our qkv does.
    ours.qkv.weight.copy_(ref.in_proj_weight)
    ours.out_proj.weight.copy_(ref.out_proj.weight)
    if ref.in_proj_bias is not None:
        ours.qkv.bias.copy_(ref.in_proj_bias)
        ours.out_proj.bias.copy_(ref.out_proj.bias)
    else:
        ours.out_proj.bias.zero_()


@PATHS
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize(
    ("batch", "seq", "dim", "heads"),
    [(1, 1, 8, 1), (2, 5, 12, 3), (3, 16, 32, 4), (2, 9, 48, 8)],
)
def test_equals_torch_multihead_attention(
    use_sdpa: bool, bias: bool, batch: int, seq: int, dim: int, heads: int
) -> None:
    ref = nn.MultiheadAttention(dim, heads, bias=bias, batch_first=True).eval()
    if bias:
        # PyTorch initialises these biases to zero, which would hide a bias that we ignore.
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    ours = MultiHeadAttention(dim, dim, 16, 0.0, heads, qkv_bias=bias, use_sdpa=use_sdpa).eval()
    _copy_from_reference(ours, ref)
    x = torch.randn(batch, seq, dim)
    expected, _ = ref(x, x, x, attn_mask=_causal_mask(seq), need_weights=False)
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("d_in", "d_out", "heads", "seq"), [(3, 2, 2, 6), (16, 24, 4, 10), (32, 32, 8, 1)]
)
def test_plain_path_equals_sdpa_path(d_in: int, d_out: int, heads: int, seq: int) -> None:
    plain = MultiHeadAttention(d_in, d_out, 12, 0.0, heads, qkv_bias=True, use_sdpa=False)
    sdpa = MultiHeadAttention(d_in, d_out, 12, 0.0, heads, qkv_bias=True, use_sdpa=True)
    sdpa.load_state_dict(plain.state_dict())
    x = torch.randn(3, seq, d_in)
    torch.testing.assert_close(sdpa(x), plain(x), atol=1e-6, rtol=1e-5)


@PATHS
def test_book_numbers_with_book_weight_order(use_sdpa: bool) -> None:
    # The book builds W_query, W_key, W_value and out_proj in this order after seed 123.
    torch.manual_seed(123)
    w_query, w_key, w_value = (nn.Linear(3, 2, bias=False) for _ in range(3))
    out_proj = nn.Linear(2, 2)
    mha = MultiHeadAttention(3, 2, 6, 0.0, num_heads=2, use_sdpa=use_sdpa)
    with torch.no_grad():
        mha.qkv.weight.copy_(torch.cat([w_query.weight, w_key.weight, w_value.weight]))
        mha.out_proj.load_state_dict(out_proj.state_dict())
    out = mha(torch.stack((BOOK_INPUTS, BOOK_INPUTS)))
    book = torch.tensor(
        [
            [0.3190, 0.4858],
            [0.2943, 0.3897],
            [0.2856, 0.3593],
            [0.2693, 0.3873],
            [0.2639, 0.3928],
            [0.2575, 0.4028],
        ]
    )
    assert out.shape == (2, 6, 2)
    torch.testing.assert_close(out[0], book, atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1], book, atol=1e-4, rtol=0)


@PATHS
@pytest.mark.parametrize("t", [0, 3, 6])
def test_future_tokens_never_change_earlier_outputs(use_sdpa: bool, t: int) -> None:
    mha = MultiHeadAttention(8, 8, 8, 0.0, num_heads=2, use_sdpa=use_sdpa).eval()
    x = torch.randn(2, 8, 8)
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :])
    before, after = mha(x), mha(changed)
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], atol=0, rtol=0)
    if t + 1 < x.shape[1]:  # the changed positions themselves do see the change
        assert not torch.allclose(after[:, t + 1 :], before[:, t + 1 :])


@PATHS
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_gradcheck_float64(use_sdpa: bool, bias: bool) -> None:
    mha = MultiHeadAttention(4, 6, 5, 0.0, num_heads=3, qkv_bias=bias, use_sdpa=use_sdpa)
    mha = mha.double()
    names = [name for name, _ in mha.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in mha.parameters())
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)

    def f(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return functional_call(mha, dict(zip(names, ps, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


@PATHS
def test_dropout_off_in_eval_on_in_train(use_sdpa: bool) -> None:
    mha = MultiHeadAttention(16, 16, 10, dropout=0.5, num_heads=4, use_sdpa=use_sdpa)
    no_drop = MultiHeadAttention(16, 16, 10, dropout=0.0, num_heads=4, use_sdpa=use_sdpa)
    no_drop.load_state_dict(mha.state_dict())
    x = torch.randn(2, 10, 16)
    mha.eval()
    first, second = mha(x), mha(x)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    torch.testing.assert_close(first, no_drop.eval()(x))
    mha.train()
    a, b = mha(x), mha(x)
    assert not torch.allclose(a, first)
    assert not torch.allclose(a, b)


@PATHS
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 1, 2], [2, 4, 1], [7]])
def test_kv_cache_in_chunks_equals_full_sequence(use_sdpa: bool, chunks: list[int]) -> None:
    mha = MultiHeadAttention(12, 12, 8, 0.1, num_heads=3, qkv_bias=True, use_sdpa=use_sdpa)
    mha.eval()
    x = torch.randn(2, sum(chunks), 12)
    full = mha(x)
    cache = KVCache(2, 3, 4, max_len=8)
    for _ in range(2):  # the second round checks that reset() really forgets
        cache.reset()
        pieces, start = [], 0
        for n in chunks:
            pieces.append(mha(x[:, start : start + n], cache=cache))
            start += n
        assert cache.pos == sum(chunks)
        torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-6, rtol=1e-5)


def test_kv_cache_overflow_and_mismatches_are_input_errors() -> None:
    mha = MultiHeadAttention(8, 8, 16, num_heads=2)
    cache = KVCache(1, 2, 4, max_len=4)
    mha(torch.randn(1, 3, 8), cache=cache)
    with pytest.raises(InputError, match=r"holds 4 positions; 3 are filled and 2 more"):
        mha(torch.randn(1, 2, 8), cache=cache)
    assert cache.pos == 3  # a refused append leaves the cache as it was
    with pytest.raises(InputError, match=r"batch=1.*got keys \(2, 2, 1, 4\)"):
        mha(torch.randn(2, 1, 8), cache=KVCache(1, 2, 4, max_len=4))
    with pytest.raises(InputError, match=r"heads=2.*got keys \(1, 4, 1, 2\)"):
        cache.append(torch.zeros(1, 4, 1, 2), torch.zeros(1, 4, 1, 2))
    short = MultiHeadAttention(8, 8, 4, num_heads=2)
    long_cache = KVCache(1, 2, 4, max_len=10)
    short(torch.randn(1, 3, 8), cache=long_cache)
    with pytest.raises(InputError, match=r"5 positions \(3 cached \+ 2 new\).*context length 4"):
        short(torch.randn(1, 2, 8), cache=long_cache)
    with pytest.raises(InputError, match=r"max_len must be an integer >= 1, got 0"):
        KVCache(1, 2, 4, max_len=0)


def test_bad_sizes_name_the_numbers() -> None:
    with pytest.raises(InputError, match=r"d_out=10 must be divisible by num_heads=3"):
        MultiHeadAttention(4, 10, 8, num_heads=3)
    with pytest.raises(InputError, match=r"num_heads must be an integer >= 1, got 0"):
        MultiHeadAttention(4, 8, 8, num_heads=0)
    with pytest.raises(InputError, match=r"num_heads must be an integer >= 1, got 2.0"):
        MultiHeadAttention(4, 8, 8, num_heads=2.0)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"dropout must be a number in \[0, 1\), got 1.5"):
        MultiHeadAttention(4, 8, 8, dropout=1.5)
    mha = MultiHeadAttention(4, 8, 6, num_heads=2)
    with pytest.raises(
        InputError, match=r"sequence of 7 positions is longer than the context length 6"
    ):
        mha(torch.randn(1, 7, 4))
    with pytest.raises(InputError, match=r"shape \(batch, tokens, 4\), got \(1, 3, 5\)"):
        mha(torch.randn(1, 3, 5))
    with pytest.raises(InputError, match=r"got \(3, 4\)"):
        mha(torch.randn(3, 4))
    assert issubclass(InputError, ValueError)


def test_gpt2_small_sizes_and_checkpoint_names() -> None:
    mha = MultiHeadAttention(768, 768, 1024, 0.0, num_heads=12, qkv_bias=False)
    assert mha.head_dim == 64
    assert sum(p.numel() for p in mha.parameters()) == 2_360_064  # the book's count
    # The causal mask is rebuilt from context_length, never stored in checkpoints.
    assert set(mha.state_dict()) == {"qkv.weight", "out_proj.weight", "out_proj.bias"}


ACCELERATORS = [d for d in available_devices() if d != "cpu"]


@pytest.mark.skipif(not ACCELERATORS, reason="no cuda or mps device on this machine")
@pytest.mark.parametrize("dev", ACCELERATORS or ["none"])
@PATHS
def test_accelerator_matches_cpu_with_and_without_cache(dev: str, use_sdpa: bool) -> None:
    mha = MultiHeadAttention(32, 32, 16, 0.0, num_heads=4, qkv_bias=True, use_sdpa=use_sdpa)
    x = torch.randn(2, 10, 32)
    expected = mha.eval()(x)
    mha.to(dev)
    full = mha(x.to(dev))
    cache = KVCache(2, 4, 8, max_len=16, device=dev)
    pieces = [
        mha(x[:, :6].to(dev), cache),
        *(mha(x[:, t : t + 1].to(dev), cache) for t in range(6, 10)),
    ]
    # Loose: GPU matmuls may use reduced-precision (TF32) accumulation.
    torch.testing.assert_close(full.cpu(), expected, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(torch.cat(pieces, dim=1).cpu(), expected, atol=1e-3, rtol=1e-3)
