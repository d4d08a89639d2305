"""Low-rank adaptation (LoRA): finetune a frozen model through small trainable updates.

Follows Raschka, *Build a Large Language Model (From Scratch)*, appendix E
(``LoRALayer``, ``LinearWithLoRA``, ``replace_linear_with_lora``), after Hu et al.,
"LoRA: Low-Rank Adaptation of Large Language Models" (2021). A frozen layer
``y = W x + b`` (W of shape out × in) learns ``ΔW = B·A`` instead of W itself, with
A of shape rank × in and B of shape out × rank:

    y = W x + b + scaling · B (A x)

A starts like an ``nn.Linear`` weight (Kaiming uniform, a = √5) and B at zero, so the
adapted model computes exactly what the base does until training moves B.

``scaling`` is ``alpha / rank`` as in the LoRA paper and `peft` (and the book's
repository today); the printed book multiplies by ``alpha`` alone
(``scaling="alpha"``), which with alpha = rank = 16 is a 16 times larger step.

A *fused* projection holds several stacked ones: `dlnotes.attention` computes query,
key and value with one ``qkv`` layer. ``parts=3`` gives each third of its outputs an
adapter of its own, which is the book's model exactly (separate ``W_query``,
``W_key``, ``W_value``, each with a rank-r update); ``parts=1`` puts one rank-r update
on the whole fused matrix, as `peft` does for GPT-2's ``c_attn``.

Leaves out: dropout on the adapter input, rsLoRA / DoRA variants, quantised bases
(QLoRA), several named adapters per layer.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes.atomic import atomic_write
from dlnotes.errors import CheckpointError, InputError, require_int

SCALINGS = ("alpha/rank", "alpha")
# Names of fused projections -> how many projections are stacked in their outputs.
FUSED: dict[str, int] = {"qkv": 3}
FORMAT = "dlnotes-lora"
VERSION = "1"


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise InputError(f"alpha must be a finite number, got {alpha!r}")
    return float(alpha)


def _check_scaling(scaling: object) -> str:
    if scaling not in SCALINGS:
        raise InputError(
            f"scaling must be one of {', '.join(map(repr, SCALINGS))}, got {scaling!r}"
        )
    return str(scaling)


class LoRALayer(nn.Module):
    """The trainable update of one layer: ``x -> scaling · B (A x)``.

    With ``parts > 1`` the outputs are split into `parts` equal slices, each with its
    own A (rank × in) and B (out/parts × rank); the rows of `A` and `B` hold the slices
    one after another. `allow_excess_rank` accepts a rank above min(in, out), where
    the update cannot use it all (the book's rank-16 adapter on a 768 → 2 head).

    >>> lora = LoRALayer(8, 4, rank=2, alpha=4)
    >>> lora.A.shape, lora.B.shape, lora.scaling, bool(lora(torch.ones(1, 8)).abs().sum() == 0)
    (torch.Size([2, 8]), torch.Size([4, 2]), 2.0, True)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        alpha: float,
        *,
        scaling: str = "alpha/rank",
        parts: int = 1,
        allow_excess_rank: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        in_features = require_int("in_features", in_features)
        out_features = require_int("out_features", out_features)
        parts = require_int("parts", parts)
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise InputError(f"LoRA rank must be an integer >= 1, got {rank!r}")
        if out_features % parts:
            raise InputError(f"{out_features} outputs do not split into {parts} equal parts")
        limit = min(in_features, out_features // parts)
        if rank > limit and not allow_excess_rank:
            raise InputError(
                f"LoRA rank {rank} is larger than the layer ({in_features} -> {out_features}"
                f"{f' in {parts} parts' if parts > 1 else ''}): its update can have rank at most "
                f"{limit}; use rank <= {limit}, leave the layer out of the targets, "
                "or pass allow_excess_rank=True"
            )
        self.in_features, self.out_features = in_features, out_features
        self.rank, self.alpha, self.parts = rank, _check_alpha(alpha), parts
        self.scaling_mode = _check_scaling(scaling)
        self.scaling = self.alpha / rank if self.scaling_mode == "alpha/rank" else self.alpha
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.A = nn.Parameter(torch.empty(parts * rank, in_features, **kw))
        self.B = nn.Parameter(torch.zeros(out_features, rank, **kw))
        # Each rank × in block gets nn.Linear's init: bound 1/sqrt(in_features).
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def extra_repr(self) -> str:
        parts = f", parts={self.parts}" if self.parts > 1 else ""
        return (
            f"{self.in_features} -> {self.out_features}, rank={self.rank}, alpha={self.alpha:g}, "
            f"scaling={self.scaling:g} ({self.scaling_mode}){parts}"
        )

    def _b(self) -> Tensor:
        """B as one out × (parts·rank) matrix: block diagonal, slice p sees only A's block p."""
        if self.parts == 1:
            return self.B
        return torch.block_diag(*self.B.chunk(self.parts, dim=0))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.linear(x, self.A), self._b()) * self.scaling

    def delta_weight(self) -> Tensor:
        """The update ``scaling · B·A`` (out × in) that merging adds to the base weight."""
        return (self._b() @ self.A) * self.scaling


class LinearWithLoRA(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable `LoRALayer`: ``linear(x) + lora(x)``.

    The base layer keeps its name (``.linear``) and its tensors, so a weight it shares
    with another module (GPT-2's tied head) stays shared until `merge_lora`.
    """

    def __init__(
        self,
        linear: nn.Linear,
        rank: int,
        alpha: float,
        *,
        scaling: str = "alpha/rank",
        parts: int = 1,
        allow_excess_rank: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise InputError(f"LinearWithLoRA wraps an nn.Linear, got {type(linear).__name__}")
        lora = LoRALayer(
            linear.in_features,
            linear.out_features,
            rank,
            alpha,
            scaling=scaling,
            parts=parts,
            allow_excess_rank=allow_excess_rank,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )  # first, so that a bad rank leaves `linear` as it was
        self.linear = linear.requires_grad_(False)
        self.lora = lora

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.lora(x)

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same: weight W + scaling·B·A, the same bias."""
        base = self.linear
        out = nn.Linear(
            base.in_features,
            base.out_features,
            bias=base.bias is not None,
            device=base.weight.device,
            dtype=base.weight.dtype,
        )
        with torch.no_grad():
            # A new tensor, never in place: a tied weight (GPT-2's embedding) stays as it was.
            out.weight.copy_(base.weight + self.lora.delta_weight().to(base.weight.dtype))
            if base.bias is not None:
                out.bias.copy_(base.bias)
        out.requires_grad_(False)
        return out

    def spec(self) -> dict[str, Any]:
        """What recreates this adapter's shape: rank, alpha, scaling mode, parts."""
        lora = self.lora
        return {
            "rank": lora.rank,
            "alpha": lora.alpha,
            "scaling": lora.scaling_mode,
            "parts": lora.parts,
            "in_features": lora.in_features,
            "out_features": lora.out_features,
        }


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def lora_layers(model: nn.Module) -> dict[str, LinearWithLoRA]:
    """The model's LoRA-wrapped layers by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LinearWithLoRA)}


def _targets(model: nn.Module, targets: Iterable[str] | None) -> list[str]:
    """Names of the nn.Linear layers selected by `targets` (all of them for None)."""
    if isinstance(targets, str):
        targets = [targets]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"the model ({type(model).__name__}) has no nn.Linear layer to adapt")
    if targets is None:
        return linears
    targets = list(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise InputError(f"targets must be non-empty module names, got {targets!r}")
    for target in targets:
        if not any(_matches(n, target) for n in linears):
            examples = ", ".join(sorted({n.rpartition(".")[2] for n in linears})[:8])
            raise InputError(
                f"target {target!r} matches no nn.Linear layer of the model "
                f"(its linear layers are named e.g. {examples})"
            )
    return [n for n in linears if any(_matches(n, t) for t in targets)]


def _parts(name: str, fused: Mapping[str, int]) -> int:
    return next((p for key, p in fused.items() if _matches(name, key)), 1)


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    targets: Iterable[str] | None = None,
    *,
    scaling: str = "alpha/rank",
    fused: Mapping[str, int] = FUSED,
    allow_excess_rank: bool = False,
) -> nn.Module:
    """Freeze every parameter of `model` and wrap its linear layers in `LinearWithLoRA`.

    `targets` selects layers by name or name suffix (``"qkv"``, ``"h.11.mlp.c_fc"``;
    default every ``nn.Linear``); `fused` gives layers that stack several projections
    an adapter per projection (default: ``qkv`` in 3). Changes `model` in place and
    returns it. Parameters to train besides the adapters are unfrozen afterwards.
    """
    if lora_layers(model):
        raise InputError(
            "the model already has LoRA layers; merge_lora it first or load adapters into it"
        )
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise InputError(f"LoRA rank must be an integer >= 1, got {rank!r}")
    names = _targets(model, targets)
    wrapped = {
        n: LinearWithLoRA(
            model.get_submodule(n),
            rank,
            alpha,
            scaling=scaling,
            parts=_parts(n, fused),
            allow_excess_rank=allow_excess_rank,
        )
        for n in names
    }  # built first, so a rank error leaves the model untouched
    model.requires_grad_(False)
    for name, module in wrapped.items():
        module.lora.requires_grad_(True)
        _set_child(model, name, module)
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight, replacing each `LinearWithLoRA` with a
    plain ``nn.Linear``: same outputs, the base model's speed and state-dict keys."""
    layers = lora_layers(model)
    if not layers:
        raise InputError("the model has no LoRA layers to merge (was it merged already?)")
    for name, module in layers.items():
        _set_child(model, name, module.merged())
    return model


def lora_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The adapters' parameters (A and B of every LoRA layer)."""
    for module in lora_layers(model).values():
        yield from module.lora.parameters()


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only the adapters' tensors, under their names in the model's state dict."""
    return {
        f"{name}.lora.{key}": t.detach()
        for name, module in lora_layers(model).items()
        for key, t in module.lora.state_dict().items()
    }


def layer_lora_count(in_features: int, out_features: int, rank: int, parts: int = 1) -> int:
    """Trainable numbers of one adapter: A is (parts·rank) × in, B is out × rank.

    >>> layer_lora_count(768, 768, 16), layer_lora_count(768, 2304, 16, parts=3)
    (24576, 73728)
    """
    return rank * (parts * in_features + out_features)


def lora_count(
    model: nn.Module,
    rank: int,
    targets: Iterable[str] | None = None,
    *,
    fused: Mapping[str, int] = FUSED,
) -> int:
    """The number of trainable parameters `apply_lora` would give `model`, from its
    layer shapes alone (the model is not changed)."""
    rank = require_int("rank", rank)
    return sum(
        layer_lora_count(m.in_features, m.out_features, rank, _parts(n, fused))
        for n in _targets(model, targets)
        if isinstance(m := model.get_submodule(n), nn.Linear)
    )


def save_adapters(
    model: nn.Module, path: str | os.PathLike[str], *, also_save: Iterable[str] = ()
) -> Path:
    """Write the adapters (and their rank, alpha, scaling, parts) to a safetensors file,
    atomically; returns the path.

    `also_save` names modules whose every tensor goes in too: a new classification
    head starts from random weights, so its frozen base must travel with its adapter.
    """
    from safetensors.torch import save

    layers = lora_layers(model)
    if not layers:
        raise InputError("the model has no LoRA layers: there are no adapters to save")
    tensors = dict(lora_state_dict(model))
    for name in [also_save] if isinstance(also_save, str) else also_save:
        try:
            model.get_submodule(name)
        except AttributeError:
            raise InputError(f"also_save: the model has no module {name!r}") from None
        for key, t in model.state_dict().items():
            if key.startswith(name + ".") and key not in tensors:
                tensors[key] = t.detach()
    tensors = {k: t.contiguous().cpu() for k, t in tensors.items()}
    layout = {name: module.spec() for name, module in layers.items()}
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "layers": json.dumps(layout),
        "crc32": _crc(tensors),
    }
    path = Path(path)
    with atomic_write(path) as fh:
        fh.write(save(tensors, metadata=metadata))
    return path


def _crc(tensors: Mapping[str, Tensor]) -> str:
    """CRC-32 over names, shapes and bytes: safetensors itself does not notice flipped bits."""
    acc = 0
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        acc = zlib.crc32(f"{key}{t.dtype}{tuple(t.shape)}".encode(), acc)
        acc = zlib.crc32(t.reshape(-1).view(torch.uint8).numpy().tobytes(), acc)
    return f"{acc:08x}"


def _read_adapters(path: Path) -> tuple[dict[str, Tensor], dict[str, dict[str, Any]]]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"no adapter file at {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dlnotes LoRA adapter file (no {FORMAT!r} marker)")
    if metadata.get("crc32") != _crc(tensors):
        raise CheckpointError(f"{path} is corrupted: its tensors fail their checksum")
    try:
        layout = json.loads(metadata["layers"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has a damaged adapter layout: {exc}") from None
    return tensors, layout


def _wrap_as_in_file(model: nn.Module, layout: Mapping[str, Any], path: Path) -> None:
    """Give a model without LoRA layers the adapters the file describes."""
    modules = dict(model.named_modules())
    wrapped = {}
    for name, spec in layout.items():
        base = modules.get(name)
        if not isinstance(base, nn.Linear):
            raise CheckpointError(
                f"adapters in {path} do not fit this model: it has no linear layer {name!r}"
            )
        try:
            shape = (spec["in_features"], spec["out_features"])
            if (base.in_features, base.out_features) != shape:
                raise CheckpointError(
                    f"adapters in {path} do not fit this model: layer {name!r} is "
                    f"{base.in_features} -> {base.out_features} here, "
                    f"{shape[0]} -> {shape[1]} in the file"
                )
            wrapped[name] = LinearWithLoRA(
                base,
                spec["rank"],
                spec["alpha"],
                scaling=spec["scaling"],
                parts=spec["parts"],
                allow_excess_rank=True,
            )
        except (InputError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} has a damaged adapter layout: {exc}") from None
    model.requires_grad_(False)
    for name, module in wrapped.items():
        module.lora.requires_grad_(True)
        _set_child(model, name, module)


def _fill(
    model: nn.Module, tensors: dict[str, Tensor], layout: Mapping[str, Any], path: Path
) -> None:
    """Check that the file's tensors fit the model's LoRA layers (and modules), then copy."""
    misfit = f"adapters in {path} do not fit this model"
    layers = lora_layers(model)
    if set(layers) != set(layout):
        odd = sorted(set(layout) ^ set(layers))
        raise CheckpointError(f"{misfit}: LoRA layers differ (e.g. {odd[0]!r})")
    for name, module in layers.items():
        if module.spec() != layout[name]:
            raise CheckpointError(
                f"{misfit}: layer {name!r} has {module.spec()} here, {layout[name]} in the file"
            )
    state = model.state_dict()
    missing = sorted(set(lora_state_dict(model)) - set(tensors))
    if missing:
        raise CheckpointError(f"{misfit}: the file lacks {missing[0]}")
    for key, t in tensors.items():
        if key not in state:
            raise CheckpointError(f"{misfit}: it has no tensor {key}")
        if t.shape != state[key].shape:
            raise CheckpointError(
                f"{misfit}: {key} is {tuple(state[key].shape)} here, {tuple(t.shape)} in the file"
            )
    with torch.no_grad():
        for key, t in tensors.items():
            state[key].copy_(t)


def load_adapters(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a file written by `save_adapters` into `model` and return it.

    A model without LoRA layers first gets them, as the file describes (its other
    parameters frozen); one with LoRA layers must have exactly the file's. A file for
    a model of another shape, or a damaged one, is a `CheckpointError`, and leaves the
    model as it was.
    """
    path = Path(path)
    tensors, layout = _read_adapters(path)
    if lora_layers(model):
        _fill(model, tensors, layout, path)
        return model
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    _wrap_as_in_file(model, layout, path)
    try:
        _fill(model, tensors, layout, path)
    except CheckpointError:
        for name, module in lora_layers(model).items():
            _set_child(model, name, module.linear)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        raise
    return model
