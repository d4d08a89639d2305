"""Errors whose message says everything a reader needs, shown as one line.

A script that hits bad input (wrong device name, missing data file, a context that
is too long) should stop with a sentence, not a stack trace from deep inside
PyTorch. Library code raises a subclass of `DlnotesError`; `install_error_hook`
makes the interpreter (and IPython / Jupyter) print just ``error: <message>``. Only a
script that asks gets it (each chapter does, through `dlnotes.env.banner`): importing
dlnotes leaves the interpreter's error handling alone.
"""

from __future__ import annotations

import math
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


def require_number(name: str, value: object, interval: str = "(-inf, inf)", why: str = "") -> float:
    """`value` as a float if it is a real number inside `interval`, written as in maths
    (``"[0, 1)"``, ``"(0, inf)"``), else an `InputError` naming it; `why` is added to the
    message. Booleans, NaN and, unless a bound is closed there, infinities are refused.

    >>> require_number("drop_rate", 0.1, "[0, 1)")
    0.1
    >>> require_number("temperature", -1, "[0, inf)", "(0 = greedy)")
    Traceback (most recent call last):
    dlnotes.errors.InputError: temperature must be a number >= 0 (0 = greedy), got -1
    """
    low, high = (bound.strip() for bound in interval[1:-1].split(","))
    closed_low, closed_high = interval[0] == "[", interval[-1] == "]"
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    try:
        x = float(value) if number else math.nan  # type: ignore[arg-type]
    except OverflowError:  # an int beyond float's range
        x = math.inf if value > 0 else -math.inf  # type: ignore[operator]
    if not (
        (x >= float(low) if closed_low else x > float(low))
        and (x <= float(high) if closed_high else x < float(high))
    ):
        if high == "inf" and low == "-inf":
            kind = "a finite number"
        elif high == "inf":
            kind = f"a number {'>=' if closed_low else '>'} {low}"
        else:
            kind = f"a number in {interval}"
        raise InputError(f"{name} must be {kind}{' ' + why if why else ''}, got {value!r}")
    return x


def require_bool(name: str, value: object) -> bool:
    """`value` if it is True or False (not 1, not "yes"), else an `InputError` naming it."""
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


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
