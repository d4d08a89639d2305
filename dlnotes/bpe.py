"""Byte-level byte-pair encoding (BPE): train, encode, decode, save and load.

Follows the layering of Karpathy's minbpe (https://github.com/karpathy/minbpe):
pure helpers (`pair_counts`, `merge`) first, then `BPETokenizer`, which adds
regex pre-tokenisation (GPT-2's pattern by default), special tokens handled like
tiktoken's ``allowed_special`` / ``disallowed_special``, a cache of encoded
pre-tokens, and training that updates pair counts incrementally. GPT-2's own
files and byte order live in `dlnotes.gpt2_tokenizer`, a thin subclass.

Terms: a *pre-token* (or chunk) is one match of the split pattern, e.g. ``" world"``;
BPE never merges across chunks. A *merge* ``(left, right) -> new`` joins two
adjacent ids; merges apply in the order they were learned (lowest new id first).

Leaves out: Unicode normalisation, BPE dropout, training on streams or files
larger than memory, and parallel encoding.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Literal

import regex

from dlnotes.atomic import atomic_write
from dlnotes.errors import DataError, InputError
from dlnotes.text import as_token_ids

Pair = tuple[int, int]

# GPT-2's split pattern in tiktoken's faster, equivalent form (possessive quantifiers).
# `\Z` (end of text) where tiktoken's Rust regex writes `$`: Python's `$` would also
# match before a final newline.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++\Z|\s+(?!\S)|\s"""
)
_CACHE_LIMIT = 1 << 17
_FORMAT = "dlnotes-bpe"


