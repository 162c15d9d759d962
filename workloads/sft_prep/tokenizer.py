"""Load the tokenizer and turn role-labelled chunks into token ids with an unrolled loss mask.

Sources for ``tokenizer.model``: a local directory (``tokenizer.json`` [+ ``tokenizer_config.json``,
``chat_template.jinja``]) or a ``tokenizer.json`` file; an ``s3://`` prefix (downloaded once into a cache
directory through :mod:`sft_common.storage`); or a Hugging Face hub id (``huggingface_hub`` imported
only then; ``revision`` honoured). The fast Rust ``tokenizers`` library is used whenever a
``tokenizer.json`` exists; transformers' ``AutoTokenizer`` is only the fallback for repos without one.

The reference semantics: each chunk is encoded on its own with ``add_special_tokens=False`` (no BOS/EOS
added) and the ids are concatenated — tokenizing the joined text could merge characters across a chunk
boundary and shift the mask. Special tokens written in the text (``<|im_start|>`` …) are still
recognised as single tokens, as with ``apply_chat_template`` output upstream. Encoding whole sequences
once and cutting the tokens at the chunk boundaries gives the same ids far more cheaply where it is
provably equal; :class:`JointPlan` holds what that check needs (see :mod:`sft_prep.joint_encode`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sft_common import storage
from sft_common.config import ConfigError
from sft_prep.chat import shorten

CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_HUB_PATTERNS = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "*.model",
    "vocab.*",
    "merges.txt",
    "added_tokens.json",
    "config.json",
]


# Byte-level BPE's printable stand-ins for the 256 byte values (GPT-2's ``bytes_to_unicode``): every
# character of a byte-level vocabulary entry is exactly one byte of the text.
_BYTE_CHARS = frozenset(
    chr(b)
    for b in [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
) | frozenset(chr(256 + n) for n in range(68))

# Split patterns for which a lone "\n" right after an added token is always its own pre-token when
# the next character is not whitespace, whatever follows (no lookbehind, no anchors, and "\n" is never
# the optional lead character of a word): Qwen/cl100k, Llama 3.
_CL100K_HEAD = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_CL100K_TAIL = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_NEWLINE_SAFE_PATTERNS = frozenset(
    {_CL100K_HEAD + r"\p{N}" + _CL100K_TAIL, _CL100K_HEAD + r"\p{N}{1,3}" + _CL100K_TAIL}
)


@dataclass(frozen=True)
class JointPlan:
    """What :mod:`sft_prep.joint_encode` needs to cut a whole-sequence encoding at chunk boundaries.

    Only for byte-level BPE tokenizers: every token is a fixed byte string, so token byte lengths give
    exact token positions in the UTF-8 text without asking the tokenizer for offsets (which costs
    10-20% more tokenizer time with the Qwen vocabulary)."""

    byte_len: np.ndarray
    """int32 UTF-8 byte length of each token id (a huge value for ids that do not exist)."""
    added: np.ndarray
    """bool per id: an added token (matched before pre-tokenization, so it ends a text segment)."""
    added_texts: tuple[str, ...]
    newline_id: int | None
    """Id of the lone "\n" token when the pre-tokenizer always splits after it (see joint_encode)."""
    ascii_only: bool
    """The normalizer (NFC) is the identity on ASCII only; other sequences are encoded per chunk."""
    window_cuts: bool = False
    """A long text may be encoded in windows cut before a space between two letters or numbers, or
    before CJK punctuation after one (:func:`window_cuts`): the pre-tokenizer is one of the known
    regex splits and no added token contains a space or such a mark."""


LONG_TEXT_CHARS = 1 << 18
"""Texts longer than this are encoded in windows (where :attr:`JointPlan.window_cuts` allows)."""
WINDOW_CHARS = 1 << 14
"""About this many characters per window."""
WINDOW_BATCH_CHARS = 1 << 17
"""At most this many characters of windows per tokenizer call (encoded in parallel)."""


def _chars(ranges: list[tuple[int, int]], keep: Any) -> str:
    return "".join(chr(c) for a, b in ranges for c in range(a, b + 1) if keep(chr(c)))


# Letters and numbers (\p{L}, \p{N}) whose categories have not changed for decades, so that Python's
# and the tokenizer's Unicode tables agree on them: below U+0800 (Latin, Greek, Cyrillic, Hebrew,
# Arabic ...), and kana, CJK ideographs and Hangul syllables.
_STABLE_ALNUM = _chars([(0, 0x7FF)], str.isalnum)
_CJK_ALNUM = _chars([(0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3)], str.isalnum)
# CJK and fullwidth punctuation: neither letter, number nor space (\p{L}, \p{N}, \s) in any table.
CJK_PUNCTUATION = _chars(
    [
        (0x3001, 0x3004),
        (0x3008, 0x301F),
        (0xFF01, 0xFF0F),
        (0xFF1A, 0xFF20),
        (0xFF3B, 0xFF40),
        (0xFF5B, 0xFF65),
    ],
    lambda c: not c.isalnum() and not c.isspace(),
)
_CUT_MARKS = frozenset(" " + CJK_PUNCTUATION)
"""The characters a window cut is placed before; no added token may contain one."""
_ALNUM, _LEAD, _MARK = (re.escape(c) for c in (_STABLE_ALNUM, _STABLE_ALNUM + _CJK_ALNUM, CJK_PUNCTUATION))
_WINDOW_CUT = re.compile(f"(?<=[{_ALNUM}]) (?=[{_ALNUM}])|(?<=[{_LEAD}])(?=[{_MARK}])")


def window_cuts(text: str, size: int | None = None) -> list[int]:
    """Offsets, about ``size`` (default ``WINDOW_CHARS``) apart, where ``text`` may be cut into windows
    that encode to the ids of the whole text laid end to end: a single space between two letters or
    numbers, or the place between a letter or number and CJK/fullwidth punctuation (``中文|。``).

    Why that is exact (for the tokenizers :attr:`JointPlan.window_cuts` admits). Added tokens are
    matched first; none contains a space or one of those punctuation marks, so none spans the cut.
    NFC, if any, neither reorders nor composes across a space or such a mark (both are starters that
    compose with nothing before them). Each known pre-tokenizer regex (Qwen's, cl100k's, Llama 3's,
    GPT-2's) has no look-behind; no alternative takes a letter or number together with a following
    space or punctuation, so the pre-token before the cut ends there, and what decided it looked at
    most at that next character; the next one starts at the cut (`` word``, `` 12``, a lone `` ``
    before a number, or the punctuation run) whatever came before. So the pre-tokens, and the BPE
    tokens, on each side are those of the whole text. (Not *after* punctuation: ``。中`` is one
    pre-token, the mark being the optional lead of the word.) A stretch with no such place (base64,
    a run of one letter) stays in one window.

    >>> text = "one two  three four"  # not between two spaces: "  three" is not " three" after " "
    >>> [text[:i] + "|" + text[i:] for i in window_cuts(text, 5)]
    ['one two  three| four']
    >>> [text[:i] + "|" + text[i:] for text in ["中文。日本語、한국어！"] for i in window_cuts(text, 1)]
    ['中文|。日本語、한국어！', '中文。日本語|、한국어！', '中文。日本語、한국어|！']
    """
    size = WINDOW_CHARS if size is None else size
    cuts: list[int] = []
    at = size
    while at < len(text):
        found = _WINDOW_CUT.search(text, at)
        if found is None:
            break
        cuts.append(found.start())
        at = found.start() + size
    return cuts


def flatten(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(all ids end to end as int32, tokens per text)."""
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


class _Backend(Protocol):
    def encode_many(self, texts: list[str]) -> list[list[int]]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def vocab_size(self) -> int: ...
    def joint_plan(self) -> tuple[JointPlan | None, str]: ...


class _RustBackend:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self._fast = hasattr(self.tok, "encode_batch_fast")
        self._serialized: str | None = None

    def serialized(self) -> str:
        """The tokenizer as JSON, as the library writes it. The run's fingerprint and the joint plan
        both need it, and writing it takes ~0.12 s for a 151k vocabulary, so it is made once."""
        if self._serialized is None:
            self._serialized = self.tok.to_str()
        return self._serialized

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        encode = self.tok.encode_batch_fast if self._fast else self.tok.encode_batch
        return [e.ids for e in encode(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def joint_plan(self) -> tuple[JointPlan | None, str]:
        return _joint_plan(self.serialized())


def _pre_tokenizer_ok(spec: Any) -> tuple[bool, bool]:
    """(eligible, splits after a lone "\\n") for a pre-tokenizer spec from tokenizer.json.

    The second flag: each part either splits a segment "\\n" + X (X not starting with whitespace)
    right after the "\\n", or does not split at all, and at least one part splits."""
    if not isinstance(spec, dict):
        return False, False
    kind = spec.get("type")
    if kind == "Sequence":
        parts = spec.get("pretokenizers") or []
        flags = [_pre_tokenizer_ok(p) for p in parts]
        neutral = [
            isinstance(p, dict) and p.get("type") == "ByteLevel" and not p.get("use_regex", True)
            for p in parts
        ]
        eligible = bool(parts) and all(ok for ok, _ in flags)
        splits = all(nl or keep for (_, nl), keep in zip(flags, neutral, strict=True)) and any(
            nl for _, nl in flags
        )
        return eligible, eligible and splits
    if kind == "ByteLevel":
        # add_prefix_space would put a space in front of every chunk but only the first sequence start.
        eligible = not spec.get("add_prefix_space", True)
        # The built-in GPT-2 regex splits after "\\n" (only a space may lead a word); without it, no split.
        return eligible, eligible and bool(spec.get("use_regex", True))
    if kind == "Split":
        pattern = spec.get("pattern") or {}
        eligible = spec.get("behavior") == "Isolated" and not spec.get("invert", False)
        return eligible, eligible and pattern.get("Regex") in _NEWLINE_SAFE_PATTERNS
    return False, False


def _joint_plan(serialized: str) -> tuple[JointPlan | None, str]:
    """Whether whole-sequence encoding can be cut at chunk boundaries exactly, and the tables for it.

    Requirements, each because it makes a token depend on text outside its own text segment or breaks
    the byte-length arithmetic: a byte-level BPE model without dropout; no normalizer (or NFC, then
    for ASCII text only); a pre-tokenizer built from byte-level and isolated regex splits without a
    prefix space; added tokens that are not normalized and strip nothing; no truncation or padding."""
    spec = json.loads(serialized)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout") or model.get("continuing_subword_prefix"):
        return None, "not a byte-level BPE model"
    if model.get("end_of_word_suffix"):
        return None, "not a byte-level BPE model"
    if spec.get("truncation") or spec.get("padding"):
        return None, "tokenizer.json sets truncation or padding"
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        return None, f"normalizer {normalizer.get('type')} may change text across chunk boundaries"
    eligible, newline_rule = _pre_tokenizer_ok(spec.get("pre_tokenizer"))
    if not eligible:
        return None, "pre-tokenizer is not a plain byte-level one"
    added_specs = spec.get("added_tokens") or []
    if any(
        a.get("lstrip") or a.get("rstrip") or a.get("single_word") or (a.get("normalized") and normalizer)
        for a in added_specs
    ):
        return None, "an added token strips whitespace, matches whole words only or is normalized"
    vocab = model.get("vocab") or {}
    size = max([*vocab.values(), *(a["id"] for a in added_specs), -1]) + 1
    if not _BYTE_CHARS.issuperset("".join(vocab)):
        return None, "vocabulary entries are not byte-level"
    byte_len = np.full(size, 1 << 24, dtype=np.int32)  # an id that cannot occur breaks the byte sums
    byte_len[np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))] = np.fromiter(
        map(len, vocab), dtype=np.int32, count=len(vocab)
    )
    added = np.zeros(size, dtype=bool)
    added_ids = {a["id"] for a in added_specs}
    # An added id that the BPE model could also produce from ordinary text would not prove a segment
    # boundary; it can only if it is in the model vocabulary and is a single byte or a merge result.
    # (Usually no added token is in the model vocabulary, and the merges need not be looked at.)
    in_vocab = {index: token for token, index in vocab.items() if index in added_ids}
    wanted = {t for t in in_vocab.values() if len(t) > 1}
    merged = set()
    if wanted:
        for m in model.get("merges") or []:
            joined = m.replace(" ", "", 1) if isinstance(m, str) else "".join(m)
            if joined in wanted:
                merged.add(joined)
    for a in added_specs:
        byte_len[a["id"]] = len(a["content"].encode("utf-8"))
        token = in_vocab.get(a["id"])
        added[a["id"]] = token is None or (len(token) > 1 and token not in merged)
    newline = vocab.get("\u010a")  # "\n" in the byte-level alphabet
    plan = JointPlan(
        byte_len=byte_len,
        added=added,
        added_texts=tuple(a["content"] for a in added_specs),
        newline_id=newline if newline_rule and newline is not None and not added[newline] else None,
        ascii_only=normalizer is not None,
        window_cuts=newline_rule and not any(set(a["content"]) & _CUT_MARKS for a in added_specs),
    )
    return plan, "byte-level BPE"


class _TransformersBackend:
    def __init__(self, path: Path) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # pragma: no cover - transformers ships with the train extra
            raise ConfigError(
                f"tokenizer.model: {path} has no tokenizer.json and transformers is not installed to read it"
            ) from exc
        try:
            self.tok = AutoTokenizer.from_pretrained(str(path))
        except Exception as exc:  # transformers raises many types (OSError, ValueError, KeyError...)
            raise ConfigError(
                f"tokenizer.model: {path} has no tokenizer.json and transformers cannot load it either "
                f"({type(exc).__name__}: {shorten(str(exc), 300)})"
            ) from exc

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return list(self.tok(texts, add_special_tokens=False)["input_ids"]) if texts else []

    def decode(self, ids: Sequence[int]) -> str:
        text = self.tok.decode(list(ids), skip_special_tokens=False)
        return text if isinstance(text, str) else "".join(text)  # a list only for batched input

    def vocab_size(self) -> int:
        return len(self.tok)

    def joint_plan(self) -> tuple[JointPlan | None, str]:
        return None, "transformers backend (no tokenizer.json)"


@dataclass
class Tokenizer:
    """A loaded tokenizer plus what metadata and the template need to know about it."""

    name: str
    backend: _Backend = field(repr=False)
    backend_name: str
    chat_template: str | None = field(default=None, repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, ``add_special_tokens=False``."""
        return self.backend.encode_many(texts)

    def encode_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``flatten(encode_many(texts))`` at a bounded peak memory: the tokenizer holds ~100 bytes per
        character while it encodes (offsets, alignments, token strings), so a text over
        ``LONG_TEXT_CHARS`` is encoded in windows (:func:`window_cuts`), a few at a time, each kept
        as int32 at once. The ids are the same."""
        plan, _ = self.joint_plan
        windowed = plan is not None and plan.window_cuts
        long = [i for i, t in enumerate(texts) if len(t) > LONG_TEXT_CHARS] if windowed else []
        if not long:
            return flatten(self.encode_many(texts))
        flat, lengths = flatten(self.encode_many(["" if len(t) > LONG_TEXT_CHARS else t for t in texts]))
        parts: list[np.ndarray] = []
        done = 0  # ids of ``flat`` already in ``parts``
        ends = np.cumsum(lengths)
        for i in long:
            parts.append(flat[done : ends[i]])
            done = int(ends[i])
            mine = self._encode_windows(texts[i])
            parts.extend(mine)
            lengths[i] = sum(map(len, mine))
        parts.append(flat[done:])
        return np.concatenate(parts), lengths

    def _encode_windows(self, text: str) -> list[np.ndarray]:
        """The ids of ``text``, window by window; at most ``WINDOW_BATCH_CHARS`` of text per call."""
        bounds = [0, *window_cuts(text), len(text)]
        parts: list[np.ndarray] = []
        first = 0  # the first window of the next call
        for last in range(1, len(bounds)):
            if last == len(bounds) - 1 or bounds[last + 1] - bounds[first] > WINDOW_BATCH_CHARS:
                windows = [text[bounds[j] : bounds[j + 1]] for j in range(first, last)]
                parts.append(flatten(self.encode_many(windows))[0])
                first = last
        return parts

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(ids)

    @cached_property
    def joint_plan(self) -> tuple[JointPlan | None, str]:
        """(plan, why): the plan for whole-sequence encoding, or None and the reason it is unsafe."""
        return self.backend.joint_plan()

    @property
    def vocab_size(self) -> int:
        return self.backend.vocab_size()

    def _special(self, key: str) -> str | None:
        value = self.config.get(key)
        if isinstance(value, dict):  # {"content": "<|im_end|>", ...} in older configs
            value = value.get("content")
        return value if isinstance(value, str) else None

    def check_chat_tokens(self, tokens: Sequence[str] = CHAT_TOKENS) -> dict[str, int]:
        """Ids of the chat control tokens; ConfigError unless each encodes to exactly one token.

        If ``<|im_end|>`` were split into pieces the assistant turn's end would be learned as a few
        ordinary tokens and generation would never stop — so this is checked before any work."""
        ids = {}
        for token in tokens:
            encoded = self.encode_many([token])[0]
            if len(encoded) != 1:
                raise ConfigError(
                    f"tokenizer.model: {self.name} encodes {token!r} as {len(encoded)} tokens {encoded[:8]}; "
                    "the chat template needs it to be one special token — use the model's own tokenizer "
                    "or a chat_template that matches this tokenizer"
                )
            ids[token] = encoded[0]
        return ids

    def describe(self) -> dict[str, Any]:
        """Facts for metadata.json and logs."""
        return {
            "name": self.name,
            "backend": self.backend_name,
            "vocab_size": self.vocab_size,
            "eos_token": self._special("eos_token"),
            "pad_token": self._special("pad_token"),
            "bos_token": self._special("bos_token"),
            "add_special_tokens": False,
            "has_chat_template": bool(self.chat_template),
        }


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"tokenizer.model: {path} is not valid JSON ({exc})") from exc
    return data if isinstance(data, dict) else {}


def _chat_template_of(directory: Path, config: dict[str, Any]) -> str | None:
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str) and template:
        return template
    jinja = directory / "chat_template.jinja"
    return jinja.read_text(encoding="utf-8") if jinja.is_file() else None


