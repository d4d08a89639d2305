"""Run-time environment: smoke mode, device choice, seeding, repository paths.

* ``DLNOTES_SMOKE=1`` switches every script to tiny configs and few steps (same
  code paths) so that `nox -s check` can run them all in a minute or two.
* ``DLNOTES_DEVICE`` picks the device (``cpu``, ``cuda``, ``cuda:1``, ``mps``);
  without it we take cuda, then mps, then cpu.
"""

from __future__ import annotations

import inspect
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from dlnotes.errors import InputError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

_FALSE = {"", "0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}


def flag(name: str) -> bool:
    """The on/off environment variable `name`: 1/true/yes/on or 0/false/no/off/unset.

    Any other value is an `InputError`, so a typo cannot silently switch a mode.
    """
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(f"{name}={os.environ[name]!r} is not a switch: use 1 (on) or 0 (off)")


SMOKE: bool = flag("DLNOTES_SMOKE")
KNOWN_DEVICES = ("cpu", "cuda", "mps")


def choose(full: T, smoke: T) -> T:
    """Return `smoke` in smoke mode and `full` otherwise.

    >>> choose(full=1000, smoke=10) in (1000, 10)
    True
    """
    return smoke if SMOKE else full


def available_devices() -> list[str]:
    """Device types PyTorch can use on this machine, in order of preference."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def device(name: str | None = None) -> torch.device:
    """The device to run on: `name`, else ``$DLNOTES_DEVICE``, else cuda → mps → cpu.

    An unknown or unavailable name is an `InputError` listing what is available.

    >>> device("cpu")
    device(type='cpu')
    """
    import torch

    requested = (name or os.environ.get("DLNOTES_DEVICE", "")).strip().lower()
    available = available_devices()
    if not requested or requested == "auto":
        return torch.device(available[0])
    kind, colon, index = requested.partition(":")
    if kind not in KNOWN_DEVICES or (colon and not index.isdigit()):
        raise InputError(
            f"unknown device {requested!r}: use one of {', '.join(KNOWN_DEVICES)} "
            f"(available here: {', '.join(available)})"
        )
    if kind not in available:
        raise InputError(
            f"device {requested!r} is not available on this machine "
            f"(available here: {', '.join(available)})"
        )
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise InputError(
            f"device {requested!r} does not exist: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device(requested)


def seed_everything(seed: int = 123) -> None:
    """Seed Python's, NumPy's (if installed) and PyTorch's generators."""
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # pure-Python chapters do not need numpy
        pass
    else:
        np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def repo_root() -> Path:
    """The repository root: the folder holding this project's ``pyproject.toml``.

    Found from this package's location (an editable install lives in the
    repository), falling back to walking up from the working directory, so
    it works from a script's folder, the repository root and a notebook alike.
    """
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file() and (folder / "dlnotes").is_dir():
                return folder
    return Path.cwd().resolve()


def show(obj: object) -> None:
    """Print the source of a library object, so notes can show code they import."""
    print(inspect.getsource(obj))  # type: ignore[arg-type]


def banner(device_used: object | None = None) -> str:
    """One line describing mode, device and versions, for the top of each script.

    A chapter script calls this once at its start, so it also switches the script to
    one-line messages for `DlnotesError`s (``DLNOTES_TRACEBACK=1`` keeps tracebacks).
    """
    import torch

    from dlnotes.errors import install_error_hook

    install_error_hook()

    dev = device_used if device_used is not None else device()
    return f"mode: {'smoke' if SMOKE else 'full'} | device: {dev} | torch {torch.__version__}"
