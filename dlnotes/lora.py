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

A *fused* projection stacks several: `dlnotes.attention` computes query, key and
value with one ``qkv`` layer, `dlnotes.llama` too (9 query, 3 key and 3 value heads)
and its gate and up projections with one ``gate_up``. ``splits`` gives each stacked
projection an adapter of its own (A_p and B_p, rank r each), which is exactly the
book's model with separate ``W_query``, ``W_key``, ``W_value`` (and a Hugging Face
Llama's separate ``q_proj`` … ``up_proj``, as `peft` adapts them); `apply_lora` finds
these splits by itself (``splits="auto"``). ``splits=None`` puts one rank-r update
on the whole fused matrix, as `peft` does for GPT-2's ``c_attn``.

Leaves out: dropout on the adapter input, rsLoRA / DoRA variants, quantised bases
(QLoRA), several named adapters per layer.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes.atomic import atomic_write
from dlnotes.errors import CheckpointError, InputError, require_int, require_number

SCALINGS = ("alpha/rank", "alpha")
SplitsArg = str | None | Mapping[str, int | Sequence[int]]  # see apply_lora
FORMAT = "dlnotes-lora"
VERSION = "1"


def _check_scaling(scaling: object) -> str:
    if scaling not in SCALINGS:
        raise InputError(
            f"scaling must be one of {', '.join(map(repr, SCALINGS))}, got {scaling!r}"
        )
    return str(scaling)


class LoRALayer(nn.Module):
    """The trainable update of one layer: ``x -> scaling · B (A x)``.

    `splits` (output sizes summing to `out_features`, or a number of equal parts)
    cuts the outputs into slices, each with its own A (rank × in) and B (size × rank);
    the rows of `A` and of `B` hold the slices one after another. `allow_excess_rank`
    accepts a rank above min(in, out), where the update cannot use it all (the book's
    rank-16 adapter on a 768 → 2 head).

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
        splits: int | Sequence[int] = 1,
        allow_excess_rank: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        in_features = require_int("in_features", in_features)
        out_features = require_int("out_features", out_features)
        sizes = _split_sizes(out_features, splits)
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise InputError(f"LoRA rank must be an integer >= 1, got {rank!r}")
        limit = min(in_features, *sizes)
        if rank > limit and not allow_excess_rank:
            parts = f" in parts of {', '.join(map(str, sizes))}" if len(sizes) > 1 else ""
            raise InputError(
                f"LoRA rank {rank} is larger than the layer ({in_features} -> {out_features}"
                f"{parts}): its update can have rank at most "
                f"{limit}; use rank <= {limit}, leave the layer out of the targets, "
                "or pass allow_excess_rank=True"
            )
        self.in_features, self.out_features = in_features, out_features
        self.rank, self.alpha, self.splits = rank, require_number("alpha", alpha), sizes
        self.scaling_mode = _check_scaling(scaling)
        self.scaling = self.alpha / rank if self.scaling_mode == "alpha/rank" else self.alpha
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.A = nn.Parameter(torch.empty(len(sizes) * rank, in_features, **kw))
        self.B = nn.Parameter(torch.zeros(out_features, rank, **kw))
        # Each rank × in block gets nn.Linear's init: bound 1/sqrt(in_features).
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def extra_repr(self) -> str:
        parts = f", splits={list(self.splits)}" if len(self.splits) > 1 else ""
        return (
            f"{self.in_features} -> {self.out_features}, rank={self.rank}, alpha={self.alpha:g}, "
            f"scaling={self.scaling:g} ({self.scaling_mode}){parts}"
        )

    def _b(self) -> Tensor:
        """B as one out × (parts·rank) matrix: block diagonal, slice p sees only A's block p."""
        if len(self.splits) == 1:
            return self.B
        return torch.block_diag(*self.B.split(list(self.splits), dim=0))

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
        splits: int | Sequence[int] = 1,
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
            splits=splits,
            allow_excess_rank=allow_excess_rank,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )  # first, so that a bad rank leaves `linear` as it was
        self.linear = linear.requires_grad_(False)
        self.lora = lora

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

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
        """What recreates this adapter's shape: rank, alpha, scaling mode, splits."""
        lora = self.lora
        return {
            "rank": lora.rank,
            "alpha": lora.alpha,
            "scaling": lora.scaling_mode,
            "splits": list(lora.splits),
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


def _split_sizes(out_features: int, splits: object) -> tuple[int, ...]:
    if isinstance(splits, int) and not isinstance(splits, bool):
        parts = require_int("splits", splits)
        if out_features % parts:
            raise InputError(f"{out_features} outputs do not split into {parts} equal parts")
        return (out_features // parts,) * parts
    if not isinstance(splits, Sequence) or not splits:
        raise InputError(f"splits must be a number of parts or a list of sizes, got {splits!r}")
    sizes = tuple(require_int("each split size", size) for size in splits)
    if sum(sizes) != out_features:
        raise InputError(f"splits {list(sizes)} do not add up to the {out_features} outputs")
    return sizes


def auto_splits(model: nn.Module, name: str) -> tuple[int, ...] | int:
    """How the outputs of layer `name` stack projections in dlnotes' models: a ``qkv``
    holds query, key and value (with n_heads / n_kv_heads / n_kv_heads heads where the
    attention has fewer key-value heads), a ``gate_up`` the gate and up projections.
    Every other layer is one projection (1)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if child == "qkv":
        if hasattr(parent, "n_kv_heads") and hasattr(parent, "head_dim"):
            q, kv = parent.n_heads * parent.head_dim, parent.n_kv_heads * parent.head_dim
            return (q, kv, kv)
        return 3
    if child == "gate_up":
        return 2
    return 1


def _splits_for(model: nn.Module, name: str, splits: SplitsArg) -> tuple[int, ...] | int:
    if splits is None:
        return 1
    if splits == "auto":
        return auto_splits(model, name)
    if isinstance(splits, Mapping):
        return next((s for key, s in splits.items() if _matches(name, key)), 1)
    raise InputError(f"splits must be 'auto', None or a mapping of layer names, got {splits!r}")


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    targets: Iterable[str] | None = None,
    *,
    scaling: str = "alpha/rank",
    splits: SplitsArg = "auto",
    allow_excess_rank: bool = False,
) -> nn.Module:
    """Freeze every parameter of `model` and wrap its linear layers in `LinearWithLoRA`.

    `targets` selects layers by name or name suffix (``"qkv"``, ``"h.11.mlp.c_fc"``;
    default every ``nn.Linear``). `splits` gives a layer that stacks several projections
    an adapter per projection: ``"auto"`` (`auto_splits`), None (one adapter per
    layer), or a mapping from layer names to output sizes or numbers of equal parts.
    Changes `model` in place and returns it; parameters to train besides the adapters
    are unfrozen afterwards.
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
            splits=_splits_for(model, n, splits),
            allow_excess_rank=allow_excess_rank,
        )
        for n in names
    }  # built first, so a rank error leaves the model untouched
    _install(model, wrapped)
    return model


