"""Where tokenizers come from: one `load_tokenizer(source)` for every form a user has.

A source is one string, the same on the command line and in the API:

- `demo:NAME`                         a demo tokenizer (see `xtoken_align.demo`), fetched on demand;
- `path/to/tokenizer.json` or a folder holding one (its `tokenizer_config.json` gives BOS/EOS/PAD);
- `path/to/file.tiktoken`, `tiktoken:PATTERN:PATH`  a tiktoken BPE rank file; the pre-tokenizer
  pattern is named (`llama3`, `qwen2`, `o200k`, `cl100k`) or inferred from the path;
- `path/to/tokenizer.model`           a SentencePiece model, or Meta's tiktoken Llama-3 file
  (told apart by content);
- `hf:ORG/NAME` or `ORG/NAME`         a Hugging Face Hub model id, through `huggingface_hub`'s cache.

Everything becomes a `tokenizers.Tokenizer` through maintained converters (transformers'
`TikTokenConverter` and `LlamaConverter`), so later stages see one interface. Left out: slow-only
tokenizers with no converter (WordPiece/Unigram models are loaded but canonicalised only if their
decoder is byte-level or SentencePiece-style).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer

from xtoken_align.errors import XTokenError

# Pre-tokenizer split patterns of the tiktoken vocabularies we know, as their authors publish them.
TIKTOKEN_PATTERNS: dict[str, str] = {
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",  # noqa: E501
    "cl100k": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",  # noqa: E501
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",  # noqa: E501
    "o200k": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",  # noqa: E501
}

# Words in a tiktoken file's path that name its pattern, checked in this order.
_PATTERN_HINTS = (("qwen", "qwen2"), ("o200k", "o200k"), ("cl100k", "cl100k"), ("llama", "llama3"))


def _llama3_specials() -> list[str]:
    """Meta's 256 Llama-3 special tokens, in id order from 128000."""
    named = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>"}
    named |= {7: "<|end_header_id|>", 9: "<|eot_id|>"}
    reserved = iter(range(256))
    return [named.get(i) or f"<|reserved_special_token_{next(reserved)}|>" for i in range(256)]


def _qwen_specials() -> list[str]:
    """Qwen's special tokens, in id order after the 151,643 ranks."""
    return ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)]


