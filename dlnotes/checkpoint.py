"""Checkpoints that are written atomically, checked on load, and resume a run exactly.

Raschka's ch05 (https://github.com/rasbt/LLMs-from-scratch/tree/main/ch05) saves
``{"model_state_dict", "optimizer_state_dict"}`` with `torch.save`. This module
keeps that idea and adds what resuming an interrupted run needs:

* everything that decides the next losses: model, optimizer, scheduler, the
  random-number generators (Python, NumPy, torch CPU/CUDA/MPS), the step counter
  and any extra training-loop state (`dlnotes.train` stores its position in the
  epoch and its history there);
* an atomic write: a temporary file in the same folder, ``fsync``, then
  `os.replace`, so a crash or Ctrl-C leaves the previous checkpoint intact and
  never a half-written file;
* checks on load, each a one-line `CheckpointError`: not a checkpoint or
  truncated (`torch.load` fails), silently flipped bytes (a CRC-32 over every
  tensor and value, which `torch.load` itself does not check), and a model of
  another configuration (the differing settings or shapes are named).

Files load with ``weights_only=True``: the payload holds only tensors and plain
Python values (the model configuration is stored as a dict).

Leaves out: sharded or distributed checkpoints, keeping the last k files.
"""

from __future__ import annotations

import dataclasses
import os
import random
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlnotes.atomic import atomic_write
from dlnotes.errors import CheckpointError

FORMAT = "dlnotes-checkpoint"
VERSION = 1


def _base(model: nn.Module) -> nn.Module:
    """The module itself, also for a `torch.compile`d one (whose keys gain ``_orig_mod.``)."""
    return getattr(model, "_orig_mod", model)


