"""Canonical bytes are exact: decoding any ids equals the concatenation of their canonical bytes."""

from __future__ import annotations

import random

import pytest
from conftest import FAMILIES, gsm8k, vocab

from xtoken_align.vocab import display_bytes


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_every_id_decodes_to_its_canonical_bytes(name: str) -> None:
    v = vocab(name)
    # A leading "a" keeps SentencePiece's start-of-text rule out of the way for single tokens.
    anchor = v.tokenizer.encode("a", add_special_tokens=False).ids
    prefix = v.decode_bytes(anchor)
    for index in range(v.size):
        if v.categories[index] == "unused":
            continue
        decoded = v.tokenizer.decode([*anchor, index], skip_special_tokens=False)
        assert decoded == (prefix + v.token_bytes[index]).decode("utf-8", "replace"), (index, v.pieces[index])


@pytest.mark.parametrize("name", FAMILIES)
def test_random_sequences_and_gsm8k_round_trip(name: str) -> None:
    v = vocab(name)
    valid = [i for i in range(v.size) if v.is_regular(i) and v.categories[i] not in ("byte", "partial-utf8")]
    rng = random.Random(0)
    for _ in range(300):
        ids = rng.choices(valid, k=rng.randint(1, 40))
        assert v.tokenizer.decode(ids).encode("utf-8") == v.decode_bytes(ids)
    for text in gsm8k()[:400]:
        ids = v.tokenizer.encode(text, add_special_tokens=False).ids
        assert v.decode_bytes(ids) == text.encode("utf-8")


@pytest.mark.parametrize("name", FAMILIES)
def test_display_never_shows_replacement_character(name: str) -> None:
    v = vocab(name)
    assert all("\ufffd" not in v.display(i) for i in range(v.size))


def test_byte_level_and_sentencepiece_spellings_meet() -> None:
    llama3, llama2, qwen3 = vocab("llama3"), vocab("llama2"), vocab("qwen3")
    the = llama3.pieces.index("Ġthe")
    assert llama3.token_bytes[the] == b" the" == llama2.token_bytes[llama2.pieces.index("▁the")]
    byte_a = llama2.pieces.index("<0x41>")
    assert llama2.token_bytes[byte_a] == b"A" and llama2.categories[byte_a] == "byte"
    newline = llama2.pieces.index("<0x0A>")
    assert llama2.token_bytes[newline] == b"\n"
    assert qwen3.token_bytes[qwen3.pieces.index("Ċ")] == b"\n"


def test_partial_utf8_display_uses_hex_escapes() -> None:
    v = vocab("llama3")
    partial = [i for i in range(v.size) if v.categories[i] == "partial-utf8"]
    assert len(partial) > 100
    assert all("\\x" in v.display(i) for i in partial)
    assert display_bytes(b"caf\xc3") == "caf\\xc3"
    assert display_bytes("\ufffd".encode()) == "\\ufffd"  # a literal U+FFFD token is escaped too


def test_numeral_categories_and_specials() -> None:
    llama3, qwen3 = vocab("llama3"), vocab("qwen3")
    counts = llama3.category_counts()
    assert (counts["digits:1"], counts["digits:2"], counts["digits:3"]) == (10, 100, 1000)
    assert llama3.categories[llama3.pieces.index("201")] == "digits:3"
    assert qwen3.category_counts().get("digits:2", 0) == 0  # Qwen splits numerals digit by digit
    assert llama3.roles()["bos"] == llama3.pieces.index("<|begin_of_text|>")
    assert llama3.roles()["turn_end"] == llama3.pieces.index("<|eot_id|>")
    assert qwen3.roles()["turn_end"] == qwen3.pieces.index("<|im_end|>")
    assert "eos" in qwen3.special[qwen3.pieces.index("<|im_end|>")]  # from tokenizer_config.json
    assert not any(i in qwen3.special for i in [qwen3.pieces.index("<think>")])  # added but not special


def test_o200k_unused_ids_are_not_tokens() -> None:
    v = vocab("o200k")
    assert v.size == 200_019  # o200k_base has 199,998 ranks; 199998 and 200000..200017 are holes
    holes = [i for i in range(v.size) if v.categories[i] == "unused"]
    assert holes == [199_998, *range(200_000, 200_018)]
    assert not any(v.is_regular(i) for i in holes)


def test_fingerprint_tracks_canonical_bytes() -> None:
    assert vocab("llama3").fingerprint == vocab("llama3-tiktoken").fingerprint
    assert vocab("llama3").fingerprint != vocab("qwen3").fingerprint
    assert len(vocab("llama2").fingerprint) == 64


def test_gemma3_whitespace_runs_and_placeholders() -> None:
    v = vocab("gemma3")
    added = v.tokenizer.get_added_tokens_decoder()
    runs = [i for i, t in added.items() if set(t.content) == {"\u2581"}]
    assert len(runs) == 30  # `▁▁` .. 31 `▁`, added tokens that are not special
    for i in runs:
        assert v.token_bytes[i] == b" " * len(added[i].content) and v.categories[i] in ("whitespace", "indent")
        assert v.tokenizer.decode([i]) == " " * len(added[i].content)
    newlines = [i for i, t in added.items() if set(t.content) == {"\n"}]
    assert newlines and all(v.categories[i] == "whitespace" for i in newlines)
    unused = [i for i, t in added.items() if t.content.startswith("<unused")]
    assert len(unused) > 6000 and all(v.categories[i] == "special:unused" and not v.is_regular(i) for i in unused)
    assert v.category_counts()["special:unused"] == len(unused)


@pytest.mark.parametrize(
    ("name", "marker", "roles", "evidence"),
    [
        ("gemma3", "<start_of_turn>", ["turn_start"], "chat template"),
        ("gemma3", "<end_of_turn>", ["eos", "turn_end"], "tokenizer_config.json eos_token"),
        ("llama3", "<|start_header_id|>", ["turn_start"], "known family Llama-3"),
        ("qwen3", "<|im_end|>", ["eos", "turn_end"], "chat template"),
        ("tekken", "[INST]", ["turn_start:user"], "known family Mistral"),
        ("llama4-tiktoken", "<|header_start|>", ["turn_start"], "known family Llama-4"),
        ("llama4-tiktoken", "<|eot|>", ["turn_end"], "known family Llama-4"),
    ],
)
def test_roles_carry_their_evidence(name: str, marker: str, roles: list[str], evidence: str) -> None:
    v = vocab(name)
    index = v.pieces.index(marker)
    assert v.special[index] == roles and v.categories[index] == "special"
    assert any(evidence in e for e in v.role_evidence[index]), v.role_evidence[index]
