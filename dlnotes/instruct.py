"""Instruction finetuning: prompt formats, the data set, padded batches, responses.

Follows Raschka, *Build a Large Language Model (From Scratch)*, ch07
(``format_input``, ``InstructionDataset``, ``custom_collate_fn``, the 85/10/5 split
and the response files; https://github.com/rasbt/LLMs-from-scratch/tree/main/ch07).
Training itself is `dlnotes.train.train`: its loss, `F.cross_entropy`, already skips
targets equal to -100 (`IGNORE_INDEX`), so padded batches need no loop of their own.

Choices that differ from the book:

* an entry's ids are ``encode(prompt) + encode(output)``, so the prompt's length is
  known exactly (for prompt masking) and the model trains on the very ids that
  generation starts from (on all 1,100 entries this equals encoding the whole text);
* "the prompt" for masking is everything generation is given, the response header
  included; the book's exercise 7.2 masks the instruction and input only;
* padding is found by length, not by comparing with the pad id, so a text that
  contains the end token itself is not mistaken for padding;
* responses are generated in batches of prompts of *equal* token length: our models
  take no attention mask, so a padded prompt would change what the model sees, and
  batched generation must give exactly what one-by-one generation gives.

Symbols: B batch, T tokens per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from dlnotes.atomic import write_json
from dlnotes.errors import DataError, InputError, require_int
from dlnotes.loader import make_loader
from dlnotes.losses import device_of, eval_mode

IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index
RESPONSE_KEY = "model_response"

Entry = dict[str, str]


@dataclass(frozen=True)
class PromptStyle:
    """How an entry becomes text: instruction, optional input, then the response header."""

    name: str
    instruction: str  # with "{instruction}"
    input: str  # with "{input}"; left out when the entry's input is empty
    response: str  # the header the response follows

    def format_input(self, entry: Entry) -> str:
        """Instruction and input, without the response header (the book's ``format_input``)."""
        text = self.instruction.format(instruction=entry["instruction"])
        if entry.get("input"):
            text += self.input.format(input=entry["input"])
        return text

    def prompt(self, entry: Entry) -> str:
        """What the model is given to answer: instruction, input and the response header."""
        return self.format_input(entry) + self.response

    def full_text(self, entry: Entry) -> str:
        """Prompt followed by the expected output: one training text."""
        return self.prompt(entry) + entry["output"]


ALPACA = PromptStyle(
    "alpaca",
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}",
    "\n\n### Input:\n{input}",
    "\n\n### Response:\n",
)
PHI3 = PromptStyle("phi3", "<|user|>\n{instruction}", "\n{input}", "\n<|assistant|>\n")


def format_input(entry: Entry, style: PromptStyle = ALPACA) -> str:
    """`entry`'s instruction and input in `style` (Alpaca by default), no response header.

    >>> print(format_input({"instruction": "Add 2 and 3.", "input": "", "output": "5"}))
    Below is an instruction that describes a task. Write a response that appropriately \
completes the request.
    <BLANKLINE>
    ### Instruction:
    Add 2 and 3.
    """
    return style.format_input(entry)


def format_prompt(entry: Entry, style: PromptStyle = ALPACA) -> str:
    """`entry` as the model sees it at generation time: `format_input` + response header."""
    return style.prompt(entry)


def _describe(entry: object) -> str:
    text = repr(entry)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_entries(entries: object, source: str = "the data") -> list[Entry]:
    """Check that `entries` is a list of ``{instruction, input?, output}`` dicts of strings.

    Returns copies with a missing ``input`` set to ``""``; any other problem is a
    `DataError` naming the entry.
    """
    if not isinstance(entries, list):
        raise DataError(f"{source} must be a JSON list of entries, got {type(entries).__name__}")
    clean: list[Entry] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{source}: entry {i} is not an object: {_describe(entry)}")
        for key in ("instruction", "output"):
            if key not in entry:
                raise DataError(f"{source}: entry {i} has no {key!r}: {_describe(entry)}")
        for key in ("instruction", "input", "output"):
            if not isinstance(entry.get(key, ""), str):
                raise DataError(f"{source}: entry {i} has a non-text {key!r}: {_describe(entry)}")
        if not entry["instruction"].strip():
            raise DataError(f"{source}: entry {i} has an empty instruction: {_describe(entry)}")
        clean.append({**entry, "input": entry.get("input", "")})
    return clean


