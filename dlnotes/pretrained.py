"""OpenAI's pretrained GPT-2 (124M to 1558M): download, verify, load into `dlnotes.gpt.GPT`.

Raschka's ch05 downloads OpenAI's TensorFlow checkpoint and converts it; here we
take the same weights as the Hugging Face Hub publishes them (one
``model.safetensors`` per size, https://huggingface.co/openai-community/gpt2), so
no TensorFlow is needed. The file goes through the data layer (`dlnotes.data`):
cached under ``$DLNOTES_DATA_DIR/gpt2-weights/<size>/``, progress bar, atomic
download, size and sha256 checked after every download, and the one-line offline
error. `dlnotes.gpt2_weights.load_hf_safetensors` converts the tensors.

Pinning: 124M is pinned to a Hub commit with its sha256 and size (the values the
Hub lists for that commit). For 355M, 774M and 1558M no hash was available where
this was written, so they are **not pinned**: at first download we ask
``huggingface_hub`` (installed with transformers) for the current commit and the
file's sha256 and size, and download that commit's file verified against them. If
``huggingface_hub`` is missing or cannot answer, the file is downloaded from
``main`` unverified, with a warning. Once cached, a file of an unpinned size is
used as it is.

Leaves out: TensorFlow checkpoints, other model families, sharded files.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from dlnotes import data
from dlnotes.gpt import GPT, GPT2_ALIASES, GPTConfig, gpt2_size

HUB = "https://huggingface.co"
FILENAME = "model.safetensors"


@dataclass(frozen=True)
class HubFile:
    """Where one size's ``model.safetensors`` lives on the Hub, and what it must be."""

    repo: str
    revision: str  # a commit (pinned) or a branch name (resolved at first download)
    sha256: str | None = None
    size: int | None = None


MODELS: dict[str, HubFile] = {
    "124M": HubFile(
        "openai-community/gpt2",
        "607a30d783dfa663caf39e06633721c8d4cfcd7e",
        "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
        548_105_171,
    ),
    "355M": HubFile("openai-community/gpt2-medium", "main"),
    "774M": HubFile("openai-community/gpt2-large", "main"),
    "1558M": HubFile("openai-community/gpt2-xl", "main"),
}
# The sizes and their aliases are `dlnotes.gpt`'s: one table for both modules.
ALIASES = GPT2_ALIASES


def canonical_size(size: str) -> str:
    """The size key ("124M", ...) for a size or alias, in any case (`dlnotes.gpt.gpt2_size`).

    >>> canonical_size("gpt2-medium")
    '355M'
    """
    return gpt2_size(size)


def _hub_metadata(repo: str, revision: str) -> tuple[str, str, int] | None:
    """(commit, sha256, size) of the repository's model.safetensors, or None if unknown."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo, revision=revision, files_metadata=True, timeout=30)
    except Exception:  # not installed, offline, rate-limited: fall back to an unpinned download
        return None
    for sibling in info.siblings or []:
        if sibling.rfilename == FILENAME and sibling.lfs is not None and info.sha:
            return info.sha, sibling.lfs.sha256, sibling.lfs.size
    return None


def entry(size: str) -> data.DataFile:
    """The data-registry entry for `size`'s weights (registered as ``gpt2-<size>-weights``).

    For an unpinned size that is not downloaded yet, this asks the Hub for the commit
    and hash first (see the module docstring).

    >>> entry("124M").url.endswith("607a30d783dfa663caf39e06633721c8d4cfcd7e/model.safetensors")
    True
    """
    key = canonical_size(size)
    hub = MODELS[key]
    path = f"gpt2-weights/{key}/{FILENAME}"
    revision, sha256, nbytes = hub.revision, hub.sha256, hub.size
    if sha256 is None and not (data.data_dir() / path).is_file():
        found = _hub_metadata(hub.repo, hub.revision)
        if found is None:
            warnings.warn(
                f"could not read the sha256 of {hub.repo}/{FILENAME} from the Hugging Face Hub "
                "(is huggingface_hub installed?): downloading it unverified",
                stacklevel=2,
            )
        else:
            revision, sha256, nbytes = found
    url = f"{HUB}/{hub.repo}/resolve/{revision}/{FILENAME}"
    return data.register(data.DataFile(f"gpt2-{key}-weights", url, path, sha256, nbytes))


def fetch_weights(size: str = "124M") -> Path:
    """Local path of `size`'s ``model.safetensors``, downloaded and verified if needed."""
    return data.fetch(entry(size).name)


def load_gpt2(size: str = "124M", cfg: GPTConfig | None = None) -> GPT:
    """OpenAI's GPT-2 of that size as a `GPT` in eval mode (downloading it the first time).

    `cfg` defaults to the released configuration recognised from the file
    (context 1024, biased qkv, head tied to the token embedding).
    """
    from dlnotes.gpt2_weights import load_hf_safetensors

    return load_hf_safetensors(fetch_weights(size), cfg)
