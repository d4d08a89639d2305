"""SmolLM2's tokenizer on our own BPE, read from the model's GGUF file, and its chat template.

A GGUF file carries its tokenizer as metadata: ``tokenizer.ggml.tokens`` (49,152 token
strings in GPT-2's printable byte spelling, ``Ġ`` for a space), ``tokenizer.ggml.merges``
(48,900 lines ``"left right"`` in the order they were learned), the token types (17
*control* tokens such as ``<|im_start|>``), the bos/eos/pad ids and a Jinja chat
template. `LlamaTokenizer.from_gguf` turns these into a `dlnotes.bpe.BPETokenizer`, the
same merge loop and chunk cache GPT-2 uses; only three things differ from GPT-2:

* **Pre-tokenisation** ``smollm``: every digit is a chunk of its own, then GPT-2's
  pattern splits the text between digits (llama.cpp's two-step split; the Hugging Face
  tokenizer of the original repository does the same with ``Digits(individual_digits)``
  then ``ByteLevel``). So ``"2026"`` is four tokens, and a run of spaces or newlines
  before a digit stays one chunk. `SMOLLM_PATTERN` does both steps in one regex.
  (transformers' GGUF loader has no entry for ``smollm``, splits like GPT-2 and so
  differs from the model's tokenizer where whitespace runs up to a digit.)
* **Missing bytes**: 21 bytes (six control characters and bytes that UTF-8 never or
  hardly uses) have no token; encoding drops them, as Hugging Face's tokenizers and
  llama.cpp do, so such text does not survive a round trip.
* **Specials**: the chat markers ``<|im_start|>`` (also bos) and ``<|im_end|>`` (eos and
  pad), ``<|endoftext|>`` and code-data markers. As for GPT-2, `encode` refuses text that
  contains one unless it is allowed (``allowed_special="all"`` is what Hugging Face does);
  `encode_chat` renders a conversation and allows them.

`LlamaTokenizer.from_hf_json` builds the same tokenizer from the Hugging Face Hub's
``tokenizer.json``. `apply_chat_template` is the file's ChatML template written in
Python: each message becomes ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, a default
system prompt (read from the template) comes first when the conversation has none, and
``<|im_start|>assistant\\n`` asks for the reply.

Leaves out: other pre-tokenizers and chat templates (they are refused), and adding
bos/eos automatically (this model's file asks for neither).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlnotes.bpe import BPETokenizer
from dlnotes.errors import DataError, InputError
from dlnotes.gpt2_tokenizer import byte_level_parts

if TYPE_CHECKING:
    from gguf import GGUFReader

# Digits one by one, then GPT-2's pattern (bpe.GPT2_PATTERN) on the text between them.
# One regex does both: no GPT-2 branch consumes a digit, and whitespace that runs up to a
# digit is taken whole, as it would be at the end of the text between two digits.
SMOLLM_PATTERN = (
    r"""\p{N}|'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?[^\s\p{L}\p{N}]++|\s++(?:\Z|(?=\p{N}))"""
    r"""|\s+(?!\S)|\s"""
)
PRE_TOKENIZERS = {"smollm": SMOLLM_PATTERN}

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

# SmolLM2's template with its default system prompt cut out (`apply_chat_template` is it
# in Python).
_CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + "{system}" + "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOLLM2_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOLLM2_CHAT_TEMPLATE = _CHATML.replace("{system}", SMOLLM2_SYSTEM_PROMPT)
_DEFAULT_SYSTEM = re.compile(r"\{\{ '<\|im_start\|>system\n(.*?)<\|im_end\|>\n' \}\}", re.S)

# llama.cpp's token types (gguf.TokenType): control and user-defined tokens are matched
# in text as whole names; the others are spelled in bytes.
_CONTROL, _USER_DEFINED = 3, 4


