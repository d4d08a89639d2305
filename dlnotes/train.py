"""Pretraining a language model: next-token losses, evaluation, and a resumable training loop.

Follows Raschka, *Build a Large Language Model (From Scratch)*, ch05
(``calc_loss_batch``, ``calc_loss_loader``, ``evaluate_model``,
``train_model_simple``) and appendix D (warmup, cosine decay, gradient clipping),
https://github.com/rasbt/LLMs-from-scratch/tree/main/ch05. `train` adds:

* an optional scheduler (`dlnotes.schedule.warmup_cosine`) and gradient clipping;
* mixed precision (bf16 autocast where the hardware multiplies bf16 natively) and
  no per-step host sync: step losses stay on the device until an evaluation;
* checkpoints every N steps and at the end (`dlnotes.checkpoint`); ``resume=True``
  continues from one with the same data order, dropout masks and losses as an
  uninterrupted run.

Symbols: B batch, T tokens per row, V vocabulary size.

Leaves out: gradient accumulation, distributed training, early stopping, and text
generation during training (pass ``on_epoch_end``; see `dlnotes.generate`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from dlnotes.checkpoint import load_checkpoint, save_checkpoint
from dlnotes.errors import CheckpointError, InputError

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
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        return torch.bfloat16 if amx else None
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def text_to_ids(text: str, tokenizer: Any = None) -> Tensor:
    """A text as a (1, T) batch of one sequence of token ids (GPT-2's tokenizer by default).

    >>> text_to_ids("Every effort moves you")
    tensor([[6109, 3626, 6100,  345]])
    """
    from dlnotes.loader import encode_text

    return torch.tensor(encode_text(text, tokenizer)).unsqueeze(0)


def ids_to_text(ids: Tensor | Sequence[int], tokenizer: Any = None) -> str:
    """The text of a (T,) or (1, T) sequence of token ids.

    >>> ids_to_text(torch.tensor([[6109, 3626, 6100, 345]]))
    'Every effort moves you'
    """
    if tokenizer is None:
        from dlnotes.gpt2_tokenizer import tiktoken_gpt2

        tokenizer = tiktoken_gpt2()
    flat = ids.reshape(-1).tolist() if isinstance(ids, Tensor) else list(ids)
    return tokenizer.decode(flat)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def batch_loss(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the model's next-token logits (B, T, V) against targets (B, T)."""
    device = _device_of(model)
    logits = model(inputs.to(device, non_blocking=True))
    # float(): under autocast the logits are bf16; the loss is computed in float32.
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.to(device).flatten())


@torch.no_grad()
def loader_loss(
    model: nn.Module, loader: Iterable, num_batches: int | None = None, amp: AmpArg = None
) -> float:
    """Average `batch_loss` over the first `num_batches` batches of `loader` (all if None).

    Leaves the model's train/eval mode as it is, like the book's ``calc_loss_loader``.
    """
    available = len(loader)  # type: ignore[arg-type]
    if available == 0:
        raise InputError(
            "the data loader has no batches: the text is too short for one batch "
            "(use a longer text, a smaller batch_size or max_length, or drop_last=False)"
        )
    n = available if num_batches is None else min(num_batches, available)
    device = _device_of(model)
    total = torch.zeros((), device=device)
    with _autocast(device, amp_dtype(device, amp)):
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
    was_training = model.training
    model.eval()
    try:
        return (
            loader_loss(model, train_loader, num_batches, amp),
            loader_loss(model, val_loader, num_batches, amp),
        )
    finally:
        model.train(was_training)


def grad_norm(parameters: Iterable[nn.Parameter]) -> float:
    """The L2 norm of all gradients together (what clipping compares with its limit)."""
    grads = [p.grad.detach().flatten() for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.cat(grads)).item() if grads else 0.0


def make_optimizer(
    model: nn.Module, lr: float = 4e-4, weight_decay: float = 0.1, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW over all parameters, as the book does; fused kernel where the device has one.

    The fused step updates every tensor in one kernel instead of a dozen per tensor
    (about 20 % of a book-sized step on CPU).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if fused is None:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        kinds = {p.device.type for p in params}
        fused = kinds <= set(_get_fused_kernels_supported_devices()) and all(
            p.dtype.is_floating_point for p in params
        )
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


@dataclass
class History:
    """What a run measured: losses at each evaluation, and every step's batch loss and rate."""

    eval_steps: list[int] = field(default_factory=list)  # optimizer steps done at the evaluation
    tokens_seen: list[int] = field(default_factory=list)  # input tokens consumed by then
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)  # training batch loss, every step
    lr: list[float] = field(default_factory=list)  # learning rate used at every step
    grad_norm: list[float] = field(
        default_factory=list
    )  # before clipping, every step (if clipping)

    def as_dict(self) -> dict[str, list]:
        return dataclasses.asdict(self)


@dataclass
class _Position:
    """Where a run is: completed steps and tokens, and the next batch of which epoch."""

    step: int = 0
    tokens: int = 0
    epoch: int = 0
    batch: int = 0
    epoch_rng: dict[str, Any] = field(default_factory=dict)


def _loader_generators(loader: DataLoader) -> list[torch.Generator]:
    """Generators a DataLoader owns (shuffling draws from these instead of the global one)."""
    found: list[torch.Generator] = []
    for owner in (loader, loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def _rng_now(loader: DataLoader) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "loader": [g.get_state() for g in _loader_generators(loader)],
    }


