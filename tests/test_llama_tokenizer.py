"""SmolLM2's tokenizer (dlnotes.llama_tokenizer) against transformers' tokenizer loaded from
the same GGUF file: vocabulary, pre-tokenisation, ids on every data set's texts, specials,
round trips and the ChatML chat template.

transformers' GGUF loader has no entry for the ``smollm`` pre-tokenizer and splits like
GPT-2, which differs from the model's own tokenizer (digits isolated first, as llama.cpp
and the original repository's ``Digits`` + ``ByteLevel`` do) only when whitespace runs up
to a digit. The reference here is that same transformers tokenizer with the model's
pre-tokenizer put back; the tests also pin down where the loader as shipped disagrees.
"""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch

from dlnotes.errors import DataError, InputError
from dlnotes.gpt2_tokenizer import bytes_to_unicode
from dlnotes.llama_tokenizer import LlamaTokenizer

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
gguf = pytest.importorskip("gguf")

_WS_BEFORE_DIGIT = re.compile(r"\s{2,}\d")


@pytest.fixture(scope="module")
def reader(smollm2_gguf):
    return gguf.GGUFReader(smollm2_gguf)


@pytest.fixture(scope="module")
def ours(reader) -> LlamaTokenizer:
    return LlamaTokenizer.from_gguf(reader)


@pytest.fixture(scope="module")
def hf_plain(smollm2_gguf):
    """transformers' tokenizer as its GGUF loader builds it."""
    return transformers.AutoTokenizer.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name
    )


