"""How much two vocabularies share: raw strings (what GOLD compares) next to canonical bytes.

`compare_vocabs` counts the student tokens that have an exact match in the teacher vocabulary, per
category, numerals first. Raw overlap is `get_vocab()` string equality, special tokens included, as
in TRL's GOLD; canonical overlap compares the bytes each regular token adds to text. Left out:
anything beyond exact equality (digit splitting, re-tokenisation), which is the projection's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from xtoken_align.vocab import Vocab


@dataclass
class CategoryCount:
    total: int = 0
    matched: int = 0

    @property
    def unmatched(self) -> int:
        return self.total - self.matched


@dataclass
class Overlap:
    student: Vocab
    teacher: Vocab
    raw_overlap: int
    canonical_overlap: int
    categories: dict[str, CategoryCount]  # student category -> counts, in report order

    def to_json(self) -> dict:
        return {
            "student": {"name": self.student.name, "source": self.student.source, "size": self.student.size},
            "teacher": {"name": self.teacher.name, "source": self.teacher.source, "size": self.teacher.size},
            "raw_overlap": self.raw_overlap,
            "canonical_overlap": self.canonical_overlap,
            "canonical_gain": self.canonical_overlap - self.raw_overlap,
            "categories": {
                name: {"total": c.total, "matched": c.matched, "unmatched": c.unmatched}
                for name, c in self.categories.items()
            },
        }


def compare_vocabs(student: Vocab, teacher: Vocab) -> Overlap:
    teacher_pieces = {piece for piece in teacher.pieces if piece}
    raw = sum(1 for piece in student.pieces if piece and piece in teacher_pieces)
    counts: dict[str, CategoryCount] = {}
    for category in student.category_counts():
        counts[category] = CategoryCount()
    canonical = 0
    for index in range(student.size):
        category = student.categories[index]
        count = counts[category]
        count.total += 1
        if student.is_regular(index) and teacher.id_of_bytes(student.token_bytes[index]) is not None:
            count.matched += 1
            canonical += 1
    counts.pop("unused", None)
    return Overlap(student, teacher, raw, canonical, counts)
