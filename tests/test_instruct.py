"""Instruction data: prompt formats, validation, split, collate masking, loaders, responses."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dlnotes.errors import DataError, InputError
from dlnotes.generate import generate
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.instruct import (
    ALPACA,
    IGNORE_INDEX,
    PHI3,
    InstructionDataset,
    chat_message,
    chat_prompt,
    collate,
    format_input,
    format_prompt,
    generate_responses,
    instruction_loaders,
    load_instruction_data,
    load_responses,
    split_entries,
    validate_entries,
)

PAD = 50256
WITH_INPUT = {"instruction": "Fix the spelling.", "input": "freind", "output": "friend"}
NO_INPUT = {"instruction": "Name a primary colour.", "input": "", "output": "Red."}
PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request."
)


# --- prompt formats -----------------------------------------------------------------------


def test_alpaca_prompt_with_input() -> None:
    expected = (
        PREAMBLE + "\n\n### Instruction:\nFix the spelling.\n\n### Input:\nfreind"
        "\n\n### Response:\n"
    )
    assert format_prompt(WITH_INPUT) == expected
    assert format_input(WITH_INPUT) == expected.removesuffix("\n\n### Response:\n")
    assert ALPACA.full_text(WITH_INPUT) == expected + "friend"


def test_alpaca_prompt_without_input_has_no_input_section() -> None:
    expected = PREAMBLE + "\n\n### Instruction:\nName a primary colour.\n\n### Response:\n"
    assert format_prompt(NO_INPUT) == expected
    assert format_prompt({"instruction": "Name a primary colour.", "output": "x"}) == expected


def test_phi3_prompt() -> None:
    assert PHI3.prompt(WITH_INPUT) == "<|user|>\nFix the spelling.\nfreind\n<|assistant|>\n"
    assert PHI3.full_text(NO_INPUT) == "<|user|>\nName a primary colour.\n<|assistant|>\nRed."


def test_chat_message_and_chat_prompt() -> None:
    assert chat_message(WITH_INPUT) == "Fix the spelling.\n\nfreind"
    assert chat_message(NO_INPUT) == "Name a primary colour."

    class Chat:
        def encode_chat(self, messages: list[dict]) -> list[int]:
            return [len(m["content"]) for m in messages]

    assert chat_prompt(Chat())(NO_INPUT) == [len("Name a primary colour.")]
    with pytest.raises(InputError, match="no chat template"):
        chat_prompt(object())


# --- loading and validating ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([WITH_INPUT, {"input": "", "output": "x"}], "entry 1 has no 'instruction'"),
        ([{"instruction": "Say hi.", "input": ""}], "entry 0 has no 'output'"),
        ([WITH_INPUT, "text"], "entry 1 is not an object"),
        ([{"instruction": "Say hi.", "output": 3}], "entry 0 has a non-text 'output'"),
        ([{"instruction": "  ", "output": "x"}], "entry 0 has an empty instruction"),
        ({"instruction": "x"}, "must be a JSON list"),
    ],
)
def test_bad_entries_name_the_entry(entries: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        validate_entries(entries)


def test_missing_input_defaults_to_empty() -> None:
    (entry,) = validate_entries([{"instruction": "Say hi.", "output": "Hi."}])
    assert entry == {"instruction": "Say hi.", "input": "", "output": "Hi."}


def test_load_bad_files(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        load_instruction_data(bad)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps([{"instruction": "Say hi."}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"missing\.json: entry 0 has no 'output'"):
        load_instruction_data(missing)
    with pytest.raises(DataError, match="cannot read"):
        load_instruction_data(tmp_path / "nowhere.json")


def test_book_data_and_split(data_file) -> None:
    entries = load_instruction_data(data_file("instruction-data"))
    train, val, test = split_entries(entries)
    assert (len(entries), len(train), len(val), len(test)) == (1100, 935, 55, 110)
    # in file order: train, then test, then validation
    assert train[0] == entries[0] and test[0] == entries[935] and val[0] == entries[1045]
    assert sum(1 for e in entries if e["input"]) == 325


def test_split_sizes_and_bad_fractions() -> None:
    assert [len(p) for p in split_entries(list(range(20)))] == [17, 1, 2]
    assert [len(p) for p in split_entries(list(range(10)), 0.5, 0.5)] == [5, 0, 5]
    with pytest.raises(InputError):
        split_entries([1, 2], 0.9, 0.2)


# --- collate ------------------------------------------------------------------------------


def test_collate_matches_the_book_example() -> None:
    # The book's example batch (section 7.3): three texts of 5, 2 and 3 tokens.
    inputs, targets = collate([[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]], pad_id=PAD)
    assert inputs.tolist() == [[0, 1, 2, 3, 4], [5, 6, PAD, PAD, PAD], [7, 8, 9, PAD, PAD]]
    assert targets.tolist() == [
        [1, 2, 3, 4, PAD],
        [6, PAD, -100, -100, -100],
        [8, 9, PAD, -100, -100],
    ]


def test_collate_keeps_end_tokens_inside_a_text() -> None:
    # Padding is found by length: a text that contains the end token keeps it as a target.
    inputs, targets = collate([[1, PAD, 2], [3]], pad_id=PAD)
    assert inputs.tolist() == [[1, PAD, 2], [3, PAD, PAD]]
    assert targets.tolist() == [[PAD, 2, PAD], [PAD, -100, -100]]


def test_collate_separate_pad_and_end_tokens() -> None:
    inputs, targets = collate([[1, 2, 3], [4]], pad_id=0, eos_id=9)
    assert inputs.tolist() == [[1, 2, 3], [4, 0, 0]]
    assert targets.tolist() == [[2, 3, 9], [9, -100, -100]]


def test_collate_prompt_masking() -> None:
    # (ids, prompt_length): position t predicts token t + 1, a prompt token when t + 1 < p.
    batch = [([10, 11, 12, 13, 14], 2), ([20, 21, 22], 3), ([30, 31], 1)]
    inputs, targets = collate(batch, pad_id=PAD, mask_prompt=True)
    assert inputs.tolist() == [
        [10, 11, 12, 13, 14],
        [20, 21, 22, PAD, PAD],
        [30, 31, PAD, PAD, PAD],
    ]
    assert targets.tolist() == [
        [-100, 12, 13, 14, PAD],
        [-100, -100, PAD, -100, -100],
        [31, PAD, -100, -100, -100],
    ]
    # without masking the prompt lengths are ignored
    _, plain = collate(batch, pad_id=PAD)
    assert plain.tolist()[0] == [11, 12, 13, 14, PAD]


def test_collate_truncation() -> None:
    batch = [([10, 11, 12, 13, 14], 2), ([20, 21], 1)]
    inputs, targets = collate(batch, pad_id=PAD, allowed_max_length=3)
    assert inputs.tolist() == [[10, 11, 12], [20, 21, PAD]]
    assert targets.tolist() == [[11, 12, 13], [21, PAD, -100]]
    inputs, targets = collate(batch, pad_id=PAD, allowed_max_length=3, mask_prompt=True)
    assert targets.tolist() == [[-100, 12, 13], [21, PAD, -100]]
    # a width that leaves nothing to learn is an error, not a NaN loss later
    with pytest.raises(InputError, match="no target token is left"):
        collate([([1, 2, 3, 4], 4)], pad_id=PAD, allowed_max_length=2, mask_prompt=True)
    with pytest.raises(InputError):
        collate(batch, pad_id=PAD, allowed_max_length=0)


def test_collate_bad_batches() -> None:
    with pytest.raises(InputError, match="empty batch"):
        collate([], pad_id=PAD)
    with pytest.raises(InputError, match="empty token sequence"):
        collate([[1], []], pad_id=PAD)


def test_ignored_targets_drop_out_of_the_loss() -> None:
    # F.cross_entropy's default ignore_index is IGNORE_INDEX: the loss is the mean over
    # the kept targets only, what dlnotes.losses.batch_loss and train() compute.
    _, targets = collate([([1, 2, 3, 4], 2), ([5, 6], 1)], pad_id=7, mask_prompt=True)
    logits = torch.randn(*targets.shape, 8)
    keep = targets != IGNORE_INDEX
    by_hand = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(F.cross_entropy(logits.flatten(0, 1), targets.flatten()), by_hand)


# --- data set and loaders -----------------------------------------------------------------


def test_dataset_ids_equal_whole_text_encoding(data_file) -> None:
    import tiktoken

    from dlnotes.gpt2_tokenizer import GPT2Tokenizer

    entries = load_instruction_data(data_file("instruction-data"))[:60]
    dataset = InstructionDataset(entries, GPT2Tokenizer.pretrained())
    reference = tiktoken.get_encoding("gpt2")
    for entry, (ids, prompt_len) in zip(entries, dataset, strict=True):
        assert ids == reference.encode(ALPACA.full_text(entry))
        assert ids[:prompt_len] == reference.encode(format_prompt(entry))


def test_loaders_batches_of_eight(data_file) -> None:
    from dlnotes.gpt2_tokenizer import GPT2Tokenizer

    splits = split_entries(load_instruction_data(data_file("instruction-data")))
    loaders = instruction_loaders(splits, GPT2Tokenizer.pretrained(), pad_id=PAD)
    assert [len(loader) for loader in loaders] == [116, 7, 14]
    inputs, targets = next(iter(loaders[1]))
    assert inputs.shape == targets.shape and inputs.shape[0] == 8
    # every row ends its text with exactly one kept end token
    assert ((targets == PAD).sum(dim=1) == 1).all()
    with pytest.raises(InputError, match="fewer than batch_size"):
        instruction_loaders([splits[0][:3]], GPT2Tokenizer.pretrained(), pad_id=PAD)


# --- responses ----------------------------------------------------------------------------


class Chars:
    """A tokenizer of one id per character (ord), enough to give prompts of any length."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 200 for c in text]

    def decode(self, ids) -> str:
        return "".join(chr(97 + i % 26) for i in ids)


