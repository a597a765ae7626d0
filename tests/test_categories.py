"""Categories of canonical bytes, by example from several scripts and byte shapes."""

import pytest

from xtoken_align.categories import CATEGORY_ORDER, categorize, category_rank


@pytest.mark.parametrize(
    ("data", "category"),
    [
        (b"7", "digits:1"),
        (b" 42", "digits:2"),
        (b"201", "digits:3"),
        (b" 2024", "digits:4+"),
        (b"12a", "mixed"),
        (b" the", "letters:latin"),
        ("Привет".encode(), "letters:cyrillic"),
        ("日本".encode(), "letters:cjk"),
        ("カタ".encode(), "letters:kana"),
        ("한국".encode(), "letters:hangul"),
        (" Ελλάδα".encode(), "letters:greek"),
        ("café".encode(), "letters:latin"),
        ("नमस्ते".encode(), "letters:devanagari"),  # combining marks stay with their script
        (b" ", "whitespace"),
        (b"\n", "whitespace"),
        (b"\n\n", "whitespace"),
        (b"    ", "indent"),
        (b"\n\t\t", "indent"),
        (b"...", "punctuation"),
        (b" =", "punctuation"),
        (b"\xe2", "byte"),
        (b"\xe2\x80", "partial-utf8"),
        (b"", "unused"),
    ],
)
def test_categorize(data: bytes, category: str) -> None:
    assert categorize(data) == category
    assert category in CATEGORY_ORDER


def test_numerals_come_first_in_reports() -> None:
    assert category_rank("digits:2") < category_rank("punctuation") < category_rank("special")
    assert category_rank("no-such-category") == len(CATEGORY_ORDER)