@pytest.fixture(scope="module")
def hf(hf_plain) -> tokenizers.Tokenizer:
    """The same vocabulary and merges with SmolLM2's own pre-tokenizer."""
    from tokenizers import pre_tokenizers

    backend = tokenizers.Tokenizer.from_str(hf_plain.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    return backend


def hf_ids(hf, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in hf.encode_batch_fast(texts, add_special_tokens=False)]


@pytest.fixture(scope="module")
def corpus(data_file_module) -> dict[str, list[str]]:
    entries = json.loads(data_file_module("instruction-data").read_text(encoding="utf-8"))
    lines = data_file_module("sms-spam").read_text(encoding="utf-8").splitlines()
    return {
        "instruction": [e[k] for e in entries for k in ("instruction", "input", "output") if e[k]],
        "sms": [line.split("\t", 1)[1] for line in lines],
    }


@pytest.fixture(scope="module")
def data_file_module():
    from dlnotes.data import fetch

    def get(name: str):
        try:
            return fetch(name)
        except DataError as exc:
            pytest.skip(f"data not available offline: {exc}")

    return get


def test_metadata_equals_transformers(ours, hf_plain) -> None:
    assert ours.vocab_size == len(hf_plain) == 49_152
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (1, 2, 2)
    assert ours.eos_id == hf_plain.eos_token_id and ours.pad_id == hf_plain.pad_token_id
    assert ours.bos_id == hf_plain.bos_token_id
    added = {t.content: i for i, t in hf_plain.added_tokens_decoder.items() if t.special}
    assert ours.special_tokens == added and len(added) == 17
    # Every other token's bytes, from transformers' vocabulary in GPT-2's byte spelling.
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    for token, i in hf_plain.get_vocab().items():
        if i not in added.values():
            assert ours.vocab[i] == bytes(byte_of[c] for c in token), (i, token)


def test_missing_bytes_are_dropped_like_transformers(ours, hf, hf_plain) -> None:
    char_of = bytes_to_unicode()
    vocab = hf_plain.get_vocab()
    missing = [b for b in range(256) if char_of[b] not in vocab]
    assert [b for b in range(256) if ours.byte_ids[b] is None] == missing
    assert len(missing) == 21
    # Dropped before merging: "!\x04!" merges into "!!" as if the byte were not there.
    for text in ["a\x04b", "!\x04!", "x\x06\x13y", "\x1d", "a\U00050000b"]:
        assert ours.encode(text) == hf_ids(hf, [text])[0], repr(text)
    assert ours.encode("!\x04!") == ours.encode("!!")


def test_every_token_is_its_own_merge_result(ours) -> None:
    # Whole-token chunks skip the merges (as tiktoken does); Hugging Face always merges.
    # Both agree only if each token's bytes merge back into that one token.
    merge_only = super(LlamaTokenizer, ours)._encode_chunk
    assert all(merge_only(b) == [i] for b, i in ours._whole.items())


def test_pre_tokenizer_chunks_equal_transformers(ours, hf) -> None:
    pieces = [" ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "a", "Zq", "é", "'s", "'ll", "'",
              "1", "23", "٣", "½", "Ⅻ", "²", ".", ",", "!?", "-", "$", "日本", "😀", "\u00a0",
              "\u3000", "x'S", "2'd"]  # fmt: skip
    rng = random.Random(0)
    texts = ["".join(rng.choices(pieces, k=rng.randint(1, 12))) for _ in range(3000)]
    char_of = bytes_to_unicode()
    pre = hf.pre_tokenizer
    for text in texts:
        theirs = [piece for piece, _ in pre.pre_tokenize_str(text)]
        mine = ["".join(char_of[b] for b in c.encode("utf-8")) for c in ours._chunks(text)]
        assert mine == theirs, repr(text)
    assert [ours.encode(t) for t in texts] == hf_ids(hf, texts)


def test_verdict_equals_transformers(ours, hf, hf_plain, verdict) -> None:
    ids = ours.encode(verdict)
    assert ids == hf_ids(hf, [verdict])[0]
    assert ids == hf_plain.encode(verdict, add_special_tokens=False)
    assert len(ids) == 5_162  # GPT-2 needs 5,145
    assert ours.decode(ids) == verdict


@pytest.mark.parametrize("name", ["instruction", "sms"])
def test_data_set_texts_equal_transformers(ours, hf, hf_plain, corpus, name) -> None:
    texts = corpus[name]
    mine = [ours.encode(t) for t in texts]
    assert mine == hf_ids(hf, texts)
    assert all(ours.decode(ids) == t for ids, t in zip(mine, texts, strict=True))
    # The loader as shipped differs only where whitespace runs up to a digit.
    plain = hf_ids(hf_plain.backend_tokenizer, texts)
    differ = [t for t, a, b in zip(texts, mine, plain, strict=True) if a != b]
    assert all(_WS_BEFORE_DIGIT.search(t) for t in differ)
    assert len(differ) == {"instruction": 0, "sms": 1}[name]


EDGE_CASES = [
    "2026",
    "In 2026, 3.14159 and 1,000,000 (1e-9) ×10²",
    "a  1",
    "x\n\n1",
    "tab\t\t2",
    "   leading spaces",
    " one leading space",
    "trailing spaces   ",
    "many     spaces  between\n\n\n\nnewlines\r\n\r\nCRLF",
    "\n",
    " ",
    "don't you'll they've I'M we'RE",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "中文分词测试，日本語のテキスト、한국어 텍스트",
    "Ünïcödé àccents — “quotes” … ½ Ⅻ ٣",
    "def f(x):\n    return x**2  # square\n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>x<file_sep><empty_output>",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_equal_transformers(ours, hf, text) -> None:
    ids = ours.encode(text, allowed_special="all")
    assert ids == hf_ids(hf, [text])[0]
    assert ours.decode(ids) == text


def test_decode_of_partial_characters_equals_transformers(ours, hf) -> None:
    # Cutting inside a multi-byte character leaves invalid UTF-8: both replace it by U+FFFD.
    ids = ours.encode("naïve 😀 日本 👨‍👩‍👧 ½")
    assert len(ids) > 12
    for k in range(len(ids) + 1):
        for part in (ids[:k], ids[k:]):
            assert ours.decode(part) == hf.decode(part, skip_special_tokens=False), part


def test_digits_are_single_tokens(ours, hf_plain) -> None:
    ids = ours.encode("2026")
    assert len(ids) == 4 and [ours.decode([i]) for i in ids] == ["2", "0", "2", "6"]
    # Whitespace before a digit: one chunk here, GPT-2's split in the loader as shipped.
    assert ours.encode("a  1") == [81, 256, 33]  # "a", "  ", "1"
    assert hf_plain.encode("a  1", add_special_tokens=False) == [81, 216, 216, 33]


def test_special_tokens_policy(ours, hf) -> None:
    text = "<|im_start|>user\nHi<|im_end|>"
    with pytest.raises(InputError, match=re.escape("special token '<|im_start|>' at character 0")):
        ours.encode(text)
    assert (
        ours.encode(text, allowed_special="all")
        == hf_ids(hf, [text])[0]
        == [1, 4093, 198, 26843, 2]
    )
    assert ours.encode(text, allowed_special={"<|im_start|>", "<|im_end|>"})[0] == 1
    assert ours.encode("<|im_end|>", allowed_special="<|im_end|>") == [2]
    as_text = ours.encode(text, disallowed_special=())
    assert 1 not in as_text and ours.decode(as_text) == text
    with pytest.raises(InputError, match="unknown special token"):
        ours.encode("hi", allowed_special={"<|im_begin|>"})


def test_specials_as_text_equal_split_special_tokens(ours, hf_plain) -> None:
    text = "say <|im_end|> and <filename> literally"
    expected = hf_plain(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert ours.encode(text, disallowed_special=()) == expected


def test_bad_input(ours) -> None:
    assert ours.encode("") == []
    for bad in (None, b"bytes", 5, ["a"]):
        with pytest.raises(InputError, match="encode takes a str"):
            ours.encode(bad)
    ids = ours.encode("Hello world")
    for good in (ids, tuple(ids), torch.tensor(ids), np.array(ids), torch.tensor(ids).tolist()):
        assert ours.decode(good) == "Hello world"
    assert ours.decode([]) == ""
    for out_of_range in ([49_152], [-1], [1, 2, 10**9]):
        with pytest.raises(InputError, match="cannot decode id .*ids 0 to 49,151"):
            ours.decode(out_of_range)


BAD_IDS = {
    "floats": [1.0, 2.0],
    "bools": [True, False],
    "float tensor": torch.tensor([1.0]),
    "bool tensor": torch.tensor([True]),
    "nested": [[1, 2]],
    "2-D tensor": torch.tensor([[1, 2]]),
    "0-D tensor": torch.tensor(3),
    "string": "12",
    "int": 5,
}


@pytest.mark.parametrize("what", BAD_IDS)
def test_decode_refuses_non_integer_ids(ours, what) -> None:
    with pytest.raises(InputError, match="integer token ids|one sequence|sequence of token ids"):
        ours.decode(BAD_IDS[what])


CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Capital of Italy?"},
    ],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Count to 3,\n  1 2 3 — in  two lines."},
    ],
    [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Translate 'chat' to German."},
        {"role": "assistant", "content": "Katze"},
        {"role": "system", "content": "A late system message is an ordinary turn."},
        {"role": "user", "content": "日本語で 😀"},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_equals_transformers(ours, hf, hf_plain, messages, add_generation_prompt):
    prompt = ours.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    expected = hf_plain.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    assert prompt == expected
    ids = ours.encode_chat(messages, add_generation_prompt)
    assert ids == hf_ids(hf, [expected])[0]
    assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False) == prompt
    assert prompt.endswith("<|im_start|>assistant\n") == add_generation_prompt
    assert (ours.default_system_prompt in prompt) == (messages[0]["role"] != "system")


def test_chat_template_is_the_files(ours, reader) -> None:
    template = reader.fields["tokenizer.chat_template"].contents()
    assert ours.chat_template == template
    assert ours.default_system_prompt in template
    assert ours.default_system_prompt.startswith("You are a helpful AI assistant named SmolLM")


def test_chat_bad_messages(ours) -> None:
    bad = {
        "messages is empty": [],
        "messages must be a list": {"role": "user", "content": "x"},
        "exactly the keys": [{"role": "user"}],
        "must be strings": [{"role": "user", "content": 3}],
    }
    for match, messages in bad.items():
        with pytest.raises(InputError, match=match):
            ours.apply_chat_template(messages)
    with pytest.raises(InputError, match="must be a list"):
        ours.apply_chat_template("hello")


def _write_gguf(path, **meta) -> None:
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in meta.items():
        writer.add_key_value(key, value[0], value[1])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_from_gguf_bad_files(tmp_path, ours) -> None:
    S, A, U = gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT32
    with pytest.raises(DataError, match="no GGUF file"):
        LlamaTokenizer.from_gguf(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(DataError, match="not a readable GGUF"):
        LlamaTokenizer.from_gguf(junk)
    with pytest.raises(InputError, match="path or a gguf.GGUFReader"):
        LlamaTokenizer.from_gguf(42)
    empty = tmp_path / "empty.gguf"
    _write_gguf(empty)
    with pytest.raises(DataError, match="has no 'tokenizer.ggml.model'"):
        LlamaTokenizer.from_gguf(empty)
    other = tmp_path / "other.gguf"
    _write_gguf(other, **{"tokenizer.ggml.model": ("gpt2", S), "tokenizer.ggml.pre": ("qwen2", S)})
    with pytest.raises(DataError, match="pre-tokenizer 'qwen2'"):
        LlamaTokenizer.from_gguf(other)
    tokens = [bytes_to_unicode()[b] for b in range(256)]
    base = {
        "tokenizer.ggml.model": ("gpt2", S),
        "tokenizer.ggml.pre": ("smollm", S),
        "tokenizer.ggml.tokens": ([*tokens, "ab"], A),
        "tokenizer.ggml.token_type": ([1] * 257, A),
        "tokenizer.ggml.eos_token_id": (256, U),
    }
    small = tmp_path / "small.gguf"
    _write_gguf(small, **base, **{"tokenizer.ggml.merges": (["a b"], A)})
    tok = LlamaTokenizer.from_gguf(small)
    assert tok.encode("abab 12") == [256, 256, 32, 49, 50] and tok.eos_id == tok.pad_id == 256
    assert tok.bos_id is None and tok.vocab_size == 257
    with pytest.raises(DataError, match="no chat template"):
        tok.apply_chat_template([{"role": "user", "content": "x"}])
    with_bos = tmp_path / "with_bos.gguf"
    B = gguf.GGUFValueType.BOOL
    merges = {"tokenizer.ggml.merges": (["a b"], A)}
    _write_gguf(with_bos, **base, **merges, **{"tokenizer.ggml.add_bos_token": (True, B)})
    with pytest.raises(DataError, match="sets tokenizer.ggml.add_bos_token"):
        LlamaTokenizer.from_gguf(with_bos)
    broken = tmp_path / "broken.gguf"
    _write_gguf(broken, **base, **{"tokenizer.ggml.merges": (["a c d"], A)})
    with pytest.raises(DataError, match="merge 'a c d'"):
        LlamaTokenizer.from_gguf(broken)


def test_from_hf_json_equals_from_gguf(tmp_path, ours, hf, hf_plain, verdict) -> None:
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    state = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(state["model"]["merges"][0], list)
    for merges in ("pairs", "strings"):  # newer and older tokenizer.json spellings
        if merges == "strings":
            state["model"]["merges"] = [" ".join(m) for m in state["model"]["merges"]]
            path.write_text(json.dumps(state), encoding="utf-8")
        tok = LlamaTokenizer.from_hf_json(path)
        assert tok.vocab == ours.vocab and tok.merges == ours.merges
        assert tok.special_tokens == ours.special_tokens and tok.byte_ids == ours.byte_ids
        assert (tok.bos_id, tok.eos_id, tok.pad_id) == (ours.bos_id, ours.eos_id, ours.pad_id)
        assert tok.chat_template == ours.chat_template  # SmolLM2's template, as in the GGUF
        assert tok.encode(verdict) == ours.encode(verdict)
    plain = tmp_path / "plain.json"
    hf_plain.backend_tokenizer.save(str(plain))
    with pytest.raises(DataError, match="not SmolLM2's tokenizer"):
        LlamaTokenizer.from_hf_json(plain)
    junk = tmp_path / "junk.json"
    junk.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not a Hugging Face tokenizer.json"):
        LlamaTokenizer.from_hf_json(junk)
    with pytest.raises(DataError, match="cannot read"):
        LlamaTokenizer.from_hf_json(tmp_path / "missing.json")