def load_local(path: Path, name: str | None = None) -> Tokenizer:
    """A tokenizer from a local directory or tokenizer.json file."""
    if not path.exists():
        raise ConfigError(
            f"tokenizer.model: {path} does not exist (give a directory with tokenizer.json, "
            "a tokenizer.json file, an s3:// prefix or a hub id)"
        )
    directory = path.parent if path.is_file() else path
    config = _read_json(directory / "tokenizer_config.json")
    template = _chat_template_of(directory, config)
    name = name or str(path)
    tokenizer_json = path if path.is_file() else path / "tokenizer.json"
    if tokenizer_json.is_file():
        try:
            backend: _Backend = _RustBackend(tokenizer_json)
        except Exception as exc:  # tokenizers raises a bare Exception for bad files
            raise ConfigError(f"tokenizer.model: cannot read {tokenizer_json}: {exc}") from exc
        return Tokenizer(name, backend, "tokenizers", template, config)
    if path.is_file():
        raise ConfigError(f"tokenizer.model: {path} is a file but not a tokenizer.json")
    return Tokenizer(name, _TransformersBackend(path), "transformers", template, config)


def _cache_dir(cache_dir: Path | None) -> Path:
    base = cache_dir or Path(os.environ.get("SFT_CACHE_DIR") or Path(tempfile.gettempdir()) / "sft-cache")
    base.mkdir(parents=True, exist_ok=True)
    return base


