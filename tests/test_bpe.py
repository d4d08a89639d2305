"""Byte-level BPE core (dlnotes.bpe): helpers, incremental training, encode/decode, save/load.

References: `str.replace` for `merge`, a naive trainer that recounts every pair
before each merge for the incremental one, the Wikipedia example by hand, merging all
occurrences of a pair at once for the encoder's one-at-a-time loop, and the `regex`
module for the split that Python's `re` does where it can.
"""

from __future__ import annotations

import functools
import json
import pickle
import re
from collections import Counter
from itertools import pairwise

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnotes.bpe import (
    GPT2_PATTERN,
    BPETokenizer,
    _as_re,
    _class_bodies,
    _splitter,
    merge,
    pair_counts,
)
from dlnotes.errors import DataError, InputError
from dlnotes.llama_tokenizer import SMOLLM_PATTERN

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
    # one name as a str: a set of that name, not of its characters
    assert tok.encode(text, allowed_special="<|endoftext|>") == ids
    with pytest.raises(InputError, match="unknown special"):
        tok.encode(text, allowed_special="<|pad|>")
    with pytest.raises(InputError, match=r"'<\|endoftext\|>' at character 7"):
        tok.encode(text, disallowed_special="<|endoftext|>")


@pytest.mark.parametrize("bad", [None, b"bytes", 5, ["a"]])
def test_encode_refuses_what_is_not_a_str(bad: object) -> None:
    with pytest.raises(InputError, match=f"encode takes a str, got {type(bad).__name__}"):
        _small_trained().encode(bad)


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


def merge_all_at_once(tok: BPETokenizer, chunk: bytes) -> list[int]:
    """The textbook loop: merge every occurrence of the lowest-ranked pair, recount, repeat."""
    ids = [tok.byte_ids[b] for b in chunk if tok.byte_ids[b] is not None]
    while True:
        ranked = [(tok.merges[p], p) for p in pairwise(ids) if p in tok.merges]
        if not ranked:
            return ids
        new_id, pair = min(ranked)
        ids = merge(ids, pair, new_id)


@given(
    st.text(alphabet="ab c", min_size=2, max_size=60),
    st.integers(1, 20),
    st.lists(st.binary(max_size=30), min_size=1, max_size=10),
    st.permutations(range(256)),
    st.sets(st.integers(0, 255), max_size=3),
)
@FAST
def test_rank_list_merge_loop_equals_merging_all_at_once(
    text: str, n_merges: int, chunks: list[bytes], order: list[int], dropped: set[int]
) -> None:
    # One pair at a time (tiktoken's loop) against all its occurrences at once, also with
    # reordered byte ids and bytes without a token; chunks use the training alphabet too.
    try:
        trained = BPETokenizer.train(text, 256 + n_merges, pattern=None)
    except InputError:
        return
    toks = [trained]
    used = {i for pair in trained.merges for i in pair}
    if not dropped & used:  # else a merge would use a byte that has no id
        moved = {b: order[b] for b in range(256)}
        merges = {(moved.get(a, a), moved.get(b, b)): i for (a, b), i in trained.merges.items()}
        byte_ids = [None if b in dropped else order[b] for b in range(256)]
        toks.append(BPETokenizer(merges, pattern=None, byte_ids=byte_ids))
    for tok in toks:
        for chunk in [*chunks, text.encode(), text[::-1].encode()]:
            assert tok._encode_chunk(chunk) == merge_all_at_once(tok, chunk)


PATTERNS = {"gpt2": GPT2_PATTERN, "smollm": SMOLLM_PATTERN}


@pytest.mark.parametrize("limit", [0x80, 0x10000])
def test_re_sets_equal_regex_classes_on_every_code_point(limit: int) -> None:
    every = "".join(map(chr, range(limit)))
    for name, body in _class_bodies(limit).items():
        assert re.findall(f"[{body}]", every) == regex.findall(name, every), name
        assert re.findall(f"[^{body}]", every) == regex.findall(f"[^{name}]", every), name


@pytest.mark.parametrize("name", PATTERNS)
@given(
    st.one_of(
        st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=80),
        st.text(alphabet=st.characters(max_codepoint=0xFFFF), max_size=80),
        st.text(max_size=80),
        st.text(alphabet=" \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000a1'sé²½Ⅻ٣", max_size=40),
    )
)
@FAST
def test_re_split_equals_regex(name: str, text: str) -> None:
    pattern = PATTERNS[name]
    assert _splitter(pattern)(text) == regex.findall(pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [r"\w+|\s", r"(?i)ab", r"\p{Lu}+", r"[[a]b]", r"(?:ab){e<=1}", r"[a&&b]", r"\d+", r"[]a]"],
)
def test_patterns_re_may_read_differently_stay_with_regex(pattern: str) -> None:
    assert _as_re(pattern, _class_bodies(0x80)) is None
    text = "Ab1 __ ]a-b ABC abx ٣"
    assert _splitter(pattern)(text) == regex.findall(pattern, text)


def test_tokenizer_pickles_with_its_split(verdict: str) -> None:
    tok = BPETokenizer.train(verdict, 256 + 50)
    text = verdict[:500] + " naïve café 你好 👋"
    again = pickle.loads(pickle.dumps(tok))
    assert again.encode(text) == tok.encode(text)
    assert again._split is tok._split  # the compiled split is shared, not copied
