"""Word-level tokenisation: a regex splitter, a vocabulary and a simple tokenizer.

Follows Raschka, *Build a Large Language Model (From Scratch)*, sections 2.2-2.4
(https://github.com/rasbt/LLMs-from-scratch, ch02): split on punctuation, ``--``
and whitespace, number the distinct words, and map text to ids and back. With an
``<|unk|>`` entry, unknown words map to it; without one, they are an error.

Leaves out: lower-casing, stemming and sub-word units (for those see
`dlnotes.bpe`), and an exact round trip (decoding rebuilds spacing by a rule).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence

from dlnotes.errors import InputError

UNK = "<|unk|>"
ENDOFTEXT = "<|endoftext|>"

# The capture group keeps the separators, so punctuation becomes tokens of its own.
SPLIT_PATTERN = re.compile(r'([,.:;?_!"()\']|--|\s)')
# Decoding joins tokens with spaces; punctuation then sticks to the word before it.
_SPACE_BEFORE_PUNCT = re.compile(r'\s+([,.:;?!"()\'])')


def as_token_ids(ids: object, what: str = "the ids") -> list[int]:
    """`ids` as a list of ints: a 1-D tensor or array, or a sequence of integers.

    A batch (2-D), floats and booleans are an `InputError` instead of being decoded as
    something else (``1.0`` and ``True`` would be id 1).

    >>> as_token_ids((15496, 11))
    [15496, 11]
    >>> as_token_ids([1.0])
    Traceback (most recent call last):
    dlnotes.errors.InputError: the ids must be integer token ids, got 1.0 (a float)
    """
    shape = getattr(ids, "shape", None)
    if shape is not None and hasattr(ids, "tolist"):  # a tensor or NumPy array
        if len(shape) != 1:
            raise InputError(
                f"{what} must be one sequence (1-D), got shape {tuple(shape)}"
                + (": decode each row, e.g. ids[0]" if len(shape) == 2 else "")
            )
        ids = ids.tolist()
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise InputError(f"{what} must be a sequence of token ids, got a {type(ids).__name__}")
    out = list(ids)
    if all(type(i) is int for i in out):  # the common case, and bool is not int's type
        return out
    for i in out:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise InputError(f"{what} must be integer token ids, got {i!r} (a {type(i).__name__})")
    return [int(i) for i in out]


def split_words(text: str) -> list[str]:
    """Split `text` into words and punctuation marks, dropping whitespace.

    >>> split_words("Hello, world. Is this-- a test?")
    ['Hello', ',', 'world', '.', 'Is', 'this', '--', 'a', 'test', '?']
    """
    return [piece for piece in (p.strip() for p in SPLIT_PATTERN.split(text)) if piece]


def build_vocab(tokens: Iterable[str], specials: Sequence[str] = ()) -> dict[str, int]:
    """Number the distinct `tokens` in sorted order, then append `specials`.

    >>> build_vocab(["b", "a", "b"], specials=[UNK])
    {'a': 0, 'b': 1, '<|unk|>': 2}
    """
    words = sorted(set(tokens))
    clash = sorted(set(specials) & set(words))
    if clash or len(set(specials)) != len(specials):
        raise InputError(
            f"special tokens {list(specials)} must be distinct and not occur as words "
            f"(clashing: {clash})"
        )
    return {word: i for i, word in enumerate([*words, *specials])}


class SimpleTokenizer:
    """Map text to ids with a fixed word vocabulary, and ids back to text.

    >>> tok = SimpleTokenizer(build_vocab(split_words("the cat sat."), specials=[UNK]))
    >>> tok.encode("the dog sat.")
    [3, 4, 2, 0]
    >>> tok.decode(tok.encode("the dog sat."))
    'the <|unk|> sat.'
    """

    def __init__(self, vocab: Mapping[str, int]) -> None:
        self.str_to_id = dict(vocab)
        self.id_to_str = {i: word for word, i in self.str_to_id.items()}
        if len(self.id_to_str) != len(self.str_to_id):
            raise InputError(
                f"vocabulary maps {len(self.str_to_id):,} words to only "
                f"{len(self.id_to_str):,} distinct ids; each word needs its own id"
            )
        self.unk_id = self.str_to_id.get(UNK)

    @property
    def n_vocab(self) -> int:
        """Number of entries in the vocabulary."""
        return len(self.str_to_id)

    def encode(self, text: str) -> list[int]:
        """Ids of the words in `text`; unknown words become ``<|unk|>`` if it exists."""
        words = split_words(text)
        if self.unk_id is None:
            unknown = [w for w in words if w not in self.str_to_id]
            if unknown:
                raise InputError(
                    f"word {unknown[0]!r} is not in the vocabulary ({self.n_vocab:,} entries; "
                    f"{len(unknown)} unknown word(s) in this text) and the vocabulary has no "
                    f"{UNK!r} entry: add it with build_vocab(..., specials=[{UNK!r}])"
                )
            return [self.str_to_id[w] for w in words]
        return [self.str_to_id.get(w, self.unk_id) for w in words]

    def decode(self, ids: Iterable[int]) -> str:
        """Text for `ids`: words joined by spaces, no space before punctuation."""
        ids = as_token_ids(ids)
        bad = [i for i in ids if i not in self.id_to_str]
        if bad:
            raise InputError(
                f"cannot decode id {bad[0]!r}: this vocabulary has ids 0 to {self.n_vocab - 1:,}"
            )
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(self.id_to_str[i] for i in ids))
