"""Chunk alignment on real tokenizers: byte walk and the paper's DP, one-sided BOS, shift, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gsm8k, vocab

from xtoken_align.distill import align_dp as align_module
from xtoken_align.distill.align import SampleAlignment, align_batch, align_sample, chunk_agreement
from xtoken_align.errors import XTokenError

# (student, teacher, student has a BOS, teacher has a BOS): byte-level vs byte-level, vs tiktoken
# ranks, and SentencePiece (▁, <0xNN>, dropped first space) vs byte-level.
PAIRS = [("llama3", "qwen3", True, False), ("llama3", "o200k", True, False), ("llama2", "llama3", True, True)]
EDGE_TEXTS = [
    "",
    " ",
    "\n\n\n",
    "   \n \t\n  ",
    "Emoji 😀👍🏽 and CJK 漢字かな한국어 mixed: 1234567 ✓",
    "😀",
    " leading space, then 201 and 3.14159",
]


def ids_of(name: str, text: str, bos: bool) -> np.ndarray:
    v = vocab(name)
    head = [v.roles()["bos"]] if bos else []
    return np.asarray(head + v.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)


def token_texts(name: str, ids: np.ndarray) -> list[bytes]:
    """Bytes each token adds to the decoded text: nothing for special tokens, and SentencePiece's
    first space dropped."""
    v = vocab(name)
    out = [b"" if i in v.special else v.token_bytes[i] for i in ids.tolist()]
    first = next((k for k, b in enumerate(out) if b), None)
    if v.strips_leading_space and first is not None and out[first].startswith(b" "):
        out[first] = out[first][1:]
    return out


def chunk_spans(a: SampleAlignment, s_texts: list[bytes], t_texts: list[bytes]):
    """Per valid chunk and side: the indices of the tokens it predicts, and their byte span."""

    def side(chunk: np.ndarray, texts: list[bytes]):
        ends = np.cumsum([len(b) for b in texts])
        spans = []
        for k in range(a.n_chunks):
            tokens = np.flatnonzero(chunk == k) + 1  # position p predicts token p + 1
            spans.append((tokens, int(ends[tokens[0]] - len(texts[tokens[0]])), int(ends[tokens[-1]])))
        return spans

    return side(a.student_chunk, s_texts), side(a.teacher_chunk, t_texts)


def check(a: SampleAlignment, student: str, teacher: str, text: str | None = None) -> None:
    """The contract of docs/distill-interfaces.md, checked against independently computed bytes."""
    s_texts, t_texts = token_texts(student, a.student_ids), token_texts(teacher, a.teacher_ids)
    if text is not None:  # clean text: both sides decode to it
        assert b"".join(s_texts) == b"".join(t_texts) == text.encode()
    assert a.student_chunk.dtype == a.teacher_chunk.dtype == a.labels.dtype == np.int64
    assert a.labels.tolist() == [*a.student_ids[1:].tolist(), -100][: len(a.student_ids)]
    for chunk in (a.student_chunk, a.teacher_chunk):
        assert ((chunk >= -1) & (chunk < a.n_chunks)).all()
        assert set(chunk[chunk >= 0].tolist()) == set(range(a.n_chunks))  # contiguous, on both sides
        used = chunk[chunk >= 0]
        assert (np.diff(used) >= 0).all()  # text order
        if len(chunk):
            assert chunk[-1] == -1  # the last position predicts nothing
    s_spans, t_spans = chunk_spans(a, s_texts, t_texts)
    for (s_tok, s_lo, s_hi), (t_tok, t_lo, t_hi) in zip(s_spans, t_spans, strict=True):
        for tokens in (s_tok, t_tok):  # every token of the chunk is predicted, in one run
            assert (np.diff(tokens) == 1).all()
        s_bytes = b"".join(s_texts[i] for i in s_tok)
        t_bytes = b"".join(t_texts[i] for i in t_tok)
        assert s_bytes == t_bytes and s_bytes  # the same bytes on both sides
        if text is not None:
            assert (s_lo, s_hi) == (t_lo, t_hi)  # at the same place in the text


@pytest.mark.parametrize("student,teacher,s_bos,t_bos", PAIRS)
@pytest.mark.parametrize("method", ["bytes", "dp"])
def test_chunks_cover_the_same_bytes_on_gsm8k(student, teacher, s_bos, t_bos, method) -> None:
    texts = gsm8k("test")[: 120 if method == "bytes" else 40]
    covered = total = 0
    for text in texts:
        a = align_sample(
            vocab(student), vocab(teacher), ids_of(student, text, s_bos), ids_of(teacher, text, t_bos), method
        )
        check(a, student, teacher, text)
        covered += int((a.student_chunk >= 0).sum())
        total += len(a.student_chunk) - 1
    assert covered / total > 0.97  # almost every student position is in a chunk on clean text


@pytest.mark.parametrize("student,teacher,s_bos,t_bos", PAIRS)
@pytest.mark.parametrize("text", EDGE_TEXTS)
@pytest.mark.parametrize("method", ["bytes", "dp"])
def test_edge_texts(student, teacher, s_bos, t_bos, text, method) -> None:
    a = align_sample(vocab(student), vocab(teacher), ids_of(student, text, s_bos), ids_of(teacher, text, t_bos), method)
    check(a, student, teacher, text)


def test_one_sided_bos_costs_the_first_chunk_only() -> None:
    """Llama-3 has <|begin_of_text|>, Qwen3 none: the BOS position would predict chunk 0, which the
    teacher cannot predict (its first token has no position before it): dropped; nothing else moves."""
    text = gsm8k("test")[0]
    with_bos = align_sample(vocab("llama3"), vocab("qwen3"), ids_of("llama3", text, True), ids_of("qwen3", text, False))
    no_bos = align_sample(vocab("llama3"), vocab("qwen3"), ids_of("llama3", text, False), ids_of("qwen3", text, False))
    assert with_bos.student_chunk[0] == -1  # the BOS position predicts into no chunk
    assert with_bos.n_chunks == no_bos.n_chunks
    assert with_bos.student_chunk[1:].tolist() == no_bos.student_chunk.tolist()
    assert with_bos.teacher_chunk.tolist() == no_bos.teacher_chunk.tolist()
    both = align_sample(vocab("llama2"), vocab("llama3"), ids_of("llama2", text, True), ids_of("llama3", text, True))
    assert both.student_chunk[0] == both.teacher_chunk[0] == 0  # BOS on both sides: chunk 0 is kept


def test_numeral_chunk_maps_to_its_digits_and_the_shift_is_right() -> None:
    text = "He paid 201 dollars."
    s_ids, t_ids = ids_of("llama3", text, True), ids_of("qwen3", text, False)
    for method in ("bytes", "dp"):
        a = align_sample(vocab("llama3"), vocab("qwen3"), s_ids, t_ids, method)
        s_pos = [p for p in range(len(s_ids) - 1) if vocab("llama3").token_bytes[s_ids[p + 1]] == b"201"]
        assert len(s_pos) == 1
        k = a.student_chunk[s_pos[0]]  # the position whose next token is "201"
        assert k >= 0 and (a.student_chunk == k).sum() == 1
        predicted = [vocab("qwen3").token_bytes[t_ids[p + 1]] for p in np.flatnonzero(a.teacher_chunk == k)]
        assert predicted == [b"2", b"0", b"1"]


def test_numeral_example_of_the_docstring() -> None:
    a = align_sample(vocab("llama3"), vocab("qwen3"), ids_of("llama3", "201 x", True), ids_of("qwen3", "201 x", False))
    assert a.student_chunk.tolist() == [-1, 0, -1] and a.teacher_chunk.tolist() == [-1, -1, 0, -1]
    assert a.n_chunks == 1 and a.labels.tolist() == [*a.student_ids[1:].tolist(), -100]


@pytest.mark.parametrize("method", ["bytes", "dp"])
def test_nfc_changing_text_with_qwen3(method) -> None:
    """Qwen3 normalises to NFC, Llama-3 does not: the bytes differ in the middle. No crash; what
    stays valid covers the same bytes, and the text before and after the change keeps its chunks."""
    text = "Prefix words 123 then Cafe\u0301 and \u212b here, then suffix words 456 end"
    assert vocab("qwen3").tokenizer.decode(vocab("qwen3").tokenizer.encode(text).ids) != text
    a = align_sample(
        vocab("llama3"), vocab("qwen3"), ids_of("llama3", text, True), ids_of("qwen3", text, False), method
    )
    check(a, "llama3", "qwen3")
    s_texts = token_texts("llama3", a.student_ids)
    kept = b"".join(s_texts[p + 1] for p in np.flatnonzero(a.student_chunk >= 0))
    assert kept.startswith(b" words 123 then")  # "Prefix" is chunk 0, which the teacher cannot predict
    assert kept.endswith(b" suffix words 456 end")
    assert "Cafe\u0301".encode() not in kept


def test_two_divergences_drop_the_stretch_between() -> None:
    text = "a e\u0301 middle part \u212b z"
    a = align_sample(vocab("llama3"), vocab("qwen3"), ids_of("llama3", text, True), ids_of("qwen3", text, False))
    check(a, "llama3", "qwen3")


def test_dp_agrees_with_the_byte_walk_on_gsm8k() -> None:
    """The paper's DP and the byte walk give the same chunks on clean text (method.md §3)."""
    texts = gsm8k("test")[:300]
    s_ids = [ids_of("llama3", t, True) for t in texts]
    t_ids = [ids_of("qwen3", t, False) for t in texts]
    walk = align_batch(vocab("llama3"), vocab("qwen3"), s_ids, t_ids, "bytes")
    dp = align_batch(vocab("llama3"), vocab("qwen3"), s_ids, t_ids, "dp")
    same, total = np.sum([chunk_agreement(w, d) for w, d in zip(walk, dp, strict=True)], axis=0)
    assert total > 10_000 and same / total >= 0.99