def _install(model: nn.Module, wrapped: dict[str, LinearWithLoRA]) -> None:
    """Freeze `model`, then put each wrapped layer in place with only its adapter trainable."""
    model.requires_grad_(False)
    for name, module in wrapped.items():
        module.lora.requires_grad_(True)
        _set_child(model, name, module)


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
    """Trainable numbers of one adapter of `parts` stacked projections: A is
    (parts·rank) × in, B is out × rank.

    >>> layer_lora_count(768, 768, 16), layer_lora_count(768, 2304, 16, parts=3)
    (24576, 73728)
    """
    return rank * (parts * in_features + out_features)


def lora_count(
    model: nn.Module,
    rank: int,
    targets: Iterable[str] | None = None,
    *,
    splits: SplitsArg = "auto",
) -> int:
    """The number of trainable parameters `apply_lora` would give `model`, from its
    layer shapes alone (the model is not changed)."""
    rank = require_int("rank", rank)
    total = 0
    for n in _targets(model, targets):
        m = model.get_submodule(n)
        parts = len(_split_sizes(m.out_features, _splits_for(model, n, splits)))
        total += layer_lora_count(m.in_features, m.out_features, rank, parts)
    return total


def save_adapters(
    model: nn.Module, path: str | os.PathLike[str], *, also_save: Iterable[str] = ()
) -> Path:
    """Write the adapters (and their rank, alpha, scaling, splits) to a safetensors file,
    atomically; returns the path.

    `also_save` names modules whose every tensor goes in too: a new classification
    head starts from random weights, so its frozen base must travel with its adapter.
    """
    from safetensors.torch import save

    layers = lora_layers(model)
    if not layers:
        raise InputError("the model has no LoRA layers: there are no adapters to save")
    tensors = lora_state_dict(model)
    state = model.state_dict()
    for name in [also_save] if isinstance(also_save, str) else also_save:
        try:
            model.get_submodule(name)
        except AttributeError:
            raise InputError(f"also_save: the model has no module {name!r}") from None
        for key, t in state.items():
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
                splits=spec["splits"],
                allow_excess_rank=True,
            )
        except (InputError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} has a damaged adapter layout: {exc}") from None
    _install(model, wrapped)


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
