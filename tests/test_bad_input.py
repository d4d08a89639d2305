"""Bad input found by trying what a new reader might pass: each is one clear error.

Every test here failed before its fix (a silent wrong result, or a raw error from
deep inside PyTorch, tiktoken or the standard library).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dlnotes import checkpoint as ckpt
from dlnotes.checkpoint import load_checkpoint, save_checkpoint
from dlnotes.errors import CheckpointError, DataError, InputError, require_bool, require_number
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.losses import batch_loss, loader_loss
from dlnotes.train import make_optimizer, train

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "Every effort moves you forward, and every step counts when you learn by doing. "


def byte_loader(text: str = TEXT * 2, T: int = 16, stride: int = 8, batch_size: int = 4):
    ids = torch.tensor(list(text.encode()))
    starts = range(0, len(ids) - T, stride)
    x = torch.stack([ids[i : i + T] for i in starts])
    y = torch.stack([ids[i + 1 : i + T + 1] for i in starts])
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=True)


def tiny_model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.tiny(vocab_size=256, context_length=16, emb_dim=16, n_layers=1))


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


# 1. A negative clipping limit reversed every update.
@pytest.mark.parametrize("grad_clip", [-1.0, 0.0, float("nan"), "1"])
def test_grad_clip_must_be_a_positive_number(grad_clip) -> None:
    model, loader = tiny_model(), byte_loader()
    before = weights(model)
    with pytest.raises(InputError, match="grad_clip must be a number > 0"):
        train(model, loader, loader, make_optimizer(model), grad_clip=grad_clip, progress=False)
    assert torch.equal(weights(model), before)


# 2. A negative number of evaluation batches gave negative losses; zero divided by zero.
@pytest.mark.parametrize("n", [-1, 0, 1.5, True])
def test_number_of_evaluation_batches_is_checked(n) -> None:
    model, loader = tiny_model(), byte_loader()
    with pytest.raises(InputError, match="num_batches must be an integer >= 1"):
        loader_loss(model, loader, n)
    with pytest.raises(InputError, match="eval_batches must be an integer >= 1"):
        train(model, loader, loader, make_optimizer(model), eval_batches=n, progress=False)


# 13. Fractional step and epoch counts ran a rounded number of steps.
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_steps": 2.5}, "max_steps"),
        ({"max_steps": 0}, "max_steps"),
        ({"epochs": 1.5}, "epochs"),
        ({"eval_every": 2.0}, "eval_every"),
        ({"checkpoint_every": 0.5}, "checkpoint_every"),
    ],
)
def test_step_and_epoch_counts_are_integers(kwargs, name) -> None:
    model, loader = tiny_model(), byte_loader()
    with pytest.raises(InputError, match=f"{name} must be an integer >= 1"):
        train(model, loader, loader, make_optimizer(model), progress=False, **kwargs)


# 3. A value that weights_only loading refuses was saved, then the file "was corrupted".
@pytest.mark.parametrize(
    "extra, key",
    [
        ({"best": np.float64(1.5)}, "extra['best']"),
        ({"log": [1, {"at": np.int64(3)}]}, "extra['log'][1]['at']"),
        ({"when": Path("x")}, "extra['when']"),
    ],
)
def test_save_refuses_values_the_safe_loader_cannot_read(tmp_path, extra, key) -> None:
    path = tmp_path / "run.pt"
    with pytest.raises(CheckpointError, match=re.escape(key)):
        save_checkpoint(path, torch.nn.Linear(2, 2), extra=extra)
    assert not path.exists()
    # Plain values of the same meaning are fine, and come back equal.
    save_checkpoint(path, torch.nn.Linear(2, 2), extra={"best": 1.5, "log": [1, {"at": 3}]})
    assert load_checkpoint(path, torch.nn.Linear(2, 2))["extra"]["best"] == 1.5


# 4. A checkpoint `train` cannot resume from was refused after overwriting the model.
def test_train_refuses_a_foreign_checkpoint_before_touching_the_model(tmp_path) -> None:
    model, loader = tiny_model(), byte_loader()
    other = tiny_model()
    torch.nn.init.normal_(other.wte.weight)
    path = save_checkpoint(tmp_path / "plain.pt", other, make_optimizer(other))
    opt = make_optimizer(model)
    before, opt_before = weights(model), opt.state_dict()
    with pytest.raises(CheckpointError, match="not written by train"):
        train(model, loader, loader, opt, checkpoint=path, progress=False)
    assert torch.equal(weights(model), before)
    assert opt.state_dict() == opt_before


# 5. AdamW's state loaded into SGD; the next step failed with KeyError: 'momentum'.
def test_optimizer_of_another_type_is_refused(tmp_path) -> None:
    model = torch.nn.Linear(3, 3)
    adam = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    adam.step()
    path = save_checkpoint(tmp_path / "run.pt", model, adam)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match="AdamW optimizer.*this one is SGD"):
        load_checkpoint(path, model, sgd)
    sgd.step()  # untouched: still a working SGD
    step_lr = torch.optim.lr_scheduler.StepLR(adam, step_size=2)
    path = save_checkpoint(tmp_path / "run.pt", model, adam, step_lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(adam, T_max=10)
    with pytest.raises(CheckpointError, match="StepLR scheduler.*this one is CosineAnnealingLR"):
        load_checkpoint(path, model, adam, cosine)


# 6. Disk full while saving: a raw "[enforce fail at inline_container.cc]" RuntimeError.
def test_disk_full_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch) -> None:
    model = torch.nn.Linear(64, 64)
    path = save_checkpoint(tmp_path / "run.pt", model, step=1)
    real = ckpt.atomic_write

    class FullDisk:
        """A file that takes the first 4 kB, then fails as a full disk does."""

        def __init__(self, fh) -> None:
            self.fh, self.written = fh, 0

        def write(self, block) -> int:
            self.written += len(block)
            if self.written > 4096:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(block)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    @contextlib.contextmanager
    def full_disk(target, *args, **kwargs):
        with real(target, *args, **kwargs) as fh:
            yield FullDisk(fh)

    monkeypatch.setattr(ckpt, "atomic_write", full_disk)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, torch.nn.Linear(64, 64), step=2)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "No space left" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]
    assert load_checkpoint(path, model)["step"] == 1


# 12. Targets outside the vocabulary or of another shape: raw IndexError / ValueError.
def test_batch_loss_checks_the_targets() -> None:
    model = tiny_model()
    inputs = torch.randint(0, 256, (2, 8))
    with pytest.raises(InputError, match="target token id 300 is outside the vocabulary 0..255"):
        batch_loss(model, inputs, torch.full((2, 8), 300))
    with pytest.raises(InputError, match="target token id -5"):
        batch_loss(model, inputs, torch.full((2, 8), -5))
    with pytest.raises(InputError, match=r"targets of shape \(2, 7\).*inputs of shape \(2, 8\)"):
        batch_loss(model, inputs, torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(InputError, match="integer token ids"):
        batch_loss(model, inputs, torch.zeros(2, 8))
    expected = torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), inputs.flatten())
    assert batch_loss(model, inputs, inputs).item() == pytest.approx(expected.item())
    padded = inputs.clone()
    padded[:, 5:] = -100  # the ignore index of padded batches (ch07) stays allowed
    kept = model(inputs)[:, :5].flatten(0, 1)
    expected = torch.nn.functional.cross_entropy(kept, inputs[:, :5].flatten())
    assert batch_loss(model, inputs, padded).item() == pytest.approx(expected.item())


# 7. An empty (or damaged) tiktoken cache and no network: an 88-line requests traceback.
@pytest.mark.parametrize("cache", ["empty", "truncated"])
def test_tiktoken_without_its_cache_uses_the_data_layers_files(tmp_path, monkeypatch, cache):
    import requests
    import tiktoken.registry

    from dlnotes.gpt2_tokenizer import _cache_names, tiktoken_gpt2

    def offline(*args, **kwargs):
        raise requests.ConnectionError("no network in this test")

    monkeypatch.setattr(requests, "get", offline)
    monkeypatch.setattr(requests.Session, "request", offline)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # nothing loaded yet
    if cache == "truncated":
        for name in _cache_names():
            (tmp_path / name).write_bytes(b"cut short")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert tiktoken_gpt2().encode("Hello, world") == [15496, 11, 995]
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)


def test_tiktoken_with_no_files_anywhere_is_the_data_layers_one_line(tmp_path, monkeypatch):
    import tiktoken.registry

    from dlnotes.gpt2_tokenizer import tiktoken_gpt2

    def offline(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    monkeypatch.setenv("DLNOTES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    with pytest.raises(DataError, match="cannot download 'gpt2-encoder'") as info:
        tiktoken_gpt2()
    assert "\n" not in str(info.value)


# 9. decode: a batch, floats and booleans, ids outside the vocabulary.
@pytest.mark.parametrize(
    "ids, error",
    [
        (torch.tensor([[15496, 11]]), r"one sequence \(1-D\), got shape \(1, 2\)|1-D|2-D"),
        ([1.0], "integer"),
        ([True], "integer"),
        ([-1], "cannot decode id -1"),
        ([50257], "cannot decode id 50257"),
    ],
)
def test_gpt2_tokenizer_decode_refuses_what_is_not_ids(ids, error) -> None:
    from dlnotes.gpt2_tokenizer import GPT2Tokenizer

    with pytest.raises(InputError, match=error):
        GPT2Tokenizer.pretrained().decode(ids)


@pytest.mark.parametrize(
    "ids, error",
    [
        (torch.tensor([[1, 2]]), r"one sequence \(1-D\), got shape \(1, 2\)"),
        ([1.0], r"integer token ids, got 1.0 \(a float\)"),
        ([True], r"integer token ids, got True \(a bool\)"),
        ([7], "cannot decode id 7"),
    ],
)
def test_word_tokenizer_decode_refuses_what_is_not_ids(ids, error) -> None:
    from dlnotes.text import SimpleTokenizer

    with pytest.raises(InputError, match=error):
        SimpleTokenizer({"a": 0, "b": 1, "c": 2}).decode(ids)


@pytest.mark.parametrize("tokenizer", ["ours", "tiktoken"])
@pytest.mark.parametrize(
    "ids, error",
    [
        ([-1], "token id -1 is outside the vocabulary 0..50256"),
        (torch.tensor([[50257]]), "token id 50257 is outside the vocabulary 0..50256"),
        (torch.tensor([[15496, 11], [15496, 11]]), r"one sequence \(1-D\), got shape \(2, 2\)"),
        ([2.0], "integer token ids"),
    ],
)
def test_ids_to_text_refuses_what_is_not_one_sequence_of_ids(tokenizer, ids, error) -> None:
    from dlnotes.gpt2_tokenizer import GPT2Tokenizer, tiktoken_gpt2
    from dlnotes.loader import ids_to_text

    tok = GPT2Tokenizer.pretrained() if tokenizer == "ours" else tiktoken_gpt2()
    with pytest.raises(InputError, match=error):
        ids_to_text(ids, tok)
    assert ids_to_text(torch.tensor([[15496, 11]]), tok) == ids_to_text([15496, 11]) == "Hello,"


# 10. Float ids were truncated to integers; None gave a raw TypeError.
@pytest.mark.parametrize(
    "source, error",
    [
        ([1.5, 2.7, 3.1, 4.0, 5.0], "token ids must be integers, got torch.float32 values"),
        (torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), "must be integers"),
        ([True, False, True, True, False], "must be integers"),
        ([3, 4, -1, 5, 6], "token ids must be >= 0, got -1"),
        (None, "a string or a sequence of token ids, got a NoneType"),
        (12345, "a string or a sequence of token ids, got a int"),
        ([[1, 2], [3]], "not a sequence of integers"),
    ],
)
def test_dataset_refuses_ids_that_are_not_integers(source, error) -> None:
    from dlnotes.loader import GPTDataset, create_dataloader

    with pytest.raises(InputError, match=error):
        GPTDataset(source, max_length=2, stride=1)
    with pytest.raises(InputError, match=error):
        create_dataloader(source, batch_size=1, max_length=2, stride=1)


def test_empty_text_is_an_error_not_an_empty_prompt() -> None:
    from dlnotes.loader import text_to_ids

    with pytest.raises(InputError, match="the text is empty"):
        text_to_ids("")
    with pytest.raises(InputError, match="the text must be a string, got a bytes"):
        text_to_ids(b"Hello")


def test_endoftext_is_defined_once() -> None:
    import dlnotes

    root = Path(dlnotes.__file__).parent
    definitions = [
        path.name
        for path in root.rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.match(r"ENDOFTEXT\s*(:[^=]+)?=", line)
    ]
    assert definitions == ["text.py"]
    from dlnotes import gpt2_tokenizer, loader, text

    assert gpt2_tokenizer.ENDOFTEXT == loader.ENDOFTEXT == text.ENDOFTEXT == "<|endoftext|>"


# 15. Sizes of the wrong type failed deep inside nn.Linear / torch.empty.
@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"emb_dim": 32.0}, r"GPTConfig.emb_dim must be an integer >= 1, got 32.0"),
        ({"vocab_size": "300"}, r"GPTConfig.vocab_size must be an integer >= 1, got '300'"),
        ({"n_layers": True}, r"GPTConfig.n_layers must be an integer >= 1, got True"),
        ({"context_length": 0}, r"GPTConfig.context_length must be an integer >= 1, got 0"),
        ({"drop_rate": "0.1"}, r"GPTConfig.drop_rate must be a number in \[0, 1\), got '0.1'"),
        ({"qkv_bias": 1}, r"GPTConfig.qkv_bias must be True or False, got 1"),
        ({"layer_norm_eps": 0.0}, r"layer_norm_eps must be a number in \(0, 1\), got 0.0"),
    ],
)
def test_config_values_of_the_wrong_type(overrides, error) -> None:
    with pytest.raises(InputError, match=error):
        GPTConfig.tiny(**overrides)


# 11. A float eos_id gave a float tensor of "ids"; with more tokens the error blamed the input.
@pytest.mark.parametrize("eos_id", [1.5, 2.0, True, "3", -1])
def test_eos_id_must_be_an_integer_id(eos_id) -> None:
    from dlnotes.generate import generate, stream

    model = tiny_model().eval()
    prompt = torch.tensor([[1, 2, 3]])
    for max_new_tokens in (1, 5):
        with pytest.raises(InputError, match="eos_id must be an integer >= 0"):
            generate(model, prompt, max_new_tokens, eos_id=eos_id)
        with pytest.raises(InputError, match="eos_id must be an integer >= 0"):
            stream(model, prompt, max_new_tokens, eos_id=eos_id)
    with pytest.raises(InputError, match="eos_id 256 is outside the vocabulary 0..255"):
        generate(model, prompt, 2, eos_id=256)
    assert generate(model, prompt, 2, eos_id=5).dtype == torch.long


def test_resume_with_a_loader_of_other_generators_is_refused_first(tmp_path) -> None:
    model, loader = tiny_model(), byte_loader()
    path = tmp_path / "run.pt"
    opt = make_optimizer(model)
    train(model, loader, loader, opt, max_steps=1, checkpoint=path, amp=None, progress=False)
    own_generator = torch.Generator().manual_seed(1)
    own = DataLoader(
        loader.dataset, batch_size=4, shuffle=True, drop_last=True, generator=own_generator
    )
    fresh = tiny_model()
    torch.nn.init.normal_(fresh.wte.weight)
    before = weights(fresh)
    with pytest.raises(
        CheckpointError,
        match="cannot be resumed with this loader .*holds 0 generator.*1 were given",
    ):
        train(fresh, own, own, make_optimizer(fresh), checkpoint=path, progress=False)
    assert torch.equal(weights(fresh), before)


@pytest.mark.parametrize(
    ("value", "interval", "ok"),
    [
        (0, "[0, 1)", True),
        (1, "[0, 1)", False),
        (np.float32(0.5), "(0, 1)", True),
        (0.0, "(0, 1)", False),
        (float("nan"), "(-inf, inf)", False),
        (float("inf"), "(-inf, inf)", False),
        (float("inf"), "(0, inf]", True),
        (10**400, "(0, inf)", False),  # beyond float's range: an error, not OverflowError
        (-(10**400), "(-inf, 0)", False),
        (True, "(-inf, inf)", False),
        ("1", "(-inf, inf)", False),
        (torch.tensor(1.0), "(-inf, inf)", False),  # a tensor would sync or break later
        (None, "(0, inf)", False),
    ],
    ids=lambda v: str(v)[:12],
)
def test_require_number(value: object, interval: str, ok: bool) -> None:
    if ok:
        assert require_number("x", value, interval) == float(value)
    else:
        with pytest.raises(InputError, match=r"^x must be a .*number.*, got "):
            require_number("x", value, interval)


def test_require_number_and_bool_messages() -> None:
    cases = [
        (lambda: require_number("x", -1), None),
        (lambda: require_number("x", "a"), "x must be a finite number, got 'a'"),
        (
            lambda: require_number("x", 0, "(0, inf)", "(why)"),
            "x must be a number > 0 (why), got 0",
        ),
        (lambda: require_number("x", -1, "[0, inf)"), "x must be a number >= 0, got -1"),
        (lambda: require_number("x", 2, "[0, 1]"), r"x must be a number in [0, 1], got 2"),
        (lambda: require_bool("flag", 1), "flag must be True or False, got 1"),
    ]
    for call, message in cases:
        if message is None:
            assert call() == -1.0
            continue
        with pytest.raises(InputError) as caught:
            call()
        assert str(caught.value) == message
    assert require_bool("flag", False) is False
