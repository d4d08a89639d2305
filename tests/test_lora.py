"""LoRA (dlnotes.lora) against the base model, the merged model, peft and the book's count."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from dlnotes.errors import CheckpointError, InputError
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.lora import (
    LinearWithLoRA,
    LoRALayer,
    apply_lora,
    layer_lora_count,
    load_adapters,
    lora_count,
    lora_layers,
    lora_parameters,
    lora_state_dict,
    merge_lora,
    save_adapters,
)

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 101


def tiny(**overrides: object) -> GPT:
    cfg = GPTConfig.tiny(vocab_size=VOCAB, context_length=16, **overrides)
    return GPT(cfg).eval()


def ids(batch: int = 3, length: int = 12) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length))


def randomise_b(model: nn.Module, std: float = 0.05) -> None:
    """B starts at zero; give it values so that the adapters change the output."""
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora.B.normal_(0.0, std)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_init_output_equals_base() -> None:
    model = tiny()
    x = ids()
    with torch.no_grad():
        before = model(x)
        apply_lora(model, rank=4, alpha=8)
        after = model(x)
    assert torch.equal(before, after)
    assert all(torch.count_nonzero(m.lora.B) == 0 for m in lora_layers(model).values())
    assert all(torch.count_nonzero(m.lora.A) > 0 for m in lora_layers(model).values())


def test_a_initialised_like_a_linear_weight() -> None:
    torch.manual_seed(7)
    lora = LoRALayer(48, 20, rank=5, alpha=5)
    torch.manual_seed(7)
    reference = nn.Linear(48, 5, bias=False).weight  # nn.Linear's own reset_parameters
    assert torch.equal(lora.A, reference)
    assert lora.A.abs().max() <= 1 / math.sqrt(48)


def test_apply_lora_touches_no_base_value_and_wraps_every_linear() -> None:
    model = tiny()
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, 2, 2)
    assert sorted(lora_layers(model)) == sorted(linears)
    for name, value in state.items():
        module, _, leaf = name.rpartition(".")
        key = f"{module}.linear.{leaf}" if module in lora_layers(model) else name
        assert torch.equal(model.state_dict()[key], value)


@pytest.mark.parametrize("tie", [False, True])
def test_merged_equals_unmerged_and_has_no_lora_keys(tie: bool) -> None:
    model = tiny(tie_weights=tie)
    plain_keys = list(model.state_dict())
    x = ids()
    with torch.no_grad():
        base = model(x)
    apply_lora(model, 4, 16)
    randomise_b(model)
    with torch.no_grad():
        unmerged = model(x)
        merge_lora(model)
        merged = model(x)
    assert not lora_layers(model)
    assert list(model.state_dict()) == plain_keys
    assert not any("lora" in k for k in model.state_dict())
    assert all(type(m) is nn.Linear for n, m in model.named_modules() if n.endswith("qkv"))
    assert not any(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    assert (unmerged - base).abs().max() > 1e-3  # the adapters did change the model


def test_merge_keeps_a_tied_embedding() -> None:
    model = tiny(tie_weights=True)
    embedding = model.wte.weight.detach().clone()
    apply_lora(model, 4, 4, targets=["lm_head"])
    randomise_b(model)
    merge_lora(model)
    assert torch.equal(model.wte.weight, embedding)
    assert not torch.equal(model.lm_head.weight, embedding)


def test_merging_twice_is_an_error() -> None:
    model = apply_lora(tiny(), 2, 2)
    merge_lora(model)
    with pytest.raises(InputError, match="merged already"):
        merge_lora(model)


def test_trainable_count_formula() -> None:
    cfg = GPTConfig.tiny(vocab_size=VOCAB, context_length=16)
    model = GPT(cfg)
    r, d = 4, cfg.emb_dim
    # per block: q, k, v (each d -> d), out_proj d -> d, c_fc d -> 4d, c_proj 4d -> d
    per_block = 3 * r * (d + d) + r * (d + d) + r * (d + 4 * d) + r * (4 * d + d)
    expected = cfg.n_layers * per_block + r * (d + cfg.vocab_size)
    assert lora_count(model, r) == expected
    apply_lora(model, r, r)
    assert trainable(model) == expected == sum(p.numel() for p in lora_parameters(model))
    unfused = lora_count(tiny(), r, splits=None)
    assert unfused == expected - cfg.n_layers * r * 2 * d  # one A for q, k and v together


def test_book_count_gpt2_124m_two_class_head() -> None:
    with torch.device("meta"):
        model = GPT(GPTConfig.gpt2("124M"))
        model.lm_head = nn.Linear(768, 2)
        assert lora_count(model, 16) == 2_666_528
        apply_lora(model, 16, 16, allow_excess_rank=True)  # the book's rank 16 on a 768 -> 2 head
    assert trainable(model) == 2_666_528
    assert layer_lora_count(768, 2, 16) == 12_320


def test_book_count_gpt2_355m_exercise_7_4() -> None:
    # Exercise 7.4: every linear layer of GPT-2 medium, its 50,257-word head included
    with torch.device("meta"):
        model = GPT(GPTConfig.gpt2("355M", tie_weights=False))
    assert sum(p.numel() for p in model.parameters()) == 406_286_336
    assert lora_count(model, 16) == 7_898_384


def test_only_lora_parameters_get_gradients() -> None:
    model = apply_lora(tiny(), 4, 8)
    randomise_b(model)
    model(ids()).logsumexp(-1).mean().backward()
    lora_ids = {id(p) for p in lora_parameters(model)}
    for name, p in model.named_parameters():
        if id(p) in lora_ids:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


@pytest.mark.parametrize("splits", [3, (24, 12, 12)])
def test_splits_equal_separate_adapters_per_projection(splits: int | tuple) -> None:
    """A fused q|k|v layer with splits computes what separate adapted layers do."""
    torch.manual_seed(0)
    fused = LinearWithLoRA(nn.Linear(16, 48), rank=3, alpha=6, splits=splits)
    with torch.no_grad():
        fused.lora.B.normal_()
    sizes = (16, 16, 16) if splits == 3 else splits
    x = torch.randn(5, 16)
    slices, row = [], 0
    for p, size in enumerate(sizes):
        part = LinearWithLoRA(nn.Linear(16, size), rank=3, alpha=6)
        with torch.no_grad():
            part.linear.weight.copy_(fused.linear.weight[row : row + size])
            part.linear.bias.copy_(fused.linear.bias[row : row + size])
            part.lora.A.copy_(fused.lora.A[3 * p : 3 * (p + 1)])
            part.lora.B.copy_(fused.lora.B[row : row + size])
        slices.append(part(x))
        row += size
    torch.testing.assert_close(fused(x), torch.cat(slices, dim=-1))
    merged = fused.merged()
    torch.testing.assert_close(merged(x), fused(x), atol=1e-5, rtol=0)


def test_auto_splits_of_gpt_and_llama_layers() -> None:
    gpt = tiny()
    assert lora_layers(apply_lora(gpt, 2, 2))["h.0.attn.qkv"].lora.splits == (32, 32, 32)
    llama = pytest.importorskip("dlnotes.llama")
    model = llama.Llama(llama.LlamaConfig.tiny())  # 4 query heads, 2 key-value heads of 8
    layers = lora_layers(apply_lora(model, 2, 2))
    assert layers["h.1.attn.qkv"].lora.splits == (32, 16, 16)
    assert layers["h.1.mlp.gate_up"].lora.splits == (64, 64)
    assert layers["h.1.mlp.down"].lora.splits == (32,)


def test_equals_peft_on_a_hugging_face_llama() -> None:
    """Our fused qkv / gate_up with auto splits = peft's adapters on separate q/k/v/gate/up."""
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    llama = pytest.importorskip("dlnotes.llama")
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    hf = transformers.LlamaForCausalLM(config).eval()
    cfg = llama.config_from_hf(config.to_dict())
    ours = llama.model_from_state_dict(llama.convert_hf_state_dict(hf.state_dict(), cfg), cfg)
    names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    theirs = peft.get_peft_model(
        hf, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=names)
    )
    with torch.no_grad():
        for module in theirs.modules():
            if hasattr(module, "lora_B") and "default" in getattr(module, "lora_B", {}):
                module.lora_B["default"].weight.normal_(0.0, 0.1)
    apply_lora(ours, 4, 8, targets=["qkv", "out_proj", "gate_up", "down"])
    assert trainable(ours) == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    peft_modules = dict(theirs.base_model.model.named_modules())
    fused = {
        "attn.qkv": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
        "attn.out_proj": ["self_attn.o_proj"],
        "mlp.gate_up": ["mlp.gate_proj", "mlp.up_proj"],
        "mlp.down": ["mlp.down_proj"],
    }

    def peft_tensors(i: int, ours_name: str, kind: str, grad: bool = False) -> torch.Tensor:
        mods = [peft_modules[f"model.layers.{i}.{n}"] for n in fused[ours_name]]
        ts = [getattr(m, f"lora_{kind}")["default"].weight for m in mods]
        return torch.cat([t.grad if grad else t for t in ts])

    with torch.no_grad():
        for i in range(cfg.n_layers):
            for name in fused:
                lora = ours.get_submodule(f"h.{i}.{name}").lora
                lora.A.copy_(peft_tensors(i, name, "A"))
                lora.B.copy_(peft_tensors(i, name, "B"))
    x, y = ids(), ids()
    for model in (ours, theirs):
        logits = model(x) if model is ours else model(input_ids=x).logits
        nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(input_ids=x).logits, atol=1e-5, rtol=1e-5)
    for i in range(cfg.n_layers):
        for name in fused:
            lora = ours.get_submodule(f"h.{i}.{name}").lora
            for kind, mine in (("A", lora.A.grad), ("B", lora.B.grad)):
                assert mine.abs().sum() > 0
                torch.testing.assert_close(
                    mine, peft_tensors(i, name, kind, grad=True), atol=1e-6, rtol=1e-4
                )


