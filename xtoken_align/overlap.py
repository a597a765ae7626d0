"""How much two vocabularies share: raw strings (what GOLD compares) next to canonical bytes.

`compare_vocabs` counts the student tokens that have an exact match in the teacher vocabulary, per
category, numerals first. Raw overlap is `get_vocab()` string equality, special tokens included, as
in TRL's GOLD; canonical overlap compares the bytes each regular token adds to text. Left out:
anything beyond exact equality (digit splitting, re-tokenisation), which is the projection's job.
"""

from __future__ import annotations

import numpy as np

from xtoken_align.projection import TokenizerInfo
from xtoken_align.report import Report, table
from xtoken_align.vocab import Vocab


class CategoryOverlap(Report):
    total: int
    matched: int
    unmatched: int


class OverlapReport(Report):
    """`xtoken-align overlap`: raw vs canonical overlap of two vocabularies."""

    student: TokenizerInfo
    teacher: TokenizerInfo
    raw_overlap: int
    canonical_overlap: int
    canonical_gain: int
    categories: dict[str, CategoryOverlap]  # student category -> counts, in report order


def compare_vocabs(student: Vocab, teacher: Vocab) -> OverlapReport:
    teacher_pieces = {piece for piece in teacher.pieces if piece}
    raw = sum(1 for piece in student.pieces if piece and piece in teacher_pieces)
    matched = np.fromiter(
        (student.is_regular(i) and teacher.id_of_bytes(data) is not None for i, data in enumerate(student.token_bytes)),
        dtype=bool,
        count=student.size,
    )
    categories = student.category_codes
    totals = np.bincount(categories.codes, minlength=len(categories.names)).tolist()
    hits = np.bincount(categories.codes, weights=matched, minlength=len(categories.names)).astype(np.int64).tolist()
    return OverlapReport(
        student=TokenizerInfo.of(student),
        teacher=TokenizerInfo.of(teacher),
        raw_overlap=raw,
        canonical_overlap=int(matched.sum()),
        canonical_gain=int(matched.sum()) - raw,
        categories={
            name: CategoryOverlap(total=totals[k], matched=hits[k], unmatched=totals[k] - hits[k])
            for k, name in enumerate(categories.names)
            if name != "unused"
        },
    )


def overlap_text(report: OverlapReport) -> str:
    student, teacher = report.student, report.teacher
    rows = [[name, c.total, c.matched, c.unmatched] for name, c in report.categories.items()]
    lines = [
        f"student {student.name} ({student.size:,} tokens) vs teacher {teacher.name} ({teacher.size:,} tokens)",
        f"raw string overlap:      {report.raw_overlap:,}",
        f"canonical bytes overlap: {report.canonical_overlap:,}  ({report.canonical_gain:+,} vs raw)",
        "",
        "student tokens with an exact canonical match in the teacher, per category:",
        table(["category", "total", "matched", "unmatched"], rows),
    ]
    return "\n".join(lines)
