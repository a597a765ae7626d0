"""Where tokenizers come from: one `load_tokenizer(source)` for every form a user has.

A source is one string, the same on the command line and in the API:

- `demo:NAME`                         a demo tokenizer (see `xtoken_align.demo`), fetched on demand;
- `path/to/tokenizer.json` or a folder holding one (its `tokenizer_config.json` gives BOS/EOS/PAD
  and the chat template), such as `DIR/student_tokenizer` of a hub export (`formats.hub`; the CLI's
  `--student DIR`/`--teacher DIR` pick the subfolder of their role);
- `path/to/tekken.json`                a Mistral Tekken file (Mistral-Nemo and later; told apart
  from a tokenizer.json by content);
- `path/to/file.tiktoken`, `tiktoken:PATTERN:PATH`  a tiktoken BPE rank file. A known file (Llama-3,
  Llama-4, Qwen; see `xtoken_align.tiktoken_files`) is recognised by its sha256, never by its name,
  and brings its pattern and special tokens; any other file needs its pattern named (`llama3`,
  `llama4`, `qwen2`, `o200k`, `cl100k`) and loads as ranks only, no special tokens guessed;
- `path/to/tokenizer.model`           a SentencePiece model, or Meta's tiktoken Llama-3/4 file
  (told apart by content);
- `hf:ORG/NAME` or `ORG/NAME`         a Hugging Face Hub model id, through `huggingface_hub`'s cache.

Everything becomes a `tokenizers.Tokenizer` through maintained converters (transformers'
`TikTokenConverter`, `MistralConverter` and `LlamaConverter`'s pieces), so later stages see one
interface. Nothing is assembled by hand but the SentencePiece wiring (see `_load_sentencepiece`)
and the tables of known tiktoken files. Left out: slow-only tokenizers with no converter
(WordPiece/Unigram models are loaded but canonicalised only if their decoder is byte-level or
SentencePiece-style); chat templates that a format keeps outside its config (Tekken's, which
transformers generates with mistral-common).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer

from xtoken_align.errors import XTokenError
from xtoken_align.tiktoken_files import KNOWN_TIKTOKEN_FILES, TIKTOKEN_PATTERNS, file_sha256, known_tiktoken_file

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedTokenizer:
    """A tokenizer from any source, as a `tokenizers.Tokenizer` plus what its config says."""

    name: str  # short label for reports: "llama3", "Qwen/Qwen3-4B", "tokenizer.json"
    source: str  # the string it was loaded from; reopening it gives the same tokenizer
    tokenizer: Tokenizer
    kind: str  # "tokenizer.json", "hub", "tiktoken", "tekken", "sentencepiece"
    config_roles: dict[str, str] = field(default_factory=dict)  # "bos_token" -> "<s>", ...
    chat_template: str | None = None  # the Jinja chat template its config carries, if any


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
        candidates = [path / "tokenizer.json", *sorted(path.glob("tekken*.json"))]
        candidates += [*sorted(path.glob("*.tiktoken")), path / "tokenizer.model"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None and (path / "student_tokenizer").is_dir():  # a folder of `export --format hub`
            student, teacher = path / "student_tokenizer", path / "teacher_tokenizer"
            raise XTokenError(f"{path} is a hub export: give {student} or {teacher} as the tokenizer")
        if found is None:
            raise XTokenError(f"{path} holds no tokenizer.json, tekken*.json, *.tiktoken or tokenizer.model")
        path = found
    if path.suffix == ".json":
        return _load_json_file(path)
    if _looks_like_tiktoken(path):
        return _load_tiktoken(path, pattern)
    if path.suffix == ".model":
        return _load_sentencepiece(path)
    raise XTokenError(f"{path}: not a tokenizer.json, tiktoken rank file or SentencePiece model")


def _load_json_file(path: Path, name: str | None = None) -> LoadedTokenizer:
    """A tokenizer.json or a Tekken file, told apart by content (both are one JSON object)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise XTokenError(f"{path}: not valid JSON ({exc}); is the file truncated?") from None
    if _is_tekken(data):
        return _load_tekken(path, data)
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # the Rust loader raises plain Exception with its own message
        raise XTokenError(f"{path}: not a Hugging Face tokenizer.json ({exc})") from None
    settings = _read_config(path.with_name("tokenizer_config.json"))
    roles: dict[str, str] = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = settings.get(key)
        if isinstance(value, dict):  # older configs store an AddedToken dict
            value = value.get("content")
        if isinstance(value, str):
            roles[key] = value
    template = _chat_template(settings.get("chat_template"))
    jinja = path.with_name("chat_template.jinja")  # where newer transformers save it instead
    if template is None and jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    return LoadedTokenizer(name or _label(path), str(path), tokenizer, "tokenizer.json", roles, template)


