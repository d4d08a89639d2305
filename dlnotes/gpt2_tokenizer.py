"""GPT-2's tokenizer on our own BPE: OpenAI's files, byte order and ``<|endoftext|>``.

`GPT2Tokenizer` is a thin subclass of `dlnotes.bpe.BPETokenizer` (as minbpe's
``GPT4Tokenizer`` sits on its ``RegexTokenizer``): it reads OpenAI's
``encoder.json`` (token string -> id) and ``vocab.bpe`` (the 50,000 merges in
order) through `dlnotes.data.fetch`, undoes GPT-2's byte-to-unicode mapping, and
adds ``<|endoftext|>`` = 50256. Its ids equal ``tiktoken.get_encoding("gpt2")``'s.
Reference: https://github.com/openai/gpt-2/blob/master/src/encoder.py.

`tiktoken_gpt2()` returns tiktoken's own encoding, offline, from the same files.

Leaves out: the other OpenAI encodings (r50k is identical; p50k, cl100k, o200k
differ) and GPT-2's ``errors=`` choice when decoding (we always replace).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from dlnotes import data
from dlnotes.atomic import atomic_write
from dlnotes.bpe import GPT2_PATTERN, BPETokenizer
from dlnotes.errors import DataError
from dlnotes.text import ENDOFTEXT

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "ENDOFTEXT",
    "ENDOFTEXT_ID",
    "GPT2Tokenizer",
    "byte_level_parts",
    "bytes_to_unicode",
    "tiktoken_gpt2",
]

ENDOFTEXT_ID = 50256


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character.

    Printable Latin-1 bytes map to themselves; the other 68 (controls, space,
    ...) are moved up to U+0100 onwards, so every token string in
    ``encoder.json`` is visible text without spaces.

    >>> m = bytes_to_unicode()
    >>> m[ord("A")], m[ord(" ")], m[ord("\\n")], len(set(m.values()))
    ('A', 'Ġ', 'Ċ', 256)
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    moved = [b for b in range(256) if b not in keep]
    table = {b: chr(b) for b in keep}
    table.update({b: chr(256 + k) for k, b in enumerate(moved)})
    return dict(sorted(table.items()))


def byte_level_parts(
    id_of: Mapping[str, int], lines: Iterable[str], name: object
) -> tuple[list[int | None], dict[tuple[int, int], int]]:
    """The byte ids and merges of a vocabulary spelled in `bytes_to_unicode`'s characters
    (token string -> id) and its ``"left right"`` merge lines, in order; blank and
    ``#version`` lines are skipped. A byte the vocabulary lacks gets None (the caller
    decides whether that is allowed); a merge naming a token it lacks is a `DataError`
    that names `name`, the file it came from."""
    char_of = bytes_to_unicode()
    byte_ids = [id_of.get(char_of[b]) for b in range(256)]
    merges = {}
    try:
        for line in lines:
            if not line or line.startswith("#version"):
                continue
            left, right = line.split(" ")
            merges[(id_of[left], id_of[right])] = id_of[left + right]
    except (KeyError, ValueError):
        raise DataError(f"{name}: merge {line!r} names a token the vocabulary lacks") from None
    return byte_ids, merges


class GPT2Tokenizer(BPETokenizer):
    """GPT-2's byte-level BPE, loaded from OpenAI's ``encoder.json`` and ``vocab.bpe``.

    ``GPT2Tokenizer.pretrained().encode("Hello, world")`` gives ``[15496, 11, 995]``.
    """

    # Like tiktoken, a chunk that is a whole token (83% of the-verdict's) skips the merges.
    whole_chunks = True

    @classmethod
    def from_files(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> GPT2Tokenizer:
        """Build the tokenizer from the two OpenAI files."""
        try:
            encoder: dict[str, int] = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
            lines = Path(vocab_bpe).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read GPT-2 tokenizer files: {exc}") from None
        byte_ids, merges = byte_level_parts(encoder, lines, f"{vocab_bpe} with {encoder_json}")
        if None in byte_ids:  # GPT-2 has all 256, as ids 0..255 in its printable-first order
            raise DataError(f"{encoder_json} lacks the single byte {byte_ids.index(None)}")
        specials = {ENDOFTEXT: encoder.get(ENDOFTEXT, ENDOFTEXT_ID)}
        return cls(merges, pattern=GPT2_PATTERN, special_tokens=specials, byte_ids=byte_ids)

    @classmethod
    @functools.cache
    def pretrained(cls) -> GPT2Tokenizer:
        """GPT-2's tokenizer from the data layer's files (loaded once per process)."""
        return cls.from_files(data.fetch("gpt2-encoder"), data.fetch("gpt2-vocab"))


def _cache_names() -> dict[str, str]:
    """tiktoken's file name (the sha1 of the URL) for each of our two GPT-2 files."""
    return {
        hashlib.sha1(data.REGISTRY[key].url.encode()).hexdigest(): key
        for key in ("gpt2-encoder", "gpt2-vocab")
    }


def _complete(folder: Path) -> bool:
    """True if `folder` holds both GPT-2 files under tiktoken's names, each verified."""
    try:
        return all(
            (folder / name).is_file() and data._problem(data.REGISTRY[key], folder / name) is None
            for name, key in _cache_names().items()
        )
    except OSError:
        return False


def _tiktoken_cache_dir() -> Path:
    """A folder holding the GPT-2 files under the names tiktoken looks for.

    tiktoken names a cached file by the sha1 of its URL; our registry has the same
    URLs, so we reuse ``<data dir>/tiktoken_cache`` if its files pass their checks, or
    fill one from the data layer's files.
    """
    shared = data.data_dir() / "tiktoken_cache"
    folders = (shared, Path(tempfile.gettempdir()) / "dlnotes-tiktoken-cache")
    for folder in folders:
        if _complete(folder):
            return folder
    sources = {name: data.fetch(key) for name, key in _cache_names().items()}
    for folder in folders:
        try:
            for name, source in sources.items():
                # Rewrite both files: one that is there may be truncated or stale.
                with atomic_write(folder / name) as fh:
                    fh.write(source.read_bytes())
            return folder
        except OSError:
            continue
    raise DataError(f"cannot write a tiktoken cache folder under {shared} or the temp folder")


def tiktoken_gpt2() -> tiktoken.Encoding:
    """``tiktoken.get_encoding("gpt2")`` that works offline from the data layer's files.

    tiktoken's own lookup is used where ``$TIKTOKEN_CACHE_DIR`` holds both files intact;
    otherwise (unset, empty, a truncated file) tiktoken is pointed, for this call only,
    at a folder built from the data layer's files, which are checked against their
    sha256 and downloaded through it if missing.
    """
    import tiktoken

    own = os.environ.get("TIKTOKEN_CACHE_DIR")
    if own is not None and _complete(Path(own)):
        return tiktoken.get_encoding("gpt2")
    folder = _tiktoken_cache_dir()
    os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    try:
        return tiktoken.get_encoding("gpt2")  # tiktoken keeps it for the rest of the process
    except Exception as exc:  # e.g. a download tiktoken tried anyway (requests' errors)
        raise DataError(
            f"tiktoken could not load GPT-2's encoding from {folder} ({type(exc).__name__})"
        ) from None
    finally:
        if own is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = own
