"""Text generation with a `dlnotes.gpt.GPT`: greedy, temperature and top-k, with a KV cache.

Follows Raschka, *Build a Large Language Model (From Scratch)*: ch04's
``generate_text_simple`` (greedy, cropping to the context), ch05's ``generate``
(temperature, top-k, end-of-sequence id) and the book's KV-cache bonus material
(https://github.com/rasbt/LLMs-from-scratch/tree/main/ch04/03_kv-cache).

Two choices differ from the book, both to match Hugging Face's ``generate`` for
batches: the end-of-sequence token is kept in the output, and a row that has
finished is padded with it while the other rows go on; generation stops when all
rows have finished.

With the cache, each step feeds only the newest token. GPT-2's positions are absolute,
so once prompt plus output pass the context length the cached keys cannot slide; each
such step re-encodes the last `context_length` tokens, exactly what the uncached path
does, so both give the same ids at any length.

At batch size 1 a step reads every weight once and does little arithmetic with it,
so its speed is set by memory: `cpu_bfloat16` makes a copy with bfloat16 weights
that oneDNN has laid out for its own kernels (half the bytes of float32).

Leaves out: beam search, repetition penalties, top-p, per-row stop strings.
The model's train/eval mode is the caller's: call ``model.eval()`` first to turn
dropout off, as the book does.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from dlnotes.errors import InputError, require_int
from dlnotes.gpt import GPT, check_token_ids


def check_sampling(temperature: float, top_k: int | None, vocab_size: int) -> None:
    """Raise `InputError` unless ``temperature >= 0`` and ``1 <= top_k <= vocab_size``.

    >>> check_sampling(0.7, 50, 50257)
    >>> check_sampling(1.0, 0, 50257)
    Traceback (most recent call last):
    ...
    dlnotes.errors.InputError: top_k must be an integer in 1..50257 (the vocabulary size), got 0
    """
    if not isinstance(temperature, (int, float)) or not temperature >= 0 or math.isinf(temperature):
        raise InputError(
            f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}"
        )
    if top_k is not None and (
        isinstance(top_k, bool)
        or not isinstance(top_k, numbers.Integral)
        or not 1 <= top_k <= vocab_size
    ):
        raise InputError(
            f"top_k must be an integer in 1..{vocab_size} (the vocabulary size), got {top_k!r}"
        )


def sample_next(
    logits: Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B, V) next-token logits -> (B,) ids: argmax if `temperature` is 0, else a sample.

    `top_k` keeps the k largest logits (ties with the k-th are kept too) and gives the
    rest probability 0; `temperature` divides the logits before the softmax (< 1 sharper,
    > 1 flatter).

    >>> sample_next(torch.tensor([[0.1, 2.0, -1.0]]))
    tensor([1])
    """
    check_sampling(temperature, top_k, logits.shape[-1])
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # float: bf16 sums poorly
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check_prompt(model: GPT, idx: Tensor, max_new_tokens: int, eos_id: int | None) -> None:
    vocab = model.cfg.vocab_size
    check_token_ids(idx, vocab, what="prompt")
    require_int("max_new_tokens", max_new_tokens, minimum=0)
    if eos_id is not None and not 0 <= eos_id < vocab:
        raise InputError(f"eos_id {eos_id} is outside the vocabulary 0..{vocab - 1}")


