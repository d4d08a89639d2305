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

from dlnotes.env import flag

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