def _instruction(entry: dict) -> str:
    return entry["instruction"]


def _entries() -> list[dict]:
    # four lengths, two entries of the same length each, and one of a third length
    words = ["ab", "cd", "efg", "hij", "klmno", "pqrst", "uvwxyz", "abcdef", "q"]
    return [{"instruction": w, "input": "", "output": w[::-1]} for w in words]


def _tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.tiny(vocab_size=200, context_length=32)).eval()


def _reference(model: GPT, entry: dict, eos: int, n: int) -> str:
    prompt = [ord(c) % 200 for c in entry["instruction"]]
    out = generate(model, torch.tensor([prompt]), n, use_cache=False)[0, len(prompt) :].tolist()
    if eos in out:
        out = out[: out.index(eos)]
    return Chars().decode(out).strip()


@pytest.fixture
def responding(one_thread):
    model, tok, entries = _tiny(), Chars(), _entries()
    # an end token the model actually produces, so that stopping is exercised
    first = generate(
        model, torch.tensor([Chars().encode(e["instruction"]) for e in entries[:1]]), 6
    )
    eos = int(first[0, -3])
    return model, tok, entries, eos


def test_batched_generation_equals_one_by_one(responding) -> None:
    model, tok, entries, eos = responding
    plain = dict(eos_id=eos, prompt=_instruction, max_new_tokens=12, progress=False)
    batched = generate_responses(model, tok, entries, batch_size=8, **plain)
    single = generate_responses(model, tok, entries, batch_size=1, **plain)
    assert [r["model_response"] for r in batched] == [r["model_response"] for r in single]
    expected = [_reference(model, e, eos, 12) for e in entries]
    assert [r["model_response"] for r in batched] == expected
    assert any(len(r) < 12 for r in expected)  # some responses stopped at the end token
    assert [{k: r[k] for k in ("instruction", "input", "output")} for r in batched] == entries


