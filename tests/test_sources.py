"""Every source form loads, converters agree with the originals, bad input gets one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece
from conftest import TOKENIZERS, demo_file, gsm8k, vocab

from xtoken_align.errors import XTokenError
from xtoken_align.overlap import compare_vocabs
from xtoken_align.sources import TIKTOKEN_PATTERNS, load_tokenizer

# Text the golden tests add to GSM8K: accents, CJK, emoji, runs of spaces, tabs and newlines, digits.
STRESS = [
    " é 日本語 🙂  x\t\t y   z\n\n  w",
    "   leading and trailing   ",
    "1234567890 3.14159 -42 1,000,000 2024-01-31 0x1F 007",
    "naïve café Ωμέγα Привет мир مرحبا שלום नमस्ते สวัสดี 안녕하세요 こんにちは",
    "👩‍👩‍👧‍👦🏳️‍🌈 🇫🇷 a\u200bb \u00a0nbsp",
    "tabs\t\t\tand\r\nCRLF\n\n\n\nmany",
    "x" * 300 + " " * 40 + "y",
    "don't I'LL we've THEY'RE",
]


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


@pytest.mark.parametrize("name", ["mistral-v1", "mistral-v3"])
def test_sentencepiece_model_tokenizes_like_sentencepiece(name: str, gsm8k_texts: list[str]) -> None:
    """Golden test against the sentencepiece library itself, spaces, bytes and emoji included."""
    path = demo_file(name)
    original = sentencepiece.SentencePieceProcessor(model_file=str(path))
    converted = load_tokenizer(str(path)).tokenizer
    for text in gsm8k_texts[:400] + STRESS:
        assert converted.encode(text + STRESS[0]).ids == original.encode(text + STRESS[0])


def test_tekken_ids_equal_mistral_common(gsm8k_texts: list[str]) -> None:
    """Golden test against mistral-common's own Tekkenizer: same ids on GSM8K and stress text."""
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    original = Tekkenizer.from_file(demo_file("tekken"))
    loaded = load_tokenizer("demo:tekken")
    converted = loaded.tokenizer
    assert loaded.kind == "tekken" and converted.get_vocab_size() == original.n_words == 131_072
    for text in gsm8k_texts + STRESS:
        assert converted.encode(text, add_special_tokens=False).ids == original.encode(text, bos=False, eos=False)
    # The first 1,000 ids are special tokens, placeholders included, then the ranks.
    specials = {i: t.content for i, t in converted.get_added_tokens_decoder().items() if t.special}
    assert sorted(specials) == list(range(original.num_special_tokens)) == list(range(1000))
    assert [specials[i] for i in (0, 1, 2, 11, 20, 999)] == [
        "<unk>",
        "<s>",
        "</s>",
        "<pad>",
        "<SPECIAL_20>",
        "<SPECIAL_999>",
    ]
    assert all(original.id_to_piece(i) == specials[i] for i in (0, 1, 2, 3, 11))
    assert converted.encode("2024", add_special_tokens=False).tokens == ["2", "0", "2", "4"]  # the file's pattern
    assert loaded.config_roles == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    assert loaded.chat_template is None


def test_llama3_numerals_have_no_canonical_match_in_tekken() -> None:
    """Tekken splits digits one by one, so none of Llama-3's grouped numerals exists there."""
    categories = compare_vocabs(vocab("llama3"), vocab("tekken")).categories
    assert (categories["digits:2"].matched, categories["digits:2"].total) == (0, 100)
    assert (categories["digits:3"].matched, categories["digits:3"].total) == (0, 1_000)
    assert categories["digits:1"].matched == categories["digits:1"].total == 10


def test_llama4_tiktoken_ids_equal_llama_models(gsm8k_texts: list[str]) -> None:
    """Golden test against Meta's own llama_models Llama-4 tokenizer: ids, special ids, pattern."""
    from llama_models.llama4.tokenizer import Tokenizer as MetaTokenizer

    path = demo_file("llama4-tiktoken")
    meta = MetaTokenizer(path)
    loaded = load_tokenizer(str(path))
    converted = loaded.tokenizer
    assert converted.get_vocab_size() == meta.n_words == 202_048
    assert {token: converted.token_to_id(token) for token in meta.special_tokens} == meta.special_tokens
    assert TIKTOKEN_PATTERNS["llama4"] == meta.O200K_PATTERN
    for text in gsm8k_texts + STRESS:
        assert converted.encode(text, add_special_tokens=False).ids == meta.encode(text, bos=False, eos=False)
    assert loaded.config_roles == {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>",
        "pad_token": "<|finetune_right_pad|>",
    }