def test_scaling_alpha_over_rank_and_book_alpha() -> None:
    linear = nn.Linear(8, 8)
    peft_style = LinearWithLoRA(linear, rank=4, alpha=8)
    book_style = LinearWithLoRA(copy.deepcopy(linear), rank=4, alpha=8, scaling="alpha")
    assert (peft_style.lora.scaling, book_style.lora.scaling) == (2.0, 8.0)
    with torch.no_grad():
        book_style.lora.A.copy_(peft_style.lora.A)
        peft_style.lora.B.fill_(0.1)
        book_style.lora.B.fill_(0.1)
    x = torch.randn(3, 8)
    delta_peft = peft_style(x) - linear(x)
    delta_book = book_style(x) - linear(x)
    torch.testing.assert_close(delta_book, 4 * delta_peft)  # rank 4 times larger


@pytest.mark.parametrize("scaling", ["alpha/rank", "alpha"])
def test_equals_peft_outputs_and_one_step(scaling: str) -> None:
    peft = pytest.importorskip("peft")
    rank, alpha = 4, 8
    targets = ["qkv", "out_proj", "c_fc", "c_proj"]
    base = tiny()
    theirs = peft.get_peft_model(
        copy.deepcopy(base),
        peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets),
    )
    with torch.no_grad():
        for module in theirs.modules():
            if hasattr(module, "lora_B") and "default" in getattr(module, "lora_B", {}):
                module.lora_B["default"].weight.normal_(0.0, 0.05)
    # peft's alpha/rank; the book's plain alpha is the same model with lora_alpha = alpha·rank
    ours_alpha = alpha if scaling == "alpha/rank" else alpha / rank
    ours = apply_lora(copy.deepcopy(base), rank, ours_alpha, targets, scaling=scaling, splits=None)
    peft_modules = dict(theirs.base_model.model.named_modules())
    for name, layer in lora_layers(ours).items():
        with torch.no_grad():
            layer.lora.A.copy_(peft_modules[name].lora_A["default"].weight)
            layer.lora.B.copy_(peft_modules[name].lora_B["default"].weight)
    assert trainable(ours) == sum(p.numel() for p in theirs.parameters() if p.requires_grad)

    x, y = ids(), ids()
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-2)
    opt_theirs = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    for name, layer in lora_layers(ours).items():
        theirs_layer = peft_modules[name]
        for ours_p, theirs_p in (
            (layer.lora.A, theirs_layer.lora_A["default"].weight),
            (layer.lora.B, theirs_layer.lora_B["default"].weight),
        ):
            assert ours_p.grad.abs().sum() > 0
            torch.testing.assert_close(ours_p.grad, theirs_p.grad, atol=1e-6, rtol=1e-4)
            torch.testing.assert_close(ours_p, theirs_p, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
        merged_theirs = theirs.merge_and_unload()
        torch.testing.assert_close(merge_lora(ours)(x), merged_theirs(x), atol=1e-5, rtol=1e-5)


def test_adapter_round_trip(tmp_path) -> None:
    model = apply_lora(tiny(), 4, 8, scaling="alpha")
    randomise_b(model)
    path = save_adapters(model, tmp_path / "adapters.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapters.safetensors"]  # no temp left
    adapter_bytes = sum(t.numel() * t.element_size() for t in lora_state_dict(model).values())
    assert adapter_bytes < path.stat().st_size < adapter_bytes + 20_000
    x = ids()
    fresh = tiny()
    fresh.load_state_dict(
        {k.replace(".linear.", "."): v for k, v in model.state_dict().items() if ".lora." not in k}
    )
    load_adapters(fresh, path)
    assert trainable(fresh) == trainable(model)
    assert {k: v.tolist() for k, v in lora_state_dict(fresh).items()} == {
        k: v.tolist() for k, v in lora_state_dict(model).items()
    }
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    # into a model that already has (untrained) adapters of the same shape
    again = copy.deepcopy(fresh)
    with torch.no_grad():
        for p in lora_parameters(again):
            p.zero_()
    load_adapters(again, path)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_a_new_head_travels_with_its_adapter(tmp_path) -> None:
    """A 2-class head starts random and stays frozen under LoRA: its base must be saved."""

    def classifier(seed: int) -> GPT:
        torch.manual_seed(0)
        model = tiny()  # the same pretrained body every time
        torch.manual_seed(seed)
        model.lm_head = nn.Linear(32, 2)
        return model

    model = apply_lora(classifier(1), 4, 8, allow_excess_rank=True)
    randomise_b(model)
    x = ids()
    with_head = save_adapters(model, tmp_path / "with.safetensors", also_save=["lm_head"])
    without = save_adapters(model, tmp_path / "without.safetensors")
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(load_adapters(classifier(2), with_head)(x), expected)
        assert not torch.allclose(load_adapters(classifier(2), without)(x), expected)
    with pytest.raises(InputError, match="no module 'score'"):
        save_adapters(model, tmp_path / "bad.safetensors", also_save=["score"])


def test_a_failed_load_leaves_the_model_as_it_was(tmp_path) -> None:
    source = tiny()
    source.extra = nn.LayerNorm(32)  # a module the target model does not have
    path = save_adapters(apply_lora(source, 4, 8), tmp_path / "a.safetensors", also_save=["extra"])
    target = tiny()
    target.lm_head.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in target.named_parameters()}
    keys = list(target.state_dict())
    with pytest.raises(CheckpointError, match=r"no tensor extra\.(weight|bias)"):
        load_adapters(target, path)
    assert not lora_layers(target) and list(target.state_dict()) == keys
    assert {n: p.requires_grad for n, p in target.named_parameters()} == flags


