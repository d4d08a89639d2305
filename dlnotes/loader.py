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

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from dlnotes.errors import InputError, require_int

ENDOFTEXT = "<|endoftext|>"


def encode_text(text: str, tokenizer: Any = None) -> list[int]:
    """Token ids of `text`; GPT-2's tokenizer by default, ``<|endoftext|>`` allowed."""
    if tokenizer is None:
        from dlnotes.gpt2_tokenizer import tiktoken_gpt2

        tokenizer = tiktoken_gpt2()
    if ENDOFTEXT in getattr(tokenizer, "special_tokens_set", ()):
        return tokenizer.encode(text, allowed_special={ENDOFTEXT})
    return tokenizer.encode(text)


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
        ids = encode_text(source, tokenizer) if isinstance(source, str) else source
        self.ids = torch.as_tensor(ids, dtype=torch.long)  # (N,)
        if self.ids.dim() != 1:
            raise InputError(
                f"token ids must be one sequence (1-D), got shape {tuple(self.ids.shape)}"
            )
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
