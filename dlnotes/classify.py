"""Finetuning a language model to classify texts: data, head, freezing, training, inference.

Follows Raschka, *Build a Large Language Model (From Scratch)*, ch06
(https://github.com/rasbt/LLMs-from-scratch/tree/main/ch06): the UCI SMS Spam
Collection, balanced and split as the book's pandas code does (same rows, same
order, without pandas); a dataset that pads every message with the pad id to one
length; a 2-class head in place of the vocabulary head; everything frozen but the
top; the *last* token's logits as the class scores; accuracy and loss over a loader;
the book's training loop (evaluation every N steps, accuracy after each epoch).

What it adds: a **prefix cache** (`PrefixCache`). The frozen bottom of the model
(embedding and blocks ``h[:k]``) runs in eval mode, so its output for a message
never changes; computed once, it lets every epoch run only the trainable top
``h[k:]`` and the head. `train_classifier` gives the same losses with and without the
cache (same seed, dropout masks included): in both, frozen layers run without
dropout and the trainable top draws from the random generator in the same order.

Works for every `dlnotes.base` model (GPT-2, Llama/SmolLM2, tiny): it uses only the
shared surface ``model(idx)``, ``model.embed``, ``model.h``, ``model.head``,
``model.lm_head``, ``model.ln_f`` and ``model.cfg``.

Leaves out: multi-label targets, class weights, attention masks for padding (the
book pads with the end-of-text id and classifies on the last position, padding
included), gradient accumulation and resuming (see `dlnotes.train`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    default_collate,
)
from tqdm.auto import tqdm

from dlnotes.atomic import atomic_write
from dlnotes.checkpoint import load_checkpoint, load_failure, save_checkpoint
from dlnotes.errors import CheckpointError, DataError, InputError, require_int, require_number
from dlnotes.loader import make_loader
from dlnotes.losses import AmpArg, amp_dtype, autocast, device_of, eval_mode
from dlnotes.train import History

if TYPE_CHECKING:
    from dlnotes.base import Base

LABELS: tuple[str, ...] = ("ham", "spam")  # class 0 and class 1, as the book maps them
CSV_COLUMNS = ("Label", "Text")  # the book's CSV header

__all__ = [
    "CSV_COLUMNS",
    "LABELS",
    "ClassificationDataset",
    "ClassifierHistory",
    "Message",
    "PrefixCache",
    "TopOfModel",
    "add_classification_head",
    "balance_classes",
    "batch_class_loss",
    "class_logits",
    "classify",
    "count_trainable",
    "frozen_prefix",
    "load_classifier",
    "load_csv",
    "loader_accuracy",
    "loader_class_loss",
    "make_loader",
    "make_loaders",
    "print_progress",
    "read_sms",
    "save_classifier",
    "save_csv",
    "set_dropout",
    "set_trainable",
    "sms_splits",
    "split_messages",
    "train_classifier",
]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Message:
    """One labelled text; `label` is the class index (0 ham, 1 spam for the SMS data)."""

    text: str
    label: int


def _label_index(value: str, labels: Sequence[str], where: str) -> int:
    """The class index of a label written as a name ("spam") or an index ("1")."""
    value = value.strip()
    if value in labels:
        return labels.index(value)
    if value.isdigit() and int(value) < len(labels):
        return int(value)
    known = ", ".join([*map(str, range(len(labels))), *labels])
    raise DataError(f"{where}: unknown label {value!r} (expected one of {known})")


def read_sms(
    path: str | Path | None = None, *, quoting: bool = True, labels: Sequence[str] = LABELS
) -> list[Message]:
    """The SMS Spam Collection (``label<TAB>text`` lines) as messages, in file order.

    With ``quoting=True`` (the default) a double quote at the start of a text opens a
    quoted field that runs to the next double quote, across tabs and line ends, as
    pandas' ``read_csv`` (and Python's `csv`) read it: the book's 5,572 messages from
    the file's 5,574 lines (one text opens a quote that only the text two lines below
    closes, so three lines become one message). ``quoting=False`` reads one message
    per line. `path` defaults to the data layer's copy (``data.fetch("sms-spam")``).
    """
    if path is None:
        from dlnotes import data

        path = data.fetch("sms-spam")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no SMS data file at {path}")
    options: dict[str, Any] = {"delimiter": "\t"}
    if not quoting:
        options["quoting"] = csv.QUOTE_NONE
    messages = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, **options)
            for row in reader:
                if not row:  # a blank line, skipped as pandas does
                    continue
                where = f"{path} line {reader.line_num}"
                if len(row) != 2:
                    raise DataError(f"{where}: expected 'label<TAB>text', got {len(row)} fields")
                messages.append(Message(row[1], _label_index(row[0], labels, where)))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a tab-separated file: {exc}") from None
    if not messages:
        raise DataError(f"{path} holds no messages")
    return messages


def balance_classes(messages: Sequence[Message], seed: int = 123) -> list[Message]:
    """Undersample every class to the size of the smallest one, class by class.

    A larger class keeps a random subset in the order pandas' ``sample(n,
    random_state=seed)`` picks it (NumPy's legacy `RandomState`: the first n of a
    permutation); a class of the smallest size is kept whole, in its order. The
    classes follow each other in label order: for the SMS data, the 747 sampled
    ham messages, then all 747 spam ones, as in the book.
    """
    classes = sorted({m.label for m in messages})
    if len(classes) < 2:
        raise InputError(f"balancing needs at least two classes, got labels {classes}")
    by_class = {c: [m for m in messages if m.label == c] for c in classes}
    smallest = min(len(group) for group in by_class.values())
    out: list[Message] = []
    for c in classes:
        group = by_class[c]
        if len(group) > smallest:
            pick = np.random.RandomState(seed).permutation(len(group))[:smallest]
            group = [group[i] for i in pick]
        out.extend(group)
    return out


def split_messages(
    messages: Sequence[Message], train_frac: float = 0.7, val_frac: float = 0.1, seed: int = 123
) -> tuple[list[Message], list[Message], list[Message]]:
    """Shuffle (pandas' ``sample(frac=1, random_state=seed)``), then cut into train,
    validation and test: ``int(n * train_frac)`` and ``int(n * val_frac)`` rows, the
    rest for testing (1,494 → 1,045 / 149 / 300)."""
    if not (0 < train_frac and 0 <= val_frac and train_frac + val_frac < 1):
        raise InputError(
            f"train_frac and val_frac must be positive and leave some test data, "
            f"got {train_frac} and {val_frac}"
        )
    order = np.random.RandomState(seed).permutation(len(messages))
    shuffled = [messages[i] for i in order]
    train_end = int(len(shuffled) * train_frac)
    val_end = train_end + int(len(shuffled) * val_frac)
    return shuffled[:train_end], shuffled[train_end:val_end], shuffled[val_end:]


def sms_splits(
    path: str | Path | None = None, seed: int = 123
) -> tuple[list[Message], list[Message], list[Message]]:
    """The book's train / validation / test messages: read, balance, split (seed 123)."""
    return split_messages(balance_classes(read_sms(path), seed), seed=seed)


def save_csv(path: str | Path, messages: Iterable[Message]) -> Path:
    """Write messages as a CSV with the book's columns ``Label,Text`` (label as index),
    atomically: an interrupted write leaves any previous file intact."""
    path = Path(path)
    buffer = io.StringIO(newline="")  # csv quotes a text with line breaks; keep them as they are
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in messages:
        writer.writerow((m.label, m.text))
    with atomic_write(path, "wb") as fh:
        fh.write(buffer.getvalue().encode("utf-8"))
    return path


def load_csv(path: str | Path, labels: Sequence[str] = LABELS) -> list[Message]:
    """Messages from a CSV with columns ``Label`` and ``Text`` (others ignored); a label
    may be an index ("1") or a name ("spam"). Problems are one-line `DataError`s."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no CSV file at {path}")
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            missing = [c for c in CSV_COLUMNS if c not in columns]
            if missing:
                raise DataError(
                    f"{path}: missing column {missing[0]!r} (the header has "
                    f"{', '.join(map(repr, columns)) or 'nothing'}; expected Label,Text)"
                )
            messages = []
            for row in reader:
                where = f"{path} line {reader.line_num}"
                if row["Label"] is None or row["Text"] is None:
                    raise DataError(f"{where}: the row has fewer fields than the header")
                messages.append(Message(row["Text"], _label_index(row["Label"], labels, where)))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from None
    return messages


class ClassificationDataset(Dataset):
    """Messages as token ids of one length `max_length`, padded with `pad_id`.

    `max_length` defaults to the longest encoded message (capped at
    `context_length`); longer messages are truncated to it, with a warning that says
    how many. Item k is ``(ids, label)``: a (max_length,) and a () long tensor.
    """

    def __init__(
        self,
        messages: Sequence[Message],
        tokenizer: Any,
        max_length: int | None = None,
        pad_id: int = 50256,
        context_length: int | None = None,
    ) -> None:
        if not messages:
            raise InputError("no messages: the dataset needs at least one")
        encoded = []
        for i, m in enumerate(messages):
            if not isinstance(m.text, str) or not m.text.strip():
                raise InputError(f"message {i} is empty: every message needs some text")
            encoded.append(tokenizer.encode(m.text))
        self.lengths = [len(ids) for ids in encoded]  # before truncation
        longest = max(self.lengths)
        if max_length is None:
            max_length = longest if context_length is None else min(longest, context_length)
        self.max_length = require_int("max_length", max_length)
        if context_length is not None and self.max_length > context_length:
            raise InputError(
                f"max_length={self.max_length} is longer than the model's context "
                f"{context_length}: use max_length <= {context_length}"
            )
        self.truncated = sum(n > self.max_length for n in self.lengths)
        if self.truncated:
            warnings.warn(
                f"truncated {self.truncated} of {len(messages)} messages longer than "
                f"{self.max_length} tokens (the longest has {longest})",
                stacklevel=2,
            )
        self.pad_id = pad_id
        rows = [ids[: self.max_length] for ids in encoded]
        self.ids = torch.tensor([r + [pad_id] * (self.max_length - len(r)) for r in rows])
        self.labels = torch.tensor([m.label for m in messages], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        return self.ids[k], self.labels[k]


def make_loaders(
    train: Dataset, val: Dataset, test: Dataset, batch_size: int = 8
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Training (shuffled, drop_last), validation and test loaders of `batch_size`."""
    return (
        make_loader(train, batch_size, train=True),
        make_loader(val, batch_size),
        make_loader(test, batch_size),
    )


# --------------------------------------------------------------------------- model


def add_classification_head(model: nn.Module, num_classes: int = 2) -> nn.Linear:
    """Replace ``model.lm_head`` by a fresh ``nn.Linear(emb_dim, num_classes)`` (trainable,
    on the model's device and dtype) and return it. A head tied to the token embedding
    is untied by this: the embedding keeps its weights."""
    num_classes = require_int("num_classes", num_classes, minimum=2)
    like = model.ln_f.weight if hasattr(model.ln_f, "weight") else next(model.parameters())
    head = nn.Linear(model.cfg.emb_dim, num_classes)
    model.lm_head = head.to(device=like.device, dtype=like.dtype)
    return model.lm_head


def count_trainable(model: nn.Module) -> int:
    """Parameters that receive gradients (a shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_trainable(model: nn.Module, blocks: int | str = 1) -> int:
    """Freeze the model except its last `blocks` transformer blocks, the final norm and
    the head (``blocks="all"``: train everything); return the trainable count."""
    n_layers = len(model.h)
    if blocks == "all":
        blocks = n_layers
    elif isinstance(blocks, str):
        raise InputError(f"blocks must be an integer or 'all', got {blocks!r}")
    blocks = require_int("blocks", blocks, minimum=0)
    if blocks > n_layers:
        raise InputError(f"blocks={blocks} but the model has only {n_layers} blocks")
    for p in model.parameters():
        p.requires_grad_(blocks == n_layers)
    for module in [*model.h[n_layers - blocks :], model.ln_f, model.lm_head]:
        for p in module.parameters():
            p.requires_grad_(True)
    return count_trainable(model)


def _embedding_modules(model: nn.Module) -> list[nn.Module]:
    """The model's children that are neither blocks, final norm nor head: the embedding."""
    top = {id(model.h), id(model.ln_f), id(model.lm_head)}
    return [child for child in model.children() if id(child) not in top]


def _frozen(modules: Iterable[nn.Module]) -> bool:
    return not any(p.requires_grad for m in modules for p in m.parameters())


def frozen_prefix(model: nn.Module) -> int:
    """How many leading blocks have no trainable parameter, with the embedding before
    them frozen too (0 when the embedding trains): the part `PrefixCache` can cache."""
    if not _frozen(_embedding_modules(model)):
        return 0
    k = 0
    while k < len(model.h) and _frozen([model.h[k]]):
        k += 1
    return k


def set_dropout(model: nn.Module, p: float) -> nn.Module:
    """Set every dropout rate in the model to `p` (the book's ch06 uses 0.0 for GPT-2);
    the configuration records it too."""
    require_number("dropout", p, "[0, 1)")
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        elif isinstance(getattr(m, "dropout", None), float):  # attention's own rate (SDPA)
            m.dropout = p
    cfg = getattr(model, "cfg", None)
    if dataclasses.is_dataclass(cfg) and hasattr(cfg, "drop_rate"):
        model.cfg = dataclasses.replace(cfg, drop_rate=p)
    return model


def _train_mode(net: nn.Module) -> None:
    """Training mode for the trainable part; a frozen prefix runs as at inference
    (no dropout), a fixed feature extractor whose output `PrefixCache` may store."""
    net.train()
    if hasattr(net, "h") and hasattr(net, "embed"):
        k = frozen_prefix(net)
        if k:
            for m in [*_embedding_modules(net), *net.h[:k]]:
                m.eval()


def class_logits(model: nn.Module, inputs: Tensor, position: int = -1) -> Tensor:
    """(B, T) ids (or a `TopOfModel`'s (B, T, D) inputs) -> (B, C) class scores: the
    output at `position`, the last one by default (under the causal mask the only
    position that has seen the whole message)."""
    return model(inputs)[:, position, :]


def batch_class_loss(
    model: nn.Module, inputs: Tensor, labels: Tensor, position: int = -1
) -> Tensor:
    """Mean cross-entropy of the class scores at `position` against the (B,) labels."""
    device = device_of(model)
    logits = class_logits(model, inputs.to(device, non_blocking=True), position)
    return F.cross_entropy(logits.float(), labels.to(device))


def _n_batches(loader: Iterable, num_batches: int | None) -> int:
    available = len(loader)  # type: ignore[arg-type]
    if available == 0:
        raise InputError("the data loader has no batches (too few examples for one batch)")
    if num_batches is None:
        return available
    return min(require_int("num_batches", num_batches), available)


@torch.no_grad()
def loader_class_loss(
    model: nn.Module,
    loader: Iterable,
    num_batches: int | None = None,
    *,
    position: int = -1,
    amp: AmpArg = None,
) -> float:
    """Average `batch_class_loss` over the first `num_batches` batches (all if None),
    in eval mode (each submodule's mode restored afterwards)."""
    n = _n_batches(loader, num_batches)
    device = device_of(model)
    total = torch.zeros((), device=device)
    with eval_mode(model), autocast(device, amp_dtype(device, amp)):
        for i, (inputs, labels) in enumerate(loader):
            if i == n:
                break
            total += batch_class_loss(model, inputs, labels, position)
    return total.item() / n


@torch.no_grad()
def loader_accuracy(
    model: nn.Module,
    loader: Iterable,
    num_batches: int | None = None,
    *,
    position: int = -1,
    amp: AmpArg = None,
) -> float:
    """Fraction of examples whose highest class score is their label, over the first
    `num_batches` batches (all if None), in eval mode."""
    n = _n_batches(loader, num_batches)
    device = device_of(model)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    with eval_mode(model), autocast(device, amp_dtype(device, amp)):
        for i, (inputs, labels) in enumerate(loader):
            if i == n:
                break
            pred = class_logits(model, inputs.to(device), position).argmax(dim=-1)
            correct += (pred == labels.to(device)).sum()
            seen += len(labels)
    return correct.item() / seen


# --------------------------------------------------------------------------- prefix cache


class TopOfModel(nn.Module):
    """The trainable top of a model: blocks ``h[k:]`` and the head, taking the (B, T, D)
    output of block k-1. It holds the model's own modules (not copies), so training it
    trains the model."""

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        self.k = k
        self.blocks = nn.ModuleList(model.h[k:])
        self.ln_f = model.ln_f
        self.lm_head = model.lm_head
        self._head = model.head  # the model's own head function (norm, output layer)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self._head(x)


class PrefixCache:
    """Outputs of a model's frozen bottom (embedding and blocks ``h[:k]``) per message.

    ``cache.loader(loader)`` gives a loader over the stored (B, T, D) block outputs in
    place of the token ids, with the same batch size, order and drop_last (a shuffled
    one draws its order from the same generator), and ``cache.top`` is the model's
    top that consumes them. `k` defaults to `frozen_prefix(model)`. The outputs are
    kept in memory on the model's device: messages × length × width floats
    (GPT-2 124M, the SMS training set: 1,045 × 120 × 768 × 4 bytes ≈ 385 MB).
    """

    def __init__(
        self, model: nn.Module, k: int | None = None, *, batch_size: int = 32, amp: AmpArg = None
    ) -> None:
        n_frozen = frozen_prefix(model)
        k = n_frozen if k is None else require_int("k", k, minimum=0)
        if k == 0:
            raise InputError(
                "nothing to cache: the embedding or the first block is trainable "
                "(freeze the bottom with set_trainable, or train without a cache)"
            )
        if k > n_frozen:
            raise InputError(f"k={k} but only the first {n_frozen} blocks are frozen")
        if k == len(model.h):
            raise InputError("k must leave at least one block to train on top of the cache")
        self.model, self.k = model, k
        self.batch_size = require_int("batch_size", batch_size)
        self.amp = amp
        self.top = TopOfModel(model, k)
        self.seconds = 0.0  # time spent computing the cached outputs
        self._loaders: dict[int, tuple[DataLoader, DataLoader]] = {}

    @torch.no_grad()
    def features(self, ids: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, D) output of block k-1, computed in eval mode."""
        model = self.model
        device = device_of(model)
        with eval_mode(model), autocast(device, amp_dtype(device, self.amp)):
            x = model.embed(ids.to(device))
            for block in model.h[: self.k]:
                x = block(x)
        return x

    def check(self) -> None:
        """Raise `InputError` if the cached part of the model has become trainable."""
        if frozen_prefix(self.model) < self.k:
            raise InputError(
                f"the prefix cache holds blocks 0..{self.k - 1}, but some of them (or the "
                "embedding) are trainable now: build a new PrefixCache"
            )

    def loader(self, loader: DataLoader) -> DataLoader:
        """The cached-output version of `loader` (computed on first use, then kept)."""
        self.check()
        key = id(loader)
        if key in self._loaders and self._loaders[key][0] is loader:
            return self._loaders[key][1]
        sampler = loader.sampler
        if isinstance(sampler, RandomSampler):
            if sampler.replacement or sampler._num_samples is not None:
                raise InputError("PrefixCache supports shuffling without replacement only")
            generator = sampler.generator
        elif isinstance(sampler, SequentialSampler):
            generator = None
        else:
            raise InputError(
                f"PrefixCache needs a loader that shuffles or keeps the order, got a "
                f"{type(sampler).__name__}"
            )
        dataset = loader.dataset
        start = time.perf_counter()
        feats, labels = [], []
        # Batches by hand: iterating a DataLoader draws a seed from the global generator,
        # which would shift the shuffling and dropout of the training that follows.
        n = len(dataset)
        for i in tqdm(range(0, n, self.batch_size), desc="caching", unit="batch", leave=False):
            ids, lab = default_collate([dataset[j] for j in range(i, min(i + self.batch_size, n))])
            feats.append(self.features(ids))
            labels.append(lab.to(feats[-1].device))
        self.seconds += time.perf_counter() - start
        cached = DataLoader(
            TensorDataset(torch.cat(feats), torch.cat(labels)),
            batch_size=loader.batch_size,
            shuffle=isinstance(sampler, RandomSampler),
            drop_last=loader.drop_last,
            generator=generator,
        )
        self._loaders[key] = (loader, cached)
        return cached


# --------------------------------------------------------------------------- training


@dataclass
class ClassifierHistory(History):
    """`History` of a classifier run: losses at every evaluation (with examples seen),
    accuracies after every epoch, and each epoch's wall time."""

    examples_seen: list[int] = field(default_factory=list)  # at each evaluation
    epoch_examples: list[int] = field(default_factory=list)  # at each epoch's end
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)  # training and evaluation
    cache_seconds: float = 0.0  # computing the prefix cache (0 without one)


