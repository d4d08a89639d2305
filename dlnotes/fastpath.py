"""Hardware fast paths, each behind a probe that runs it once, with a public fallback.

Readers' machines differ: AVX2-only laptops, AVX-512 or AMX servers, Apple arm64, GPUs.
A fast path that needs a CPU feature, a private PyTorch op or a compiler is used only
after `available` has *run* it once on a tiny input without an error; otherwise the
caller takes its plain, public path. ``DLNOTES_GENERIC_CPU=1`` turns every CPU fast
path off, so that the plain paths run (and are checked) on any machine.

Tests force a probe either way with ``monkeypatch.setitem(fastpath.RESULTS, name, flag)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dlnotes.env import flag

if TYPE_CHECKING:
    import torch
    from torch import nn

GENERIC_CPU: bool = flag("DLNOTES_GENERIC_CPU")

RESULTS: dict[str, bool] = {}


def available(name: str, probe: Callable[[], object], *, cpu: bool = True) -> bool:
    """Whether the fast path `name` works here: `probe()` ran without raising.

    The probe runs once per process (its result is kept in `RESULTS`). A CPU fast path
    (``cpu=True``) is off under ``DLNOTES_GENERIC_CPU=1`` without being probed.
    """
    if name in RESULTS:
        return RESULTS[name]
    if cpu and GENERIC_CPU:
        ok = False
    else:
        try:
            probe()
        except Exception:  # any failure means: take the public path
            ok = False
        else:
            ok = True
    RESULTS[name] = ok
    return ok


def compile_works(device: torch.device) -> bool:
    """Whether `torch.compile` builds and runs code on `device` (probed once per process).

    On the CPU the compiler needs a C++ toolchain, on a GPU Triton; where either is
    missing the probe's tiny function fails to build and callers stay eager.
    ``DLNOTES_GENERIC_CPU=1`` turns it off on the CPU.
    """
    import torch

    def probe() -> None:
        x = torch.linspace(-2.0, 2.0, 8, device=device)
        got = torch.compile(lambda t: torch.tanh(t) * 2.0 + 1.0, dynamic=False)(x)
        torch.testing.assert_close(got, torch.tanh(x) * 2.0 + 1.0)

    return available(f"torch_compile_{device.type}", probe, cpu=device.type == "cpu")


def compiled(model: nn.Module, *, dynamic: bool | None = None) -> nn.Module:
    """`torch.compile(model, dynamic=dynamic)` where `compile_works` on its device, else
    `model` itself.

    The compiled module shares the model's parameters; save and load the model itself
    (a compiled one prefixes its state's keys with ``_orig_mod.``). Compiled code is
    kept per process and shape class, so a second wrapper of a model of the same
    structure reuses it instead of compiling again.
    """
    import torch

    device = next(model.parameters()).device
    return torch.compile(model, dynamic=dynamic) if compile_works(device) else model
