"""Next-token losses of a language model: batch and loader loss, perplexity, evaluation.

Follows Raschka, *Build a Large Language Model (From Scratch)*, section 5.1
(``calc_loss_batch``, ``calc_loss_loader``, ``evaluate_model``;
https://github.com/rasbt/LLMs-from-scratch/tree/main/ch05), and adds the choice of
a mixed-precision (autocast) dtype that `dlnotes.train` uses for its steps too.

Symbols: B batch, T tokens per row, V vocabulary size.

Leaves out: losses over padded batches (ignore_index, masks) and token-level
accuracy, which the fine-tuning chapters add.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes import fastpath
from dlnotes.errors import InputError, require_int

AmpArg = torch.dtype | str | None


def amp_dtype(device: torch.device, amp: AmpArg = "auto") -> torch.dtype | None:
    """The autocast dtype to train with on `device` (None: plain float32).

    ``"auto"`` picks bfloat16 where matrix products run much faster in it (CUDA with
    compute capability 8+, CPUs with AMX tiles), else float32. (AVX512-BF16 alone
    multiplies bf16 no faster than float32, and the casts then cost time.)

    >>> amp_dtype(torch.device("cpu"), None) is None
    True
    """
    if amp is None or isinstance(amp, torch.dtype):
        return amp
    if amp == "bf16":
        return torch.bfloat16
    if amp != "auto":
        raise InputError(f"amp must be 'auto', 'bf16', a torch dtype or None, got {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if fastpath.available(AMX, _amx_probe) else None
    return None


AMX = "cpu_amx_bf16"


def _amx_probe() -> None:
    """Raise unless this CPU has AMX tiles and a bf16 autocast matrix product runs on it.

    PyTorch reports AMX only through a private helper; where that helper is missing
    or says no, bf16 autocast is not worth it and training stays in float32.
    """
    if not torch.cpu._is_amx_tile_supported():
        raise RuntimeError("no AMX tiles")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.ones(16, 32) @ torch.ones(32, 16)
    if out.dtype != torch.bfloat16 or out[0, 0].item() != 32:
        raise RuntimeError("bf16 autocast gave a wrong product")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """`torch.autocast` to `dtype` on `device`, or nothing when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (where its inputs must go)."""
    return next(model.parameters()).device


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (no dropout) inside a `with`; afterwards every submodule has its own mode
    back, so a part the caller had put in eval mode (a frozen block) stays there."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


IGNORE = -100  # F.cross_entropy's ignore_index: padding positions that the loss skips


def _check_targets(targets: object, inputs: Tensor, logits: Tensor) -> None:
    """Raise `InputError` unless `targets` holds one id in 0..V-1 per position of the logits."""
    if not isinstance(targets, Tensor) or targets.dtype not in (torch.int64, torch.int32):
        what = targets.dtype if isinstance(targets, Tensor) else type(targets).__name__
        raise InputError(f"targets must be a tensor of integer token ids, got {what}")
    if targets.shape != logits.shape[:-1]:
        raise InputError(
            f"targets of shape {tuple(targets.shape)} do not match the inputs of shape "
            f"{tuple(inputs.shape)}: give one target id per input position"
        )
    # Only where the ids still are on the CPU: a check on a GPU tensor waits for the GPU.
    if targets.device.type == "cpu" and targets.numel():
        vocab = logits.shape[-1]
        bad = targets[((targets < 0) & (targets != IGNORE)) | (targets >= vocab)]
        if bad.numel():
            raise InputError(
                f"target token id {int(bad[0])} is outside the vocabulary 0..{vocab - 1} "
                f"(and is not {IGNORE}, the id the loss ignores)"
            )


def batch_loss(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the model's next-token logits (B, T, V) against targets (B, T)."""
    device = device_of(model)
    logits = model(inputs.to(device, non_blocking=True))
    _check_targets(targets, inputs, logits)
    return next_token_loss(logits.flatten(0, 1), targets.to(device).flatten())


ROWS = 8  # rows of logits upcast at a time: 8 x 50257 x 4 B = 1.6 MB stays in the L2 cache


def next_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of (N, V) logits against (N,) ids, in float32, skipping -100.

    Equals ``F.cross_entropy(logits.float(), targets)``. That plain form materialises
    three float32 (N, V) tensors beyond the logits (the upcast, the log-softmax it keeps
    for backward, its gradient); at the book's batch these are 100 MB each, streamed
    through memory several times per step. Here only a block of `ROWS` rows is
    upcast at a time, forward keeps one log-sum-exp per row, and backward writes the
    gradient straight in the logits' dtype. Under `torch.compile` the plain form is
    used: the compiler fuses it itself.
    """
    if torch.compiler.is_compiling() or logits.dim() != 2 or logits.shape[0] <= ROWS:
        return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)
    return _RowBlockCrossEntropy.apply(logits, targets)


class _RowBlockCrossEntropy(torch.autograd.Function):
    """`next_token_loss` over blocks of rows: forward log-sum-exp, backward softmax - 1-hot."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:  # type: ignore[override]
        keep = targets != IGNORE
        safe = torch.where(keep, targets, 0)[:, None]
        picked = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        for start in range(0, logits.shape[0], ROWS):
            rows = slice(start, start + ROWS)
            log_probs = torch.log_softmax(logits[rows].float(), dim=-1)
            picked[rows] = log_probs.gather(1, safe[rows]).squeeze(1)
        count = keep.sum()
        ctx.save_for_backward(logits, safe, keep, count)
        return -torch.where(keep, picked, 0.0).sum() / count

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        logits, safe, keep, count = ctx.saved_tensors
        # d loss / d logit = (softmax - one_hot) * grad / count on kept rows, 0 elsewhere.
        scale = torch.where(keep, grad / count, 0.0)[:, None]
        minus_one = torch.full((min(ROWS, logits.shape[0]), 1), -1.0, device=logits.device)
        out = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ROWS):
            rows = slice(start, start + ROWS)
            probs = torch.softmax(logits[rows].float(), dim=-1)
            probs.scatter_add_(1, safe[rows], minus_one[: probs.shape[0]])
            out[rows] = probs.mul_(scale[rows])
        return out, None


@torch.no_grad()
def loader_loss(
    model: nn.Module, loader: Iterable, num_batches: int | None = None, amp: AmpArg = None
) -> float:
    """Average `batch_loss` over the first `num_batches` batches of `loader` (all if None).

    Leaves the model's train/eval mode as it is, like the book's ``calc_loss_loader``.
    """
    if num_batches is not None:
        require_int("num_batches", num_batches)
    available = len(loader)  # type: ignore[arg-type]
    if available == 0:
        raise InputError(
            "the data loader has no batches: the text is too short for one batch "
            "(use a longer text, a smaller batch_size or max_length, or drop_last=False)"
        )
    n = available if num_batches is None else min(num_batches, available)
    device = device_of(model)
    total = torch.zeros((), device=device)
    with autocast(device, amp_dtype(device, amp)):
        for i, (inputs, targets) in enumerate(loader):
            if i == n:
                break
            total += batch_loss(model, inputs, targets)
    return total.item() / n


def perplexity(loss: float) -> float:
    """exp(loss): the effective number of equally likely next tokens.

    >>> round(perplexity(math.log(50257)))
    50257
    """
    return math.exp(loss)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    num_batches: int | None = None,
    amp: AmpArg = None,
) -> tuple[float, float]:
    """(train loss, val loss) in eval mode (no dropout); restores the previous mode."""
    with eval_mode(model):
        return (
            loader_loss(model, train_loader, num_batches, amp),
            loader_loss(model, val_loader, num_batches, amp),
        )
