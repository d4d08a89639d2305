"""Load Hugging Face GPT-2 checkpoints (OpenAI's released weights) into `dlnotes.gpt.GPT`.

Follows Raschka, *Build a Large Language Model (From Scratch)*, ch05 ("Loading
pretrained weights from OpenAI"), but reads the Hub's ``model.safetensors``
(https://huggingface.co/openai-community/gpt2) with the ``safetensors`` package
instead of OpenAI's TensorFlow checkpoint, and relies on `GPT` using GPT-2's own
parameter names, so the conversion is three steps:

1. drop the ``transformer.`` prefix (`GPT2LMHeadModel` has it, the Hub file does not);
2. rename the two attention layers (``c_attn``→``qkv``, ``c_proj``→``out_proj``);
3. transpose the four ``Conv1D`` weights per block (see `CONV1D`).

Leaves out: downloading (the chapter fetches the file), TensorFlow checkpoints, and
GPT-2 variants with other activations or an inner MLP size other than 4·D.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from dlnotes.errors import CheckpointError, InputError
from dlnotes.gpt import GPT, GPT2_SIZES, GPTConfig, TransformerBlock

# HF name fragment -> ours. Everything else (wte, wpe, h.N, ln_1, ln_2, mlp, ln_f) is equal.
RENAME = {".attn.c_attn.": ".attn.qkv.", ".attn.c_proj.": ".attn.out_proj."}
# OpenAI wrote GPT-2 in TensorFlow with a "Conv1D" layer computing x @ W with W stored
# (in, out); nn.Linear computes x @ W.T with W stored (out, in). Hence the transposes.
CONV1D = re.compile(r"\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
# Causal-mask buffers some GPT-2 files carry ("h.0.attn.bias", "h.0.attn.masked_bias"):
# not weights, and our attention builds its own mask.
BUFFER = re.compile(r"\.attn\.(bias|masked_bias)$")


def hf_to_ours(name: str) -> str:
    """Our parameter name for a Hugging Face GPT-2 one.

    >>> hf_to_ours("transformer.h.3.attn.c_attn.weight")
    'h.3.attn.qkv.weight'
    >>> hf_to_ours("ln_f.bias")
    'ln_f.bias'
    """
    name = name.removeprefix("transformer.")
    for old, new in RENAME.items():
        name = name.replace(old, new)
    return name


def convert_hf_state_dict(hf: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """A HF GPT-2 state dict (either key prefix) as a state dict for ``GPT(cfg)``.

    Raises `CheckpointError` naming the first tensor that is missing, unexpected or of
    the wrong shape, with both shapes.
    """
    ours: dict[str, Tensor] = {}
    for name, tensor in hf.items():
        if BUFFER.search(name):
            continue
        ours[hf_to_ours(name)] = tensor.t().contiguous() if CONV1D.search(name) else tensor
    if "wte.weight" in ours and ("lm_head.weight" not in ours or cfg.tie_weights):
        # GPT-2 ties its head to wte and files often store it once: a tied model reuses
        # wte, an untied one (as the book builds it) starts from a copy.
        ours["lm_head.weight"] = ours["wte.weight"]

    with torch.device("meta"):
        expected = GPT(cfg).state_dict()
    for name, want in expected.items():
        if name not in ours:
            raise CheckpointError(
                f"checkpoint has no tensor for {name} {tuple(want.shape)} (config: {_brief(cfg)})"
            )
        got = ours[name]
        if got.shape != want.shape:
            raise CheckpointError(
                f"tensor {name} has shape {tuple(got.shape)} in the checkpoint but "
                f"{tuple(want.shape)} in the model (config: {_brief(cfg)})"
            )
    extra = [name for name in ours if name not in expected]
    if extra:
        raise CheckpointError(
            f"checkpoint has tensor {extra[0]} that the model does not "
            f"({len(extra)} such in all; config: {_brief(cfg)})"
        )
    return ours


def _brief(cfg: GPTConfig) -> str:
    return (
        f"vocab_size={cfg.vocab_size}, context_length={cfg.context_length}, "
        f"emb_dim={cfg.emb_dim}, n_layers={cfg.n_layers}"
    )


# HF GPT2Config settings that change what the model computes, with the value ours matches.
# (`reorder_and_upcast_attn` only changes the precision of half-precision attention
# scores: in float32 its logits equal ours, so it is accepted.)
_FIXED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False}
_REQUIRED = ("vocab_size", "n_positions", "n_embd", "n_head", "n_layer")


def _read_config(path: Path) -> Mapping[str, object]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else exc.reason
        raise CheckpointError(f"{path} is not valid JSON ({reason}{where})") from None
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path} holds a JSON {type(config).__name__}, not an object")
    return config


def config_from_hf(config: Mapping[str, object] | str | Path, **overrides: object) -> GPTConfig:
    """A `GPTConfig` from a HF GPT-2 ``config.json`` (path or parsed dict).

    Settings this model does not implement are an `InputError` rather than a model
    whose logits quietly differ from Hugging Face's.
    """
    source = "the config" if isinstance(config, Mapping) else str(config)
    if not isinstance(config, Mapping):
        config = _read_config(Path(config))
    missing = [key for key in _REQUIRED if key not in config]
    if missing:
        raise CheckpointError(
            f"{source} has no {missing[0]!r}: a GPT-2 config.json needs {', '.join(_REQUIRED)}"
        )
    act = config.get("activation_function", "gelu_new")
    if act != "gelu_new" or config.get("n_inner") not in (None, 4 * int(config["n_embd"])):
        raise InputError(
            f"GPT-2 config with activation {act!r} and n_inner={config.get('n_inner')} is not "
            "supported: this model uses GELU (tanh) and an MLP of 4 x n_embd"
        )
    for key, ours in _FIXED.items():
        if config.get(key, ours) != ours:
            raise InputError(
                f"{source} sets {key}={config[key]!r}, which this model does not implement "
                f"(it computes attention as {key}={ours} does)"
            )
    fields: dict[str, object] = dict(
        vocab_size=config["vocab_size"],
        context_length=config["n_positions"],
        emb_dim=config["n_embd"],
        n_heads=config["n_head"],
        n_layers=config["n_layer"],
        drop_rate=config.get("resid_pdrop", 0.1),
        qkv_bias=True,  # GPT-2's c_attn always has a bias
        tie_weights=config.get("tie_word_embeddings", True),
        layer_norm_eps=config.get("layer_norm_epsilon", 1e-5),
    )
    return GPTConfig(**{**fields, **overrides})  # type: ignore[arg-type]


def config_from_shapes(tensors: Mapping[str, Tensor], source: object = "checkpoint") -> GPTConfig:
    """The released GPT-2 size these HF tensors have the shapes of; `source` names them."""
    shapes = {hf_to_ours(k): tuple(v.shape) for k, v in tensors.items()}
    vocab, emb_dim = shapes.get("wte.weight", (0, 0))
    context = shapes.get("wpe.weight", (0, 0))[0]
    layers = len({k.split(".")[1] for k in shapes if k.startswith("h.")})
    for size, (d, n_layers, _) in GPT2_SIZES.items():
        if (d, n_layers, vocab, context) == (emb_dim, layers, 50257, 1024):
            return GPTConfig.gpt2(size)
    raise CheckpointError(
        f"{source} is not one of the released GPT-2 sizes (emb_dim={emb_dim}, layers={layers}, "
        f"vocab={vocab}, context={context}) and has no config.json beside it: pass cfg="
    )


def load_hf_safetensors(path: str | Path, cfg: GPTConfig | None = None) -> GPT:
    """A `GPT` holding the weights of a HF GPT-2 ``model.safetensors`` file, in eval mode.

    Without `cfg`, the configuration comes from ``config.json`` beside the file, else
    from the tensor shapes when they are one of the four released GPT-2 sizes.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read {path} as safetensors: {exc}") from exc
    if cfg is None:
        config_json = path.with_name("config.json")
        if config_json.is_file():
            cfg = config_from_hf(config_json)
        else:
            cfg = config_from_shapes(tensors, path)
    state = convert_hf_state_dict(tensors, cfg)
    return model_from_state_dict(state, cfg, share=True)  # the file's tensors are ours alone