def test_responses_are_saved_and_a_rerun_continues(responding, tmp_path) -> None:
    model, tok, entries, eos = responding
    args = dict(eos_id=eos, prompt=_instruction, max_new_tokens=6, progress=False)
    path = tmp_path / "responses.json"
    full = generate_responses(model, tok, entries, path=path, **args)
    assert load_responses(path, entries) == full
    # a partial file (as left by an interrupted run): only the missing ones are generated
    partial = [dict(r) for r in full]
    partial[0]["model_response"] = "kept from before"
    for r in partial[4:]:
        del r["model_response"]
    path.write_text(json.dumps(partial), encoding="utf-8")
    again = generate_responses(model, tok, entries, path=path, **args)
    assert again[0]["model_response"] == "kept from before"
    assert again[1:] == full[1:]
    assert json.loads(path.read_text(encoding="utf-8")) == again


def test_response_file_of_other_entries(responding, tmp_path) -> None:
    model, tok, entries, eos = responding
    path = tmp_path / "responses.json"
    path.write_text(json.dumps(entries[:3]), encoding="utf-8")
    with pytest.raises(DataError, match="other entries"):
        generate_responses(model, tok, entries, eos_id=eos, prompt=_instruction, path=path)
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        generate_responses(model, tok, entries, eos_id=eos, prompt=_instruction, path=path)


def test_prompt_longer_than_context_fails_before_generating(responding, tmp_path) -> None:
    model, tok, entries, eos = responding
    long = {"instruction": "x" * 40, "input": "", "output": "y"}
    path = tmp_path / "responses.json"
    with pytest.raises(InputError, match="entry 9: its prompt has 40 tokens, more than"):
        generate_responses(model, tok, [*entries, long], eos_id=eos, prompt=_instruction, path=path)
    assert not path.exists()
