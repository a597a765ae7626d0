"""Known tiktoken rank files, recognised by content: each one's split pattern, special tokens and roles.

A rank file holds only `base64 rank` lines; the pre-tokenizer pattern and the special tokens live in
the code that loads it. This table copies them from that code (Meta's `llama_models`, Qwen's
`tokenization_qwen.py`), keyed by the file's sha256, so a file is recognised whatever it is called
and a file merely named "llama" is not taken for Llama-3.

Left out: OpenAI's own `cl100k_base`/`o200k_base` rank files. Their special ids leave gaps after the
ranks (`<|endoftext|>` is 100257, not 100256), which "specials in id order after the ranks" cannot
say; `demo:cl100k` and `demo:o200k` are the same vocabularies as HF `tokenizer.json` files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

_CL100K = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"  # noqa: E501
_O200K = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"  # noqa: E501

# Pre-tokenizer split patterns of the tiktoken vocabularies we know, as their authors publish them.
TIKTOKEN_PATTERNS: dict[str, str] = {
    "llama3": _CL100K,  # Meta's Llama-3 reuses cl100k's split
    "llama4": _O200K,  # llama_models/llama4/tokenizer.py: O200K_PATTERN
    "cl100k": _CL100K,
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",  # noqa: E501
    "o200k": _O200K,
}


@dataclass(frozen=True)
class TiktokenFile:
    """What a known rank file's own loading code adds to the ranks."""

    name: str  # "Llama-3"
    pattern: str  # key of TIKTOKEN_PATTERNS
    specials: tuple[str, ...]  # in id order, from the first id after the ranks
    roles: dict[str, str]  # "bos_token" -> "<|begin_of_text|>", ...


def _llama3_specials() -> tuple[str, ...]:
    """Meta's 256 Llama-3 special tokens, in id order from 128000 (llama_models/llama3/tokenizer.py)."""
    named = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 6: "<|start_header_id|>"}
    named |= {7: "<|end_header_id|>", 9: "<|eot_id|>"}
    reserved = iter(range(256))
    return tuple(named.get(i) or f"<|reserved_special_token_{next(reserved)}|>" for i in range(256))


def _llama4_specials() -> tuple[str, ...]:
    """Meta's 2,048 Llama-4 special tokens, in id order from 200000 (llama_models/llama4/tokenizer.py)."""

    def reserved(name: str, count: int, start: int = 0) -> list[str]:
        return [f"<|{name}_reserved_special_token_{i}|>" for i in range(start, start + count)]

    basic = ["<|begin_of_text|>", "<|end_of_text|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]
    text = ["<|header_start|>", "<|header_end|>", "<|eom|>", "<|eot|>", "<|step|>"]
    text += reserved("text_post_train", 6) + ["<|python_start|>", "<|python_end|>", "<|finetune_right_pad|>"]
    text += reserved("text_post_train", 61, 8)
    vision = ["<|image_start|>", "<|image_end|>", *reserved("vision", 2), "<|tile_x_separator|>"]
    vision += ["<|tile_y_separator|>", *reserved("vision", 4, 2), "<|image|>", *reserved("vision", 1, 6)]
    vision += ["<|patch|>", *reserved("vision", 1041, 7)]
    reasoning = reserved("reasoning", 8) + ["<|reasoning_thinking_start|>", "<|reasoning_thinking_end|>"]
    named = basic + text + vision + reasoning
    return tuple(named + [f"<|reserved_special_token_{i}|>" for i in range(2048 - len(named))])


def _qwen_specials() -> tuple[str, ...]:
    """Qwen's special tokens, in id order after the 151,643 ranks."""
    return ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *(f"<|extra_{i}|>" for i in range(205)))


# sha256 of the rank file -> what its loading code adds.
KNOWN_TIKTOKEN_FILES: dict[str, TiktokenFile] = {
    "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55": TiktokenFile(
        "Llama-3", "llama3", _llama3_specials(), {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    ),
    "d0bdbaf59b0762c8c807617e2d8ea51420eb1b1de266df2495be755c8e0ed6ed": TiktokenFile(
        "Llama-4",
        "llama4",
        _llama4_specials(),
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "pad_token": "<|finetune_right_pad|>"},
    ),
    "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186": TiktokenFile(
        "Qwen", "qwen2", _qwen_specials(), {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    ),
}


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def known_tiktoken_file(path: Path) -> TiktokenFile | None:
    """The table entry for the rank file at `path` by its sha256, or None for a file not in it."""
    return KNOWN_TIKTOKEN_FILES.get(file_sha256(path))
