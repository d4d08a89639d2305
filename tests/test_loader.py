"""Sliding-window dataset and loader (dlnotes.loader) against the book and a naive loop."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnotes.errors import InputError
from dlnotes.loader import GPTDataset, create_dataloader


def book_windows(ids: list[int], max_length: int, stride: int) -> list[tuple[list, list]]:
    """The book's loop: a window starts every `stride` ids while a full target fits."""
    return [
        (ids[i : i + max_length], ids[i + 1 : i + max_length + 1])
        for i in range(0, len(ids) - max_length, stride)
    ]


def test_book_batches_stride_1(verdict: str) -> None:
    batches = iter(create_dataloader(verdict, batch_size=1, max_length=4, stride=1, shuffle=False))
    x, y = next(batches)
    assert x.tolist() == [[40, 367, 2885, 1464]] and y.tolist() == [[367, 2885, 1464, 1807]]
    x, y = next(batches)
    assert x.tolist() == [[367, 2885, 1464, 1807]] and y.tolist() == [[2885, 1464, 1807, 3619]]


def test_book_batch_8_stride_4(verdict: str) -> None:
    loader = create_dataloader(verdict, batch_size=8, max_length=4, stride=4, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (8, 4) and x.dtype == torch.long
    assert x[:, 0].tolist() == [40, 1807, 10899, 15632, 922, 568, 1049, 284]
    assert y[-1].tolist() == [3285, 326, 11, 287]
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert len(loader.dataset) == len(range(0, 5_145 - 4, 4)) == 1_286
    assert len(loader) == 1_286 // 8  # drop_last


@given(
    st.lists(st.integers(0, 50), min_size=2, max_size=40),
    st.integers(1, 8),
    st.integers(1, 8),
)
@settings(max_examples=150, deadline=None, derandomize=True)
def test_windows_equal_book_loop(ids: list[int], max_length: int, stride: int) -> None:
    expected = book_windows(ids, max_length, stride)
    if not expected:
        with pytest.raises(InputError, match=f"has {len(ids)} tokens"):
            GPTDataset(ids, max_length=max_length, stride=stride)
        return
    ds = GPTDataset(ids, max_length=max_length, stride=stride)
    assert [(x.tolist(), y.tolist()) for x, y in ds] == expected


def test_ids_tensor_and_tokenizers_agree(verdict: str) -> None:
    from dlnotes.gpt2_tokenizer import GPT2Tokenizer, tiktoken_gpt2

    ids = tiktoken_gpt2().encode(verdict)
    from_text = GPTDataset(verdict, max_length=16, stride=16)
    from_ours = GPTDataset(verdict, max_length=16, stride=16, tokenizer=GPT2Tokenizer.pretrained())
    from_ids = GPTDataset(torch.tensor(ids), max_length=16, stride=16)
    assert len(from_text) == len(from_ids) == (5_145 - 17) // 16 + 1
    for k in (0, 5, -1):
        assert torch.equal(from_text[k][0], from_ours[k][0])
        assert torch.equal(from_text[k][1], from_ids[k][1])


def test_word_tokenizer_and_endoftext() -> None:
    from dlnotes.text import ENDOFTEXT, SimpleTokenizer, build_vocab, split_words

    text = f"the cat sat {ENDOFTEXT} the dog sat"
    words = SimpleTokenizer(build_vocab(split_words(text)))
    assert len(GPTDataset(text, max_length=3, stride=1, tokenizer=words)) == 7 - 3
    x, _ = GPTDataset(text, max_length=4, stride=4)[0]  # GPT-2: <|endoftext|> is one id
    assert x.tolist() == [1169, 3797, 3332, 220] and GPTDataset(text, 5, 5)[0][0][-1] == 50256


def test_shuffle_is_reproducible_with_a_seed() -> None:
    ids = list(range(100))
    orders = []
    for _ in range(2):
        torch.manual_seed(7)
        loader = create_dataloader(ids, batch_size=4, max_length=3, stride=3)
        orders.append([x[:, 0].tolist() for x, _ in loader])
    assert orders[0] == orders[1] and orders[0] != sorted(orders[0])


def test_short_text_says_what_is_needed() -> None:
    with pytest.raises(InputError, match=r"has 3 tokens, but max_length=256 needs at least 257"):
        create_dataloader("Hello, world", batch_size=1)


def test_no_batch_with_drop_last_is_an_error() -> None:
    ids = list(range(20))
    with pytest.raises(InputError, match=r"only 3 window\(s\).*fewer than batch_size=4"):
        create_dataloader(ids, batch_size=4, max_length=5, stride=5)
    loader = create_dataloader(ids, batch_size=4, max_length=5, stride=5, drop_last=False)
    assert [x.shape[0] for x, _ in loader] == [3]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"stride": 0}, "stride"),
        ({"stride": -2}, "stride"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": 2.5}, "max_length"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(InputError, match=f"{name} must be an integer"):
        create_dataloader(list(range(100)), **{"batch_size": 1, "max_length": 4, **kwargs})


def test_ids_must_be_one_sequence() -> None:
    with pytest.raises(InputError, match=r"1-D\), got shape \(2, 10\)"):
        GPTDataset(torch.zeros(2, 10), max_length=4, stride=1)


def test_index_out_of_range() -> None:
    ds = GPTDataset(list(range(10)), max_length=4, stride=3)
    with pytest.raises(IndexError):
        ds[2]
    assert ds[-2][0].tolist() == [0, 1, 2, 3]


def test_text_helpers_default_to_our_gpt2_tokenizer(verdict: str, monkeypatch) -> None:
    """No tiktoken needed: encode_text / text_to_ids use dlnotes' GPT2Tokenizer by default."""
    import sys

    from dlnotes.gpt2_tokenizer import tiktoken_gpt2
    from dlnotes.loader import encode_text, ids_to_text, text_to_ids

    reference = tiktoken_gpt2().encode(verdict[:2000])
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # any import of tiktoken now fails
    assert encode_text(verdict[:2000]) == reference
    assert text_to_ids(verdict[:2000])[0].tolist() == reference
    assert ids_to_text(reference) == verdict[:2000]


def test_text_to_ids_offline_without_files_is_one_line(tmp_path, monkeypatch) -> None:
    from dlnotes.errors import DataError
    from dlnotes.gpt2_tokenizer import GPT2Tokenizer
    from dlnotes.loader import text_to_ids

    def offline(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.setenv("DLNOTES_DATA_DIR", str(tmp_path))
    GPT2Tokenizer.pretrained.__func__.cache_clear()
    try:
        with pytest.raises(DataError, match="cannot download 'gpt2-encoder'") as info:
            text_to_ids("Every effort moves you")
    finally:
        GPT2Tokenizer.pretrained.__func__.cache_clear()  # the next caller loads the real files
    assert "\n" not in str(info.value)
