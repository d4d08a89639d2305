"""Checkpoints: exact round trip, atomic writes, and clear errors for files that do not fit."""

from __future__ import annotations

import os
import random

import pytest
import torch
from torch import nn

from dlnotes import checkpoint as ckpt
from dlnotes.checkpoint import load_checkpoint, save_checkpoint
from dlnotes.errors import CheckpointError
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.schedule import warmup_cosine

CFG = GPTConfig.tiny(vocab_size=97, context_length=16, emb_dim=16, n_heads=2, n_layers=1)


def _trained(cfg: GPTConfig = CFG) -> tuple[GPT, torch.optim.Optimizer, object]:
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=2)
    for _ in range(3):
        ids = torch.randint(0, cfg.vocab_size, (2, 8))
        model(ids).logsumexp(-1).mean().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched = _trained()
    path = save_checkpoint(tmp_path / "run.pt", model, opt, sched, step=3, extra={"note": [1.5]})
    after_save = (torch.rand(3), random.random())

    fresh = GPT(CFG)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    fresh_sched = warmup_cosine(fresh_opt, total_steps=10, warmup_steps=2)
    info = load_checkpoint(path, fresh, fresh_opt, fresh_sched)

    assert info["step"] == 3 and info["extra"] == {"note": [1.5]}
    assert info["config"]["emb_dim"] == CFG.emb_dim
    assert _same_state(fresh.state_dict(), model.state_dict())
    for k, v in opt.state_dict()["state"].items():
        assert _same_state(fresh_opt.state_dict()["state"][k], v)
    assert fresh_sched.state_dict() == sched.state_dict()
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    # The random generators continue exactly as they did after saving.
    assert torch.equal(torch.rand(3), after_save[0]) and random.random() == after_save[1]
    # Only tensors and plain values inside: PyTorch's safe loader accepts the file.
    assert torch.load(path, weights_only=True)["format"] == ckpt.FORMAT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model, opt, sched = _trained()
    path = save_checkpoint(tmp_path / "run.pt", model, opt, sched, step=1)
    real_save = torch.save

    def dies_half_way(obj, fh):
        fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, opt, sched, step=2)
    monkeypatch.setattr(ckpt.torch, "save", real_save)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no temporary file left
    assert load_checkpoint(path, GPT(CFG))["step"] == 1


def test_unwritable_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(blocker / "run.pt", nn.Linear(2, 2))


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7, 0.9, 0.999])
def test_flipped_byte_never_loads_different_weights(tmp_path, where):
    model, _, _ = _trained()
    path = save_checkpoint(tmp_path / "run.pt", model)
    data = bytearray(path.read_bytes())
    data[int(where * (len(data) - 1))] ^= 0x5A
    path.write_bytes(bytes(data))

    target = GPT(CFG)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    try:
        load_checkpoint(path, target)
    except CheckpointError as exc:
        assert "run.pt" in str(exc)
        assert _same_state(target.state_dict(), before)  # nothing half-loaded
    else:
        # The byte was zip padding that no reader looks at: the contents are intact.
        assert _same_state(target.state_dict(), model.state_dict())


def test_flip_inside_tensor_data_fails_the_crc(tmp_path):
    model = nn.Linear(64, 64, bias=False)
    path = save_checkpoint(tmp_path / "run.pt", model)
    data = bytearray(path.read_bytes())
    # Find the weight's bytes in the file and flip one bit in the middle of them.
    raw = model.weight.detach().numpy().tobytes()
    at = bytes(data).find(raw[:64])
    assert at > 0
    data[at + len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC-32"):
        load_checkpoint(path, nn.Linear(64, 64, bias=False))


def test_truncated_and_foreign_files(tmp_path):
    path = save_checkpoint(tmp_path / "run.pt", nn.Linear(8, 8))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path, nn.Linear(8, 8))

    path.write_bytes(b"")  # e.g. a copy that was interrupted before its first byte
    with pytest.raises(CheckpointError, match="truncated or corrupted.*EOFError"):
        load_checkpoint(path, nn.Linear(8, 8))

    foreign = tmp_path / "plain.pt"
    torch.save({"model_state_dict": nn.Linear(8, 8).state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not a dlnotes checkpoint"):
        load_checkpoint(foreign, nn.Linear(8, 8))
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt", nn.Linear(8, 8))


def test_checkpoint_of_another_config_names_the_differences(tmp_path):
    path = save_checkpoint(tmp_path / "run.pt", GPT(CFG))
    other = GPTConfig.tiny(vocab_size=97, context_length=16, emb_dim=32, n_heads=2, n_layers=1)
    with pytest.raises(CheckpointError, match="emb_dim=16, .* this model has emb_dim=32"):
        load_checkpoint(path, GPT(other))
    # Dropout changes no tensor: a checkpoint loads into the same model with other dropout.
    load_checkpoint(path, GPT(GPTConfig.tiny(**{**CFG.__dict__, "drop_rate": 0.2})))


def test_shape_mismatch_without_config_names_tensor_and_shapes(tmp_path):
    path = save_checkpoint(tmp_path / "run.pt", nn.Linear(8, 4))
    with pytest.raises(CheckpointError, match=r"weight is \(4, 8\) in the checkpoint but \(5, 8\)"):
        load_checkpoint(path, nn.Linear(8, 5))


def test_optimizer_that_does_not_fit(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    opt = torch.optim.AdamW(model.parameters())
    path = save_checkpoint(tmp_path / "run.pt", model, opt)
    other_opt = torch.optim.AdamW(model[0].parameters())
    with pytest.raises(CheckpointError, match=r"groups of \[4\] parameters.*\[2\]"):
        load_checkpoint(path, model, other_opt)
    no_opt = save_checkpoint(tmp_path / "bare.pt", model)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(no_opt, model, opt)


def test_checkpoint_from_before_a_new_config_setting_still_loads(tmp_path, monkeypatch):
    model = GPT(CFG)
    real = ckpt._config

    def older(m):  # as saved before GPTConfig had layer_norm_eps
        cfg = real(m)
        del cfg["layer_norm_eps"]
        return cfg

    monkeypatch.setattr(ckpt, "_config", older)
    path = save_checkpoint(tmp_path / "old.pt", model)
    monkeypatch.setattr(ckpt, "_config", real)
    fresh = GPT(CFG)
    load_checkpoint(path, fresh)
    assert _same_state(fresh.state_dict(), model.state_dict())


def test_rng_state_covers_a_loaders_own_generator():
    """One RNG capture: the global generators and a DataLoader's, saved and restored together."""
    gen = torch.Generator().manual_seed(5)
    state = ckpt.rng_state([gen])
    expected = (torch.rand(3), torch.randperm(10, generator=gen), random.random())
    torch.rand(7), torch.randperm(10, generator=gen), random.random()  # move every generator on
    ckpt.set_rng_state(state, [gen])
    again = (torch.rand(3), torch.randperm(10, generator=gen), random.random())
    assert torch.equal(again[0], expected[0]) and torch.equal(again[1], expected[1])
    assert again[2] == expected[2]
    with pytest.raises(CheckpointError, match="holds 1 generator.*but 0 were given"):
        ckpt.set_rng_state(state)