def stream(
    model: GPT,
    idx: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    """Yield the (B,) next token ids one step at a time after the (B, T) prompt `idx`.

    Arguments as in `generate`. Nothing is computed until the first ``next()``.
    """
    _check_prompt(model, idx, max_new_tokens, eos_id)
    check_sampling(temperature, top_k, model.cfg.vocab_size)
    return _stream(model, idx, max_new_tokens, temperature, top_k, eos_id, use_cache, generator)


def _stream(
    model: GPT,
    seq: Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    eos_id: int | None,
    use_cache: bool,
    generator: torch.Generator | None,
) -> Iterator[Tensor]:
    ctx = model.cfg.context_length
    B = seq.shape[0]
    done = torch.zeros(B, dtype=torch.bool, device=seq.device)
    cache = None
    # A cache long enough for prompt and output, capped at the context; allocated once.
    cache_len = min(ctx, seq.shape[1] + max_new_tokens)
    for _ in range(max_new_tokens):
        # inference_mode is entered per step, never across a `yield`, so the caller's
        # code between steps runs with autograd as it set it.
        with torch.inference_mode():
            if not use_cache:
                logits = model(seq[:, -ctx:], last_only=True)  # (B, 1, V)
            elif cache is None or cache[0].pos == cache_len:
                # First step, or the context is full: (re-)encode the last ctx tokens.
                if cache is None:
                    cache = model.new_cache(B, cache_len)
                for layer in cache:
                    layer.reset()
                logits = model(seq[:, -ctx:], cache, last_only=True)
            else:
                logits = model(seq[:, -1:], cache, last_only=True)
            nxt = sample_next(logits[:, -1], temperature, top_k, generator)  # (B,)
            if eos_id is not None:
                nxt = torch.where(done, eos_id, nxt)  # finished rows are padded with eos
                done |= nxt == eos_id
        nxt = nxt.clone()  # an ordinary tensor for the caller, not an inference one
        seq = torch.cat([seq, nxt[:, None]], dim=1)  # (B, T+1)
        yield nxt
        if eos_id is not None and bool(done.all()):
            return


def generate(
    model: GPT,
    idx: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The (B, T) prompt `idx` followed by up to `max_new_tokens` generated ids: (B, T + n).

    ``temperature=0`` picks the most likely token (greedy); above 0 it samples, from
    the `top_k` most likely tokens only when `top_k` is given, using `generator`
    (a seeded `torch.Generator` on the model's device) for reproducible draws. Stops
    early once every row has produced `eos_id`. Input longer than the model's context
    is cropped to its last `context_length` tokens at each step.

    >>> from dlnotes.gpt import GPT, GPTConfig
    >>> _ = torch.manual_seed(0)
    >>> model = GPT(GPTConfig.tiny()).eval()
    >>> out = generate(model, torch.tensor([[15496, 11, 314, 716]]), 6)
    >>> out.shape
    torch.Size([1, 10])
    >>> torch.equal(out, generate(model, torch.tensor([[15496, 11, 314, 716]]), 6, use_cache=False))
    True
    """
    steps = stream(
        model,
        idx,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        eos_id=eos_id,
        use_cache=use_cache,
        generator=generator,
    )
    return torch.cat([idx, *(token[:, None] for token in steps)], dim=1)


class PackedLinear(nn.Module):
    """A frozen `nn.Linear` for CPU inference, its weight prepacked by oneDNN.

    `F.linear` on a bfloat16 CPU tensor re-lays the weight out for oneDNN at every
    call; packing once makes a batch-1 step about 1.4x faster than float32 on
    AVX512-BF16 CPUs, where plain bfloat16 gains little.
    """

    def __init__(self, linear: nn.Linear, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().to("cpu", dtype)
        # (out, in) -> oneDNN's blocked layout, tuned for one row of input at a time.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        bias = linear.bias
        self.bias = None if bias is None else bias.detach().to("cpu", dtype)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def cpu_bfloat16(model: GPT) -> GPT:
    """An inference-only bfloat16 copy of `model` for fast generation on the CPU.

    Every linear layer becomes a `PackedLinear`; the rest is cast to bfloat16. The
    copy has no trainable linear weights: use it with `generate`/`stream` only.
    """
    if not torch.backends.mkldnn.is_available() or not hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    ):
        raise InputError(
            "cpu_bfloat16 needs a PyTorch build with oneDNN (mkldnn); "
            "use model.to(torch.bfloat16) instead"
        )
    fast = copy.deepcopy(model).to("cpu", torch.bfloat16).eval().requires_grad_(False)
    linears = [(n, m) for n, m in fast.named_modules() if isinstance(m, nn.Linear)]
    for name, linear in linears:
        owner, _, attr = name.rpartition(".")
        setattr(fast.get_submodule(owner), attr, PackedLinear(linear))
    return fast