def test_dp_row_vectorised_equals_cell_by_cell(monkeypatch) -> None:
    """The numpy DP (wide segments) and the plain one make the same moves; checked without anchors
    so whole texts go through one DP."""
    monkeypatch.setattr(align_module, "_anchors", lambda s_keys, t_keys: [])
    texts = [*gsm8k("test")[:4], "201 x 3.14 " * 5, "12345678 " * 6 + " abc" * 5]
    results = {}
    for wide in (-1, 10**9):
        monkeypatch.setattr(align_module, "_WIDE_DP", wide)
        results[wide] = [
            align_sample(vocab("llama3"), vocab("qwen3"), ids_of("llama3", t, True), ids_of("qwen3", t, False), "dp")
            for t in texts
        ]
    for a, b in zip(results[-1], results[10**9], strict=True):
        assert a.student_chunk.tolist() == b.student_chunk.tolist()
        assert a.teacher_chunk.tolist() == b.teacher_chunk.tolist()


def test_batch_equals_one_at_a_time() -> None:
    texts = [*gsm8k("test")[:20], "", "Cafe\u0301 au lait 2024", "😀 漢字", "  \n", "x"]
    for student, teacher, s_bos, t_bos in PAIRS:
        s_ids = [ids_of(student, t, s_bos) for t in texts]
        t_ids = [ids_of(teacher, t, t_bos) for t in texts]
        batch = align_batch(vocab(student), vocab(teacher), s_ids, t_ids)
        for a, s, t in zip(batch, s_ids, t_ids, strict=True):
            b = align_sample(vocab(student), vocab(teacher), s, t)
            assert a.n_chunks == b.n_chunks
            for field in ("student_ids", "teacher_ids", "student_chunk", "teacher_chunk", "labels"):
                assert getattr(a, field).tolist() == getattr(b, field).tolist(), field


