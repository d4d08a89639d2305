"""GPT model against Hugging Face's GPT-2, torch's layers, and the book's parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlnotes.errors import InputError
from dlnotes.gpt import GELU, GPT, GPTConfig, LayerNorm

pytestmark = pytest.mark.usefixtures("one_thread")


# (layers, heads, dims, context, vocab, HF attention)
CONFIGS = [
    (1, 1, 8, 8, 50, "eager"),
    (2, 4, 32, 16, 101, "sdpa"),
    (3, 2, 24, 40, 257, "eager"),
    (4, 6, 48, 24, 1000, "sdpa"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "L{}-H{}-D{}-T{}-V{}-{}".format(*c))
def test_logits_equal_huggingface(config: tuple, hf_pair) -> None:
    *sizes, attn = config
    hf, ours = hf_pair(*sizes, attn=attn)
    ctx, vocab = sizes[3], sizes[4]
    for batch, length in [(3, ctx), (2, 5), (1, 1)]:  # full context, short, one token
        idx = torch.randint(0, vocab, (batch, length))
        with torch.no_grad():
            want = hf(idx).logits
            got = ours(idx)
        assert got.shape == (batch, length, vocab)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_last_only_and_cached_chunks_equal_full_forward(hf_pair) -> None:
    _, model = hf_pair(2, 4, 32, 24, 101)
    idx = torch.randint(0, 101, (2, 24))
    with torch.no_grad():
        full = model(idx)
        torch.testing.assert_close(model(idx, last_only=True), full[:, -1:])
        cache = model.new_cache(2)
        parts = [model(idx[:, a:b], cache) for a, b in [(0, 10), (10, 11), (11, 24)]]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)
    assert cache[0].pos == 24


def test_layer_norm_equals_the_formula_and_torch() -> None:
    x = torch.randn(4, 7, 16, dtype=torch.float64) * 3 + 1
    ours, ref = LayerNorm(16).double(), nn.LayerNorm(16, eps=1e-5).double()
    with torch.no_grad():
        for layer in (ours, ref):
            layer.weight.copy_(torch.linspace(0.5, 2.0, 16))
            layer.bias.copy_(torch.linspace(-1.0, 1.0, 16))
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)  # biased: divide by D
    by_hand = (x - mean) / torch.sqrt(var + 1e-5) * ours.weight + ours.bias
    torch.testing.assert_close(ours(x), by_hand)
    torch.testing.assert_close(ours(x), ref(x))


def test_gelu_equals_the_tanh_formula() -> None:
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    formula = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(GELU()(x), formula)
    assert (GELU()(x) - nn.GELU()(x)).abs().max() < 1e-3  # close to the exact (erf) GELU
    assert abs(GELU()(torch.tensor(1.0)).item() - 0.8412) < 1e-4  # by hand: 0.5·(1+tanh(0.8198))


# The book's counts (qkv_bias False): untied head, and without the output head.
BOOK_COUNTS = {
    "124M": (163_009_536, 124_412_160),
    "medium": (406_212_608, 354_749_440),
    "large": (838_220_800, 773_891_840),
    "xl": (1_637_792_000, 1_557_380_800),
}


@pytest.mark.parametrize("size", BOOK_COUNTS)
def test_parameter_counts_match_book(size: str) -> None:
    untied, tied = BOOK_COUNTS[size]
    with torch.device("meta"):
        model = GPT(GPTConfig.gpt2(size, qkv_bias=False, tie_weights=False))
        tied_model = GPT(GPTConfig.gpt2(size, qkv_bias=False))
    assert model.num_parameters() == untied
    assert model.num_parameters(count_head=False) == tied
    assert tied_model.num_parameters() == tied
    if size == "124M":  # 4 bytes per float32 parameter, in MiB as the book prints it
        assert round(untied * 4 / 1024**2, 2) == 621.83


@pytest.mark.parametrize("size, hf_name", [("124M", ""), ("medium", "-medium"), ("xl", "-xl")])
def test_released_sizes_count_like_huggingface(size: str, hf_name: str) -> None:
    sizes = {"": (768, 12, 12), "-medium": (1024, 24, 16), "-xl": (1600, 48, 25)}[hf_name]
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=sizes[0], n_layer=sizes[1], n_head=sizes[2])
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(config)
        ours = GPT(GPTConfig.gpt2(size))
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())


def test_tied_head_shares_the_embedding() -> None:
    model = GPT(GPTConfig.tiny(tie_weights=True))
    assert model.lm_head.weight is model.wte.weight
    untied = GPT(GPTConfig.tiny())
    assert untied.lm_head.weight is not untied.wte.weight
    assert not torch.equal(untied.lm_head.weight, untied.wte.weight.detach())


def test_presets() -> None:
    assert GPTConfig.preset("small") == GPTConfig.gpt2("124M")
    assert GPTConfig.gpt2("1558M").n_heads == 25
    book = GPTConfig.book()
    assert (book.context_length, book.drop_rate, book.qkv_bias, book.tie_weights) == (
        256,
        0.1,
        False,
        False,
    )
    assert GPTConfig.tiny(n_layers=3).n_layers == 3


@pytest.mark.parametrize(
    "idx, message",
    [
        (torch.tensor([[1, 2, 50257]]), "token id 50257 is outside the vocabulary 0..50256"),
        (torch.tensor([[-1, 2]]), "token id -1 is outside"),
        (torch.zeros(1, 65, dtype=torch.long), "65 positions .* exceed the context length 64"),
        (torch.zeros(1, 0, dtype=torch.long), "empty sequence"),
        (torch.tensor([1, 2, 3]), r"shape \(batch, tokens\)"),
        (torch.tensor([[1.0, 2.0]]), "integer token ids"),
        ([[1, 2]], "the input must be a tensor of token ids, got a list"),
    ],
)
def test_bad_input(idx: torch.Tensor, message: str) -> None:
    model = GPT(GPTConfig.tiny())
    with pytest.raises(InputError, match=message):
        model(idx)


def test_bad_config() -> None:
    with pytest.raises(InputError, match="unknown GPT preset 'huge'; known presets: 124M, 355M"):
        GPTConfig.preset("huge")
    with pytest.raises(InputError, match="unknown GPT-2 size '2B'"):
        GPTConfig.gpt2("2B")
    with pytest.raises(InputError, match="emb_dim=30 must be divisible by n_heads=4"):
        GPTConfig.tiny(emb_dim=30)
    with pytest.raises(InputError, match="drop_rate must be a number in"):
        GPTConfig.tiny(drop_rate=1.0)
    model = GPT(GPTConfig.tiny())
    cache = model.new_cache(1, 4)
    model(torch.zeros(1, 4, dtype=torch.long), cache)
    with pytest.raises(InputError, match="KV cache holds 4 positions"):
        model(torch.zeros(1, 1, dtype=torch.long), cache)
