"""Sliding-window samples for next-token prediction, and a DataLoader over them.

Follows Raschka, *Build a Large Language Model (From Scratch)*, section 2.6
(https://github.com/rasbt/LLMs-from-scratch, ch02): the text becomes one long
sequence of token ids; window ``k`` starts at ``k * stride`` and holds
``max_length`` ids as input and the same window shifted by one as target. Unlike
the book we keep one tensor of ids and slice views out of it, instead of storing
every window, and we check the arguments so that a short text is an error rather
than an empty loader.

Leaves out: document boundaries, padding, packing of several texts, and
distributed sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from dlnotes.errors import InputError, require_int
from dlnotes.text import ENDOFTEXT, as_token_ids

__all__ = ["GPTDataset", "create_dataloader", "encode_text", "ids_to_text", "text_to_ids"]


def _default_tokenizer() -> Any:
    """The project's own GPT-2 tokenizer (same ids as tiktoken's), from the data layer."""
    from dlnotes.gpt2_tokenizer import GPT2Tokenizer

    return GPT2Tokenizer.pretrained()


def encode_text(text: str, tokenizer: Any = None) -> list[int]:
    """Token ids of `text`; GPT-2's tokenizer by default, ``<|endoftext|>`` allowed."""
    if not isinstance(text, str):
        raise InputError(f"the text must be a string, got a {type(text).__name__}")
    if tokenizer is None:
        tokenizer = _default_tokenizer()
    if ENDOFTEXT in getattr(tokenizer, "special_tokens_set", ()):
        return tokenizer.encode(text, allowed_special={ENDOFTEXT})
    return tokenizer.encode(text)


def text_to_ids(text: str, tokenizer: Any = None) -> torch.Tensor:
    """A text as a (1, T) batch of one sequence of token ids (GPT-2's tokenizer by default).

    >>> text_to_ids("Every effort moves you")
    tensor([[6109, 3626, 6100,  345]])
    """
    ids = encode_text(text, tokenizer)
    if not ids:
        raise InputError("the text is empty: there are no token ids to give the model")
    return torch.tensor(ids).unsqueeze(0)


def ids_to_text(ids: torch.Tensor | Sequence[int], tokenizer: Any = None) -> str:
    """The text of a (T,) or (1, T) sequence of token ids (GPT-2's tokenizer by default).

    >>> ids_to_text(torch.tensor([[6109, 3626, 6100, 345]]))
    'Every effort moves you'
    """
    if tokenizer is None:
        tokenizer = _default_tokenizer()
    if isinstance(ids, torch.Tensor) and ids.dim() == 2 and ids.shape[0] == 1:
        ids = ids[0]
    flat = as_token_ids(ids, "ids_to_text's ids")  # a (2, T) batch is refused, not joined
    n_vocab = getattr(tokenizer, "n_vocab", None)
    bad = [i for i in flat if not 0 <= i < n_vocab] if n_vocab is not None else []
    if bad:
        raise InputError(f"token id {bad[0]} is outside the vocabulary 0..{n_vocab - 1}")
    return tokenizer.decode(flat)


def _as_ids(source: object) -> torch.Tensor:
    """Token ids as one (N,) long tensor; anything else (floats, a batch, None) is refused."""
    if not isinstance(source, (Sequence, torch.Tensor)) and not hasattr(source, "__array__"):
        raise InputError(
            f"the text must be a string or a sequence of token ids, got a {type(source).__name__}"
        )
    try:
        ids = torch.as_tensor(source)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"the token ids are not a sequence of integers ({exc})") from None
    if ids.dim() != 1:
        raise InputError(f"token ids must be one sequence (1-D), got shape {tuple(ids.shape)}")
    if not len(ids):
        return ids.long()  # as_tensor([]) is float; GPTDataset says the sequence is too short
    if ids.dtype == torch.bool or ids.dtype.is_floating_point or ids.dtype.is_complex:
        raise InputError(
            f"token ids must be integers, got {ids.dtype} values such as {ids[0].item()!r}"
        )
    if ids.min() < 0:
        raise InputError(f"token ids must be >= 0, got {int(ids.min())}")
    return ids.long()  # (N,)


class GPTDataset(Dataset):
    """Windows of `max_length` ids starting every `stride` ids, with next-id targets.

    `source` is a text (encoded with `tokenizer`, GPT-2 by default) or already
    encoded ids (a sequence of ints or a 1-D tensor; `tokenizer` is then unused).

    >>> ds = GPTDataset(list(range(10)), max_length=4, stride=3)
    >>> len(ds), ds[1]
    (2, (tensor([3, 4, 5, 6]), tensor([4, 5, 6, 7])))
    """

    def __init__(
        self,
        source: str | Sequence[int] | torch.Tensor,
        max_length: int,
        stride: int,
        tokenizer: Any = None,
    ) -> None:
        self.max_length = require_int("max_length", max_length)
        self.stride = require_int("stride", stride)
        self.ids = _as_ids(encode_text(source, tokenizer) if isinstance(source, str) else source)
        n = len(self.ids)
        if n < self.max_length + 1:
            what = "text" if isinstance(source, str) else "sequence"
            raise InputError(
                f"the {what} has {n:,} tokens, but max_length={self.max_length:,} needs at "
                f"least {self.max_length + 1:,} (the targets are the inputs shifted by one); "
                "use a longer text or a smaller max_length"
            )
        # Window k needs ids[k*stride : k*stride + max_length + 1].
        self.n_windows = (n - self.max_length - 1) // self.stride + 1

    def __len__(self) -> int:
        return self.n_windows

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -self.n_windows <= k < self.n_windows:
            raise IndexError(f"window {k} out of range for {self.n_windows} windows")
        start = (k % self.n_windows) * self.stride
        window = self.ids[start : start + self.max_length + 1]  # (max_length + 1,)
        return window[:-1], window[1:]


def create_dataloader(
    text: str | Sequence[int] | torch.Tensor,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    tokenizer: Any = None,
) -> DataLoader:
    """A DataLoader of ``(inputs, targets)`` batches, each ``(batch_size, max_length)``.

    `text` may also be token ids already encoded (then `tokenizer` is unused).
    Shuffling draws from PyTorch's global generator, so `dlnotes.env.seed_everything`
    makes it repeatable.
    """
    require_int("batch_size", batch_size)
    require_int("num_workers", num_workers, minimum=0)
    dataset = GPTDataset(text, max_length=max_length, stride=stride, tokenizer=tokenizer)
    if drop_last and len(dataset) < batch_size:
        raise InputError(
            f"only {len(dataset):,} window(s) of max_length={max_length:,} with "
            f"stride={stride:,} fit in {len(dataset.ids):,} tokens, fewer than "
            f"batch_size={batch_size:,}, so drop_last=True would leave no batch; use a "
            "smaller batch_size, max_length or stride, or drop_last=False"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
    )


def make_loader(
    dataset: Dataset,
    batch_size: int = 8,
    *,
    train: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
) -> DataLoader:
    """A loader of `batch_size` over a finetuning data set: ``train=True`` shuffles (from
    the global torch generator, as the book does) and drops the last partial batch."""
    batch_size = require_int("batch_size", batch_size)
    require_int("num_workers", num_workers, minimum=0)
    if train and len(dataset) < batch_size:  # type: ignore[arg-type]
        raise InputError(
            f"{len(dataset):,} training examples are fewer than batch_size={batch_size}: "  # type: ignore[arg-type]
            "drop_last would leave no batch"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        collate_fn=collate_fn,
        num_workers=num_workers,
    )
