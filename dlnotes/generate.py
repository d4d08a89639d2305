"""Text generation with a `dlnotes.gpt.GPT` or `dlnotes.llama.Llama`: greedy, temperature
and top-k, with a KV cache.

Follows Raschka, *Build a Large Language Model (From Scratch)*: ch04's
``generate_text_simple`` (greedy, cropping to the context), ch05's ``generate``
(temperature, top-k, end-of-sequence id) and the book's KV-cache bonus material
(https://github.com/rasbt/LLMs-from-scratch/tree/main/ch04/03_kv-cache).

Two choices differ from the book, both to match Hugging Face's ``generate`` for
batches: the end-of-sequence token is kept in the output, and a row that has
finished is padded with it while the other rows go on; generation stops when all
rows have finished.

With the cache, each step feeds only the newest token. GPT-2's positions are absolute,
so once prompt plus output pass the context length the cached keys cannot slide (nor
can Llama's: RoPE has rotated them by their positions, and every deeper key has seen
the tokens that would be dropped); each such step re-encodes the last
`context_length` tokens, exactly what the uncached path does, so both give the same
ids at any length. Any model with this surface works: ``model.cfg.vocab_size``/
``context_length``, ``model.new_cache(batch, max_len)`` and
``model(idx, cache, last_only=True)``.

A fast frozen copy of a model for CPU inference (float32 or bfloat16) is
`dlnotes.cpu_inference.inference_copy`. ``compile=True`` runs the one-token steps
through `torch.compile` (fewer Python-level operations per step, elementwise work
fused): worth its compile time (seconds, once per process and model structure) for
long outputs, and off by default.

Leaves out: beam search, repetition penalties, top-p, per-row stop strings.
The model's train/eval mode is the caller's: call ``model.eval()`` first to turn
dropout off, as the book does.
"""

from __future__ import annotations

import numbers
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dlnotes.attention import KVCache
from dlnotes.errors import InputError, require_bool, require_int, require_number
from dlnotes.fastpath import compiled
from dlnotes.gpt import check_token_ids


def check_sampling(temperature: float, top_k: int | None, vocab_size: int) -> None:
    """Raise `InputError` unless ``temperature >= 0`` and ``1 <= top_k <= vocab_size``.

    >>> check_sampling(0.7, 50, 50257)
    >>> check_sampling(1.0, 0, 50257)
    Traceback (most recent call last):
    ...
    dlnotes.errors.InputError: top_k must be an integer in 1..50257 (the vocabulary size), got 0
    """
    require_number("temperature", temperature, "[0, inf)", "(0 = greedy)")
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
    return _sample(logits, temperature, top_k, generator)