def test_bad_arguments() -> None:
    with pytest.raises(XTokenError, match="unknown alignment method"):
        align_sample(vocab("llama3"), vocab("qwen3"), [1, 2], [1, 2], method="nw")
    with pytest.raises(XTokenError, match="student sequences"):
        align_batch(vocab("llama3"), vocab("qwen3"), [[1]], [])
    assert align_batch(vocab("llama3"), vocab("qwen3"), [], []) == []


ALPHABET = list("aab  12345678900.,\n\n\t$%") + ["é", "漢", "字", "😀", "👍🏽", " the", " 2024", "  ", "ß", "\u0301"]


@pytest.mark.parametrize("student,teacher,s_bos,t_bos", PAIRS)
def test_random_texts(student, teacher, s_bos, t_bos) -> None:
    """Random mixes of digits, spaces, multi-byte and combining characters (which Qwen3's NFC
    rewrites): the contract holds for both methods, and a batch equals its texts one at a time."""
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(ALPHABET, size=int(rng.integers(0, 40)))) for _ in range(60)]
    s_ids = [ids_of(student, t, s_bos) for t in texts]
    t_ids = [ids_of(teacher, t, t_bos) for t in texts]
    batch = align_batch(vocab(student), vocab(teacher), s_ids, t_ids)
    for text, s, t, a in zip(texts, s_ids, t_ids, batch, strict=True):
        clean = b"".join(token_texts(student, s)) == b"".join(token_texts(teacher, t))
        check(a, student, teacher, text if clean else None)
        one = align_sample(vocab(student), vocab(teacher), s, t)
        assert one.student_chunk.tolist() == a.student_chunk.tolist() and one.n_chunks == a.n_chunks
        assert one.teacher_chunk.tolist() == a.teacher_chunk.tolist()
        check(align_sample(vocab(student), vocab(teacher), s, t, "dp"), student, teacher)
