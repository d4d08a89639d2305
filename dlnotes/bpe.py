"""Byte-level byte-pair encoding (BPE): train, encode, decode, save and load.

Follows the layering of Karpathy's minbpe (https://github.com/karpathy/minbpe):
pure helpers (`pair_counts`, `merge`) first, then `BPETokenizer`, which adds
regex pre-tokenisation (GPT-2's pattern by default), special tokens handled like
tiktoken's ``allowed_special`` / ``disallowed_special``, a cache of encoded
pre-tokens, and training that updates pair counts incrementally. GPT-2's own
files and byte order live in `dlnotes.gpt2_tokenizer`, a thin subclass.

Speed: the split runs on Python's `re`, several times faster than `regex`, wherever the
pattern can be written for it exactly (texts without characters beyond U+FFFF); each
chunk is looked up in the cache, then among the whole tokens, and only then merged by
tiktoken's loop over a list of pair ranks.

Terms: a *pre-token* (or chunk) is one match of the split pattern, e.g. ``" world"``;
BPE never merges across chunks. A *merge* ``(left, right) -> new`` joins two
adjacent ids; merges apply in the order they were learned (lowest new id first).

Leaves out: Unicode normalisation, BPE dropout, training on streams or files
larger than memory, and parallel encoding.
"""

from __future__ import annotations