def _sample(
    logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> Tensor:
    """`sample_next` without the argument checks (done once per generation, not per token)."""
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # float: bf16 sums poorly
    try:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    except RuntimeError as exc:  # NaN or inf logits give no probability distribution
        raise InputError(
            "cannot sample: the logits contain NaN or infinite values "
            f"(a diverged model or a bad dtype?) [{exc}]"
        ) from None


@dataclass(frozen=True)
class _Plan:
    """A generation's settings, checked once before the first step."""

    max_new_tokens: int
    temperature: float
    top_k: int | None
    eos_id: int | None
    use_cache: bool
    generator: torch.Generator | None
    compile: bool

    def check(self, model: nn.Module, idx: Tensor) -> _Plan:
        vocab = model.cfg.vocab_size
        check_token_ids(idx, vocab, what="prompt")
        require_int("max_new_tokens", self.max_new_tokens, minimum=0)
        if self.eos_id is not None:
            require_int("eos_id", self.eos_id, minimum=0)  # a float id would make ids floats
            if self.eos_id >= vocab:
                raise InputError(f"eos_id {self.eos_id} is outside the vocabulary 0..{vocab - 1}")
        check_sampling(self.temperature, self.top_k, vocab)
        require_bool("compile", self.compile)
        return self


def stream(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> Iterator[Tensor]:
    """Yield the (B,) next token ids one step at a time after the (B, T) prompt `idx`.

    Arguments as in `generate`; they are checked at the call. Nothing is computed
    until the first ``next()``.
    """
    plan = _Plan(max_new_tokens, temperature, top_k, eos_id, use_cache, generator, compile)
    return _stream(model, idx, plan.check(model, idx))


def _stream(model: nn.Module, seq: Tensor, plan: _Plan) -> Iterator[Tensor]:
    ctx = model.cfg.context_length
    B = seq.shape[0]
    eos_id = plan.eos_id
    done = torch.zeros(B, dtype=torch.bool, device=seq.device)
    cache = None
    # A cache long enough for prompt and output, capped at the context; allocated once.
    cache_len = min(ctx, seq.shape[1] + plan.max_new_tokens)
    # The one-token steps all have one shape class: compiled once (dynamic sizes) and
    # reused; the prompt and any re-encoding run eagerly.
    compile = plan.compile and plan.use_cache and model not in _NOT_COMPILING
    step = compiled(model, dynamic=True) if compile else model
    for _ in range(plan.max_new_tokens):
        # inference_mode is entered per step, never across a `yield`, so the caller's
        # code between steps runs with autograd as it set it.
        with torch.inference_mode():
            if not plan.use_cache:
                logits = model(seq[:, -ctx:], last_only=True)  # (B, 1, V)
            elif cache is None or cache[0].pos == cache_len:
                # First step, or the context is full: (re-)encode the last ctx tokens.
                if cache is None:
                    cache = model.new_cache(B, cache_len)
                for layer in cache:
                    layer.reset()
                logits = model(seq[:, -ctx:], cache, last_only=True)
            elif step is model:
                logits = model(seq[:, -1:], cache, last_only=True)
            else:
                logits, step = _compiled_step(step, model, seq[:, -1:], cache)
            nxt = _sample(logits[:, -1], plan.temperature, plan.top_k, plan.generator)  # (B,)
            if eos_id is not None:
                nxt = torch.where(done, eos_id, nxt)  # finished rows are padded with eos
                done |= nxt == eos_id
        nxt = nxt.clone()  # an ordinary tensor for the caller, not an inference one
        seq = torch.cat([seq, nxt[:, None]], dim=1)  # (B, T+1)
        yield nxt
        if eos_id is not None and bool(done.all()):
            return


# Models whose compiled step failed once: they decode eagerly from then on, without
# paying for another failed compile at every call.
_NOT_COMPILING: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _compiled_step(
    step: nn.Module, model: nn.Module, last: Tensor, cache: list[KVCache]
) -> tuple[Tensor, nn.Module]:
    """``step(last, cache)`` and the step to use next: the model itself from now on, with
    a warning, if the compiled step fails (a compiler that builds a probe but not this
    model, such as one prepacked by `dlnotes.cpu_inference`); the cache is rewound
    first, so nothing is fed twice."""
    filled = [layer.pos for layer in cache]
    try:
        return step(last, cache, last_only=True), step
    except Exception as exc:  # any failure of the fast path: take the eager one
        warnings.warn(
            f"compiled decoding failed ({type(exc).__name__}: "
            f"{(str(exc).strip().splitlines() or [''])[0][:160]}); "
            "decoding without compiling",
            stacklevel=4,
        )
        for layer, pos in zip(cache, filled, strict=True):
            layer.pos = pos
        _NOT_COMPILING.add(model)
        return model(last, cache, last_only=True), model


def generate(
    model: nn.Module,
    idx: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> Tensor:
    """The (B, T) prompt `idx` followed by up to `max_new_tokens` generated ids: (B, T + n).

    ``temperature=0`` picks the most likely token (greedy); above 0 it samples, from
    the `top_k` most likely tokens only when `top_k` is given, using `generator`
    (a seeded `torch.Generator` on the model's device) for reproducible draws. Stops
    early once every row has produced `eos_id`. Input longer than the model's context
    is cropped to its last `context_length` tokens at each step. ``compile=True`` runs
    the cached one-token steps compiled where `torch.compile` works here (else, or if
    compiling this model fails, with a warning, eagerly): the same ids, faster per token.

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
        compile=compile,
    )
    return torch.cat([idx, *(token[:, None] for token in steps)], dim=1)
