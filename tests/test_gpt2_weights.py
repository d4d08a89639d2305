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


# Defect 14: a malformed config.json was a raw JSONDecodeError naming no file, a missing
# key a bare KeyError: 'vocab_size'.
@pytest.mark.parametrize(
    "text, error",
    [
        ('{"n_embd": 32,', r"config\.json is not valid JSON \(.* at line 1\)"),
        ("[1, 2]", r"config\.json holds a JSON list, not an object"),
        ('{"n_embd": 32, "n_head": 4}', r"config\.json has no 'vocab_size'"),
    ],
)
def test_bad_config_json_names_the_file(hf_model, tmp_path: Path, text: str, error: str) -> None:
    path = hub_style(hf_model, tmp_path)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=error) as info:
        load_hf_safetensors(path)
    assert str(tmp_path / "config.json") in str(info.value) and "\n" not in str(info.value)


# Defect 18: settings the model does not implement were accepted, and its logits then
# differed from Hugging Face's; layer_norm_epsilon was ignored.
@pytest.mark.parametrize(
    "setting", [{"scale_attn_weights": False}, {"scale_attn_by_inverse_layer_idx": True}]
)
def test_attention_settings_the_model_lacks_are_refused(hf_model, setting) -> None:
    config = {**hf_model.config.to_dict(), **setting}
    with pytest.raises(InputError, match=f"sets {next(iter(setting))}=.*does not implement"):
        config_from_hf(config)


@pytest.mark.parametrize(
    "setting", [{"layer_norm_epsilon": 1e-2}, {"reorder_and_upcast_attn": True}, {}]
)
def test_accepted_settings_give_hf_logits(setting) -> None:
    torch.manual_seed(1)
    config = transformers.GPT2Config(**TINY, initializer_range=0.2, **setting)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # LayerNorm weights far from 1, so that eps changes the logits
        for name, param in hf.named_parameters():
            if ".ln_" in name or "ln_f" in name:
                param.normal_(0, 0.05)
    cfg = config_from_hf(config.to_dict())
    from dlnotes.gpt2_weights import convert_hf_state_dict, model_from_state_dict

    assert_same_logits(hf, model_from_state_dict(convert_hf_state_dict(hf.state_dict(), cfg), cfg))


def test_model_from_state_dict_copies_and_is_in_eval_mode(hf_model) -> None:
    """Finetuning our model must not change the HF model's tensors (they were shared)."""
    from dlnotes.gpt2_weights import convert_hf_state_dict, model_from_state_dict

    cfg = config_from_hf(hf_model.config.to_dict())
    hf_state = hf_model.state_dict()
    before = {k: v.clone() for k, v in hf_state.items()}
    model = model_from_state_dict(convert_hf_state_dict(hf_state, cfg), cfg)
    assert not model.training
    assert model_from_state_dict(convert_hf_state_dict(hf_state, cfg), cfg, training=True).training
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    assert all(torch.equal(hf_state[k], before[k]) for k in hf_state)
    assert model.lm_head.weight is model.wte.weight  # still tied
    shared = model_from_state_dict(convert_hf_state_dict(hf_state, cfg), cfg, share=True)
    assert shared.wte.weight.data_ptr() == hf_state["transformer.wte.weight"].data_ptr()
