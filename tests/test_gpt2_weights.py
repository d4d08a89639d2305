"""Loading Hugging Face GPT-2 checkpoints: logits equal the HF model's, bad files fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlnotes.errors import CheckpointError, InputError
from dlnotes.gpt import GPTConfig
from dlnotes.gpt2_weights import config_from_hf, config_from_shapes, load_hf_safetensors

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

TINY = dict(n_layer=2, n_head=4, n_embd=32, n_positions=24, vocab_size=97)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(**TINY, initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def saved(hf_model, tmp_path_factory) -> Path:
    """`save_pretrained` output: model.safetensors (keys "transformer.h.0...") + config.json."""
    folder = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(folder)
    return folder / "model.safetensors"


def hub_style(hf_model, folder: Path) -> Path:
    """A file laid out like openai-community/gpt2's: no prefix, mask buffers, no lm_head."""
    state = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items()}
    del state["lm_head.weight"]
    n = TINY["n_positions"]
    for i in range(TINY["n_layer"]):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    path = folder / "model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def assert_same_logits(hf_model, model) -> None:
    idx = torch.randint(0, TINY["vocab_size"], (3, TINY["n_positions"]))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf_model(idx).logits, atol=1e-4, rtol=0)


def test_save_pretrained_file_with_its_config(hf_model, saved: Path) -> None:
    model = load_hf_safetensors(saved)
    assert model.cfg == config_from_hf(saved.with_name("config.json"))
    assert model.cfg.tie_weights and model.lm_head.weight is model.wte.weight
    assert not model.training
    assert_same_logits(hf_model, model)


def test_hub_layout_with_given_config(hf_model, tmp_path: Path) -> None:
    path = hub_style(hf_model, tmp_path)
    cfg = config_from_hf(hf_model.config.to_dict())
    assert_same_logits(hf_model, load_hf_safetensors(path, cfg))


def test_untied_model_gets_a_copy_of_the_embedding(hf_model, tmp_path: Path) -> None:
    """The book's layout: a separate output head, initialised from wte."""
    cfg = config_from_hf(hf_model.config.to_dict(), tie_weights=False)
    model = load_hf_safetensors(hub_style(hf_model, tmp_path), cfg)
    assert model.lm_head.weight is not model.wte.weight
    assert torch.equal(model.lm_head.weight, model.wte.weight)
    assert_same_logits(hf_model, model)


def test_unknown_size_without_config_asks_for_one(hf_model, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not one of the released GPT-2 sizes.*pass cfg="):
        load_hf_safetensors(hub_style(hf_model, tmp_path))


@pytest.mark.parametrize("size, n", [("124M", 12), ("medium", 24), ("large", 36)])
def test_released_sizes_are_recognised_from_shapes(size: str, n: int) -> None:
    embd = {12: 768, 24: 1024, 36: 1280}[n]
    config = transformers.GPT2Config(n_layer=n, n_embd=embd, n_head=embd // 64)
    with torch.device("meta"):
        state = transformers.GPT2LMHeadModel(config).state_dict()
    assert config_from_shapes(state) == GPTConfig.gpt2(size)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"emb_dim": 48},
            r"tensor wte.weight has shape \(97, 32\) in the checkpoint but \(97, 48\)",
        ),
        ({"vocab_size": 50257}, r"tensor wte.weight has shape \(97, 32\) .* but \(50257, 32\)"),
        ({"context_length": 32}, r"tensor wpe.weight has shape \(24, 32\) .* but \(32, 32\)"),
        ({"n_layers": 3}, r"checkpoint has no tensor for h.2.ln_1.weight \(32,\)"),
        ({"n_layers": 1}, r"checkpoint has tensor h\.1\.\S+ that the model does not \(12 such"),
        ({"qkv_bias": False}, "checkpoint has tensor h.0.attn.qkv.bias that the model does not"),
    ],
)
def test_mismatched_config_names_the_first_bad_tensor(
    saved: Path, overrides: dict, message: str
) -> None:
    cfg = config_from_hf(saved.with_name("config.json"), **overrides)
    with pytest.raises(CheckpointError, match=message):
        load_hf_safetensors(saved, cfg)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint file at"):
        load_hf_safetensors(tmp_path / "missing.safetensors")
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read .* as safetensors"):
        load_hf_safetensors(junk, GPTConfig.tiny())


def test_unsupported_config(saved: Path) -> None:
    config = json.loads(saved.with_name("config.json").read_text())
    with pytest.raises(InputError, match="activation 'relu'"):
        config_from_hf({**config, "activation_function": "relu"})
