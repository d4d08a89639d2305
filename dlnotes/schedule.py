"""Learning-rate warmup followed by cosine decay, as a resumable `LambdaLR`.

Follows Raschka, *Build a Large Language Model (From Scratch)*, appendix D
(https://github.com/rasbt/LLMs-from-scratch/tree/main/appendix-D): the rate climbs
linearly from ``initial_lr`` to the optimizer's own (peak) rate over
``warmup_steps`` optimizer steps, then follows half a cosine down to ``min_lr``
at ``total_steps`` and stays there.

The factor is a small callable object rather than a lambda so that
`LambdaLR.state_dict` saves it and a checkpoint restores the exact schedule.
The result equals PyTorch's ``SequentialLR([LinearLR, CosineAnnealingLR])`` step
by step (see tests/test_schedule.py) up to ``total_steps``; past it, PyTorch's
cosine climbs again while this one holds ``min_lr``.

Leaves out: restarts, step-wise (non-cosine) decay, per-group schedules.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from dlnotes.errors import InputError


class WarmupCosine:
    """Multiplier of the peak learning rate at optimizer step `step`.

    >>> f = WarmupCosine(warmup_steps=2, total_steps=6, start_factor=0.5, end_factor=0.0)
    >>> [round(f(s), 3) for s in range(8)]
    [0.5, 0.75, 1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """

    def __init__(
        self,
        warmup_steps: int,
        total_steps: int,
        start_factor: float = 0.0,
        end_factor: float = 0.0,
    ) -> None:
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise InputError(
                f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, got "
                f"warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        if not (0.0 <= start_factor <= 1.0 and 0.0 <= end_factor <= 1.0):
            raise InputError(
                f"start_factor and end_factor are fractions of the peak rate in [0, 1], "
                f"got {start_factor} and {end_factor}"
            )
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.start_factor = start_factor
        self.end_factor = end_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / decay_steps) if decay_steps else 1.0
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.end_factor + (1.0 - self.end_factor) * cosine


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    initial_lr: float = 0.0,
    min_lr: float = 0.0,
) -> LambdaLR:
    """A scheduler taking every group from `initial_lr` up to its ``lr``, then down to `min_lr`.

    Call ``scheduler.step()`` once after each ``optimizer.step()``, as usual.

    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    >>> sched = warmup_cosine(opt, total_steps=10, warmup_steps=2, initial_lr=1e-4, min_lr=1e-5)
    >>> opt.param_groups[0]["lr"]
    0.0001
    """
    peaks = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    for peak in peaks:
        if not 0.0 <= min_lr <= peak or not 0.0 <= initial_lr <= peak:
            raise InputError(
                f"initial_lr={initial_lr} and min_lr={min_lr} must lie between 0 and the "
                f"optimizer's peak learning rate {peak}"
            )
    factors = [
        WarmupCosine(warmup_steps, total_steps, initial_lr / peak, min_lr / peak)
        if peak > 0
        else WarmupCosine(warmup_steps, total_steps)
        for peak in peaks
    ]
    return LambdaLR(optimizer, factors)