def pair_counts(ids: Sequence[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    """Count adjacent pairs in `ids`, adding to `counts` if given.

    >>> pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each non-overlapping occurrence of `pair` in `ids`, left to right.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([7, 7, 7], (7, 7), 8)
    [8, 7]
    """
    out: list[int] = []
    i, n = 0, len(ids)
    left, right = pair
    while i < n:
        if i + 1 < n and ids[i] == left and ids[i + 1] == right:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """Byte-level BPE with regex pre-tokenisation and special tokens.

    `merges` maps ``(left, right) -> new id`` in the order the merges were learned;
    `byte_ids[b]` is the id of the single byte ``b`` (``b`` itself unless a
    subclass reorders them, as GPT-2 does), or None if the vocabulary has no token
    for it: encoding then drops that byte, as Hugging Face's tokenizers do.

    >>> tok = BPETokenizer.train("aaabdaaabac", 256 + 3, pattern=None)
    >>> tok.encode("aaabdaaabac")  # the Wikipedia example: a a -> Z, a b -> Y, Z Y -> X
    [258, 100, 258, 97, 99]
    >>> tok.decode([258, 100])
    'aaabd'
    """

    def __init__(
        self,
        merges: Mapping[Pair, int] | Iterable[tuple[Pair, int]] = (),
        *,
        pattern: str | None = GPT2_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
        byte_ids: Sequence[int | None] | None = None,
    ) -> None:
        self.merges: dict[Pair, int] = dict(merges)
        self.pattern = pattern
        self.special_tokens: dict[str, int] = dict(special_tokens or {})
        self.byte_ids: list[int | None] = list(range(256)) if byte_ids is None else list(byte_ids)
        self._drops_bytes = None in self.byte_ids
        self.vocab = self._build_vocab()
        self._split = regex.compile(pattern).findall if pattern is not None else None
        self._cache: dict[str, list[int]] = {}

    def _build_vocab(self) -> dict[int, bytes]:
        """id -> bytes, checking that every id is defined once and before it is used."""
        present = [i for i in self.byte_ids if i is not None]
        if len(set(present)) != len(present) or len(self.byte_ids) != 256:
            raise InputError(
                f"byte_ids must be 256 distinct ids (None for a byte without a token), "
                f"got {len(self.byte_ids)}"
            )
        vocab = {i: bytes([b]) for b, i in enumerate(self.byte_ids) if i is not None}
        last = -1
        for (left, right), new in self.merges.items():
            # Encoding uses a merge's new id as its rank, so the ids must grow.
            if left not in vocab or right not in vocab or new in vocab or new <= last:
                raise InputError(
                    f"merge ({left}, {right}) -> {new} uses an undefined id or does not get a "
                    "new, larger id; merges must be listed in the order they were learned"
                )
            vocab[new], last = vocab[left] + vocab[right], new
        for name, i in self.special_tokens.items():
            if i in vocab:
                raise InputError(f"special token {name!r} has id {i}, already in use")
            vocab[i] = name.encode("utf-8")
        return vocab

    @property
    def n_vocab(self) -> int:
        """Number of ids, special tokens included (as tiktoken's ``n_vocab``)."""
        return len(self.vocab)

    @property
    def special_tokens_set(self) -> set[str]:
        """Names of the special tokens (as tiktoken's ``special_tokens_set``)."""
        return set(self.special_tokens)

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        *,
        pattern: str | None = GPT2_PATTERN,
        special_tokens: Sequence[str] = (),
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from `text`.

        Each step merges the most frequent pair (ties: the smallest pair of ids).
        Only the distinct chunks that contain the merged pair are rewritten, and
        the pair counts change by what those chunks lost and gained.
        """
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise InputError(
                f"vocab_size={vocab_size} is too small: the 256 bytes and "
                f"{len(special_tokens)} special token(s) need at least {256 + len(special_tokens)}"
            )
        chunks: Counter[bytes] = Counter()
        for segment, is_special in _split_specials(text, special_tokens):
            if is_special:
                continue
            pieces = regex.findall(pattern, segment) if pattern is not None else [segment]
            chunks.update(piece.encode("utf-8") for piece in pieces if piece)
        words = [list(chunk) for chunk in chunks]
        freqs = list(chunks.values())

        counts: dict[Pair, int] = defaultdict(int)
        where: dict[Pair, set[int]] = defaultdict(set)  # pair -> indices of words holding it
        for w, ids in enumerate(words):
            for pair in pairwise(ids):
                counts[pair] += freqs[w]
                where[pair].add(w)
        heap = [(-c, pair) for pair, c in counts.items()]
        heapq.heapify(heap)

        merges: dict[Pair, int] = {}
        for new_id in range(256, 256 + n_merges):
            # Entries go stale when a count changes; the current one is re-pushed then.
            while heap and counts.get(heap[0][1], 0) != -heap[0][0]:
                heapq.heappop(heap)
            if not heap:
                raise InputError(
                    f"vocab_size={vocab_size} is more than this text supports: after "
                    f"{len(merges):,} merges every chunk is a single token (largest possible "
                    f"vocab_size: {256 + len(merges) + len(special_tokens):,})"
                )
            pair = heapq.heappop(heap)[1]
            merges[pair] = new_id
            delta: dict[Pair, int] = defaultdict(int)
            for w in where.pop(pair):
                old, new = words[w], merge(words[w], pair, new_id)
                words[w] = new
                old_pairs, new_pairs = set(pairwise(old)), set(pairwise(new))
                for p in pairwise(old):
                    delta[p] -= freqs[w]
                for p in pairwise(new):
                    delta[p] += freqs[w]
                for p in old_pairs - new_pairs:
                    where[p].discard(w)
                for p in new_pairs - old_pairs:
                    where[p].add(w)
            for p, change in delta.items():
                if change:
                    counts[p] += change
                    if counts[p] > 0:
                        heapq.heappush(heap, (-counts[p], p))
                    else:
                        del counts[p]
                        where.pop(p, None)
        specials = {name: 256 + n_merges + k for k, name in enumerate(special_tokens)}
        return cls(merges, pattern=pattern, special_tokens=specials)

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """Apply the merges to one chunk, earliest-learned pair first."""
        rank = self.merges.get  # a merge's new id is also its rank: ids grow as merges are learned
        ids = [self.byte_ids[b] for b in chunk]
        if self._drops_bytes:
            ids = [i for i in ids if i is not None]
        while len(ids) > 1:
            new_id, pair = min((rank(p, _NEVER), p) for p in pairwise(ids))
            if new_id == _NEVER:
                break
            ids = merge(ids, pair, new_id)
        return ids

    def clear_cache(self) -> None:
        """Forget the encoded pre-tokens (e.g. to time encoding from cold)."""
        self._cache.clear()

    def _chunks(self, text: str) -> list[str]:
        if self._split is None:
            return [text] if text else []
        return self._split(text)

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids for `text`, treating special-token names as plain text."""
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        cache, out = self._cache, []
        for chunk in self._chunks(text):
            ids = cache.get(chunk)
            if ids is None:
                try:
                    ids = self._encode_chunk(chunk.encode("utf-8"))
                except UnicodeEncodeError:
                    # Lone surrogates cannot be UTF-8; like tiktoken, pair them up or make
                    # them U+FFFD, then start again.
                    return self.encode_ordinary(_fix_surrogates(text))
                cache[chunk] = ids
            out.extend(ids)
        return out

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | Iterable[str] = frozenset(),
        disallowed_special: Literal["all"] | Iterable[str] = "all",
    ) -> list[int]:
        """Ids for `text`, with tiktoken's rules for special tokens.

        Names in `allowed_special` become their special id; finding a name from
        `disallowed_special` (by default every special not allowed) is an error;
        other names are encoded as plain text.
        """
        allowed = set(self.special_tokens if allowed_special == "all" else allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise InputError(
                f"allowed_special names unknown special token(s) {sorted(unknown)}; "
                f"this tokenizer has {sorted(self.special_tokens)}"
            )
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = set(disallowed_special)
        if disallowed:
            found = regex.search("|".join(map(regex.escape, disallowed)), text)
            if found:
                raise InputError(
                    f"text contains the special token {found.group()!r} at character "
                    f"{found.start():,}: pass allowed_special={{{found.group()!r}}} to encode "
                    "it as a special token, or disallowed_special=() to encode it as text"
                )
        out: list[int] = []
        for piece, is_special in _split_specials(text, allowed):
            if is_special:
                out.append(self.special_tokens[piece])
            else:
                out.extend(self.encode_ordinary(piece))
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that `ids` (a sequence, or a 1-D array or tensor, of integers) stand for."""
        ids = as_token_ids(ids, "decode's ids")
        try:
            return b"".join([self.vocab[i] for i in ids])
        except KeyError:
            bad = next(i for i in ids if i not in self.vocab)
            raise InputError(
                f"cannot decode id {bad!r}: this tokenizer has ids 0 to {max(self.vocab):,}"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text for `ids`; bytes that are not valid UTF-8 become U+FFFD, as in tiktoken."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def save(self, path: str | Path) -> Path:
        """Write merges, byte order, pattern and specials as JSON; returns the path."""
        state = {
            "format": _FORMAT,
            "version": 1,
            "pattern": self.pattern,
            "byte_ids": self.byte_ids,
            "merges": [[left, right, new] for (left, right), new in self.merges.items()],
            "special_tokens": self.special_tokens,
        }
        with atomic_write(path, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a file written by `save`."""
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("format") != _FORMAT:
                raise ValueError(f"format is {state.get('format')!r}, expected {_FORMAT!r}")
            merges = {(int(a), int(b)): int(new) for a, b, new in state["merges"]}
            return cls(
                merges,
                pattern=state["pattern"],
                special_tokens=state["special_tokens"],
                byte_ids=state["byte_ids"],
            )
        except OSError as exc:
            raise DataError(f"cannot read tokenizer file {path}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path} is not a dlnotes BPE tokenizer file ({exc})") from None


_NEVER = float("inf")


def _fix_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _split_specials(text: str, specials: Iterable[str]) -> list[tuple[str, bool]]:
    """``(piece, is_special)`` pairs: the non-empty text between specials, and the specials."""
    names = sorted(specials, key=len, reverse=True)  # longest first, so no name hides another
    if not names:
        return [(text, False)] if text else []
    parts = regex.split("(" + "|".join(map(regex.escape, names)) + ")", text)
    return [(part, k % 2 == 1) for k, part in enumerate(parts) if part]