# Special tokens that a tiktoken rank file leaves to its loading code, and their config roles.
_TIKTOKEN_SPECIALS = {
    "llama3": (_llama3_specials, {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
    "qwen2": (_qwen_specials, {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}),
    "cl100k": (lambda: ["<|endoftext|>"], {"eos_token": "<|endoftext|>"}),
    "o200k": (lambda: ["<|endoftext|>"], {"eos_token": "<|endoftext|>"}),
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedTokenizer:
    """A tokenizer from any source, as a `tokenizers.Tokenizer` plus what its config says."""

    name: str  # short label for reports: "llama3", "Qwen/Qwen3-4B", "tokenizer.json"
    source: str  # the string it was loaded from; reopening it gives the same tokenizer
    tokenizer: Tokenizer
    kind: str  # "tokenizer.json", "hub", "tiktoken", "sentencepiece"
    config_roles: dict[str, str] = field(default_factory=dict)  # "bos_token" -> "<s>", ...


def load_tokenizer(source: str) -> LoadedTokenizer:
    """Load a tokenizer from a demo name, path, tiktoken spec or hub id (see module docstring)."""
    source = source.strip()
    if not source:
        raise XTokenError("empty tokenizer source")
    if source.startswith("demo:"):
        from xtoken_align.demo import demo_path

        name = source.removeprefix("demo:")
        loaded = _load_path(demo_path(name), pattern=None)
        loaded.name, loaded.source = name, source
        return loaded
    if source.startswith("tiktoken:"):
        pattern, sep, path = source.removeprefix("tiktoken:").partition(":")
        if not sep:
            pattern, path = "", pattern
        loaded = _load_tiktoken(_existing(path), pattern or None)
        loaded.source = f"tiktoken:{pattern}:{Path(path).resolve()}" if pattern else str(Path(path).resolve())
        return loaded
    if source.startswith("hf:"):
        return _load_hub(source.removeprefix("hf:"), source)
    path = Path(source).expanduser()
    if path.exists():
        loaded = _load_path(path, pattern=None)
        loaded.source = str(path.resolve())  # absolute, so a W file's sidecar can reopen it from anywhere
        return loaded
    if _HUB_ID.match(source):
        return _load_hub(source, source)
    raise XTokenError(f"no such file or folder: {source} (and not a demo:NAME or ORG/NAME hub id)")


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise XTokenError(f"no such file: {path}")
    return p


def _load_path(path: Path, pattern: str | None) -> LoadedTokenizer:
    if path.is_dir():
        candidates = [path / "tokenizer.json", *sorted(path.glob("*.tiktoken")), path / "tokenizer.model"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise XTokenError(f"{path} holds no tokenizer.json, *.tiktoken or tokenizer.model")
        path = found
    if path.suffix == ".json":
        return _load_tokenizer_json(path)
    if _looks_like_tiktoken(path):
        return _load_tiktoken(path, pattern)
    if path.suffix == ".model":
        return _load_sentencepiece(path)
    raise XTokenError(f"{path}: not a tokenizer.json, tiktoken rank file or SentencePiece model")


def _load_tokenizer_json(path: Path, name: str | None = None) -> LoadedTokenizer:
    try:
        json.loads(path.read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise XTokenError(f"{path}: not valid JSON ({exc}); is the file truncated?") from None
    except Exception as exc:  # the Rust loader raises plain Exception with its own message
        raise XTokenError(f"{path}: not a Hugging Face tokenizer.json ({exc})") from None
    roles: dict[str, str] = {}
    config = path.with_name("tokenizer_config.json")
    if config.is_file():
        try:
            settings = json.loads(config.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise XTokenError(f"{config}: not valid JSON ({exc})") from None
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = settings.get(key)
            if isinstance(value, dict):  # older configs store an AddedToken dict
                value = value.get("content")
            if isinstance(value, str):
                roles[key] = value
    return LoadedTokenizer(name or _label(path), str(path), tokenizer, "tokenizer.json", roles)


def _label(path: Path) -> str:
    """A short name for reports: the folder for generic file names, else the file name."""
    generic = {"tokenizer.json", "tokenizer.model"}
    return path.parent.name if path.name in generic and path.parent.name else path.name


def _looks_like_tiktoken(path: Path) -> bool:
    """tiktoken files are lines of `base64 rank`; SentencePiece models are binary protobuf."""
    with path.open("rb") as f:
        head = f.read(256)
    first = head.split(b"\n", 1)[0]
    return re.fullmatch(rb"[A-Za-z0-9+/]+=* \d+", first) is not None


def _infer_pattern(path: Path) -> str:
    lowered = f"{path.parent.name}/{path.name}".lower()  # not the whole path: a home folder can say "llama"
    for word, pattern in _PATTERN_HINTS:
        if word in lowered:
            return pattern
    raise XTokenError(
        f"{path}: cannot tell this tiktoken file's pre-tokenizer pattern from its name; "
        f"name it as tiktoken:PATTERN:{path} with PATTERN one of {', '.join(TIKTOKEN_PATTERNS)}"
    )


def _load_tiktoken(path: Path, pattern: str | None) -> LoadedTokenizer:
    from transformers.convert_slow_tokenizer import TikTokenConverter

    pattern = pattern or _infer_pattern(path)
    if pattern not in TIKTOKEN_PATTERNS:
        raise XTokenError(f"unknown tiktoken pattern '{pattern}'; known: {', '.join(TIKTOKEN_PATTERNS)}")
    if not _looks_like_tiktoken(path):
        raise XTokenError(f"{path}: not a tiktoken rank file (lines of 'base64 rank')")
    try:
        tokenizer = TikTokenConverter(str(path), pattern=TIKTOKEN_PATTERNS[pattern]).converted()
    except Exception as exc:  # tiktoken raises ValueError/binascii.Error on bad lines
        raise XTokenError(f"{path}: cannot read tiktoken ranks ({exc})") from None
    specials, roles = _TIKTOKEN_SPECIALS[pattern]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials()])
    return LoadedTokenizer(_label(path), str(path), tokenizer, "tiktoken", dict(roles))


def _load_sentencepiece(path: Path) -> LoadedTokenizer:
    """A SentencePiece model as a `tokenizers.Tokenizer`, assembled the way transformers' LlamaConverter
    does (its own entry point is broken in transformers 5 for BPE models); pieces and merges come from
    transformers' `SentencePieceExtractor`, so no BPE logic is written here."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers
    from transformers.convert_slow_tokenizer import SentencePieceExtractor, generate_merges

    try:
        extractor = SentencePieceExtractor(str(path))
        extracted = extractor.extract(None)
    except Exception as exc:  # protobuf raises DecodeError on anything that is not a ModelProto
        raise XTokenError(f"{path}: not a SentencePiece model ({exc})") from None
    trainer, normalizer = extractor.proto.trainer_spec, extractor.proto.normalizer_spec
    pieces = [p.piece for p in extractor.proto.pieces]
    if not pieces:
        raise XTokenError(f"{path}: SentencePiece model with no pieces")
    unk = pieces[trainer.unk_id]
    if trainer.model_type == 1:  # unigram
        model = models.Unigram(extracted["vocab"], trainer.unk_id, trainer.byte_fallback)
    else:
        # Merge order follows piece scores, as SentencePiece's own BPE does (ids alone misplace "▁▁").
        scores = {p.piece: p.score for p in extractor.proto.pieces}
        merges = generate_merges(extracted["vocab"], scores)
        model = models.BPE(
            extracted["vocab"], merges, unk_token=unk, fuse_unk=True, byte_fallback=trainer.byte_fallback
        )
    tokenizer = Tokenizer(model)
    # SentencePiece's own normalisation: a dummy "▁" before the text (always), spaces as "▁"; then it
    # merges within words only, a word being a run of "▁" plus the text up to the next "▁".
    steps = [normalizers.Prepend("\u2581")] if normalizer.add_dummy_prefix else []
    tokenizer.normalizer = normalizers.Sequence([*steps, normalizers.Replace(" ", "\u2581")])
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("\u2581+[^\u2581]*|[^\u2581]+"), behavior="isolated")
    ends = [decoders.Strip(" ", 1, 0)] if normalizer.add_dummy_prefix else []
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), *ends]
    )
    tokenizer.add_special_tokens(
        [AddedToken(unk, special=True, normalized=False), *extracted["additional_special_tokens"]]
    )
    roles = {"unk_token": unk}
    for key, index in (("bos_token", trainer.bos_id), ("eos_token", trainer.eos_id), ("pad_token", trainer.pad_id)):
        if 0 <= index < len(pieces):
            roles[key] = pieces[index]
    return LoadedTokenizer(_label(path), str(path), tokenizer, "sentencepiece", roles)


def _load_hub(model_id: str, source: str) -> LoadedTokenizer:
    import logging

    from huggingface_hub import hf_hub_download

    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # one error line, not a retry log
    try:
        path = Path(hf_hub_download(model_id, "tokenizer.json"))
    except Exception as exc:  # network, auth, missing repo: all become one line naming the id
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise XTokenError(f"cannot get the tokenizer of hub model '{model_id}': {reason}") from None
    # Optional, lands beside tokenizer.json in the cache; without it roles come from the tokenizer alone.
    with contextlib.suppress(Exception):
        hf_hub_download(model_id, "tokenizer_config.json")
    loaded = _load_tokenizer_json(path, name=model_id)
    return LoadedTokenizer(model_id, source, loaded.tokenizer, "hub", loaded.config_roles)