def print_progress(epoch: int, history: ClassifierHistory) -> None:
    """An ``on_eval`` callback: step, examples seen, latest train and val loss."""
    tqdm.write(
        f"Ep {epoch + 1} (step {history.eval_steps[-1] - 1:06d}, "
        f"{history.examples_seen[-1]:,} examples): "
        f"train loss {history.train_loss[-1]:.3f}, val loss {history.val_loss[-1]:.3f}"
    )


def train_classifier(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int = 5,
    eval_every: int = 50,
    eval_batches: int | None = 5,
    position: int = -1,
    cache: PrefixCache | bool = False,
    amp: AmpArg = None,
    max_steps: int | None = None,
    on_eval: Callable[[int, ClassifierHistory], None] | None = None,
    on_epoch_end: Callable[[int, ClassifierHistory], None] | None = None,
    progress: bool = True,
) -> ClassifierHistory:
    """Train the trainable parameters of `model` (a `set_trainable`-frozen classifier)
    for `epochs`, the book's ``train_classifier_simple``.

    Evaluates the loss on `eval_batches` batches of each loader after the first step
    and every `eval_every` steps after it (steps 0, 50, 100, ...), and the accuracy on
    as many batches after every epoch. With `cache` (a `PrefixCache`, or True for one
    over `frozen_prefix(model)` blocks) the frozen bottom runs once per message and
    the epochs run only the top: the same losses, much faster. `max_steps` stops early.
    """
    epochs = require_int("epochs", epochs)
    eval_every = require_int("eval_every", eval_every)
    if cache is True:
        cache = PrefixCache(model, amp=amp)
    history = ClassifierHistory()
    net: nn.Module = model
    if isinstance(cache, PrefixCache):
        if cache.model is not model:
            raise InputError("the PrefixCache was built for another model")
        before = cache.seconds
        train_loader, val_loader = cache.loader(train_loader), cache.loader(val_loader)
        history.cache_seconds = cache.seconds - before
        net = cache.top
    if len(train_loader) == 0:
        raise InputError("the training loader has no batches (fewer examples than one batch)")
    trainable = [p for p in net.parameters() if p.requires_grad]
    if not trainable:
        raise InputError("the model has no trainable parameters (see set_trainable)")
    device = device_of(net)
    dtype = amp_dtype(device, amp)
    total = epochs * len(train_loader)
    if max_steps is not None:
        total = min(total, require_int("max_steps", max_steps))
    step = examples = tokens = 0
    pending: list[Tensor] = []  # step losses stay on the device until an evaluation

    def flush() -> None:
        if pending:
            history.step_loss.extend(torch.stack(pending).tolist())
            pending.clear()

    quiet = {} if progress else {"disable": True}
    with tqdm(total=total, unit="step", **quiet) as bar:
        for epoch in range(epochs):
            start = time.perf_counter()
            _train_mode(net)
            for inputs, labels in train_loader:
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, dtype):
                    loss = batch_class_loss(net, inputs, labels, position)
                loss.backward()
                history.lr.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                pending.append(loss.detach())
                step += 1
                examples += inputs.shape[0]
                tokens += inputs.shape[0] * inputs.shape[1]
                bar.update()
                if (step - 1) % eval_every == 0:
                    flush()
                    history.eval_steps.append(step)
                    history.examples_seen.append(examples)
                    history.tokens_seen.append(tokens)
                    for losses, loader in (
                        (history.train_loss, train_loader),
                        (history.val_loss, val_loader),
                    ):
                        losses.append(
                            loader_class_loss(
                                net, loader, eval_batches, position=position, amp=dtype
                            )
                        )
                    bar.set_postfix(
                        train=f"{history.train_loss[-1]:.3f}", val=f"{history.val_loss[-1]:.3f}"
                    )
                    if on_eval is not None:
                        on_eval(epoch, history)
                if step >= total:
                    break
            flush()
            for accs, loader in ((history.train_acc, train_loader), (history.val_acc, val_loader)):
                accs.append(
                    loader_accuracy(net, loader, eval_batches, position=position, amp=dtype)
                )
            history.epoch_examples.append(examples)
            history.epoch_seconds.append(time.perf_counter() - start)
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
            if step >= total:
                break
    if any(not math.isfinite(x) for x in history.step_loss):
        warnings.warn("some training losses are not finite: lower the learning rate", stacklevel=2)
    return history


