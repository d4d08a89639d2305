"""GPT-2 weights: fetched from a local stand-in for the Hub, verified, and equal to HF's model.

A tiny random `transformers.GPT2LMHeadModel` is saved as safetensors and served from
127.0.0.1 in the Hub's URL layout; the registry's Hub address is pointed there.
"""

from __future__ import annotations

import hashlib
import http.server
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dlnotes import data, pretrained
from dlnotes.errors import DataError, InputError
from dlnotes.gpt2_weights import config_from_hf
from dlnotes.pretrained import HubFile, load_gpt2

transformers = pytest.importorskip("transformers")
hf_api = pytest.importorskip("huggingface_hub.hf_api")

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> tuple[Path, object]:
    """A tiny GPT-2 saved the way the Hub stores it (model.safetensors + config.json)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=101, n_positions=24, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    folder = tmp_path_factory.mktemp("hf")
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


class Hub:
    """A 127.0.0.1 file server with the Hub's layout; counts the downloads."""

    def __init__(self, root: Path, start: Callable[..., http.server.HTTPServer]) -> None:
        self.root, self.requests = root, 0
        hub = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802 (http.server's name)
                hub.requests += 1
                super().do_GET()

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.url = start(Handler).url

    def put(self, repo: str, revision: str, payload: bytes) -> None:
        target = self.root / repo / "resolve" / revision / "model.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload)


@pytest.fixture
def hub(tmp_path, monkeypatch, local_server):
    server = Hub(tmp_path / "hub", local_server)
    monkeypatch.setattr(pretrained, "HUB", server.url)
    monkeypatch.setenv("DLNOTES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(data, "REGISTRY", dict(data.REGISTRY))
    return server


def _pin(monkeypatch, payload: bytes) -> None:
    pinned = HubFile(
        "openai-community/gpt2", REV, hashlib.sha256(payload).hexdigest(), len(payload)
    )
    monkeypatch.setitem(pretrained.MODELS, "124M", pinned)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_downloads_verifies_and_gives_hf_logits(hub, tiny_hf, monkeypatch, tmp_path):
    folder, hf_model = tiny_hf
    payload = (folder / "model.safetensors").read_bytes()
    hub.put("openai-community/gpt2", REV, payload)
    _pin(monkeypatch, payload)
    cfg = config_from_hf(folder / "config.json")

    model = load_gpt2("gpt2", cfg=cfg)
    ids = torch.randint(0, 101, (2, 24))
    with torch.no_grad():
        assert torch.allclose(model(ids), hf_model(ids).logits, atol=1e-5)
    assert _files(tmp_path / "data") == ["gpt2-weights/124M/model.safetensors"]

    load_gpt2("124M", cfg=cfg)  # cached and verified: no second download
    assert hub.requests == 1


@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_damaged_download_is_rejected_and_not_kept(hub, tiny_hf, monkeypatch, tmp_path, damage):
    payload = (tiny_hf[0] / "model.safetensors").read_bytes()
    _pin(monkeypatch, payload)
    if damage == "tampered":
        bad = bytearray(payload)
        bad[len(bad) // 2] ^= 0xFF
        served = bytes(bad)
    else:
        served = payload[: len(payload) - 100]
    hub.put("openai-community/gpt2", REV, served)

    words = "fails its sha256 check" if damage == "tampered" else f"expected {len(payload):,}"
    with pytest.raises(DataError, match=words):
        load_gpt2("124M")
    assert _files(tmp_path / "data") == []  # no partial or temporary file left


def test_offline_is_the_data_layer_one_liner(hub, monkeypatch, tmp_path):
    _pin(monkeypatch, b"x")
    monkeypatch.setattr(pretrained, "HUB", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DataError, match=r"cannot download 'gpt2-124M-weights'.*DLNOTES_DATA_DIR"):
        pretrained.fetch_weights("124M")
    assert not (tmp_path / "data").exists() or _files(tmp_path / "data") == []


def test_unpinned_size_is_pinned_from_hub_metadata(hub, tiny_hf, monkeypatch):
    folder, hf_model = tiny_hf
    payload = (folder / "model.safetensors").read_bytes()
    sha = data.sha256_of(folder / "model.safetensors")
    hub.put("openai-community/gpt2-medium", REV, payload)
    asked = []

    def fake_model_info(self, repo_id, *, revision=None, files_metadata=False, timeout=None):
        asked.append((repo_id, revision, files_metadata))
        lfs = {"sha256": sha, "size": len(payload), "pointerSize": 134}
        return hf_api.ModelInfo(
            id=repo_id, sha=REV, siblings=[{"rfilename": "model.safetensors", "lfs": lfs}]
        )

    monkeypatch.setattr("huggingface_hub.HfApi.model_info", fake_model_info)
    entry = pretrained.entry("medium")
    assert (entry.sha256, entry.size) == (sha, len(payload))
    assert entry.url == f"{hub.url}/openai-community/gpt2-medium/resolve/{REV}/model.safetensors"
    assert asked == [("openai-community/gpt2-medium", "main", True)]

    model = load_gpt2("355M", cfg=config_from_hf(folder / "config.json"))
    ids = torch.randint(0, 101, (1, 10))
    with torch.no_grad():
        assert torch.allclose(model(ids), hf_model(ids).logits, atol=1e-5)


def test_unpinned_without_metadata_downloads_from_main_with_a_warning(hub, tiny_hf, monkeypatch):
    hub.put("openai-community/gpt2-xl", "main", (tiny_hf[0] / "model.safetensors").read_bytes())
    monkeypatch.setattr(pretrained, "_hub_metadata", lambda repo, revision: None)
    with pytest.warns(UserWarning, match="unverified"):
        path = pretrained.fetch_weights("xl")
    assert path.read_bytes() == (tiny_hf[0] / "model.safetensors").read_bytes()


@pytest.mark.parametrize("size", ["125M", "gpt3", ""])
def test_unknown_size_lists_the_known_ones(size):
    with pytest.raises(InputError, match=r"unknown GPT-2 size .*124M, 355M, 774M, 1558M"):
        load_gpt2(size)


def test_size_that_is_not_a_name():
    with pytest.raises(InputError, match="must be a name such as '124M', got 124"):
        load_gpt2(124)  # type: ignore[arg-type]


def test_aliases():
    assert [pretrained.canonical_size(s) for s in ("small", "GPT2-XL", "774m")] == [
        "124M",
        "1558M",
        "774M",
    ]


def test_one_size_table_for_configs_and_downloads():
    """gpt.py and pretrained.py agree on sizes and aliases, in any case."""
    from dlnotes.gpt import GPT2_ALIASES, GPT2_SIZES, GPTConfig

    assert set(pretrained.MODELS) == set(GPT2_SIZES)
    assert pretrained.ALIASES is GPT2_ALIASES
    for name in [*GPT2_SIZES, *GPT2_ALIASES, "GPT2-Medium", "xL", "355m"]:
        size = pretrained.canonical_size(name)
        assert GPTConfig.gpt2(name) == GPTConfig.preset(name) == GPTConfig.gpt2(size)
        assert GPTConfig.gpt2(name).emb_dim == GPT2_SIZES[size][0]
    assert GPTConfig.gpt2("gpt2-xl").n_layers == 48
