"""Errors whose message says everything a reader needs, shown as one line.

A script that hits bad input (wrong device name, missing data file, a context that
is too long) should stop with a sentence, not a stack trace from deep inside
PyTorch. Library code raises a subclass of `DlnotesError`; `install_error_hook`
makes the interpreter (and IPython / Jupyter) print just ``error: <message>``. Only a
script that asks gets it (each chapter does, through `dlnotes.env.banner`): importing
dlnotes leaves the interpreter's error handling alone.
"""

from __future__ import annotations

import numbers
import sys
from types import TracebackType


class DlnotesError(Exception):
    """Base class: the message is complete, so no traceback is shown for it."""


class InputError(DlnotesError, ValueError):
    """A bad argument or configuration (also a `ValueError`)."""


class DataError(DlnotesError):
    """A data file that is missing, cannot be downloaded, or fails its checksum."""


class CheckpointError(DlnotesError):
    """A checkpoint that does not fit the model, or is corrupted."""


def require_int(name: str, value: object, minimum: int = 1) -> int:
    """`value` if it is an integer >= `minimum`, else an `InputError` naming it.

    Booleans and floats such as ``2.0`` are refused here, rather than failing later
    and obscurely inside a reshape or a range.

    >>> require_int("stride", 4)
    4
    >>> require_int("stride", 0)
    Traceback (most recent call last):
    dlnotes.errors.InputError: stride must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _format(exc: BaseException) -> str:
    return f"error: {exc}"


def install_error_hook() -> bool:
    """Print `DlnotesError`s as one line in scripts and notebooks; leave others alone.

    ``DLNOTES_TRACEBACK=1`` keeps full tracebacks (for debugging the library itself).
    Returns whether the hook is installed.
    """
    from dlnotes.env import flag  # env imports this module: import it when called

    if flag("DLNOTES_TRACEBACK"):
        return False
    previous = sys.excepthook
    if getattr(previous, "_dlnotes", False):
        return True

    def hook(etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(etype, DlnotesError):
            print(_format(value), file=sys.stderr)
        else:
            previous(etype, value, tb)

    hook._dlnotes = True  # type: ignore[attr-defined]
    sys.excepthook = hook

    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None) if ipython else None
    shell = get_ipython() if get_ipython else None
    if shell is not None:

        def ipython_handler(shell, etype, value, tb, tb_offset=None):  # noqa: ANN001
            print(_format(value), file=sys.stderr)

        shell.set_custom_exc((DlnotesError,), ipython_handler)
    return True
