"""Every source form loads, converters agree with the originals, bad input gets one clear line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sentencepiece
from conftest import TOKENIZERS, gsm8k, vocab

from xtoken_align.errors import XTokenError
from xtoken_align.sources import load_tokenizer


def test_llama3_tiktoken_equals_tokenizer_json() -> None:
    from_json, from_tiktoken = vocab("llama3"), vocab("llama3-tiktoken")
    assert from_json.size == from_tiktoken.size == 128_256
    assert from_json.token_bytes[:128_000] == from_tiktoken.token_bytes[:128_000]
    assert from_json.pieces[128_000:] == from_tiktoken.pieces[128_000:]  # Meta's special tokens, same ids
    assert from_json.fingerprint == from_tiktoken.fingerprint
    for text in gsm8k()[:200]:
        assert (
            from_json.tokenizer.encode(text, add_special_tokens=False).ids
            == from_tiktoken.tokenizer.encode(text, add_special_tokens=False).ids
        )


def test_qwen_tiktoken_matches_qwen3_on_shared_ids() -> None:
    qwen3, qwen_tiktoken = vocab("qwen3"), vocab("qwen-tiktoken")
    shared = 151_643 + 3  # the BPE ranks plus <|endoftext|>, <|im_start|>, <|im_end|>
    assert qwen3.token_bytes[:shared] == qwen_tiktoken.token_bytes[:shared]
    for text in gsm8k()[:200]:
        assert qwen3.tokenizer.encode(text).ids == qwen_tiktoken.tokenizer.encode(text).ids


def test_sentencepiece_model_tokenizes_like_sentencepiece(gsm8k_texts: list[str]) -> None:
    """Golden test against the sentencepiece library itself, spaces, bytes and emoji included."""
    path = TOKENIZERS / "mistral-v1-sentencepiece" / "tokenizer.model"
    original = sentencepiece.SentencePieceProcessor(model_file=str(path))
    converted = load_tokenizer(str(path)).tokenizer
    extras = " é 日本語 🙂  x\t\t y   z\n\n  w"
    for text in gsm8k_texts[:400]:
        assert converted.encode(text + extras).ids == original.encode(text + extras)


@pytest.mark.parametrize(
    ("source", "kind", "roles"),
    [
        ("demo:llama3", "tokenizer.json", {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
        ("demo:qwen3", "tokenizer.json", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
        ("demo:llama3-tiktoken", "tiktoken", {"bos_token": "<|begin_of_text|>"}),
        ("demo:mistral-v1", "sentencepiece", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
    ],
)
def test_demo_sources_and_config_roles(source: str, kind: str, roles: dict[str, str]) -> None:
    loaded = load_tokenizer(source)
    assert loaded.kind == kind
    assert roles.items() <= loaded.config_roles.items()


def test_folder_file_and_named_pattern_forms(tmp_path: Path) -> None:
    folder = load_tokenizer(str(TOKENIZERS / "llama2"))
    file = load_tokenizer(str(TOKENIZERS / "llama2" / "tokenizer.json"))
    assert folder.config_roles == file.config_roles == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    renamed = tmp_path / "ranks.tiktoken"
    shutil.copyfile(TOKENIZERS / "llama3-tiktoken" / "tokenizer.model", renamed)
    as_llama = load_tokenizer(f"tiktoken:llama3:{renamed}")
    as_qwen = load_tokenizer(f"tiktoken:qwen2:{renamed}")
    assert as_llama.tokenizer.encode("12345").tokens == ["123", "45"]  # llama3 groups up to 3 digits
    assert as_qwen.tokenizer.encode("12345").tokens == ["1", "2", "3", "4", "5"]  # qwen2 splits them


def _truncated(tmp_path: Path) -> str:
    path = tmp_path / "tokenizer.json"
    path.write_bytes((TOKENIZERS / "llama2" / "tokenizer.json").read_bytes()[:5000])
    return str(path)


def _not_json(tmp_path: Path) -> str:
    path = tmp_path / "t.json"
    path.write_text("this is not json")
    return str(path)


def _wrong_json(tmp_path: Path) -> str:
    path = tmp_path / "t.json"
    path.write_text('{"model": 3}')
    return str(path)


def _unnamed_tiktoken(tmp_path: Path) -> str:
    path = tmp_path / "ranks.tiktoken"
    shutil.copyfile(TOKENIZERS / "qwen-tiktoken" / "qwen.tiktoken", path)
    return str(path)


def _garbage_model(tmp_path: Path) -> str:
    path = tmp_path / "tokenizer.model"
    path.write_bytes(bytes(range(256)) * 4)
    return str(path)


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda tmp: str(tmp / "missing.json"), "no such file"),
        (_truncated, "not valid JSON"),
        (_not_json, "not valid JSON"),
        (_wrong_json, "not a Hugging Face tokenizer.json"),
        (lambda tmp: "demo:gpt-17", "unknown demo tokenizer 'gpt-17'"),
        (lambda tmp: f"tiktoken:gpt9:{TOKENIZERS / 'qwen-tiktoken' / 'qwen.tiktoken'}", "unknown tiktoken pattern"),
        (_unnamed_tiktoken, "cannot tell this tiktoken file's pre-tokenizer pattern"),
        (_garbage_model, "not a SentencePiece model"),
        (lambda tmp: str(tmp), "holds no tokenizer.json"),
    ],
)
def test_bad_sources_raise_one_clear_error(tmp_path: Path, make_source, message: str) -> None:
    with pytest.raises(XTokenError, match=message):
        load_tokenizer(make_source(tmp_path))


def test_unreachable_hub_names_the_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    with pytest.raises(XTokenError, match="hub model 'Qwen/Qwen3-4B'"):
        load_tokenizer("Qwen/Qwen3-4B")
