"""`fuzzy`: near-equivalent surface forms at a lower weight (off by default).

Candidates for a student token are teacher tokens with the same text after case folding or NFKC
normalisation, and the longest teacher token that is a prefix of it (`Hundreds` → `Hund`). Each is
scored with rapidfuzz's ratio and kept if the score reaches `min_score`; its weight is
`weight · score / 100`, so it never outranks the token's own spelling. Left out: edit-distance
search over the whole teacher vocabulary (MinED), which is slow and rarely right for subwords.
"""

from __future__ import annotations

import contextlib
import unicodedata
from functools import cached_property

from rapidfuzz import fuzz

from xtoken_align.config import FuzzyRule
from xtoken_align.rules.context import Entries, RuleContext


class _TeacherForms:
    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx

    @cached_property
    def texts(self) -> dict[str, int]:
        teacher = self.ctx.teacher
        found: dict[str, int] = {}
        for index in range(teacher.size - 1, -1, -1):
            if teacher.is_regular(index):
                with contextlib.suppress(UnicodeDecodeError):  # partial UTF-8 has no surface form
                    found[teacher.token_bytes[index].decode("utf-8")] = index
        return found

    @cached_property
    def folded(self) -> dict[str, int]:
        return {_fold(text): index for text, index in sorted(self.texts.items(), key=lambda kv: -kv[1])}


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def fuzzy_rule(ctx: RuleContext, rows: list[int], config: FuzzyRule) -> Entries:
    forms = _TeacherForms(ctx)
    entries = Entries()
    for row in rows:
        if not ctx.student.is_regular(row):
            continue
        try:
            text = ctx.student.token_bytes[row].decode("utf-8")
        except UnicodeDecodeError:
            continue
        candidates = {forms.folded.get(_fold(text))}
        for end in range(len(text) - 1, config.min_prefix - 1, -1):
            prefix = forms.texts.get(text[:end])
            if prefix is not None:
                candidates.add(prefix)
                break
        for col in candidates - {None}:
            score = fuzz.ratio(text, ctx.teacher.token_bytes[col].decode("utf-8"))
            if score >= config.min_score:
                entries.add(row, col, config.weight * score / 100)
    return entries