# --------------------------------------------------------------------------- inference, files


def classify(
    text: str,
    base: Base,
    model: nn.Module | None = None,
    *,
    max_length: int | None = None,
    position: int = -1,
    labels: Sequence[str] = LABELS,
) -> str:
    """The label the classifier gives `text`: encoded with the base's tokenizer,
    truncated to the context (with a warning) and padded with its pad id to
    `max_length` (the training length; None: no padding). `model` defaults to
    ``base.model`` (with its classification head)."""
    model = base.model if model is None else model
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text to classify is empty")
    ids = base.tokenizer.encode(text)
    # The context length is the number of positions (the book reads the embedding width).
    context = base.context_length
    limit = context if max_length is None else min(require_int("max_length", max_length), context)
    if len(ids) > limit:
        warnings.warn(f"truncated the text from {len(ids)} to {limit} tokens", stacklevel=2)
        ids = ids[:limit]
    if max_length is not None:
        ids = ids + [base.pad_id] * (limit - len(ids))
    device = device_of(model)
    with torch.no_grad(), eval_mode(model):
        scores = class_logits(model, torch.tensor([ids], device=device), position)
    n = scores.shape[-1]
    if n != len(labels):
        raise InputError(f"the model has {n} classes but {len(labels)} labels were given")
    return labels[int(scores.argmax(dim=-1))]


