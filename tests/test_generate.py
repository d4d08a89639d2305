"""Generation against Hugging Face's `generate`, cached against uncached, sampling against maths."""

from __future__ import annotations

import math

import pytest
import torch

from dlnotes.errors import InputError
from dlnotes.generate import generate, sample_next, stream
from dlnotes.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def hf_greedy(hf, idx: torch.Tensor, n: int, eos: int | None = None) -> torch.Tensor:
    return hf.generate(
        idx,
        attention_mask=torch.ones_like(idx),
        do_sample=False,
        max_new_tokens=n,
        min_new_tokens=0 if eos is not None else n,
        eos_token_id=eos,
        pad_token_id=eos if eos is not None else 0,
    )


@pytest.mark.parametrize("sizes", [(2, 4, 32, 48, 101), (3, 2, 16, 40, 300)])
def test_greedy_equals_huggingface(sizes: tuple, hf_pair) -> None:
    hf, ours = hf_pair(*sizes, init_range=0.3)
    idx = torch.randint(0, sizes[4], (3, 6))
    want = hf_greedy(hf, idx, 30)
    assert len(set(want[0, 6:].tolist())) > 3, "degenerate reference output"
    for use_cache in (True, False):
        assert torch.equal(generate(ours, idx, 30, use_cache=use_cache), want)


def test_eos_stops_and_pads_like_huggingface(hf_pair) -> None:
    hf, ours = hf_pair(2, 4, 32, 48, 101, init_range=0.3)
    idx = torch.randint(0, 101, (2, 4))
    free = generate(ours, idx, 20)
    eos = int(free[0, 4])  # row 0 ends at once; row 1 runs on until it makes this token
    want = hf_greedy(hf, idx, 20, eos=eos)
    got = generate(ours, idx, 20, eos_id=eos)
    assert torch.equal(got, want)
    assert (got[0, 4:] == eos).all()  # row 0 padded with eos while row 1 goes on
    one = generate(ours, idx[:1], 20, eos_id=eos)
    assert one.shape[1] == 5 and one[0, -1] == eos  # batch 1 stops right after eos


@pytest.mark.parametrize("prompt_len, new", [(5, 35), (40, 1), (20, 40), (3, 60)])
def test_cached_equals_uncached(prompt_len: int, new: int, hf_pair) -> None:
    """Up to the context length (40) exactly, and past it, where both crop."""
    _, model = hf_pair(2, 4, 32, 40, 101, init_range=0.3)
    idx = torch.randint(0, 101, (3, prompt_len))
    for kwargs in [{}, {"temperature": 1.5, "top_k": 20}]:
        runs = []
        for use_cache in (True, False):
            gen = torch.Generator().manual_seed(7)
            runs.append(generate(model, idx, new, use_cache=use_cache, generator=gen, **kwargs))
        assert runs[0].shape == (3, prompt_len + new)
        assert torch.equal(runs[0], runs[1])


def test_stream_yields_the_generated_tokens() -> None:
    model = GPT(GPTConfig.tiny()).eval()
    idx = torch.randint(0, 50257, (2, 5))
    steps = stream(model, idx, 8)
    first = next(steps)
    assert first.shape == (2,) and not first.is_inference()
    assert torch.is_grad_enabled()  # inference mode does not leak into the caller
    rest = list(steps)
    assert torch.equal(torch.stack([first, *rest], dim=1), generate(model, idx, 8)[:, 5:])


def test_seeded_sampling_is_reproducible() -> None:
    model = GPT(GPTConfig.tiny()).eval()
    idx = torch.tensor([[15496, 11, 314, 716]])
    a, b, c = (
        generate(model, idx, 20, temperature=1.0, generator=torch.Generator().manual_seed(s))
        for s in (1, 1, 2)
    )
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_next_follows_softmax_with_temperature() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    temperature, n = 2.0, 20_000
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, temperature, generator=gen) for _ in range(n)])
    weights = [math.exp(v / temperature) for v in logits[0].tolist()]
    for token, w in enumerate(weights):
        p = w / sum(weights)
        freq = (draws == token).float().mean().item()
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n), (token, freq, p)


def test_top_k_keeps_only_the_k_largest() -> None:
    logits = torch.randn(5, 50)
    top3 = torch.topk(logits, 3).indices
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        ids = sample_next(logits, temperature=5.0, top_k=3, generator=gen)
        assert (ids[:, None] == top3).any(dim=1).all()
    assert torch.equal(sample_next(logits, 1.0, top_k=1, generator=gen), logits.argmax(-1))


def test_bfloat16_model_tracks_float32(hf_pair) -> None:
    _, model = hf_pair(2, 4, 32, 40, 101, init_range=0.3)
    idx = torch.randint(0, 101, (2, 10))
    with torch.no_grad():
        ref = model(idx)
        low = model.to(torch.bfloat16)(idx)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max()
    out = generate(model, idx, 15)
    assert out.shape == (2, 25) and int(out.max()) < 101


def test_nan_logits_are_a_clear_error() -> None:
    logits = torch.tensor([[0.5, float("nan"), 1.0]])
    with pytest.raises(InputError, match="logits contain NaN or infinite values"):
        sample_next(logits, temperature=1.0)


@pytest.mark.parametrize(
    "idx, kwargs, message",
    [
        (torch.zeros(1, 0, dtype=torch.long), {}, "the prompt is empty"),
        (torch.tensor([[5, 50257]]), {}, "prompt token id 50257 is outside the vocabulary"),
        (torch.tensor([[-3, 5]]), {}, "prompt token id -3 is outside"),
        (torch.tensor([5, 6]), {}, r"shape \(batch, tokens\)"),
        (torch.tensor([[5]]), {"top_k": 0}, r"top_k must be an integer in 1..50257 .*got 0"),
        (torch.tensor([[5]]), {"top_k": 50258}, "top_k must be an integer in 1..50257"),
        (torch.tensor([[5]]), {"top_k": 2.5}, "top_k must be an integer .* got 2.5"),
        ([[5, 6]], {}, "the prompt must be a tensor of token ids, got a list"),
        (torch.tensor([[5]]), {"temperature": -0.5}, "temperature must be .* got -0.5"),
        (torch.tensor([[5]]), {"temperature": float("nan")}, "temperature must be"),
        (torch.tensor([[5]]), {"eos_id": 50257}, "eos_id 50257 is outside"),
    ],
)
def test_bad_input(idx: torch.Tensor | list, kwargs: dict, message: str) -> None:
    model = GPT(GPTConfig.tiny())
    with pytest.raises(InputError, match=message):
        generate(model, idx, 3, **kwargs)
    with pytest.raises(InputError, match=message):
        stream(model, idx, 3, **kwargs)  # checked at the call, not at the first next()


def test_bad_max_new_tokens() -> None:
    model = GPT(GPTConfig.tiny())
    with pytest.raises(InputError, match="max_new_tokens must be an integer >= 0, got -1"):
        generate(model, torch.tensor([[5]]), -1)
    assert generate(model, torch.tensor([[5]]), 0).tolist() == [[5]]
