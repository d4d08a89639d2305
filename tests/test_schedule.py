"""Warmup + cosine schedule against PyTorch's own LinearLR → CosineAnnealingLR chain."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from dlnotes.errors import InputError
from dlnotes.schedule import WarmupCosine, warmup_cosine


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(opt: torch.optim.Optimizer, sched: object, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()  # type: ignore[attr-defined]
    return out


@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(2, 200),
    warmup_frac=st.floats(0.01, 0.9),
    peak=st.floats(1e-5, 1e-1),
    start_frac=st.floats(0.001, 1.0),
    end_frac=st.floats(0.0, 1.0),
)
def test_equals_linear_then_cosine_annealing(total, warmup_frac, peak, start_frac, end_frac):
    warmup = max(1, min(total - 1, int(warmup_frac * total)))
    initial, minimum = start_frac * peak, end_frac * peak

    ref_opt = _optimizer(peak)
    ref = SequentialLR(
        ref_opt,
        [
            LinearLR(ref_opt, start_factor=start_frac, end_factor=1.0, total_iters=warmup),
            CosineAnnealingLR(ref_opt, T_max=total - warmup, eta_min=minimum),
        ],
        milestones=[warmup],
    )
    ours_opt = _optimizer(peak)
    ours = warmup_cosine(ours_opt, total, warmup, initial_lr=initial, min_lr=minimum)

    expected, got = _lrs(ref_opt, ref, total + 1), _lrs(ours_opt, ours, total + 1)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_book_formula_by_hand():
    # Appendix D: 20 steps, 4 of warmup from 1e-5 to 5e-4, cosine down to 1e-5.
    opt = _optimizer(5e-4)
    lrs = _lrs(opt, warmup_cosine(opt, 20, 4, initial_lr=1e-5, min_lr=1e-5), 23)
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[2] == pytest.approx(1e-5 + 2 * (5e-4 - 1e-5) / 4)
    assert lrs[4] == pytest.approx(5e-4)
    assert lrs[12] == pytest.approx(1e-5 + (5e-4 - 1e-5) * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lrs[20:] == pytest.approx([1e-5] * 3)  # holds the floor after the end


def test_state_dict_round_trip_resumes_the_schedule():
    opt = _optimizer(1e-3)
    sched = warmup_cosine(opt, 30, 5, min_lr=1e-4)
    _lrs(opt, sched, 7)
    state = sched.state_dict()
    assert state["lr_lambdas"][0]["total_steps"] == 30  # the factor object is saved

    fresh_opt = _optimizer(1e-3)
    fresh = warmup_cosine(fresh_opt, 1, 0)  # deliberately a different schedule
    fresh.load_state_dict(state)
    fresh_opt.load_state_dict(opt.state_dict())
    assert _lrs(fresh_opt, fresh, 10) == _lrs(opt, sched, 10)


def test_no_warmup_starts_at_peak():
    f = WarmupCosine(0, 10)
    assert f(0) == 1.0 and f(10) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"total_steps": 10, "warmup_steps": 11}, "warmup_steps=11"),
        ({"total_steps": 0}, "total_steps=0"),
        ({"total_steps": 10, "min_lr": 2e-3}, "min_lr=0.002"),
        ({"total_steps": 10, "initial_lr": -1.0}, "initial_lr=-1.0"),
    ],
)
def test_bad_input_is_named(kwargs, words):
    with pytest.raises(InputError, match=words):
        warmup_cosine(_optimizer(1e-3), **kwargs)