def load_instruction_data(path: str | Path | None = None) -> list[Entry]:
    """The entries of a JSON file (default: the book's ``instruction-data.json``), validated."""
    if path is None:
        from dlnotes import data

        path = data.fetch("instruction-data")
    path = Path(path)
    return validate_entries(read_json(path, ": {exc}"), str(path))


def read_json(path: Path, invalid: str) -> Any:
    """The JSON in `path`; `DataError` if it cannot be read, or is not JSON (then the
    message goes on with `invalid`, formatted with the parser's `exc`)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON" + invalid.format(exc=exc)) from None


def split_entries(
    entries: Sequence[Entry], train_frac: float = 0.85, test_frac: float = 0.10
) -> tuple[list[Entry], list[Entry], list[Entry]]:
    """(train, validation, test): the first 85 %, then 10 % for testing, the rest validation.

    The book's split, in file order (1,100 entries → 935 / 55 / 110).

    >>> [len(part) for part in split_entries([{}] * 1100)]
    [935, 55, 110]
    """
    if not (0 < train_frac and 0 <= test_frac and train_frac + test_frac <= 1):
        raise InputError(
            f"need 0 < train_frac, 0 <= test_frac, train_frac + test_frac <= 1; "
            f"got {train_frac}, {test_frac}"
        )
    n_train = int(len(entries) * train_frac)
    n_test = int(len(entries) * test_frac)
    train = list(entries[:n_train])
    test = list(entries[n_train : n_train + n_test])
    val = list(entries[n_train + n_test :])
    return train, val, test


def encode_prompt(tokenizer: Any, text: str | Sequence[int]) -> list[int]:
    """Ids of a prompt given as text or already as ids (e.g. from a chat template)."""
    if isinstance(text, str):
        return list(tokenizer.encode(text))
    return [int(t) for t in text]


def chat_message(entry: Entry) -> str:
    """The entry as one user message for a chat model: instruction, then input if any."""
    return entry["instruction"] + (f"\n\n{entry['input']}" if entry.get("input") else "")


def chat_prompt(tokenizer: Any) -> Callable[[Entry], list[int]]:
    """A `generate_responses` prompt: the entry as a user message in the tokenizer's chat
    template (its ``encode_chat``), asking for the assistant's reply."""
    if not hasattr(tokenizer, "encode_chat"):
        raise InputError(f"{type(tokenizer).__name__} has no chat template (encode_chat)")

    def prompt(entry: Entry) -> list[int]:
        return tokenizer.encode_chat([{"role": "user", "content": chat_message(entry)}])

    return prompt