class LlamaTokenizer(BPETokenizer):
    """A GGUF model's byte-level BPE (``tokenizer.ggml.model = gpt2``) with its specials.

    ``tok = LlamaTokenizer.from_gguf(path)``; ``tok.encode("2026")`` gives four ids;
    ``tok.encode_chat([{"role": "user", "content": "Hi"}])`` the ids of a chat prompt.
    `encode` adds no bos, as this model's file says; ``allowed_special="all"`` encodes
    special-token names as Hugging Face's tokenizer does.
    """

    # A chunk that is a whole token skips the merges; the tests check on every token of
    # the vocabulary that the merges would give the same single id.
    whole_chunks = True

    def __init__(
        self,
        merges: Mapping[tuple[int, int], int] | Iterable[tuple[tuple[int, int], int]] = (),
        *,
        pattern: str | None = SMOLLM_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
        byte_ids: Sequence[int | None] | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        chat_template: str | None = None,
    ) -> None:
        super().__init__(merges, pattern=pattern, special_tokens=special_tokens, byte_ids=byte_ids)
        for name, i in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
            if i is not None and i not in self.vocab:
                raise InputError(f"{name}={i} is not an id of this tokenizer")
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.chat_template = chat_template
        self.default_system_prompt = _default_system_prompt(chat_template)

    @property
    def vocab_size(self) -> int:
        """Number of ids (the model's embedding rows), special tokens included."""
        return self.n_vocab

    @classmethod
    def from_gguf(cls, source: str | Path | GGUFReader) -> LlamaTokenizer:
        """The tokenizer stored in a GGUF file (a path, or a `gguf.GGUFReader` already open:
        opening one reads all metadata and takes seconds, so share it with the weights)."""
        reader = open_gguf(source)
        name = getattr(reader, "path", source)
        kind = _get(reader, "tokenizer.ggml.model", name)
        pre = _get(reader, "tokenizer.ggml.pre", name, default="default")
        if kind != "gpt2" or pre not in PRE_TOKENIZERS:
            raise DataError(
                f"{name} has a {kind!r} tokenizer with pre-tokenizer {pre!r}; only the "
                f"byte-level BPE 'gpt2' with {sorted(PRE_TOKENIZERS)} is supported (SmolLM2)"
            )
        tokens: list[str] = _get(reader, "tokenizer.ggml.tokens", name)
        types: list[int] = _get(reader, "tokenizer.ggml.token_type", name)
        lines: list[str] = _get(reader, "tokenizer.ggml.merges", name)
        if len(types) != len(tokens):
            raise DataError(f"{name}: {len(tokens):,} tokens but {len(types):,} token types")
        for flag in ("add_bos_token", "add_eos_token"):
            if _get(reader, f"tokenizer.ggml.{flag}", name, default=False):
                raise DataError(f"{name} sets tokenizer.ggml.{flag}, which is not supported")
        ids = {
            key: _get(reader, f"tokenizer.ggml.{key}_token_id", name, default=None)
            for key in ("bos", "eos", "padding")
        }
        return cls._build(
            name,
            tokens,
            lines,
            special_tokens={
                t: i for i, t in enumerate(tokens) if types[i] in (_CONTROL, _USER_DEFINED)
            },
            pattern=PRE_TOKENIZERS[pre],
            bos_id=ids["bos"],
            eos_id=ids["eos"],
            pad_id=ids["padding"] if ids["padding"] is not None else ids["eos"],
            chat_template=_get(reader, "tokenizer.chat_template", name, default=None),
        )

    @classmethod
    def from_hf_json(cls, path: str | Path) -> LlamaTokenizer:
        """SmolLM2's tokenizer from the Hugging Face Hub's ``tokenizer.json``.

        That file has the vocabulary, merges, specials and pre-tokenizer but not the chat
        template or which special is bos/eos/pad (those live in ``tokenizer_config.json``):
        SmolLM2-Instruct's are used, the same as in its GGUF file.
        """
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            model, pre = state["model"], state["pre_tokenizer"]
            vocab: dict[str, int] = model["vocab"]
            lines = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
            added = {t["content"]: int(t["id"]) for t in state["added_tokens"]}
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path} is not a Hugging Face tokenizer.json ({exc!r})") from None
        if model.get("type") != "BPE" or state.get("normalizer") or not _is_smollm(pre, model):
            raise DataError(
                f"{path} is not SmolLM2's tokenizer: a byte-level BPE, no normalizer, and "
                f"Digits(individual_digits) then ByteLevel pre-tokenisation (got {pre!r})"
            )
        tokens = [""] * (max(vocab.values(), default=-1) + 1)
        for token, i in vocab.items():
            tokens[i] = token
        missing = sorted({IM_START, IM_END, *added} - vocab.keys())
        if missing or "" in tokens:
            raise DataError(f"{path}: the vocabulary lacks ids or the tokens {missing}")
        return cls._build(
            path,
            tokens,
            lines,
            special_tokens=added,
            pattern=SMOLLM_PATTERN,
            bos_id=vocab[IM_START],
            eos_id=vocab[IM_END],
            pad_id=vocab[IM_END],
            chat_template=SMOLLM2_CHAT_TEMPLATE,
        )

    @classmethod
    def _build(
        cls, name: Any, tokens: list[str], lines: list[str], **kwargs: Any
    ) -> LlamaTokenizer:
        """The tokenizer for token strings in GPT-2's byte spelling and ``"left right"``
        merge lines; `DataError` (naming the file `name`) if they do not fit together."""
        byte_ids, merges = byte_level_parts({t: i for i, t in enumerate(tokens)}, lines, name)
        try:
            tok = cls(merges, byte_ids=byte_ids, **kwargs)
        except InputError as exc:
            raise DataError(f"{name}: inconsistent tokenizer ({exc})") from None
        if tok.n_vocab != len(tokens) or max(tok.vocab) != len(tokens) - 1:
            raise DataError(
                f"{name}: bytes, merges and specials give {tok.n_vocab:,} of its "
                f"{len(tokens):,} tokens; the others could not be decoded"
            )
        return tok

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for a conversation, as the GGUF's ChatML template renders it.

        `messages` are ``{"role": ..., "content": ...}`` dicts; a default system message
        comes first if the first message is not one.
        """
        if self.chat_template is None or self.default_system_prompt is None:
            raise DataError(
                "this tokenizer has no chat template, or not the ChatML one rendered here"
            )
        if isinstance(messages, Mapping | str) or not isinstance(messages, Sequence):
            raise InputError(
                "messages must be a list of {'role': ..., 'content': ...} dicts, "
                f"got {type(messages).__name__}"
            )
        if not messages:
            raise InputError("messages is empty: a chat needs at least one message")
        parts = []
        for k, message in enumerate(messages):
            if not isinstance(message, Mapping) or set(message) != {"role", "content"}:
                raise InputError(
                    f"message {k} must be a dict with exactly the keys 'role' and 'content', "
                    f"got {message!r}"
                )
            role, content = message["role"], message["content"]
            if not isinstance(role, str) or not isinstance(content, str) or not role:
                raise InputError(f"message {k}: role and content must be strings, got {message!r}")
            if k == 0 and role != "system":
                parts.append(f"{IM_START}system\n{self.default_system_prompt}{IM_END}\n")
            parts.append(f"{IM_START}{role}\n{content}{IM_END}\n")
        if add_generation_prompt:
            parts.append(f"{IM_START}assistant\n")
        return "".join(parts)

    def encode_chat(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
    ) -> list[int]:
        """Ids of `apply_chat_template`'s prompt, its special tokens as special ids."""
        return self.encode(
            self.apply_chat_template(messages, add_generation_prompt), allowed_special="all"
        )