def _read_config(config: Path) -> dict:
    if not config.is_file():
        return {}
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise XTokenError(f"{config}: not valid JSON ({exc})") from None
    return settings if isinstance(settings, dict) else {}


def _chat_template(value: object) -> str | None:
    """tokenizer_config.json's `chat_template`: a string, or named templates of which "default" is used.

    `_chat_template([{"name": "default", "template": "{{ x }}"}]) -> "{{ x }}"`
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        if isinstance(named.get("default"), str):
            return named["default"]
    return None


def _is_tekken(data: object) -> bool:
    """A Tekken file: `config` with a split `pattern`, `vocab` entries of `rank` + base64 `token_bytes`."""
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or "pattern" not in data["config"]:
        return False
    vocab = data.get("vocab")
    return isinstance(vocab, list) and bool(vocab) and isinstance(vocab[0], dict) and "token_bytes" in vocab[0]


# Tekken's special tokens with a config role, as mistral-common's SpecialTokens names them.
_TEKKEN_ROLES = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def _load_tekken(path: Path, data: dict) -> LoadedTokenizer:
    """A Tekken file through transformers' `MistralConverter`, which lays ids out as mistral-common's
    `Tekkenizer` does: the config's `default_num_special_tokens` special ids first (`<SPECIAL_N>`
    placeholders kept at theirs), then the ranks, cut to `default_vocab_size`; split pattern from the
    config. A file without a `special_tokens` list (the older format, as in tekken_240718.json) takes
    mistral-common's default list, which is why mistral-common is a dependency."""
    from transformers.integrations.mistral.tokenizer import MistralConverter

    try:
        tokenizer = MistralConverter(str(path)).converted()
    except Exception as exc:  # KeyError, binascii.Error, ValueError from a damaged file
        raise XTokenError(f"{path}: not a usable Tekken file ({type(exc).__name__}: {exc})") from None
    specials = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    roles = {key: token for key, token in _TEKKEN_ROLES.items() if token in specials}
    return LoadedTokenizer(_label(path), str(path), tokenizer, "tekken", roles)


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


def _load_tiktoken(path: Path, pattern: str | None) -> LoadedTokenizer:
    """Ranks through transformers' `TikTokenConverter`; pattern and special tokens from the table of
    known files when the content is one of them (an explicit `pattern` still wins), else ranks only."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    if pattern is not None and pattern not in TIKTOKEN_PATTERNS:
        raise XTokenError(f"unknown tiktoken pattern '{pattern}'; known: {', '.join(TIKTOKEN_PATTERNS)}")
    if not _looks_like_tiktoken(path):
        raise XTokenError(f"{path}: not a tiktoken rank file (lines of 'base64 rank')")
    known = known_tiktoken_file(path)
    if pattern is None and known is None:
        names = ", ".join(f.name for f in KNOWN_TIKTOKEN_FILES.values())
        raise XTokenError(
            f"{path}: not a tiktoken file this tool knows ({names}; sha256 {file_sha256(path)}), so its "
            f"pre-tokenizer pattern is unknown; name one as tiktoken:PATTERN:{path} with PATTERN one of "
            f"{', '.join(TIKTOKEN_PATTERNS)} (ranks only: no special tokens are guessed)"
        )
    try:
        converter = TikTokenConverter(str(path), pattern=TIKTOKEN_PATTERNS[pattern or known.pattern])
        tokenizer = converter.converted()
    except Exception as exc:  # tiktoken raises ValueError/binascii.Error on bad lines
        raise XTokenError(f"{path}: cannot read tiktoken ranks ({exc})") from None
    if known is None:
        return LoadedTokenizer(_label(path), str(path), tokenizer, "tiktoken")
    # Special ids follow the ranks in the order the table lists them, as the publisher's code assigns.
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in known.specials])
    return LoadedTokenizer(_label(path), str(path), tokenizer, "tiktoken", dict(known.roles))


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
    # Optional, land beside tokenizer.json in the cache; without them roles come from the tokenizer alone.
    for optional in ("tokenizer_config.json", "chat_template.jinja"):
        with contextlib.suppress(Exception):
            hf_hub_download(model_id, optional)
    loaded = _load_json_file(path, name=model_id)
    return LoadedTokenizer(model_id, source, loaded.tokenizer, "hub", loaded.config_roles, loaded.chat_template)