class InstructionDataset(Dataset):
    """Entries as ``(ids, prompt_length)``: the prompt's ids followed by the output's."""

    def __init__(self, entries: Sequence[Entry], tokenizer: Any, style: PromptStyle = ALPACA):
        self.entries = validate_entries(list(entries))
        self.items: list[tuple[list[int], int]] = []
        for entry in self.entries:
            prompt = encode_prompt(tokenizer, style.prompt(entry))
            self.items.append((prompt + list(tokenizer.encode(entry["output"])), len(prompt)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> tuple[list[int], int]:
        return self.items[k]


Item = Sequence[int] | tuple[Sequence[int], int]


def collate(
    batch: Sequence[Item],
    *,
    pad_id: int,
    eos_id: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    allowed_max_length: int | None = None,
    mask_prompt: bool = False,
) -> tuple[Tensor, Tensor]:
    """Pad a batch of token-id lists to (B, T) inputs and targets (the book's collate).

    Each item (ids, or ``(ids, prompt_length)`` from `InstructionDataset`) gets the end
    token `eos_id` (default `pad_id`) appended; the batch is padded with `pad_id` to its
    longest item; targets are the inputs shifted by one. Every padding target becomes
    `ignore_index` except the first after the text, the end token, which the model
    must learn to produce so that generation stops. With `mask_prompt`, targets that are
    prompt tokens are ignored too (the model learns the response only). Finally both
    are cut to `allowed_max_length` tokens.
    """
    if len(batch) == 0:
        raise InputError("cannot collate an empty batch")
    eos_id = pad_id if eos_id is None else eos_id
    if allowed_max_length is not None:
        require_int("allowed_max_length", allowed_max_length)
    rows: list[list[int]] = []
    prompt_lengths: list[int] = []
    for item in batch:
        pair = isinstance(item, tuple) and len(item) == 2 and not isinstance(item[0], int)
        ids, prompt_len = (item[0], int(item[1])) if pair else (item, 0)
        if len(ids) == 0:
            raise InputError("cannot collate an empty token sequence")
        rows.append([*ids, eos_id])
        prompt_lengths.append(prompt_len)
    width = max(len(r) for r in rows)  # longest text + its end token
    inputs = torch.full((len(rows), width - 1), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width - 1), ignore_index, dtype=torch.long)
    for b, row in enumerate(rows):
        n = len(row) - 1  # real input positions; the last target is the end token
        inputs[b, :n] = torch.tensor(row[:-1])
        targets[b, :n] = torch.tensor(row[1:])
        if mask_prompt:
            # Position t predicts token t+1: the targets t+1 < prompt_len are prompt tokens.
            targets[b, : max(prompt_lengths[b] - 1, 0)] = ignore_index
    if allowed_max_length is not None:
        inputs, targets = inputs[:, :allowed_max_length], targets[:, :allowed_max_length]
    if not (targets != ignore_index).any():
        raise InputError(
            "no target token is left in this batch after masking and truncation; "
            f"allowed_max_length={allowed_max_length} is shorter than its prompts"
        )
    return inputs, targets


def instruction_collate(
    pad_id: int,
    eos_id: int | None = None,
    *,
    allowed_max_length: int | None = None,
    mask_prompt: bool = False,
) -> Callable[[Sequence[Item]], tuple[Tensor, Tensor]]:
    """`collate` with its settings fixed, for a DataLoader's ``collate_fn``."""
    return partial(
        collate,
        pad_id=pad_id,
        eos_id=eos_id,
        allowed_max_length=allowed_max_length,
        mask_prompt=mask_prompt,
    )


def instruction_loaders(
    splits: Sequence[Sequence[Entry]],
    tokenizer: Any,
    *,
    pad_id: int,
    eos_id: int | None = None,
    batch_size: int = 8,
    allowed_max_length: int | None = None,
    mask_prompt: bool = False,
    style: PromptStyle = ALPACA,
    num_workers: int = 0,
) -> list[DataLoader]:
    """One DataLoader per split: the first shuffled with its last partial batch dropped
    (training), the others in order and complete. Shuffling draws from PyTorch's global
    generator, so seeding first makes it repeatable."""
    fn = instruction_collate(
        pad_id, eos_id, allowed_max_length=allowed_max_length, mask_prompt=mask_prompt
    )
    return [
        make_loader(
            InstructionDataset(entries, tokenizer, style),
            batch_size,
            train=i == 0,
            collate_fn=fn,
            num_workers=num_workers,
        )
        for i, entries in enumerate(splits)
    ]


# --- responses -----------------------------------------------------------------------


def _same_entry(saved: object, entry: Entry) -> bool:
    return isinstance(saved, dict) and all(
        saved.get(k, "") == entry.get(k, "") for k in ("instruction", "input", "output")
    )


def load_responses(path: str | Path, entries: Sequence[Entry] | None = None) -> list[dict]:
    """Entries with responses saved by `generate_responses`; with `entries`, checks that the
    file holds those entries in that order."""
    path = Path(path)
    saved = validate_entries(read_json(path, " ({exc}); delete it to start again"), str(path))
    if entries is not None and (
        len(saved) != len(entries) or not all(map(_same_entry, saved, entries))
    ):
        raise DataError(
            f"{path} holds responses to other entries than these {len(entries)}; "
            "delete it or save to another path"
        )
    return saved


def _length_groups(lengths: Sequence[int], todo: Iterable[int], batch_size: int) -> list[list[int]]:
    """Indices in `todo` grouped by equal length, in chunks of at most `batch_size`."""
    by_length: dict[int, list[int]] = {}
    for i in todo:
        by_length.setdefault(lengths[i], []).append(i)
    return [
        group[k : k + batch_size]
        for _, group in sorted(by_length.items())
        for k in range(0, len(group), batch_size)
    ]


def continuations(
    model: nn.Module, tokenizer: Any, idx: Tensor, max_new_tokens: int, eos_id: int | None
) -> list[str]:
    """The text greedy decoding appends to each row of the (B, T) prompt ids `idx`, up
    to its first `eos_id`, in eval mode (each submodule's mode restored afterwards)."""
    from dlnotes.generate import generate

    with eval_mode(model):
        new = generate(model, idx, max_new_tokens, eos_id=eos_id)[:, idx.shape[1] :].tolist()
    return [tokenizer.decode(row[: row.index(eos_id)] if eos_id in row else row) for row in new]


def generate_responses(
    model: nn.Module,
    tokenizer: Any,
    entries: Sequence[Entry],
    *,
    eos_id: int,
    prompt: Callable[[Entry], str | Sequence[int]] = format_prompt,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    path: str | Path | None = None,
    key: str = RESPONSE_KEY,
    progress: bool = True,
) -> list[dict]:
    """Greedy responses to `entries`: copies of them with ``entry[key]`` set to the text.

    Prompts (``prompt(entry)``: text or ids; the Alpaca prompt by default) of equal token
    length are generated together with the KV cache (`dlnotes.generate.generate`),
    `batch_size` at a time; a response ends before the first `eos_id`. With `path`, the
    results are saved there (atomically) after every batch, and a rerun continues
    with the entries that still have no response.
    """
    from tqdm.auto import tqdm

    require_int("max_new_tokens", max_new_tokens)
    require_int("batch_size", batch_size)
    entries = validate_entries(list(entries))
    context = model.cfg.context_length
    ids = [encode_prompt(tokenizer, prompt(e)) for e in entries]
    for i, row in enumerate(ids):
        if not row:
            raise InputError(f"entry {i}: the prompt is empty")
        if len(row) > context:
            raise InputError(
                f"entry {i}: its prompt has {len(row):,} tokens, more than the model's "
                f"context of {context:,} ({entries[i]['instruction'][:40]!r}...)"
            )
    path = None if path is None else Path(path)
    if path is not None and path.is_file():
        out = load_responses(path, entries)
    else:
        out = [dict(e) for e in entries]
    todo = [i for i, e in enumerate(out) if not isinstance(e.get(key), str)]
    groups = _length_groups([len(r) for r in ids], todo, batch_size)
    device = device_of(model)
    quiet = {} if progress else {"disable": True}
    with tqdm(total=len(todo), unit="response", **quiet) as bar:
        for group in groups:
            batch = torch.tensor([ids[i] for i in group], device=device)
            texts = continuations(model, tokenizer, batch, max_new_tokens, eos_id)
            for i, text in zip(group, texts, strict=True):
                out[i][key] = text.strip()
            if path is not None:
                write_json(path, out)
            bar.update(len(group))
    if path is not None and not path.is_file():
        write_json(path, out)  # nothing was left to generate
    return out