import functools
import heapq
import json
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import pairwise, repeat
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

    # Whether a chunk whose bytes are a token is that one token without merging. True of
    # GPT-2's vocabulary (tiktoken relies on it) and SmolLM2's (its tests try every token),
    # not of every set of merges, so subclasses opt in.
    whole_chunks: bool = False

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
        self._never = max(self.merges.values(), default=0) + 1  # ranks no merge has
        self._split = _splitter(pattern) if pattern is not None else None
        # With `whole_chunks`, the chunks that are one token, by bytes and by text (a chunk is
        # text, so only tokens of whole UTF-8 characters can be one): looked up before merging.
        specials = set(self.special_tokens.values())
        self._whole: dict[bytes, int] = {}
        if self.whole_chunks:
            self._whole = {b: i for i, b in self.vocab.items() if i not in specials}
        self._whole_text: dict[str, int] = {}
        for b, i in self._whole.items():
            try:
                self._whole_text[b.decode("utf-8")] = i
            except UnicodeDecodeError:
                pass
        # Bytes to their ids in one C call where every byte is a token below 256 (GPT-2's
        # bytes are ids 0..255 in another order).
        self._byte_table: bytes | None = None
        if all(i is not None and i < 256 for i in self.byte_ids):
            self._byte_table = bytes(self.byte_ids)  # type: ignore[arg-type]
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
        """Apply the merges to one chunk, earliest-learned pair first.

        As in tiktoken's ``byte_pair_merge``, ``ranks[k]`` is the rank of the pair at ``k``
        (a merge's new id is its rank: ids grow as merges are learned); each step merges
        the leftmost lowest pair and re-ranks only its two neighbours.
        """
        rank, never, table = self.merges.get, self._never, self._byte_table
        if table is not None:
            ids = list(chunk.translate(table))
        else:
            ids = [self.byte_ids[b] for b in chunk]
            if self._drops_bytes:
                ids = [i for i in ids if i is not None]
        ranks = list(map(rank, pairwise(ids), repeat(never)))
        while ranks:
            new = min(ranks)
            if new == never:
                break
            k = ranks.index(new)
            ids[k] = new
            del ids[k + 1], ranks[k]
            # One pair at a time gives what `merge` gives for all of them at once: the pairs
            # formed here hold `new`, so their merges were learned later and rank higher.
            if k:
                ranks[k - 1] = rank((ids[k - 1], new), never)
            if k < len(ranks):
                ranks[k] = rank((new, ids[k + 1]), never)
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
        # Bound methods: the loop runs once per chunk, tens of thousands of times. A chunk
        # that is one token (most are) is looked up first and never cached.
        whole, cached, append, extend = self._whole_text.get, cache.get, out.append, out.extend
        for chunk in self._chunks(text):
            one = whole(chunk)
            if one is not None:
                append(one)
                continue
            ids = cached(chunk)
            if ids is None:
                try:
                    ids = cache[chunk] = self._encode_chunk(chunk.encode("utf-8"))
                except UnicodeEncodeError:
                    # Lone surrogates cannot be UTF-8; like tiktoken, pair them up or make
                    # them U+FFFD, then start again.
                    return self.encode_ordinary(_fix_surrogates(text))
            extend(ids)
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
        other names are encoded as plain text. A single name may be given as a str.
        """
        if not isinstance(text, str):
            raise InputError(f"encode takes a str, got {type(text).__name__}")
        allowed_special, disallowed_special = (
            {names} if isinstance(names, str) and names != "all" else names
            for names in (allowed_special, disallowed_special)
        )
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


class _Splitter:
    """``findall`` for `pattern`: by Python's `re` where the pattern can be spelled for it
    exactly and the text has no character beyond U+FFFF (2-6x faster than `regex` on
    GPT-2's pattern), by `regex` otherwise."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._by_regex = regex.compile(pattern).findall
        ascii_form = _as_re(pattern, _class_bodies(0x80))
        self._by_ascii = None if ascii_form is None else ascii_form.findall

    def __call__(self, text: str) -> list[str]:
        if self._by_ascii is None:
            return self._by_regex(text)
        if text.isascii():  # O(1): CPython keeps the flag
            return self._by_ascii(text)
        if _ASTRAL.search(text) is None:
            return _bmp_splitter(self.pattern)(text)
        return self._by_regex(text)

    def __reduce__(self) -> tuple[Callable[[str], _Splitter], tuple[str]]:
        return _splitter, (self.pattern,)  # a tokenizer pickles; the compiled forms do not


@functools.cache
def _splitter(pattern: str) -> _Splitter:
    """One `_Splitter` per pattern, shared by the tokenizers that use it."""
    return _Splitter(pattern)


# `re` checks a set's characters beyond U+FFFF one range after another, which is slower
# than `regex`; those of the plane below it in one table look-up.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@functools.cache
def _bmp_splitter(pattern: str) -> Callable[[str], list[str]]:
    """Built on the first text that is not ASCII (tens of milliseconds: it reads the
    classes of the 65,536 code points below U+10000 from `regex`)."""
    bmp_form = _as_re(pattern, _class_bodies(0x10000))
    return regex.compile(pattern).findall if bmp_form is None else bmp_form.findall


# The classes we spell out for `re`; other escapes of letters (\w, \d, \b, \p{Lu}, ...) are
# left to `regex`, whose Unicode tables may differ from `re`'s.
_CLASSES = (r"\p{L}", r"\p{N}", r"\s")
_SAME_ESCAPES = {r"\A", r"\Z", r"\n", r"\r", r"\t"}
_SAME_GROUPS = {"(", "(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>"}
_PIECE = regex.compile(r"\\[pP]\{[^}]*\}|\\.|\[\^?\]?|\(\?(?:<[=!]|[:=!>])?|\{[^}]*\}|.", regex.S)
_QUANTIFIER = regex.compile(r"\{\d*(?:,\d*)?\}")


@functools.cache
def _class_bodies(limit: int) -> dict[str, str]:
    """For each of `_CLASSES`, the ranges of code points below `limit` that `regex` puts
    in it, written as the inside of a `re` set."""
    chars = "".join(map(chr, range(limit)))
    return {
        name: "".join(
            rf"\U{m.start():08x}-\U{m.end() - 1:08x}" for m in regex.finditer(name + "+", chars)
        )
        for name in _CLASSES
    }


def _as_re(pattern: str, bodies: Mapping[str, str]) -> re.Pattern[str] | None:
    r"""`pattern` compiled by `re`, with \p{L}, \p{N}, \s and \S written as sets of `bodies`'
    ranges; None if it uses syntax the two modules might read differently (flags, named
    or nested sets, set operations, other escapes of letters, fuzzy matching, ...) or that
    this Python's `re` lacks (possessive quantifiers before 3.11)."""
    out, in_set, last = [], False, ""
    for piece in _PIECE.findall(pattern):
        if piece in bodies:
            out.append(bodies[piece] if in_set else f"[{bodies[piece]}]")
        elif piece == r"\S" and not in_set:
            out.append("[^" + bodies[r"\s"] + "]")
        elif piece.startswith("\\"):
            if piece[1:2].isalnum() and piece not in _SAME_ESCAPES:
                return None
            out.append(piece)
        elif in_set:
            if piece[0] in "[({" or (piece == last and piece in "&|-~"):
                return None
            in_set = piece != "]"
            out.append(piece)
        elif piece[0] == "[":
            if piece.endswith("]"):  # "[]" or "[^]": a set that starts with "]"
                return None
            in_set = True
            out.append(piece)
        elif (piece[0] == "(" and piece not in _SAME_GROUPS) or (
            piece[0] == "{" and not _QUANTIFIER.fullmatch(piece)
        ):
            return None
        else:
            out.append(piece)
        last = piece
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. re's FutureWarning on a possible nested set
            return re.compile("".join(out))
    except (re.error, FutureWarning):
        return None


def _fix_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _split_specials(text: str, specials: Iterable[str]) -> list[tuple[str, bool]]:
    """``(piece, is_special)`` pairs: the non-empty text between specials, and the specials."""
    names = sorted(specials, key=len, reverse=True)  # longest first, so no name hides another
    if not names:
        return [(text, False)] if text else []
    parts = regex.split("(" + "|".join(map(regex.escape, names)) + ")", text)
    return [(part, k % 2 == 1) for k, part in enumerate(parts) if part]