def _set_rng(loader: DataLoader, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    for gen, saved in zip(_loader_generators(loader), state["loader"], strict=True):
        gen.set_state(saved)


def _batches(loader: DataLoader, pos: _Position, resumed: bool) -> Iterator[tuple[Tensor, Tensor]]:
    """The epoch's batches from `pos.batch` on, drawn in the same order as an unbroken run.

    Shuffling draws its seed from the random state when the iterator starts, so an
    epoch is reproduced by restarting it from the state saved at the epoch's start
    and skipping the batches already trained on.
    """
    if not resumed or pos.batch == 0:
        pos.epoch_rng = _rng_now(loader)
        return iter(loader)
    now = _rng_now(loader)
    _set_rng(loader, pos.epoch_rng)
    it = iter(loader)
    for _ in range(pos.batch):
        next(it)
    _set_rng(loader, now)
    return it


def train(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int = 1,
    eval_every: int = 5,
    eval_batches: int | None = 5,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip: float | None = None,
    amp: AmpArg = "auto",
    max_steps: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    on_eval: Callable[[int, History], None] | None = None,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
    progress: bool = True,
) -> History:
    """Train for `epochs` (or `max_steps` optimizer steps in all); return the `History`.

    Evaluates after the first step and every `eval_every` steps after it (the book's
    steps 0, 5, 10, ...) on `eval_batches` batches of each loader, calling
    ``on_eval(epoch, history)``; after each epoch calls ``on_epoch_end(epoch, model)``
    with the model in eval mode. With `checkpoint`, saves there every
    `checkpoint_every` steps and at the end; with ``resume=True`` an existing file
    there is loaded first and the run continues where it stopped.
    """
    n_batches = len(train_loader)
    for which, loader in (("training", train_loader), ("validation", val_loader)):
        if len(loader) == 0:
            raise InputError(
                f"the {which} loader has no batches: its text is too short for one batch of "
                f"batch_size={getattr(loader, 'batch_size', '?')} "
                "(use a longer text or smaller batch_size / max_length)"
            )
    if epochs < 1 or eval_every < 1 or (checkpoint_every is not None and checkpoint_every < 1):
        raise InputError(
            f"epochs, eval_every and checkpoint_every must be >= 1, got {epochs}, {eval_every}, "
            f"{checkpoint_every}"
        )
    total = epochs * n_batches if max_steps is None else min(max_steps, epochs * n_batches)
    device = _device_of(model)
    dtype = amp_dtype(device, amp)
    history, pos = History(), _Position()
    resumed = False
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        saved = load_checkpoint(checkpoint, model, optimizer, scheduler)
        extra = saved["extra"]
        if extra.get("batches_per_epoch") != n_batches:
            raise CheckpointError(
                f"checkpoint {checkpoint} was made with {extra.get('batches_per_epoch')} batches "
                f"per epoch, this training loader has {n_batches}: resume with the same data"
            )
        history = History(**extra["history"])
        pos = _Position(**extra["position"])
        _set_rng(train_loader, extra["loader_rng"])
        resumed = True

    def save() -> None:
        if checkpoint is not None:
            extra = {
                "history": history.as_dict(),
                "position": dataclasses.asdict(pos),
                "loader_rng": _rng_now(train_loader),
                "batches_per_epoch": n_batches,
            }
            save_checkpoint(checkpoint, model, optimizer, scheduler, step=pos.step, extra=extra)

    from tqdm.auto import tqdm

    pending: list[Tensor] = []  # step losses (and norms) kept on the device: no sync per step
    norms: list[Tensor] = []

    def flush() -> None:
        if pending:
            history.step_loss.extend(torch.stack(pending).tolist())
            pending.clear()
        if norms:
            history.grad_norm.extend(torch.stack(norms).tolist())
            norms.clear()

    model.train()
    # Pass `disable` only to switch the bar off, so that TQDM_DISABLE=1 can too.
    quiet = {} if progress else {"disable": True}
    bar = tqdm(total=total, initial=min(pos.step, total), unit="step", **quiet)
    while pos.step < total and pos.epoch < epochs:
        for inputs, targets in _batches(train_loader, pos, resumed):
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, dtype):
                loss = batch_loss(model, inputs, targets)
            loss.backward()
            if grad_clip is not None:
                norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
            history.lr.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            pending.append(loss.detach())
            pos.step, pos.tokens, pos.batch = (
                pos.step + 1,
                pos.tokens + inputs.numel(),
                pos.batch + 1,
            )
            bar.update()
            if (pos.step - 1) % eval_every == 0:
                flush()
                train_loss, val_loss = evaluate(
                    model, train_loader, val_loader, eval_batches, dtype
                )
                for key, value in (
                    ("eval_steps", pos.step),
                    ("tokens_seen", pos.tokens),
                    ("train_loss", train_loss),
                    ("val_loss", val_loss),
                ):
                    getattr(history, key).append(value)
                bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
                if on_eval is not None:
                    on_eval(pos.epoch, history)
            if pos.batch == n_batches:
                # The epoch is complete: hooks run before any checkpoint, so a resumed run
                # continues after them, exactly as an unbroken one does.
                if on_epoch_end is not None:
                    model.eval()  # e.g. for a sample generation: no dropout
                    try:
                        on_epoch_end(pos.epoch, model)
                    finally:
                        model.train()
                pos.epoch, pos.batch = pos.epoch + 1, 0
            if checkpoint_every is not None and pos.step % checkpoint_every == 0:
                flush()
                save()
            if pos.step >= total:
                break
        resumed = False
    bar.close()
    flush()
    save()
    return history
