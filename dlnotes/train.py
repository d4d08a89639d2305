"""Pretraining a language model: optimizer, and a resumable training loop.

Follows Raschka, *Build a Large Language Model (From Scratch)*, ch05
(``train_model_simple``) and appendix D (warmup, cosine decay, gradient clipping),
https://github.com/rasbt/LLMs-from-scratch/tree/main/ch05; the losses it reports
come from `dlnotes.losses`, the book's ``text_to_token_ids`` and
``token_ids_to_text`` are `dlnotes.loader.text_to_ids` / `ids_to_text`. `train`
adds to the book's loop:

* an optional scheduler (`dlnotes.schedule.warmup_cosine`) and gradient clipping;
* mixed precision (bf16 autocast where the hardware multiplies bf16 fast) and no
  per-step host sync: step losses stay on the device until an evaluation;
* checkpoints every N steps and at the end (`dlnotes.checkpoint`); ``resume=True``
  continues from one with the same data order, dropout masks and losses as an
  uninterrupted run.

Leaves out: gradient accumulation, distributed training, early stopping, and text
generation during training (pass ``on_epoch_end``; see `dlnotes.generate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dlnotes import fastpath
from dlnotes.checkpoint import (
    check_rng_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from dlnotes.errors import CheckpointError, InputError, require_bool, require_int, require_number
from dlnotes.fastpath import compile_works, compiled
from dlnotes.loader import ids_to_text, text_to_ids
from dlnotes.losses import AmpArg, amp_dtype, autocast, batch_loss, evaluate, loader_loss

# The loss helpers live in `dlnotes.losses` and the text helpers in `dlnotes.loader`;
# importing them from here works as well.
__all__ = [
    "History",
    "amp_dtype",
    "batch_loss",
    "compile_works",
    "compiled",
    "evaluate",
    "fused_adamw_works",
    "grad_norm",
    "ids_to_text",
    "loader_loss",
    "make_optimizer",
    "text_to_ids",
    "train",
]


def grad_norm(parameters: Iterable[nn.Parameter]) -> float:
    """The L2 norm of all gradients together (what clipping compares with its limit).

    Each tensor's norm is accumulated in float64: a float32 sum over 10^8 squares loses
    about a percent.
    """
    norms = [
        torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float64)
        for p in parameters
        if p.grad is not None
    ]
    return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0


def fused_adamw_works(device: torch.device) -> bool:
    """Whether a fused AdamW step runs on `device` (probed once; see `dlnotes.fastpath`).

    Whether PyTorch has the kernel for a device depends on its version and build; the
    probe steps a fused AdamW over a two-element tensor there. ``DLNOTES_GENERIC_CPU=1``
    turns it off on the CPU.
    """

    def probe() -> None:
        param = torch.zeros(2, device=device, requires_grad=True)
        param.grad = torch.ones_like(param)
        torch.optim.AdamW([param], lr=0.1, fused=True).step()

    return fastpath.available(f"fused_adamw_{device.type}", probe, cpu=device.type == "cpu")


def make_optimizer(
    model: nn.Module, lr: float = 4e-4, weight_decay: float = 0.1, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW over all parameters, as the book does; fused kernel where the device runs one.

    The fused step updates every tensor in one kernel instead of a dozen per tensor
    (about 20 % of a book-sized step on CPU). ``fused=None`` decides by
    `fused_adamw_works`; the unfused step computes the same update.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if fused is None:
        devices = {p.device for p in params}
        fused = (
            len(devices) == 1
            and all(p.dtype.is_floating_point for p in params)
            and fused_adamw_works(devices.pop())
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


def print_eval(epoch: int, history: History) -> None:
    """An ``on_eval`` callback for `train`: the step and the latest train and val losses."""
    # tqdm.write keeps the progress bar of `train` on its own line
    tqdm.write(
        f"Ep {epoch + 1} (step {history.eval_steps[-1] - 1:06d}): "
        f"train loss {history.train_loss[-1]:.3f}, val loss {history.val_loss[-1]:.3f}"
    )


def print_sample(
    prompt: str, tokenizer: Any = None, max_new_tokens: int = 50
) -> Callable[[int, nn.Module], None]:
    """An ``on_epoch_end`` callback for `train` that prints the greedy continuation of `prompt`."""
    from dlnotes.generate import generate  # generate -> gpt; imported late to keep train light

    def show(epoch: int, model: nn.Module) -> None:
        device = next(model.parameters()).device
        ids = generate(model, text_to_ids(prompt, tokenizer).to(device), max_new_tokens)
        tqdm.write("    " + ids_to_text(ids, tokenizer).replace("\n", " "))

    return show


_RESUME_KEYS = ("history", "position", "loader_rng", "batches_per_epoch")


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
    return rng_state(_loader_generators(loader))


def _set_rng(loader: DataLoader, state: dict[str, Any]) -> None:
    set_rng_state(state, _loader_generators(loader))


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
    compile: bool = False,
) -> History:
    """Train for `epochs` (or `max_steps` optimizer steps in all); return the `History`.

    Evaluates after the first step and every `eval_every` steps after it (the book's
    steps 0, 5, 10, ...) on `eval_batches` batches of each loader, calling
    ``on_eval(epoch, history)``; after each epoch calls ``on_epoch_end(epoch, model)``
    with the model in eval mode. With `checkpoint`, saves there every
    `checkpoint_every` steps and at the end; with ``resume=True`` an existing file
    there is loaded first and the run continues where it stopped. ``compile=True``
    runs the training steps through `compiled` (fused elementwise work; the first
    steps pay the compile time, so leave it off for short runs); evaluation, hooks
    and checkpoints use the model itself.
    """
    epochs = require_int("epochs", epochs)
    eval_every = require_int("eval_every", eval_every)
    for name, value in (
        ("eval_batches", eval_batches),
        ("max_steps", max_steps),
        ("checkpoint_every", checkpoint_every),
    ):
        if value is not None:
            require_int(name, value)
    if grad_clip is not None:
        # A limit <= 0 would flip or zero every step instead of bounding it.
        require_number("grad_clip", grad_clip, "(0, inf)", "(the largest gradient norm allowed)")
    require_bool("compile", compile)
    n_batches = len(train_loader)
    for which, loader in (("training", train_loader), ("validation", val_loader)):
        if len(loader) == 0:
            raise InputError(
                f"the {which} loader has no batches: its text is too short for one batch of "
                f"batch_size={getattr(loader, 'batch_size', '?')} "
                "(use a longer text or smaller batch_size / max_length)"
            )
    total = epochs * n_batches if max_steps is None else min(max_steps, epochs * n_batches)
    device = next(model.parameters()).device
    dtype = amp_dtype(device, amp)
    history, pos = History(), _Position()
    resumed = False

    def resumable(saved: dict[str, Any]) -> None:
        """Refuse a checkpoint this loop cannot continue, before anything is restored."""
        extra = saved["extra"]
        missing = [key for key in _RESUME_KEYS if key not in extra]
        if missing:
            raise CheckpointError(
                f"checkpoint {checkpoint} was not written by train (its extra state has no "
                f"{missing[0]!r}): give train another checkpoint path"
            )
        if extra["batches_per_epoch"] != n_batches:
            raise CheckpointError(
                f"checkpoint {checkpoint} was made with {extra['batches_per_epoch']} batches "
                f"per epoch, this training loader has {n_batches}: resume with the same data"
            )
        try:
            check_rng_state(extra["loader_rng"], _loader_generators(train_loader))
        except CheckpointError as exc:
            raise CheckpointError(
                f"checkpoint {checkpoint} cannot be resumed with this loader ({exc}): resume "
                "with a loader made as before, or give train another checkpoint path"
            ) from None

    if checkpoint is not None and resume and Path(checkpoint).is_file():
        # restore_rng=False: the full random state (with the loader's generators) is restored
        # from extra["loader_rng"] just below.
        saved = load_checkpoint(
            checkpoint, model, optimizer, scheduler, restore_rng=False, check=resumable
        )
        extra = saved["extra"]
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

    pending: list[Tensor] = []  # step losses and norms stay on the device: no sync per step
    norms: list[Tensor] = []

    def flush() -> None:
        if pending:
            history.step_loss.extend(torch.stack(pending).tolist())
            pending.clear()
        if norms:
            history.grad_norm.extend(torch.stack(norms).tolist())
            norms.clear()

    stepper = compiled(model) if compile else model
    model.train()
    saved_at = pos.step if resumed else -1  # no need to rewrite what was just loaded
    # Pass `disable` only to switch the bar off, so that TQDM_DISABLE=1 can too.
    quiet = {} if progress else {"disable": True}
    with tqdm(total=total, initial=min(pos.step, total), unit="step", **quiet) as bar:
        while pos.step < total and pos.epoch < epochs:
            for inputs, targets in _batches(train_loader, pos, resumed):
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, dtype):
                    loss = batch_loss(stepper, inputs, targets)
                loss.backward()
                if grad_clip is not None:
                    norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
                history.lr.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                pending.append(loss.detach())
                pos.step += 1
                pos.batch += 1
                pos.tokens += inputs.numel()
                bar.update()
                if (pos.step - 1) % eval_every == 0:
                    flush()
                    losses = evaluate(model, train_loader, val_loader, eval_batches, dtype)
                    history.eval_steps.append(pos.step)
                    history.tokens_seen.append(pos.tokens)
                    history.train_loss.append(losses[0])
                    history.val_loss.append(losses[1])
                    bar.set_postfix(train=f"{losses[0]:.3f}", val=f"{losses[1]:.3f}")
                    if on_eval is not None:
                        on_eval(pos.epoch, history)
                if pos.batch == n_batches:
                    # The epoch is complete: hooks run before any checkpoint, so a resumed
                    # run continues after them, exactly as an unbroken one does.
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
                    saved_at = pos.step
                if pos.step >= total:
                    break
            resumed = False
    flush()
    if saved_at != pos.step:
        save()
    return history