_KIND = "dlnotes-classifier"


def save_classifier(
    path: str | Path,
    model: nn.Module,
    base: Base,
    *,
    labels: Sequence[str] = LABELS,
    max_length: int | None = None,
    position: int = -1,
) -> Path:
    """Save the classifier's weights atomically with what inference needs: the base's
    name, the labels, the training length and the position classified on."""
    n = model.lm_head.out_features
    if n != len(labels):
        raise InputError(f"the model has {n} classes but {len(labels)} labels were given")
    info = {
        "kind": _KIND,
        "base": base.name,
        "labels": list(labels),
        "max_length": max_length,
        "position": position,
    }
    return save_checkpoint(path, model, extra={"classifier": info})


def _peek(path: Path) -> dict[str, Any]:
    """The classifier record of a checkpoint, read without loading its tensors."""
    if not path.is_file():
        raise CheckpointError(f"no classifier checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointError(f"{path} is not a readable checkpoint: {load_failure(exc)}") from None
    info = payload.get("extra", {}).get("classifier") if isinstance(payload, dict) else None
    if not isinstance(info, dict) or info.get("kind") != _KIND:
        raise CheckpointError(f"{path} is not a classifier checkpoint (see save_classifier)")
    return info


def load_classifier(path: str | Path, base: Base) -> dict[str, Any]:
    """Give ``base.model`` the saved classification head and weights; return the saved
    labels, max_length and position. A checkpoint of another base is a
    `CheckpointError`, and the model is left unchanged on any error."""
    path = Path(path)
    info = _peek(path)
    if info["base"] != base.name:
        raise CheckpointError(
            f"{path} is a classifier of base {info['base']!r}, not {base.name!r}: "
            f"load_base({info['base']!r}) first"
        )
    model = base.model
    old_head = model.lm_head
    add_classification_head(model, len(info["labels"]))
    try:
        load_checkpoint(path, model, restore_rng=False)
    except CheckpointError:
        model.lm_head = old_head
        raise
    model.eval()
    return {k: info[k] for k in ("labels", "max_length", "position")}
