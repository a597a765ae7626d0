"""The `score` report: its typed sections and its rendering for people."""

from __future__ import annotations

from pydantic import Field

from xtoken_align.config import BuildConfig
from xtoken_align.projection import TokenizerInfo
from xtoken_align.report import Report, table


class SpecialToken(Report):
    id: int
    piece: str
    roles: list[str]


class RowCounts(Report):
    regular: int
    regular_filled: int
    regular_summing_to_1: int
    special_unmatched: list[SpecialToken]  # role-bearing special tokens with an empty row
    special_unused_unmatched: int  # placeholders with an empty row (by design)


class Coverage(Report):
    total: int
    covered: int  # the row is not empty
    exact: int  # an `exact` entry
    common: int  # in the H-KL common set


class Receiver(Report):
    teacher_id: int
    piece: str
    rows: int


class OffPieceMass(Report):
    rows_checked: int
    rows_with_off_piece_mass: int
    total_off_piece_mass: float
    mean_of_affected_rows: float
    mean_of_non_exact_rows: float
    top_receivers: list[Receiver]


class CategoryAgreement(Report):
    tokens: int  # aligned tokens of the category
    aligned_share: float  # of the category's tokens
    agreement_at_1: float = Field(alias="agreement@1")
    mass: float


class UnreproducedText(Report):
    text: int  # index in the corpus
    side: str  # "student", "teacher" or "both"
    starts: str  # its first 60 characters


class NotRoundTrip(Report):
    student: int
    teacher: int
    texts: list[UnreproducedText]  # the first few


class CorpusAgreement(Report):
    name: str
    texts: int
    student_tokens: int
    aligned_tokens: int
    aligned_share: float
    aligned_share_round_trip: float
    chunked_share: float
    not_round_trip: NotRoundTrip
    agreement_at_1: float = Field(alias="agreement@1")
    mass: float
    categories: dict[str, CategoryAgreement]


class ScoreReport(Report):
    """`xtoken-align score`: how good a W is before any GPU is spent."""

    student: TokenizerInfo
    teacher: TokenizerInfo
    shape: tuple[int, int]
    nnz: int
    config: BuildConfig | None  # None for an imported W
    entries_per_rule: dict[str, int]
    rows: RowCounts
    coverage: dict[str, Coverage]  # per student category, in report order
    off_piece_mass: OffPieceMass
    corpus: CorpusAgreement | None  # None without a corpus


def score_text(report: ScoreReport) -> str:
    rows, leak = report.rows, report.off_piece_mass
    lines = [
        f"W {report.shape[0]:,} x {report.shape[1]:,}: student {report.student.name}, "
        f"teacher {report.teacher.name}, {report.nnz:,} entries",
        f"regular rows filled: {rows.regular_filled:,} / {rows.regular:,}; summing to 1: {rows.regular_summing_to_1:,}",
        f"off-piece mass: {leak.rows_with_off_piece_mass:,} rows "
        f"(mean {leak.mean_of_non_exact_rows:.1%} of every non-exact row)",
    ]
    if leak.top_receivers:
        receivers = ", ".join(f"{r.piece!r} ({r.rows:,} rows)" for r in leak.top_receivers)
        lines.append(f"  receiving teacher tokens: {receivers}")
    if rows.special_unmatched:
        lines.append("special tokens with empty rows: " + ", ".join(s.piece for s in rows.special_unmatched))
    lines += [
        "",
        table(
            ["category", "total", "covered", "exact", "H-KL common"],
            [[k, v.total, v.covered, v.exact, v.common] for k, v in report.coverage.items()],
        ),
    ]
    corpus = report.corpus
    if corpus:
        lines += [
            "",
            f"corpus {corpus.name}: {corpus.texts:,} texts, {corpus.student_tokens:,} student tokens, "
            f"{corpus.aligned_share:.1%} share a start with a teacher token, {corpus.chunked_share:.1%} are "
            "in a chunk that closes on both sides",
            f"agreement@1 {corpus.agreement_at_1:.4f}, mean W mass on the teacher's token {corpus.mass:.4f}",
            table(
                ["category", "aligned tokens", "aligned share", "agreement@1", "mass"],
                [
                    [k, v.tokens, f"{v.aligned_share:.1%}", f"{v.agreement_at_1:.4f}", f"{v.mass:.4f}"]
                    for k, v in corpus.categories.items()
                ],
            ),
        ]
        failed = corpus.not_round_trip
        if failed.texts:
            lines.append(
                f"not reproduced byte for byte: {failed.student:,} texts by the student, {failed.teacher:,} by "
                "the teacher (their differing stretch is in no chunk): "
                + "; ".join(f"#{t.text} ({t.side}) {t.starts!r}" for t in failed.texts[:5])
            )
    return "\n".join(lines)
