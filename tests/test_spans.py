"""Byte spans and shared chunks (`xtoken_align.spans`), checked against the tokenizers' own decoders
and an independent per-text count of shared boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gsm8k, vocab

from xtoken_align.spans import align_chunks, encode_spans, round_trips, token_spans

EDGES = [" x", "x", "   leading spaces", "a  b", "", "\n\n  indented\tcode", "😀 漢字 Café 2024"]


@pytest.mark.parametrize("name", ["llama3", "qwen3", "llama2", "mistral-v1", "qwen-tiktoken"])
def test_spans_tile_the_decoded_text(name: str) -> None:
    v = vocab(name)
    texts = [*EDGES, *gsm8k("test")[:50]]
    spans = encode_spans(v, texts)
    for k, text in enumerate(texts):
        ids = spans.ids[spans.tokens(k)].tolist()
        decoded = v.tokenizer.decode(ids, skip_special_tokens=True).encode("utf-8")
        assert spans.text_bytes(k) == decoded, (name, text)
        start, end = spans.start[spans.tokens(k)], spans.end[spans.tokens(k)]
        assert (start[1:] == end[:-1]).all() and (start <= end).all()
        if ids:
            assert start[0] == 0 and end[-1] == len(decoded)
    # Text starting with a space: SentencePiece decoders drop the first space of what they decode.
    flags = round_trips(spans, texts).tolist()
    assert flags[1:] == [True] * (len(texts) - 1)


def test_special_tokens_have_zero_width_and_no_chunk() -> None:
    llama3, qwen3 = vocab("llama3"), vocab("qwen3")
    s_ids = [128000, *llama3.tokenizer.encode("201 x", add_special_tokens=False).ids, 128009]
    s = token_spans(llama3, [s_ids])
    assert s.start.tolist() == [0, 0, 3, 5] and s.end.tolist() == [0, 3, 5, 5]
    assert s.text_bytes(0) == b"201 x"
    t = encode_spans(qwen3, ["201 x"])
    chunks = align_chunks(s, t)
    assert chunks.student.tolist() == [-1, 0, 1, -1] and chunks.teacher.tolist() == [0, 0, 0, 1]
    assert chunks.count.tolist() == [2] and not chunks.diverged[0]


def reference_chunks(s_ends: list[int], t_ends: list[int]) -> tuple[list[int], list[int]]:
    """Independently: a token's chunk is the number of shared boundaries before its end."""
    shared = sorted(set(s_ends) & set(t_ends))

    def chunk(ends: list[int]) -> list[int]:
        return [sum(1 for b in shared if b < e) for e in ends]

    return chunk(s_ends), chunk(t_ends)


@pytest.mark.parametrize(("student", "teacher"), [("llama3", "qwen3"), ("llama2", "llama3"), ("mistral-v1", "o200k")])
def test_chunks_match_shared_boundaries(student: str, teacher: str) -> None:
    texts = [*gsm8k("test")[:100], "x"]
    s, t = encode_spans(vocab(student), texts), encode_spans(vocab(teacher), texts)
    chunks = align_chunks(s, t)
    for k in range(len(texts)):
        s_ref, t_ref = reference_chunks(s.end[s.tokens(k)].tolist(), t.end[t.tokens(k)].tolist())
        assert (chunks.student[s.tokens(k)] - chunks.first[k]).tolist() == s_ref
        assert (chunks.teacher[t.tokens(k)] - chunks.first[k]).tolist() == t_ref
        assert chunks.count[k] == len(set(s_ref))


def test_a_normaliser_that_changes_bytes_drops_only_the_middle() -> None:
    # Qwen3 normalises to NFC: "e" + combining acute becomes "é" on the teacher side only.
    text = "one two Cafe\u0301 three four"
    s, t = encode_spans(vocab("llama3"), [text]), encode_spans(vocab("qwen3"), [text])
    assert round_trips(s, [text]).tolist() == [True] and round_trips(t, [text]).tolist() == [False]
    chunks = align_chunks(s, t)
    assert chunks.diverged.tolist() == [True]
    pieces = [vocab("llama3").token_bytes[i] for i in s.ids.tolist()]
    kept = [p for p, c in zip(pieces, chunks.student.tolist(), strict=True) if c >= 0]
    assert kept[:2] == [b"one", b" two"] and kept[-2:] == [b" three", b" four"]
    assert all(b"Caf" not in p for p in kept)
    assert chunks.count[0] == 4 and sorted(set(chunks.student.tolist()) - {-1}) == [0, 1, 2, 3]


def test_empty_texts_and_batches() -> None:
    s, t = encode_spans(vocab("llama3"), ["", "x", ""]), encode_spans(vocab("qwen3"), ["", "x", ""])
    chunks = align_chunks(s, t)
    assert chunks.count.tolist() == [0, 1, 0] and chunks.first.tolist() == [0, 0, 1]
    empty = align_chunks(encode_spans(vocab("llama3"), []), encode_spans(vocab("qwen3"), []))
    assert empty.total == 0 and len(empty.student) == 0
    assert np.array_equal(round_trips(s, ["", "x", ""]), [True, True, True])
