"""Raw vs canonical overlap, against a token-by-token count."""

from __future__ import annotations

import pytest
from conftest import vocab

from xtoken_align.overlap import compare_vocabs, overlap_text


@pytest.mark.parametrize(("student", "teacher"), [("llama3", "qwen3"), ("llama2", "llama3"), ("gemma3", "mistral-v1")])
def test_overlap_matches_a_token_by_token_count(student: str, teacher: str) -> None:
    s, t = vocab(student), vocab(teacher)
    report = compare_vocabs(s, t)
    pieces = set(filter(None, t.pieces))
    assert report.raw_overlap == sum(1 for p in s.pieces if p and p in pieces)
    naive: dict[str, list[int]] = {}
    for i in range(s.size):
        if s.categories[i] == "unused":
            continue
        counts = naive.setdefault(s.categories[i], [0, 0])
        counts[0] += 1
        counts[1] += s.is_regular(i) and t.id_of_bytes(s.token_bytes[i]) is not None
    assert {k: [c.total, c.matched] for k, c in report.categories.items()} == naive
    assert all(c.unmatched == c.total - c.matched for c in report.categories.values())
    assert report.canonical_overlap == sum(m for _, m in naive.values())
    assert report.student.fingerprint == s.fingerprint and report.teacher.name == t.name


def test_text_shows_the_counts() -> None:
    report = compare_vocabs(vocab("llama3"), vocab("qwen3"))
    text = overlap_text(report)
    assert f"raw string overlap:      {report.raw_overlap:,}" in text
    assert f"({report.canonical_gain:+,} vs raw)" in text