def model_from_state_dict(
    state: Mapping[str, Tensor], cfg: GPTConfig, *, share: bool = False, training: bool = False
) -> GPT:
    """``GPT(cfg)`` holding `state`'s weights, built without a random init; in eval mode
    unless ``training=True``.

    The weights are copies, so training the model leaves `state` (say, a Hugging Face
    model's tensors) unchanged; ``share=True`` adopts the tensors themselves instead,
    which saves the memory of a copy when nothing else uses them.
    """
    owned: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, tensor in state.items():
        storage = tensor.untyped_storage().data_ptr()
        # Even when sharing, one tensor under two names (wte for an untied head) is copied
        # once: two Parameters on one storage would take each update twice.
        reuse = share and storage not in storages
        owned[name] = tensor.detach() if reuse else tensor.detach().clone()
        storages.add(storage)
    with torch.device("meta"):
        model = GPT(cfg)  # placeholders only: a 1.5B model costs no memory or init time here
    # assign=True adopts the tensors themselves instead of copying into the placeholders.
    model.load_state_dict(owned, assign=True)
    if cfg.tie_weights:
        model.lm_head.weight = model.wte.weight  # assign gave each its own Parameter
    # Buffers (the causal masks) are not weights: take real ones from the smallest block
    # with the same context length; all blocks can share them.
    template = TransformerBlock(dataclasses.replace(cfg, emb_dim=cfg.n_heads))
    for block in model.h:
        for name, buffer in template.named_buffers():
            owner, _, attr = name.rpartition(".")
            setattr(block.get_submodule(owner), attr, buffer.to(model.wte.weight.device))
    return model.train(training)
