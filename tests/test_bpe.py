"""Byte-level BPE core (dlnotes.bpe): helpers, incremental training, encode/decode, save/load.

References: `str.replace` for `merge`, a naive trainer that recounts every pair
before each merge for the incremental one, and the Wikipedia example by hand.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from itertools import pairwise

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnotes.bpe import GPT2_PATTERN, BPETokenizer, merge, pair_counts
from dlnotes.errors import DataError, InputError

FAST = settings(max_examples=150, deadline=None, derandomize=True)


def naive_train(text: str, n_merges: int, pattern: str | None = GPT2_PATTERN) -> dict:
    """Recount every pair of every chunk before each merge (ties: smallest pair)."""
    pieces = regex.findall(pattern, text) if pattern else [text]
    chunks = Counter(p.encode("utf-8") for p in pieces if p)
    words = {tuple(chunk): n for chunk, n in chunks.items()}
    merges = {}
    for new_id in range(256, 256 + n_merges):
        counts = Counter()
        for ids, n in words.items():
            for pair in pairwise(ids):
                counts[pair] += n
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges[pair] = new_id
        merged = Counter()
        for ids, n in words.items():
            merged[tuple(merge(ids, pair, new_id))] += n
        words = merged
    return merges


@given(st.lists(st.integers(0, 3), max_size=30), st.integers(0, 3), st.integers(0, 3))
@FAST
def test_merge_equals_str_replace(ids: list[int], left: int, right: int) -> None:
    # str.replace also replaces non-overlapping occurrences from the left.
    as_text = "".join(map(chr, ids)).replace(chr(left) + chr(right), chr(9))
    assert merge(ids, (left, right), 9) == [ord(c) for c in as_text]


def test_pair_counts_count_overlaps() -> None:
    assert pair_counts([5, 5, 5]) == {(5, 5): 2}
    assert pair_counts([1, 2], {(1, 2): 3}) == {(1, 2): 4}
    assert pair_counts([]) == {}


def test_wikipedia_example_by_hand() -> None:
    tok = BPETokenizer.train("aaabdaaabac", 256 + 3, pattern=None)
    a, b = ord("a"), ord("b")
    assert tok.merges == {(a, a): 256, (a, b): 257, (256, 257): 258}
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, a, ord("c")]  # XdXac
    assert tok.vocab[258] == b"aaab"


def test_incremental_training_equals_naive(verdict: str) -> None:
    tok = BPETokenizer.train(verdict, 256 + 200)
    assert tok.merges == naive_train(verdict, 200)
    assert tok.n_vocab == 456


@given(st.text(alphabet="ab c\n", max_size=60), st.integers(1, 12))
@FAST
def test_incremental_training_equals_naive_on_small_texts(text: str, n_merges: int) -> None:
    try:
        tok = BPETokenizer.train(text, 256 + n_merges, pattern=None)
    except InputError:  # the text ran out of pairs: so must the naive trainer
        with pytest.raises(ValueError):
            naive_train(text, n_merges, pattern=None)
        return
    assert tok.merges == naive_train(text, n_merges, pattern=None)


def test_trained_tokenizer_compresses_and_round_trips(verdict: str) -> None:
    tok = BPETokenizer.train(verdict, 256 + 300)
    ids = tok.encode(verdict)
    assert len(ids) < len(verdict.encode("utf-8")) / 2
    assert tok.decode(ids) == verdict
    assert tok.vocab[max(tok.merges.values())]  # every learned id decodes to bytes


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_trained_round_trip_arbitrary_unicode(text: str) -> None:
    tok = _small_trained()
    assert tok.decode(tok.encode_ordinary(text)) == text


@functools.cache
def _small_trained() -> BPETokenizer:
    text = "the cat sat on the mat; the dog ate 1234 mats. Ünïcödé 你好 👋 " * 3
    return BPETokenizer.train(text, 300, special_tokens=["<|endoftext|>"])


def test_special_tokens_after_training() -> None:
    tok = _small_trained()
    eot = tok.special_tokens["<|endoftext|>"]
    assert eot == 299 and tok.n_vocab == 300
    text = "the cat<|endoftext|>the dog"
    ids = tok.encode(text, allowed_special={"<|endoftext|>"})
    assert ids.count(eot) == 1 and tok.decode(ids) == text
    assert tok.encode(text, allowed_special="all") == ids
    plain = tok.encode(text, disallowed_special=())
    assert eot not in plain and tok.decode(plain) == text
    with pytest.raises(InputError, match=r"'<\|endoftext\|>' at character 7"):
        tok.encode(text)
    with pytest.raises(InputError, match="unknown special"):
        tok.encode(text, allowed_special={"<|pad|>"})


def test_specials_are_not_merged_in_training() -> None:
    text = "abc<|x|>" * 5
    tok = BPETokenizer.train(text, 256 + 2 + 1, pattern=None, special_tokens=["<|x|>"])
    assert [tok.vocab[i] for i in tok.merges.values()] == [b"ab", b"abc"]
    assert tok.encode(text, allowed_special="all") == [257, 258] * 5


def test_save_load_round_trip(tmp_path, verdict: str) -> None:
    tok = BPETokenizer.train(verdict, 256 + 100, special_tokens=["<|endoftext|>"])
    path = tok.save(tmp_path / "sub" / "verdict.json")
    again = BPETokenizer.load(path)
    assert again.merges == tok.merges and list(again.merges) == list(tok.merges)
    assert again.special_tokens == tok.special_tokens and again.pattern == tok.pattern
    assert again.encode(verdict) == tok.encode(verdict)


def test_load_rejects_other_files(tmp_path) -> None:
    with pytest.raises(DataError, match="cannot read tokenizer file"):
        BPETokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match="not a dlnotes BPE tokenizer file"):
        BPETokenizer.load(bad)
    state = {"format": "dlnotes-bpe", "merges": [[300, 1, 256]], "pattern": None,
             "special_tokens": {}, "byte_ids": list(range(256))}  # fmt: skip
    bad.write_text(json.dumps(state))
    with pytest.raises(DataError, match="undefined id"):
        BPETokenizer.load(bad)


def test_bad_training_sizes() -> None:
    with pytest.raises(InputError, match="vocab_size=200 is too small"):
        BPETokenizer.train("abc", 200)
    with pytest.raises(InputError, match=r"after 2 merges every chunk is a single token"):
        BPETokenizer.train("abc", 256 + 5, pattern=None)


def test_decode_unknown_id() -> None:
    tok = BPETokenizer()
    assert tok.decode([104, 105]) == "hi"
    with pytest.raises(InputError, match="cannot decode id 256: this tokenizer has ids 0 to 255"):
        tok.decode([104, 256])
    with pytest.raises(InputError, match="id -1"):
        tok.decode([-1])


def test_lone_surrogates_are_replaced_like_tiktoken() -> None:
    tok = BPETokenizer()
    assert tok.decode(tok.encode("a\ud800b")) == "a\ufffdb"


def test_merges_must_be_in_learned_order() -> None:
    a, b, c = ord("a"), ord("b"), ord("c")
    assert BPETokenizer({(a, b): 256, (256, c): 300}).encode("abc") == [300]
    with pytest.raises(InputError, match=r"merge \(256, 99\) -> 255"):
        BPETokenizer({(a, b): 256, (256, c): 255})
    with pytest.raises(InputError, match=r"merge \(257, 99\) -> 258 uses an undefined id"):
        BPETokenizer({(a, b): 256, (257, c): 258})