def test_loading_adapters_into_another_shape_is_an_error(tmp_path) -> None:
    path = save_adapters(apply_lora(tiny(), 4, 8), tmp_path / "a.safetensors")
    wider = GPT(GPTConfig.tiny(vocab_size=VOCAB, context_length=16, emb_dim=64))
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_adapters(wider, path)
    assert not lora_layers(wider)  # nothing half-applied
    other_rank = apply_lora(tiny(), 2, 8)
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_adapters(other_rank, path)
    fewer = apply_lora(tiny(), 4, 8, targets=["c_fc"])
    with pytest.raises(CheckpointError, match="LoRA layers differ"):
        load_adapters(fewer, path)


def test_damaged_adapter_files(tmp_path) -> None:
    path = save_adapters(apply_lora(tiny(), 4, 8), tmp_path / "a.safetensors")
    raw = bytearray(path.read_bytes())
    with pytest.raises(CheckpointError, match="no adapter file"):
        load_adapters(tiny(), tmp_path / "missing.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_adapters(tiny(), tmp_path / "cut.safetensors")
    raw[-3] ^= 0xFF  # a flipped bit inside the last tensor's data
    (tmp_path / "flipped.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum"):
        load_adapters(tiny(), tmp_path / "flipped.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.ones(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a dlnotes LoRA adapter file"):
        load_adapters(tiny(), tmp_path / "other.safetensors")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "rank must be an integer >= 1"),
        ({"rank": -3}, "rank must be an integer >= 1"),
        ({"rank": 2.0}, "rank must be an integer >= 1"),
        ({"rank": 33, "targets": ["out_proj"]}, "larger than the layer"),
        ({"rank": 4, "targets": ["lm_head", "W_query"]}, "'W_query' matches no nn.Linear"),
        ({"rank": 4, "targets": []}, "targets must be non-empty"),
        ({"rank": 4, "scaling": "rank"}, "scaling must be one of"),
        ({"rank": 4, "alpha": float("nan")}, "alpha must be a finite number"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    model = tiny()
    before = copy.deepcopy(model.state_dict())
    kwargs = {"alpha": 8, **kwargs}
    with pytest.raises(InputError, match=message):
        apply_lora(model, **kwargs)
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_rank_above_a_narrow_head_needs_consent() -> None:
    model = tiny()
    model.lm_head = nn.Linear(32, 2)
    with pytest.raises(InputError, match="allow_excess_rank"):
        apply_lora(model, 4, 4)
    apply_lora(model, 4, 4, allow_excess_rank=True)
    assert model.lm_head.lora.B.shape == (2, 4)


def test_other_bad_uses() -> None:
    model = apply_lora(tiny(), 2, 2)
    with pytest.raises(InputError, match="already has LoRA layers"):
        apply_lora(model, 2, 2)
    with pytest.raises(InputError, match="no nn.Linear"):
        apply_lora(nn.Sequential(nn.ReLU()), 2, 2)
    with pytest.raises(InputError, match="wraps an nn.Linear"):
        LinearWithLoRA(nn.Conv1d(2, 2, 1), 1, 1)
    with pytest.raises(InputError, match="no LoRA layers"):
        save_adapters(tiny(), "unused.safetensors")
    with pytest.raises(InputError, match="equal parts"):
        LoRALayer(8, 10, rank=2, alpha=2, splits=3)