def _config(model: nn.Module) -> dict[str, Any] | None:
    cfg = getattr(_base(model), "cfg", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None


def _crc(obj: object, acc: int = 0) -> int:
    """CRC-32 of a nested structure of tensors and plain values, in order.

    >>> _crc({"a": torch.ones(2)}) == _crc({"a": torch.ones(2)}) != _crc({"a": torch.zeros(2)})
    True
    """
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().reshape(-1).cpu().contiguous()
        acc = zlib.crc32(f"{flat.dtype}{tuple(obj.shape)}".encode(), acc)
        return zlib.crc32(flat.view(torch.uint8).numpy().tobytes(), acc)
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            acc = _crc(value, zlib.crc32(repr(key).encode(), acc))
        return acc
    if isinstance(obj, (list, tuple)):
        for item in obj:
            acc = _crc(item, acc)
        return zlib.crc32(str(len(obj)).encode(), acc)
    return zlib.crc32(repr(obj).encode(), acc)


def rng_state(generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
    """The state of every random-number generator a training step may draw from.

    The global ones (Python, NumPy, torch CPU/CUDA/MPS), and `generators` of one's own,
    such as a DataLoader's shuffling generator.
    """
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        # NumPy arrays are not allowed by weights_only loading; a tensor is.
        state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    state["generators"] = [gen.get_state() for gen in generators]
    return state


def check_rng_state(state: object, generators: Sequence[torch.Generator] = ()) -> None:
    """`CheckpointError` unless `state` is what `rng_state` returns, for as many
    `generators` (so that nothing is restored from a state that cannot be restored)."""
    if not isinstance(state, Mapping) or not {"python", "torch"} <= state.keys():
        have = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(
            f"the saved random state is not one that rng_state wrote (it has {have}, not "
            "'python' and 'torch'): it comes from another program or an older dlnotes"
        )
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise CheckpointError(
            f"the saved random state holds {len(saved)} generator(s) of its own, "
            f"but {len(generators)} were given to restore"
        )


def set_rng_state(state: Mapping[str, Any], generators: Sequence[torch.Generator] = ()) -> None:
    """Restore generators saved by `rng_state` (the global ones this machine has, and
    `generators`, which must be as many as were saved)."""
    check_rng_state(state, generators)
    saved = state.get("generators", [])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if (
        "mps" in state
        and getattr(torch.backends, "mps", None)
        and torch.backends.mps.is_available()
    ):
        torch.mps.set_rng_state(state["mps"].cpu())
    for gen, gen_state in zip(generators, saved, strict=True):
        gen.set_state(gen_state)


# What `torch.load(weights_only=True)` reads back. Exact types: NumPy's float64 is a
# float subclass, and pickles as a NumPy object the safe loader refuses.
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)
_CONTAINERS = (dict, OrderedDict, list, tuple, set, frozenset, torch.Size)


def _unsafe(obj: object, where: str) -> str | None:
    """Where in `obj` the first value lies that weights_only loading refuses (None: nowhere).

    >>> _unsafe({"a": [1, {"b": range(2)}]}, "extra")
    "extra['a'][1]['b'] is a range"
    """
    kind = type(obj)
    if kind in _PLAIN or kind in (torch.Tensor, nn.Parameter):
        return None
    if kind in (dict, OrderedDict):
        for key, value in obj.items():  # type: ignore[attr-defined]
            found = _unsafe(key, f"a key of {where}") or _unsafe(value, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if kind in _CONTAINERS:
        for i, item in enumerate(obj):  # type: ignore[arg-type]
            found = _unsafe(item, f"{where}[{i}]")
            if found:
                return found
        return None
    name = (
        kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    )
    return f"{where} is a {name}"


def _write_problem(exc: BaseException) -> str:
    """The cause of a failed write: the OS error torch's own RuntimeError hides, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write model, optimizer, scheduler, RNG states, `step` and `extra` to `path` atomically."""
    path = Path(path)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": _config(model),
        "model": _base(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "optimizer_class": type(optimizer).__name__ if optimizer is not None else None,
        "scheduler_class": type(scheduler).__name__ if scheduler is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "step": int(step),
        "extra": dict(extra or {}),
    }
    for key in ("model", "optimizer", "scheduler", "extra"):
        problem = _unsafe(payload[key], key)
        if problem:
            raise CheckpointError(
                f"cannot save checkpoint {path}: {problem}, which a checkpoint cannot hold "
                "(it loads with weights_only=True): store tensors, numbers, strings, lists "
                "and dicts, e.g. float(x) for a NumPy number"
            )
    payload["crc32"] = _crc(payload)
    try:
        with atomic_write(path) as fh:
            torch.save(payload, fh)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write as a RuntimeError
        raise CheckpointError(f"cannot write checkpoint {path}: {_write_problem(exc)}") from None
    return path


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in one line: the first sentence of its message (an
    empty file gives an EOFError with none, then the exception's name)."""
    return (str(exc).strip().split(". ")[0].splitlines() or [type(exc).__name__])[0]


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        reason = load_failure(exc)
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupted?): {reason}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dlnotes checkpoint (no {FORMAT!r} marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('version')}; "
            f"this dlnotes reads version {VERSION}"
        )
    stored = payload.pop("crc32", None)
    if stored != _crc(payload):
        raise CheckpointError(
            f"{path} is corrupted: its contents fail the CRC-32 check written when it was saved"
        )
    return payload


def _fit_problem(payload: Mapping[str, Any], model: nn.Module) -> str | None:
    """Why the stored weights cannot go into `model` (None if they fit)."""
    saved_cfg, cfg = payload.get("config"), _config(model)
    if saved_cfg is not None and cfg is not None:
        # A setting one side lacks came later, and its default is the old behaviour.
        differ = [k for k in sorted(set(saved_cfg) & set(cfg)) if saved_cfg[k] != cfg[k]]
        shape_keys = [k for k in differ if k != "drop_rate"]  # dropout changes no tensor
        if shape_keys:
            theirs = ", ".join(f"{k}={saved_cfg.get(k)}" for k in shape_keys)
            ours = ", ".join(f"{k}={cfg.get(k)}" for k in shape_keys)
            return f"it was saved from a model with {theirs}, but this model has {ours}"
    saved, own = payload["model"], _base(model).state_dict()
    problems = [
        f"{k} is {tuple(saved[k].shape)} in the checkpoint but {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in saved and tuple(saved[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    if missing:
        problems.append(f"missing {len(missing)} tensor(s) such as {missing[0]}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) the model lacks, such as {unexpected[0]}")
    if not problems:
        return None
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    restore_rng: bool = True,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint into `model` (and optimizer, scheduler, RNGs); return its other fields.

    The returned dict has ``step``, ``extra`` and ``config``. Nothing is changed
    unless the whole file checks out and fits the model, and ``check(fields)`` (the
    caller's own test of that dict) has returned without raising.
    """
    path = Path(path)
    payload = _read(path)
    problem = _fit_problem(payload, model)
    if problem:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {problem}")
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if payload[name] is None:
            raise CheckpointError(f"checkpoint {path} holds no {name} state to resume from")
        # Another optimizer's state loads without complaint and fails at the next step
        # (AdamW's into SGD: KeyError 'momentum'); another scheduler's gives wrong rates.
        saved_class = payload.get(f"{name}_class")
        if saved_class not in (None, type(obj).__name__):
            raise CheckpointError(
                f"checkpoint {path} holds the state of a {saved_class} {name}, this one is "
                f"{type(obj).__name__}: make the {name} the run was saved with"
            )
    if optimizer is not None:
        saved_sizes = [len(g["params"]) for g in payload["optimizer"]["param_groups"]]
        sizes = [len(g["params"]) for g in optimizer.param_groups]
        if saved_sizes != sizes:
            raise CheckpointError(
                f"checkpoint {path} has optimizer groups of {saved_sizes} parameters, "
                f"this optimizer has {sizes}"
            )
    fields = {"step": payload["step"], "extra": payload["extra"], "config": payload["config"]}
    if check is not None:
        check(fields)
    _base(model).load_state_dict(payload["model"])
    try:
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(payload["scheduler"])
    except (ValueError, KeyError, RuntimeError) as exc:  # checked above; kept for odd optimizers
        raise CheckpointError(
            f"checkpoint {path}: the optimizer or scheduler state does not fit ({exc})"
        ) from None
    if restore_rng:
        set_rng_state(payload["rng"])
    return fields