def test_rank_files_are_known_by_content_not_name(tmp_path: Path) -> None:
    renamed = tmp_path / "ranks.tiktoken"
    shutil.copyfile(TOKENIZERS / "qwen-tiktoken" / "qwen.tiktoken", renamed)
    as_qwen = load_tokenizer(str(renamed))
    assert as_qwen.tokenizer.get_vocab_size() == 151_643 + 208
    assert as_qwen.tokenizer.token_to_id("<|im_end|>") == 151_645
    assert as_qwen.tokenizer.encode("2024").tokens == ["2", "0", "2", "4"]  # Qwen's pattern, not a guess
    # A rank file in a folder named "llama" that is not Meta's Llama-3 file is not read as Llama-3.
    lines = (TOKENIZERS / "llama3-tiktoken" / "tokenizer.model").read_bytes().splitlines(keepends=True)
    (tmp_path / "llama3").mkdir()
    cut = tmp_path / "llama3" / "tokenizer.model"
    cut.write_bytes(b"".join(lines[:50_000]))
    with pytest.raises(XTokenError, match=r"not a tiktoken file this tool knows.*tiktoken:PATTERN:.*llama4"):
        load_tokenizer(str(cut))
    ranks_only = load_tokenizer(f"tiktoken:llama3:{cut}")
    assert ranks_only.tokenizer.get_vocab_size() == 50_000  # no special tokens guessed
    assert ranks_only.config_roles == {} and ranks_only.tokenizer.get_added_tokens_decoder() == {}


def test_chat_template_from_tokenizer_config(tmp_path: Path) -> None:
    assert load_tokenizer("demo:llama3.1").chat_template.startswith("{% set loop_messages")
    assert load_tokenizer("demo:llama2").chat_template is None  # its config carries none
    assert load_tokenizer("demo:llama3-tiktoken").chat_template is None
    folder = tmp_path / "named"
    folder.mkdir()
    shutil.copyfile(TOKENIZERS / "llama2" / "tokenizer.json", folder / "tokenizer.json")
    named = [{"name": "tool_use", "template": "{{ tools }}"}, {"name": "default", "template": "{{ messages }}"}]
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": named}))
    assert load_tokenizer(str(folder)).chat_template == "{{ messages }}"


@pytest.mark.parametrize(
    ("source", "kind", "roles"),
    [
        ("demo:llama3", "tokenizer.json", {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
        ("demo:qwen3", "tokenizer.json", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
        ("demo:llama3-tiktoken", "tiktoken", {"bos_token": "<|begin_of_text|>"}),
        ("demo:mistral-v1", "sentencepiece", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
        ("demo:mistral-v3", "sentencepiece", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
        ("demo:gemma3", "tokenizer.json", {"bos_token": "<bos>", "eos_token": "<end_of_turn>", "pad_token": "<pad>"}),
        ("demo:llama3.1", "tokenizer.json", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
        ("demo:cl100k", "tokenizer.json", {"eos_token": "<|endoftext|>"}),
        ("demo:tekken", "tekken", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
        ("demo:llama4-tiktoken", "tiktoken", {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
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


def _unknown_tiktoken(tmp_path: Path) -> str:
    path = tmp_path / "qwen.tiktoken"  # the name says Qwen; the content is not Qwen's file
    path.write_bytes(b"".join((TOKENIZERS / "qwen-tiktoken" / "qwen.tiktoken").read_bytes().splitlines(True)[:1000]))
    return str(path)


def _truncated_tekken(tmp_path: Path) -> str:
    path = tmp_path / "tekken.json"
    path.write_bytes(demo_file("tekken").read_bytes()[:100_000])
    return str(path)


def _damaged_tekken(tmp_path: Path) -> str:
    data = json.loads(demo_file("tekken").read_text(encoding="utf-8"))
    data["vocab"][5]["token_bytes"] = "not base64!"
    path = tmp_path / "tekken.json"
    path.write_text(json.dumps(data))
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
        (_unknown_tiktoken, r"not a tiktoken file this tool knows \(Llama-3, Llama-4, Qwen; .*PATTERN one of llama3"),
        (_truncated_tekken, "tekken.json: not valid JSON"),
        (_damaged_tekken, "tekken.json: not a usable Tekken file"),
        (_garbage_model, "not a SentencePiece model"),
        (lambda tmp: str(tmp), "holds no tokenizer.json"),
    ],
)
def test_bad_sources_raise_one_clear_error(tmp_path: Path, make_source, message: str) -> None:
    with pytest.raises(XTokenError, match=message) as caught:
        load_tokenizer(make_source(tmp_path))
    assert "\n" not in str(caught.value)


def test_unreachable_hub_names_the_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    with pytest.raises(XTokenError, match="hub model 'Qwen/Qwen3-4B'"):
        load_tokenizer("Qwen/Qwen3-4B")