def _load_hub(repo_id: str, revision: str | None, cache_dir: Path | None) -> Tokenizer:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - comes with transformers
        raise ConfigError(
            f"tokenizer.model: {repo_id!r} looks like a hub id but huggingface_hub is missing"
        ) from exc
    try:
        local = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=_HUB_PATTERNS,
            cache_dir=str(_cache_dir(cache_dir) / "hub"),
        )
    except Exception as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        hint = (
            "HF_HUB_OFFLINE is set and it is not in the local cache; point tokenizer.model at a local "
            "directory or s3:// prefix holding tokenizer.json"
            if offline
            else "check the id, the revision, network access and HF_TOKEN for gated repos"
        )
        raise ConfigError(
            f"tokenizer.model: cannot fetch hub tokenizer {repo_id!r}"
            f"{f' at revision {revision!r}' if revision else ''}: {type(exc).__name__}; {hint}"
        ) from exc
    return load_local(Path(local), name=f"{repo_id}@{revision}" if revision else repo_id)


def load_tokenizer(model: str, revision: str | None = None, cache_dir: Path | None = None) -> Tokenizer:
    """Resolve ``tokenizer.model`` (see the module docstring); every failure is a ConfigError."""
    if storage.is_remote(model):
        digest = hashlib.sha256(model.encode()).hexdigest()[:16]
        dest = _cache_dir(cache_dir) / f"s3-{digest}"
        if not (dest / ".complete").exists():
            try:
                storage.download_tree(model, dest)
            except OSError as exc:
                raise ConfigError(f"tokenizer.model: cannot download {model}: {exc}") from exc
            (dest / ".complete").touch()
        return load_local(dest, name=model)
    local = Path(model[len("file://") :] if model.startswith("file://") else model).expanduser()
    if local.exists() or model.startswith(("/", ".", "~", "file://")) or not _HUB_ID.match(model):
        return load_local(local, name=model)
    return _load_hub(model, revision, cache_dir)
