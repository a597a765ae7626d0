"""The `vocab` report: one tokenizer's canonical vocabulary as a typed model, and as text."""

from __future__ import annotations

from xtoken_align.report import Report, table
from xtoken_align.vocab import Vocab


class SpecialEntry(Report):
    id: int
    piece: str
    roles: list[str]
    evidence: list[str]  # where each role came from (chat template, config, known family, ...)


class Sample(Report):
    id: int
    raw: str  # the piece as the tokenizer stores it
    canonical_hex: str  # the bytes it adds to text
    display: str
    category: str


class VocabReport(Report):
    """`xtoken-align vocab`: what canonicalisation makes of one tokenizer."""

    name: str
    source: str
    size: int
    family: str
    strips_leading_space: bool
    fingerprint: str
    special: list[SpecialEntry]
    categories: dict[str, int]  # tokens per category, in report order
    samples: list[Sample]


def _sample_ids(vocab: Vocab, count: int) -> list[int]:
    """A few tokens that show what canonicalisation does: space markers, numerals, bytes, specials."""
    wanted = ["letters:latin", "digits:3", "digits:1", "whitespace", "indent", "byte", "partial-utf8", "letters:cjk"]
    picked: list[int] = []
    for category in wanted:
        matches = [i for i in range(vocab.size) if vocab.categories[i] == category and vocab.is_regular(i)]
        if matches:
            picked.extend(matches[len(matches) // 3 : len(matches) // 3 + 1])  # a typical one, not the first
            spaced = [i for i in matches if vocab.token_bytes[i].startswith(b" ")]
            picked.extend(spaced[:1])
    picked.extend(sorted(vocab.special)[:2])
    return list(dict.fromkeys(picked))[:count]


def vocab_report(vocab: Vocab, samples: int = 12) -> VocabReport:
    return VocabReport(
        name=vocab.name,
        source=vocab.source,
        size=vocab.size,
        family=vocab.family,
        strips_leading_space=vocab.strips_leading_space,
        fingerprint=vocab.fingerprint,
        special=[
            SpecialEntry(
                id=i, piece=vocab.pieces[i], roles=vocab.special[i], evidence=list(vocab.role_evidence.get(i, []))
            )
            for i in sorted(vocab.special)
        ],
        categories=vocab.category_counts(),
        samples=[
            Sample(
                id=i,
                raw=vocab.pieces[i],
                canonical_hex=vocab.token_bytes[i].hex(),
                display=vocab.display(i),
                category=vocab.categories[i],
            )
            for i in _sample_ids(vocab, samples)
        ],
    )


def vocab_text(report: VocabReport) -> str:
    named = [s for s in report.special if s.roles != ["unused"]]
    lines = [
        f"{report.name}  ({report.source})",
        f"size {report.size:,}, {report.family}, fingerprint {report.fingerprint[:16]}",
        "",
        f"special tokens ({len(report.special)}, {len(report.special) - len(named)} unused placeholders not shown):",
        table(
            ["id", "piece", "roles", "evidence"],
            [[s.id, s.piece, ", ".join(s.roles), " | ".join(s.evidence)] for s in named],
        ),
        "",
        table(["category", "tokens"], [[k, v] for k, v in report.categories.items()]),
        "",
        "raw vs canonical:",
        table(
            ["id", "raw", "canonical", "bytes", "category"],
            [[s.id, repr(s.raw), repr(s.display), s.canonical_hex, s.category] for s in report.samples],
        ),
    ]
    return "\n".join(lines)
