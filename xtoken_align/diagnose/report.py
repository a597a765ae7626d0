"""The `diagnose` report: its typed sections, its text for people and its CSV of unmatched tokens."""

from __future__ import annotations

import csv
import io
from typing import Literal

from xtoken_align.projection import TokenizerInfo
from xtoken_align.report import Report, TokenRef, table

Loss = Literal["p_kl", "h_kl", "kd"]
LOSS_NAMES: dict[str, str] = {"p_kl": "P-KL", "h_kl": "H-KL", "kd": "KD"}


class CategoryAudit(Report):
    total: int
    strict: int  # in GOLD's raw-string 1:1 set
    exact: int  # canonical bytes match a regular teacher token
    common: int  # in W's H-KL common set
    covered: int  # W's row is not empty
    severity: Literal["ok", "warn", "critical"]


class CorpusCategory(Report):
    tokens: int
    uncommon: int  # next-token targets outside the strict set
    suppressed_mass: float  # of all student tokens
    not_one_to_one: int


class CorpusMass(Report):
    name: str
    texts: int
    student_tokens: int
    teacher_tokens: int
    suppressed_tokens: int
    suppressed_mass: float
    critical_suppressed_mass: float
    not_one_to_one: float  # share of positions
    categories: dict[str, CorpusCategory]


class WEntry(Report):
    id: int
    display: str
    weight: float


class SampleToken(TokenRef):
    position: int  # in the sample text's tokens


class UnmatchedToken(TokenRef):
    w_row: list[WEntry]


class TeacherDiagnosis(Report):
    teacher: TokenizerInfo
    recommendation: Loss
    reason: str  # one sentence quoting the table's own counts
    categories: dict[str, CategoryAudit]  # per student category, in report order
    corpus: CorpusMass | None  # None without a corpus
    suppressed_sample: list[SampleToken]
    unmatched_critical: list[UnmatchedToken]


class Thresholds(Report):
    ok: float
    warn: float


class DiagnoseReport(Report):
    """`xtoken-align diagnose`: which student tokens each teacher's GOLD partition pushes down."""

    student: TokenizerInfo
    critical: list[str]
    thresholds: Thresholds
    sample_text: str
    teachers: list[TeacherDiagnosis]


def diagnose_text(report: DiagnoseReport) -> str:
    """The report for people: recommendations first, then each teacher's tables."""
    width = max((len(t.teacher.name) for t in report.teachers), default=0)
    lines = [
        f"student {report.student.name} ({report.student.size:,} tokens); critical: {', '.join(report.critical)}",
        "",
        *(f"{t.teacher.name:<{width}}  {LOSS_NAMES[t.recommendation]:<4}  {t.reason}" for t in report.teachers),
    ]
    for t in report.teachers:
        lines += [
            "",
            f"== {t.teacher.name} ({t.teacher.size:,} tokens): {LOSS_NAMES[t.recommendation]} ==",
            table(
                ["category", "total", "strict", "exact", "H-KL common", "covered", "severity"],
                [[k, c.total, c.strict, c.exact, c.common, c.covered, c.severity] for k, c in t.categories.items()],
            ),
        ]
        corpus = t.corpus
        if corpus:
            lost = {k: v for k, v in corpus.categories.items() if v.uncommon}
            lines += [
                f"corpus {corpus.name}: {corpus.texts:,} texts, {corpus.student_tokens:,} student tokens",
                f"  outside GOLD's strict set: {corpus.suppressed_mass:.2%} of student next tokens "
                f"(critical categories: {corpus.critical_suppressed_mass:.2%}); "
                f"not 1:1: {corpus.not_one_to_one:.2%} of positions",
                table(
                    ["category", "tokens", "outside strict", "share of all tokens"],
                    [[k, v.tokens, v.uncommon, f"{v.suppressed_mass:.2%}"] for k, v in lost.items()],
                ),
            ]
        sample = ", ".join(f"{s.display!r} ({s.category})" for s in t.suppressed_sample)
        lines.append(f"pushed down in the sample: {sample or 'none'}")
        if t.unmatched_critical:
            shown = ", ".join(repr(u.display) for u in t.unmatched_critical[:8])
            lines.append(
                f"unmatched critical tokens: {len(t.unmatched_critical):,} ({shown}, ...; --unmatched-csv lists all)"
            )
    return "\n".join(lines)


def w_row_text(token: UnmatchedToken) -> str:
    """A token's W row on one line: `'display':weight` per entry."""
    return " ".join(f"{w.display!r}:{w.weight:.4f}" for w in token.w_row)


def unmatched_critical_csv(report: DiagnoseReport) -> str:
    """Every teacher's unmatched critical student tokens as CSV (one row per teacher and token)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["teacher", "student_id", "piece", "display", "category", "w_row"])
    for entry in report.teachers:
        for token in entry.unmatched_critical:
            writer.writerow(
                [entry.teacher.name, token.id, token.piece, token.display, token.category, w_row_text(token)]
            )
    return out.getvalue()
