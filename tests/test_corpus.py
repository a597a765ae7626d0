"""Corpus reading: the forms a corpus file takes, and the files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from xtoken_align.corpus import default_corpus, read_corpus
from xtoken_align.errors import XTokenError


def test_read_corpus_forms(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "one"}\n\n{"question": "2+2?", "answer": "4"}\n')
    assert read_corpus(jsonl) == ["one", "2+2?\n4"]
    text = tmp_path / "c.txt"
    text.write_text("first paragraph\nstill first\n\nsecond\n")
    assert read_corpus(text) == ["first paragraph\nstill first", "second\n"]
    assert len(read_corpus(default_corpus())) == 1_319


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.txt", "holds no text"),
        (b"\x00\x01\x02binary", "blob.txt", "looks binary"),
        (b"\xff\xfe bad", "latin.txt", "not UTF-8"),
        (b'{"text": "ok"}\n{oops\n', "bad.jsonl", "bad.jsonl:2"),
        (b'{"title": "no text"}\n', "odd.jsonl", "expected an object"),
    ],
)
def test_bad_corpora_are_refused(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(XTokenError, match=message):
        read_corpus(path)


def test_missing_corpus(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match="no such corpus"):
        read_corpus(tmp_path / "nope.jsonl")
