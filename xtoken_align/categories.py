"""What kind of token a piece of text is: numeral, whitespace, punctuation, letters of a script, ...

Categories are computed from a token's canonical bytes, so they mean the same thing for every
tokenizer family. The order of `CATEGORY_ORDER` is the order reports use: numerals first, because
they are the tokens the X-Token paper shows failing. Left out: tokenizer-specific notions such as
"word start"; a leading space is allowed in every category and does not change it.
"""

from __future__ import annotations

import unicodedata
from functools import cache

SCRIPTS = ("latin", "cyrillic", "greek", "arabic", "hebrew", "devanagari", "thai", "hangul", "kana", "cjk")

CATEGORY_ORDER: tuple[str, ...] = (
    "digits:1",
    "digits:2",
    "digits:3",
    "digits:4+",
    "punctuation",
    "whitespace",
    "indent",
    *(f"letters:{s}" for s in SCRIPTS),
    "letters:other",
    "mixed",
    "partial-utf8",
    "byte",
    "special",
    "special:unused",  # placeholders (`<unusedN>`, reserved ids): an empty W row by design
    "unused",
)

# First word of a character's Unicode name -> script; covers the scripts the paper's models carry.
_NAME_TO_SCRIPT = {
    "LATIN": "latin",
    "CYRILLIC": "cyrillic",
    "GREEK": "greek",
    "ARABIC": "arabic",
    "HEBREW": "hebrew",
    "DEVANAGARI": "devanagari",
    "THAI": "thai",
    "HANGUL": "hangul",
    "HIRAGANA": "kana",
    "KATAKANA": "kana",
    "CJK": "cjk",
}


@cache
def _char_class(ch: str) -> str:
    """'digit', 'space', 'punct', 'mark' or 'letters:<script>' for one character."""
    if "0" <= ch <= "9":
        return "digit"
    if ch.isspace():
        return "space"
    kind = unicodedata.category(ch)
    if kind[0] in "PS":
        return "punct"
    if kind[0] == "M":
        return "mark"
    if kind[0] == "L":
        name = unicodedata.name(ch, "")
        return "letters:" + _NAME_TO_SCRIPT.get(name.split(" ", 1)[0], "other")
    return "other"


def categorize(data: bytes) -> str:
    """The category of a regular (non-special) token's canonical bytes.

    >>> categorize(b" 12"), categorize(b"\\n    "), categorize(b" the"), categorize(b"\\xe2\\x80")
    ('digits:2', 'indent', 'letters:latin', 'partial-utf8')
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "byte" if len(data) == 1 else "partial-utf8"
    if not text:
        return "unused"
    if text.isspace():
        runs = text.lstrip("\r\n")
        return "indent" if len(runs) >= 2 and not runs.strip(" \t") else "whitespace"
    body = text[1:] if text[0] == " " else text
    classes = {_char_class(ch) for ch in body} - {"mark"}
    if classes == {"digit"}:
        return "digits:4+" if len(body) >= 4 else f"digits:{len(body)}"
    if classes == {"punct"}:
        return "punctuation"
    if len(classes) == 1:
        (only,) = classes
        if only.startswith("letters:"):
            return only
    return "mixed"


def is_numeral(category: str) -> bool:
    return category.startswith("digits:")


def category_rank(category: str) -> int:
    """Position of a category in reports (unknown ones last)."""
    try:
        return CATEGORY_ORDER.index(category)
    except ValueError:
        return len(CATEGORY_ORDER)
