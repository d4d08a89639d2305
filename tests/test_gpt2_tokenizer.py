"""Our GPT-2 tokenizer (dlnotes.gpt2_tokenizer) must give exactly tiktoken's ``gpt2`` ids."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnotes.errors import DataError, InputError
from dlnotes.gpt2_tokenizer import (
    ENDOFTEXT,
    GPT2Tokenizer,
    _tiktoken_cache_dir,
    bytes_to_unicode,
    tiktoken_gpt2,
)

EDGE_CASES = [
    "",
    " ",
    "    ",
    "\n",
    "\n\n\n",
    "a\n\nb",
    " \n \n",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\t\tand\u00a0nbsp\u3000ideographic space",
    "line\r\nendings\r",
    "0123456789 3.14159 1,000,000 -42 1e-9 ٣٤٥",
    "emoji 👋🏽 🇺🇸 👨‍👩‍👧 ❤️",
    "中文：你好，世界。日本語のテキスト、한국어",
    "accents: café naïve Ærøskøbing Łódź ñ e\u0301",
    "I'm you're he'll she'd it's we've DON'T 'twas O'Neil''s",
    "x<|endoftext|>y",
    " <|endoftext|> <|endoftext|><|endoftext|>\n",
    "<|endoftext",
    "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace.",
]


@pytest.fixture(scope="module")
def ours() -> GPT2Tokenizer:
    try:
        return GPT2Tokenizer.pretrained()
    except DataError as exc:
        pytest.skip(f"data not available offline: {exc}")


@pytest.fixture(scope="module")
def reference():
    try:
        return tiktoken_gpt2()
    except DataError as exc:
        pytest.skip(f"data not available offline: {exc}")


def test_vocabulary_equals_tiktoken(ours, reference) -> None:
    assert ours.n_vocab == reference.n_vocab == 50_257
    assert all(ours.vocab[i] == reference.decode_single_token_bytes(i) for i in range(50_257))


def test_vocabulary_equals_encoder_json(ours, data_file) -> None:
    encoder = json.loads(data_file("gpt2-encoder").read_text(encoding="utf-8"))
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    for token, i in encoder.items():
        expected = token.encode() if token == ENDOFTEXT else bytes(byte_of[c] for c in token)
        assert ours.vocab[i] == expected


def test_bytes_to_unicode_is_printable_and_one_to_one() -> None:
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ"


def test_book_numbers(ours, reference, data_file) -> None:
    text = data_file("the-verdict").read_text(encoding="utf-8")
    ids = ours.encode(text)
    assert len(ids) == 5_145 and ids == reference.encode(text)
    assert ids[50:55] == [290, 4920, 2241, 287, 257]
    assert ours.decode(ids) == text
    assert ours.encode("Akwirw ier") == [33901, 86, 343, 86, 220, 959]


def test_every_instruction_text(ours, reference, data_file) -> None:
    entries = json.loads(data_file("instruction-data").read_text(encoding="utf-8"))
    texts = [entry[key] for entry in entries for key in ("instruction", "input", "output")]
    assert len(texts) == 3_300
    assert [ours.encode(t) for t in texts] == [reference.encode(t) for t in texts]


def test_every_sms_text(ours, reference, data_file) -> None:
    lines = data_file("sms-spam").read_text(encoding="utf-8").splitlines()
    texts = [line.split("\t", 1)[1] for line in lines]
    assert len(texts) == 5_574
    assert [ours.encode(t) for t in texts] == [reference.encode(t) for t in texts]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases(ours, reference, text: str) -> None:
    for kwargs in ({"allowed_special": "all"}, {"disallowed_special": ()}):
        ids = ours.encode(text, **kwargs)
        assert ids == reference.encode(text, **kwargs)
        assert ours.decode(ids) == text


def test_endoftext_rules_match_tiktoken(ours, reference) -> None:
    text = "a <|endoftext|> b"
    assert ours.encode(text, allowed_special={ENDOFTEXT}) == [64, 220, 50256, 275]
    assert reference.encode(text, allowed_special={ENDOFTEXT}) == [64, 220, 50256, 275]
    with pytest.raises(ValueError):
        reference.encode(text)
    with pytest.raises(InputError, match="allowed_special"):
        ours.encode(text)
    with pytest.raises(InputError):
        ours.encode("plain", disallowed_special=["pla"])


def test_decode_partial_utf8_like_tiktoken(ours, reference) -> None:
    ids = ours.encode("é👋")
    for k in range(len(ids) + 1):
        assert ours.decode(ids[:k]) == reference.decode(ids[:k])
    with pytest.raises(InputError, match="cannot decode id 50257"):
        ours.decode([50257])


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_arbitrary_unicode_matches_tiktoken(ours, reference, text: str) -> None:
    ids = ours.encode(text, disallowed_special=())
    assert ids == reference.encode(text, disallowed_special=())
    assert ours.decode(ids) == text


PIECES = st.sampled_from([ENDOFTEXT, " ", "  ", "\n", "'s", "'ll", "1", "x", "é", "😀", "\t"])


@given(st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=12).map("".join))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_mixed_pieces_match_tiktoken(ours, reference, text: str) -> None:
    ids = ours.encode(text, allowed_special="all")
    assert ids == reference.encode(text, allowed_special="all")
    assert ours.decode(ids) == text


def test_save_load_keeps_gpt2_byte_order(ours, reference, tmp_path) -> None:
    again = GPT2Tokenizer.load(ours.save(tmp_path / "gpt2.json"))
    assert isinstance(again, GPT2Tokenizer)
    text = EDGE_CASES[-1]
    assert again.encode(text, allowed_special="all") == reference.encode(
        text, allowed_special="all"
    )


def test_mismatched_files(tmp_path, data_file) -> None:
    encoder = tmp_path / "encoder.json"
    encoder.write_text(json.dumps({"a": 0}))
    with pytest.raises(DataError, match="vocab.bpe with .*merge 'Ġ t' names a token the voc"):
        GPT2Tokenizer.from_files(encoder, data_file("gpt2-vocab"))
    # no merges, and every byte but the space
    chars = bytes_to_unicode()
    encoder.write_text(json.dumps({chars[b]: b for b in range(256) if b != 32}))
    no_merges = tmp_path / "vocab.bpe"
    no_merges.write_text("#version: 0.2\n")
    with pytest.raises(DataError, match="encoder.json lacks the single byte 32"):
        GPT2Tokenizer.from_files(encoder, no_merges)
    with pytest.raises(DataError, match="cannot read"):
        GPT2Tokenizer.from_files(tmp_path / "missing.json", data_file("gpt2-vocab"))


def test_tiktoken_cache_folder_built_from_data_layer(tmp_path, monkeypatch, data_file) -> None:
    import tiktoken.load

    for key, name in (("gpt2-encoder", "encoder.json"), ("gpt2-vocab", "vocab.bpe")):
        (tmp_path / "gpt2").mkdir(exist_ok=True)
        shutil.copyfile(data_file(key), tmp_path / "gpt2" / name)
    monkeypatch.setenv("DLNOTES_DATA_DIR", str(tmp_path))
    folder = _tiktoken_cache_dir()
    assert folder == tmp_path / "tiktoken_cache"
    # tiktoken's own loader must find the files there (no network: the hash matches).
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))
    url = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe"
    sha = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
    assert hashlib.sha256(tiktoken.load.read_file_cached(url, sha)).hexdigest() == sha
    assert _tiktoken_cache_dir() == folder  # a complete folder is reused as it is


def test_tiktoken_gpt2_leaves_environment_alone(monkeypatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    assert tiktoken_gpt2().encode("Hello, world") == [15496, 11, 995]
    assert "TIKTOKEN_CACHE_DIR" not in os.environ