def _is_smollm(pre: Any, model: Mapping[str, Any]) -> bool:
    """Whether a tokenizer.json's pre-tokenizer and BPE settings are SmolLM2's: digits
    isolated, then GPT-2's byte-level split; plain merges (no dropout, no affixes)."""
    if not isinstance(pre, dict) or pre.get("type") != "Sequence":
        return False
    steps = pre.get("pretokenizers")
    if not isinstance(steps, list) or len(steps) != 2 or not isinstance(steps[1], dict):
        return False
    digits, byte_level = steps
    return (
        digits == {"type": "Digits", "individual_digits": True}
        and byte_level.get("type") == "ByteLevel"
        and not byte_level.get("add_prefix_space")
        and byte_level.get("use_regex", True)
        and not model.get("dropout")
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
    )


def _default_system_prompt(template: str | None) -> str | None:
    """The default system prompt if `template` is the ChatML template we render, else None."""
    found = _DEFAULT_SYSTEM.search(template or "")
    if found is None or template != _CHATML.replace("{system}", found.group(1)):
        return None
    return found.group(1)


@functools.cache
def _plain_reader() -> type[GGUFReader]:
    """`gguf.GGUFReader` reading from a plain ndarray view of its memory map.

    The reader cuts the file into one small view per value (98k strings for this
    tokenizer); views of an `np.memmap` run memmap's Python-level bookkeeping each time,
    which made parsing three times slower. The bytes, and the parsing, are the same.
    """
    import numpy as np
    from gguf import GGUFReader

    class PlainReader(GGUFReader):
        @property
        def data(self) -> np.ndarray:
            return self._bytes

        @data.setter
        def data(self, mapped: np.ndarray) -> None:
            self._bytes = mapped.view(np.ndarray)  # keeps the map alive as its base

    return PlainReader


def open_gguf(source: str | Path | GGUFReader) -> GGUFReader:
    """A `gguf.GGUFReader` for a path (a reader is returned as it is); `DataError` if the
    file is missing or not a readable GGUF. The weights and the tokenizer share one."""
    from gguf import GGUFReader

    if isinstance(source, GGUFReader):
        return source
    if not isinstance(source, str | Path):
        raise InputError(f"a GGUF source is a path or a gguf.GGUFReader, got {type(source)}")
    path = Path(source)
    if not path.is_file():
        raise DataError(f"no GGUF file at {path}")
    try:
        return _plain_reader()(path, "r")
    except Exception as exc:  # the reader raises ValueError, struct/numpy errors, OSError...
        raise DataError(
            f"{path} is not a readable GGUF file (truncated or corrupted?): {exc}"
        ) from None


_MISSING = object()


def gguf_value(
    reader: GGUFReader, key: str, default: Any = None, source: object = "the GGUF file"
) -> Any:
    """One metadata value of a GGUF file (a number, string or list), or `default` where
    the key is absent; `DataError` naming `source` if the value cannot be decoded."""
    field = reader.fields.get(key)
    if field is None:
        return default
    try:
        return field.contents()
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: cannot read {key!r} ({exc})") from None


def _get(reader: GGUFReader, key: str, name: Any, default: Any = _MISSING) -> Any:
    if default is _MISSING:
        if key not in reader.fields:
            raise DataError(f"{name} has no {key!r}: it does not hold a tokenizer")
        default = None
    return gguf_value(reader, key, default, name)
